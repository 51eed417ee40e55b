package images

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/maasemu/maasemu/harness/images/debs"
)

// Kernel is an unpacked Debian kernel package.
type Kernel struct {
	Package debs.Package
	Version string // uname -r, e.g. 6.1.0-56-amd64
	Root    string // the dpkg -x tree (boot/, lib/modules/<Version>/)
	Vmlinuz string // Root/boot/vmlinuz-<Version>

	mods map[string]*kmod // module name (underscores) -> module
}

type kmod struct {
	name string
	rel  string // path below lib/modules/<ver>/
	deps []string
}

// modName normalises a module name: dashes and underscores are the same to the kernel.
func modName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// FetchKernel resolves linux-image-amd64 to its exact linux-image-<abi>-amd64 package,
// downloads it and unpacks it into cacheDir/kernel/<version> (once per package version).
func FetchKernel(ctx context.Context, f *debs.Fetcher, cacheDir string) (*Kernel, error) {
	name, err := f.DependsOn(ctx, "linux-image-amd64", "linux-image-")
	if err != nil {
		return nil, err
	}
	pkg, err := f.Candidate(ctx, name)
	if err != nil {
		return nil, err
	}
	ver := strings.TrimPrefix(name, "linux-image-")
	root := filepath.Join(cacheDir, "kernel", pkg.Name+"_"+pkg.Version)
	k := &Kernel{Package: pkg, Version: ver, Root: root, Vmlinuz: filepath.Join(root, "boot", "vmlinuz-"+ver)}
	if _, err := os.Stat(filepath.Join(root, ".complete")); err != nil {
		paths, err := f.Download(ctx, []debs.Package{pkg})
		if err != nil {
			return nil, err
		}
		tmp := root + ".tmp"
		os.RemoveAll(tmp)
		if err := debs.Unpack(ctx, paths, tmp); err != nil {
			return nil, err
		}
		os.RemoveAll(root)
		if err := os.Rename(tmp, root); err != nil {
			return nil, fmt.Errorf("images: kernel: %w", err)
		}
		if err := os.WriteFile(filepath.Join(root, ".complete"), []byte(pkg.String()+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("images: kernel: %w", err)
		}
	}
	if _, err := os.Stat(k.Vmlinuz); err != nil {
		return nil, fmt.Errorf("images: kernel package %s has no %s: %w", pkg, k.Vmlinuz, err)
	}
	if err := k.scan(); err != nil {
		return nil, err
	}
	return k, nil
}

// ModulesDir is lib/modules/<version> inside Root.
func (k *Kernel) ModulesDir() string { return filepath.Join(k.Root, "lib", "modules", k.Version) }

// scan reads every module's dependencies from its .modinfo section (the package ships no
// modules.dep: depmod runs in its postinst).
func (k *Kernel) scan() error {
	k.mods = map[string]*kmod{}
	base := k.ModulesDir()
	return filepath.WalkDir(filepath.Join(base, "kernel"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".ko") {
			return nil
		}
		rel, _ := filepath.Rel(base, p)
		m := &kmod{name: modName(strings.TrimSuffix(d.Name(), ".ko")), rel: rel}
		deps, err := modDepends(p)
		if err != nil {
			return fmt.Errorf("images: module %s: %w", rel, err)
		}
		m.deps = deps
		k.mods[m.name] = m
		return nil
	})
}

func modDepends(p string) ([]string, error) {
	f, err := elf.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, nil
	}
	b, err := s.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var out []string
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					out = append(out, modName(d))
				}
			}
			return out, nil
		}
	}
	return nil, nil
}

// Modules returns the modules matching patterns (module names, or path globs below
// kernel/ such as "fs/nls/*" or "drivers/md/*") and all their dependencies, in an order
// that loads every dependency first and the patterns in the order given. Names not built as modules (built into the kernel)
// are skipped; a pattern that matches nothing and is not built in is an error.
func (k *Kernel) Modules(patterns []string) ([]string, error) {
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(k.ModulesDir(), "modules.builtin")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" {
				builtin[modName(strings.TrimSuffix(path.Base(l), ".ko"))] = true
			}
		}
	}
	var roots []string
	for _, pat := range patterns {
		if strings.Contains(pat, "/") {
			n := 0
			for name, m := range k.mods {
				if ok, _ := path.Match("kernel/"+pat, m.rel); ok {
					roots = append(roots, name)
					n++
				}
			}
			if n == 0 {
				return nil, fmt.Errorf("images: kernel %s: no module matches %q", k.Version, pat)
			}
			continue
		}
		name := modName(pat)
		if _, ok := k.mods[name]; ok {
			roots = append(roots, name)
		} else if !builtin[name] {
			return nil, fmt.Errorf("images: kernel %s has no module %q (neither a module nor built in)", k.Version, pat)
		}
	}
	// Roots load in the order given: a module's soft dependencies (libcrc32c needs a crc32c
	// implementation loaded first, which .modinfo's depends does not list) come first by
	// listing them first.
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string) error
	visit = func(n string) error {
		switch state[n] {
		case 1:
			return fmt.Errorf("images: module dependency cycle at %s", n)
		case 2:
			return nil
		}
		m, ok := k.mods[n]
		if !ok {
			if builtin[n] {
				return nil
			}
			return fmt.Errorf("images: kernel %s: module %s is needed but missing", k.Version, n)
		}
		state[n] = 1
		for _, d := range m.deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[n] = 2
		order = append(order, m.rel)
		return nil
	}
	for _, r := range roots {
		if err := visit(r); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// InstallModules copies the modules (paths relative to the modules directory, as Modules
// returns them) and the modules.builtin/order files into root/lib/modules/<version> and
// runs depmod there, so that modprobe and udev can load them.
func (k *Kernel) InstallModules(ctx context.Context, rels []string, root string) error {
	dst := filepath.Join(root, "lib", "modules", k.Version)
	for _, r := range append(append([]string(nil), rels...), "modules.builtin", "modules.builtin.modinfo", "modules.order") {
		if err := copyFile(filepath.Join(k.ModulesDir(), r), filepath.Join(dst, r), 0o644); err != nil {
			return err
		}
	}
	if _, err := exec.LookPath("depmod"); err != nil {
		return fmt.Errorf("images: depmod is needed (apt-get install kmod): %w", err)
	}
	if out, err := exec.CommandContext(ctx, "depmod", "-b", root, k.Version).CombinedOutput(); err != nil {
		return fmt.Errorf("images: depmod -b %s %s: %w: %s", root, k.Version, err, out)
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("images: copy %s: %w", src, err)
	}
	return out.Close()
}
