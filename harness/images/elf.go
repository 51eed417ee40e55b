package images

import (
	"debug/elf"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// libDirs are where Debian's dynamic loader finds libraries without an ld.so.cache.
var libDirs = []string{"usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib", "lib", "usr/lib64", "lib64"}

// elfFile is one file of a dynamic executable's closure: where it goes (dst, relative)
// and where its bytes are on the host (src).
type elfFile struct{ dst, src string }

// elfClosure lists the executables bins (paths in root) with their dynamic loader and the
// shared libraries they need, transitively, resolved inside root the way the loader
// would find them: bins keep their paths, libraries go to lib/x86_64-linux-gnu and the
// loader to its PT_INTERP path.
func elfClosure(root string, bins ...string) ([]elfFile, error) {
	var out []elfFile
	seen := map[string]bool{}
	var add func(dst, rel, by string) error
	add = func(dst, rel, by string) error {
		if seen[dst] {
			return nil
		}
		seen[dst] = true
		src, err := inRoot(root, rel)
		if err != nil {
			if by != "" {
				return fmt.Errorf("images: %s, which %s needs, in %s: %w", rel, by, root, err)
			}
			return err
		}
		f, err := elf.Open(src)
		if err != nil {
			return fmt.Errorf("images: %s in %s: %w", rel, root, err)
		}
		defer f.Close()
		out = append(out, elfFile{dst: dst, src: src})
		for _, p := range f.Progs {
			if p.Type != elf.PT_INTERP {
				continue
			}
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return fmt.Errorf("images: %s: PT_INTERP: %w", rel, err)
			}
			interp := strings.TrimPrefix(strings.TrimRight(string(b), "\x00"), "/")
			if err := add(interp, interp, rel); err != nil {
				return err
			}
		}
		libs, err := f.ImportedLibraries()
		if err != nil {
			return fmt.Errorf("images: %s: %w", rel, err)
		}
		for _, lib := range libs {
			found := ""
			for _, d := range libDirs {
				if _, err := inRoot(root, path.Join(d, lib)); err == nil {
					found = path.Join(d, lib)
					break
				}
			}
			if found == "" {
				return fmt.Errorf("images: %s needs %s, which is in none of %s under %s", rel, lib, strings.Join(libDirs, ", "), root)
			}
			if err := add(path.Join("lib/x86_64-linux-gnu", lib), found, rel); err != nil {
				return err
			}
		}
		return nil
	}
	for _, b := range bins {
		if err := add(b, b, ""); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// inRoot resolves rel inside root, following symlinks (absolute ones relative to root),
// to a regular file on the host.
func inRoot(root, rel string) (string, error) {
	cur := rel
	for range 40 {
		p := filepath.Join(root, filepath.FromSlash(cur))
		// The directories on the way may be symlinks too (lib -> usr/lib): let the host
		// resolve them, which stays inside root for the relative links Debian ships.
		fi, err := os.Lstat(p)
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			if !fi.Mode().IsRegular() {
				return "", fmt.Errorf("images: %s in %s is not a regular file", rel, root)
			}
			return p, nil
		}
		t, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		if path.IsAbs(t) {
			cur = strings.TrimPrefix(t, "/")
		} else {
			cur = path.Join(path.Dir(cur), t)
		}
	}
	return "", fmt.Errorf("images: %s in %s: too many symlinks", rel, root)
}
