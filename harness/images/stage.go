package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/maasemu/maasemu/harness/images/debs"
)

// stageRecipe versions the way Debian packages are turned into a root tree; bump it when
// stageRoot changes so cached trees are rebuilt.
const stageRecipe = "stage-v1"

// stageRoot returns a root tree with pkgs and their dependency closure unpacked, merged-usr,
// stripped of documentation and given the files dpkg maintainer scripts would have made.
// Trees are cached under Cache/staging by package set; callers must not modify them (use
// cloneTree).
func (b *Builder) stageRoot(ctx context.Context, pkgs []string) (string, []debs.Package, error) {
	resolved, err := b.fetcher().Resolve(ctx, pkgs)
	if err != nil {
		return "", nil, err
	}
	key := debs.Key(resolved)
	root := filepath.Join(b.cacheDir(), "staging", stageRecipe+"-"+key[:16])
	if _, err := os.Stat(root + ".complete"); err == nil {
		return root, resolved, nil
	}
	paths, err := b.fetcher().Download(ctx, resolved)
	if err != nil {
		return "", nil, err
	}
	tmp := root + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", nil, fmt.Errorf("images: %w", err)
	}
	b.log().Info("unpacking Debian packages", "count", len(paths), "root", root)
	// dpkg -x in parallel: the packages' files do not overlap (dpkg would refuse them)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.NumCPU())
	for _, p := range paths {
		g.Go(func() error { return debs.Unpack(gctx, []string{p}, tmp) })
	}
	if err := g.Wait(); err != nil {
		return "", nil, err
	}
	if err := mergeUsr(tmp); err != nil {
		return "", nil, err
	}
	for _, d := range []string{"usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian", "usr/share/bug"} {
		os.RemoveAll(filepath.Join(tmp, d))
	}
	if err := fixupRoot(tmp); err != nil {
		return "", nil, err
	}
	os.RemoveAll(root)
	if err := os.Rename(tmp, root); err != nil {
		return "", nil, fmt.Errorf("images: %w", err)
	}
	if err := os.WriteFile(root+".complete", []byte(strings.Join(pkgs, " ")+"\n"), 0o644); err != nil {
		return "", nil, fmt.Errorf("images: %w", err)
	}
	return root, resolved, nil
}

// mergeUsr moves /bin, /sbin, /lib, /lib64 into /usr and leaves symlinks, as Debian 12
// systems are laid out (dpkg -x replaced the symlinks with directories).
func mergeUsr(root string) error {
	for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
		top := filepath.Join(root, d)
		st, err := os.Lstat(top)
		if os.IsNotExist(err) {
			if err := os.MkdirAll(filepath.Join(root, "usr", d), 0o755); err != nil {
				return err
			}
			if err := os.Symlink("usr/"+d, top); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if st.Mode()&os.ModeSymlink != 0 {
			continue
		}
		if err := mergeInto(top, filepath.Join(root, "usr", d)); err != nil {
			return fmt.Errorf("images: merging /%s into /usr/%s: %w", d, d, err)
		}
		if err := os.RemoveAll(top); err != nil {
			return err
		}
		if err := os.Symlink("usr/"+d, top); err != nil {
			return err
		}
	}
	return nil
}

// mergeInto moves the entries of src into dst, recursing into directories present in
// both; where both have a non-directory, dst's copy wins.
func mergeInto(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		s, d := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		dst, err := os.Lstat(d)
		switch {
		case os.IsNotExist(err):
			if err := os.Rename(s, d); err != nil {
				return err
			}
		case err != nil:
			return err
		case e.IsDir() && dst.IsDir():
			if err := mergeInto(s, d); err != nil {
				return err
			}
		}
	}
	return nil
}

// fixupRoot creates what maintainer scripts would have: accounts, /bin/sh, the awk
// alternative, and basic /etc files.
func fixupRoot(root string) error {
	put := func(rel, content string, mode os.FileMode) error {
		p := filepath.Join(root, rel)
		if _, err := os.Lstat(p); err == nil {
			return nil
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, []byte(content), mode)
	}
	link := func(rel, target string) error {
		p := filepath.Join(root, rel)
		if _, err := os.Lstat(p); err == nil {
			return nil
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), target)); err != nil {
			return nil // nothing to point at
		}
		return os.Symlink(target, p)
	}
	passwd := "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
	group := "root:x:0:\ndaemon:x:1:\ndisk:x:6:\ntty:x:5:\nkmem:x:15:\ndialout:x:20:\ncdrom:x:24:\naudio:x:29:\nvideo:x:44:\nkvm:x:104:\ninput:x:105:\nrender:x:106:\nsgx:x:107:\nnogroup:x:65534:\n"
	if b, err := os.ReadFile(filepath.Join(root, "usr/share/base-passwd/passwd.master")); err == nil {
		passwd = string(b)
	}
	if b, err := os.ReadFile(filepath.Join(root, "usr/share/base-passwd/group.master")); err == nil {
		group = string(b) + "kvm:x:104:\ninput:x:105:\nrender:x:106:\nsgx:x:107:\n"
	}
	for _, err := range []error{
		put("etc/passwd", passwd, 0o644),
		put("etc/group", group, 0o644),
		put("etc/shadow", "root:*:19000:0:99999:7:::\n", 0o640),
		put("etc/hostname", "maasemu\n", 0o644),
		put("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", 0o644),
		put("etc/fstab", "# empty: the root is mounted by the initramfs\n", 0o644),
		link("usr/bin/sh", "bash"),
		link("usr/bin/awk", "mawk"),
		link("usr/bin/awk", "gawk"),
		link("usr/bin/awk", "busybox"),
		link("usr/bin/pager", "less"),
		os.MkdirAll(filepath.Join(root, "proc"), 0o555),
		os.MkdirAll(filepath.Join(root, "sys"), 0o555),
		os.MkdirAll(filepath.Join(root, "dev"), 0o755),
		os.MkdirAll(filepath.Join(root, "run"), 0o755),
		os.MkdirAll(filepath.Join(root, "tmp"), 0o1777),
		os.MkdirAll(filepath.Join(root, "root"), 0o700),
		os.MkdirAll(filepath.Join(root, "var/tmp"), 0o1777),
		os.MkdirAll(filepath.Join(root, "mnt"), 0o755),
		os.MkdirAll(filepath.Join(root, "media"), 0o755),
	} {
		if err != nil {
			return fmt.Errorf("images: fixing up %s: %w", root, err)
		}
	}
	os.Chmod(filepath.Join(root, "tmp"), 0o1777|os.ModeSticky)
	if _, err := os.Lstat(filepath.Join(root, "etc/mtab")); os.IsNotExist(err) {
		os.Symlink("../proc/self/mounts", filepath.Join(root, "etc/mtab"))
	}
	return nil
}

// cloneTree makes dst a copy of src sharing file data through hard links (cp -al). Files
// in dst must be replaced (putFile), never written in place.
func cloneTree(ctx context.Context, src, dst string) error {
	os.RemoveAll(dst)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "cp", "-al", src, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("images: cp -al %s %s: %w: %s", src, dst, err, out)
	}
	return nil
}

// putFile replaces the file at root/rel (unlinking first, so hard-linked cache files are
// never modified) with content.
func putFile(root, rel string, content []byte, mode os.FileMode) error {
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	os.Remove(p)
	if err := os.WriteFile(p, content, mode); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return os.Chmod(p, mode)
}

// putLink replaces root/rel with a symlink to target.
func putLink(root, rel, target string) error {
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	os.Remove(p)
	return os.Symlink(target, p)
}
