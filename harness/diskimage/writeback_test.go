package diskimage

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// treeEntry is what a test compares of one entry of a tree.
type treeEntry struct {
	Mode     fs.FileMode
	UID, GID uint32
	Mtime    int64 // seconds
	Data     string
}

func readTree(t *testing.T, root string) map[string]treeEntry {
	t.Helper()
	out := map[string]treeEntry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." || rel == "lost+found" || strings.HasPrefix(rel, "lost+found/") {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := treeEntry{Mode: fi.Mode(), UID: st.Uid, GID: st.Gid}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.Data, e.Mtime = string(b), st.Mtim.Sec
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Data, _ = os.Readlink(p)
		case fi.Mode().IsDir():
		default:
			e.Mtime = st.Mtim.Sec
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// extInode is the inode number debugfs gives p in the filesystem f of img.
func extInode(t *testing.T, img string, f FS, p string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "stat \""+p+"\"", debugfsSpec(img, f)).Output()
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	inode, _, _ := strings.Cut(strings.TrimPrefix(first, "Inode: "), " ")
	return inode
}

// TestWriteBack stages an ext4 root as the dd path does (ExtractTree), changes it every
// way an install does, writes the changes back, and reads the filesystem again
// independently: it must hold exactly the changed tree, untouched files must keep their
// inodes, and e2fsck must find it clean.
func TestWriteBack(t *testing.T) {
	for _, tool := range []string{"debugfs", "mkfs.ext4", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s (e2fsprogs) is not installed", tool)
		}
	}
	ctx := context.Background()
	src := t.TempDir()
	for name, data := range map[string]string{
		"etc/fstab": "LABEL=root / ext4 defaults 0 1\n", "etc/hostname": "image\n", "etc/keep": "untouched\n",
		"etc/chmod-me": "x\n", "etc/to-link": "becomes a symlink\n", "var/lib/old/a": "a\n", "var/lib/old/deep/b": "b\n",
		"etc/gone": "removed\n", "usr/bin/tool": "#!/bin/sh\n",
	} {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("hostname", filepath.Join(src, "etc/old-link")); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	const off, size = 1 << 20, 32 << 20
	if err := CreateSparse(img, off+size); err != nil {
		t.Fatal(err)
	}
	if err := MakeExt4(ctx, img, off, size, src, FSOptions{Label: "root"}); err != nil {
		t.Fatal(err)
	}
	f := FS{Type: FSExt4, Offset: off, Size: size}
	keepInode := extInode(t, img, f, "/etc/keep")

	target := filepath.Join(t.TempDir(), "target")
	if err := ExtractTree(ctx, img, f, target); err != nil {
		t.Fatal(err)
	}
	snap, err := SnapshotTree(target)
	if err != nil {
		t.Fatal(err)
	}
	in := func(p string) string { return filepath.Join(target, p) }
	time.Sleep(10 * time.Millisecond) // a rewrite within the same clock tick must still show
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(in("etc/fstab"), []byte("UUID=1234 / ext4 defaults 0 1\n"), 0o644)) // rewritten in place
	must(os.WriteFile(in("etc/hostname.new"), []byte("machine\n"), 0o600))                // replaced by rename
	must(os.Rename(in("etc/hostname.new"), in("etc/hostname")))                           //
	must(os.Chmod(in("etc/chmod-me"), 0o4755))                                            // mode only
	must(os.Chown(in("usr/bin/tool"), 1000, 1001))                                        // owner only
	must(os.Remove(in("etc/to-link")))                                                    // file -> symlink
	must(os.Symlink("/etc/hostname", in("etc/to-link")))                                  //
	must(os.Remove(in("etc/old-link")))                                                   // symlink retargeted
	must(os.Symlink("fstab", in("etc/old-link")))                                         //
	must(os.RemoveAll(in("var/lib/old")))                                                 // a tree removed
	must(os.Remove(in("etc/gone")))                                                       //
	must(os.MkdirAll(in("etc/cloud/cloud.cfg.d"), 0o755))                                 // a new tree
	must(os.WriteFile(in("etc/cloud/cloud.cfg.d/50-curtin-networking.cfg"), []byte("network: {config: disabled}\n"), 0o644))
	must(os.WriteFile(in("etc/with space"), []byte("spaced\n"), 0o644))                   // a name debugfs must quote
	must(syscall.Mkfifo(in("etc/fifo"), 0o600))                                           //
	must(os.Chtimes(in("etc/fstab"), time.Unix(1700000000, 0), time.Unix(1700000000, 0))) // an mtime set back
	want := readTree(t, target)
	delete(want, "etc/fifo") // rdump skips FIFOs: checked with stat below

	if err := WriteBack(ctx, img, f, snap); err != nil {
		t.Fatal(err)
	}
	again := filepath.Join(t.TempDir(), "again")
	if err := ExtractTree(ctx, img, f, again); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, readTree(t, again)); diff != "" {
		t.Errorf("filesystem after write-back differs from the changed tree (-want +got):\n%s", diff)
	}
	if out, err := exec.Command("debugfs", "-R", "stat /etc/fifo", debugfsSpec(img, f)).Output(); err != nil || !strings.Contains(string(out), "Type: FIFO") || !strings.Contains(string(out), "Mode:  0600") {
		t.Errorf("/etc/fifo after write-back: %v\n%s", err, out)
	}
	if got := extInode(t, img, f, "/etc/keep"); got != keepInode {
		t.Errorf("untouched /etc/keep moved from inode %s to %s: the filesystem was rebuilt, not written in place", keepInode, got)
	}
	if out, err := exec.Command("e2fsck", "-fn", debugfsSpec(img, f)).CombinedOutput(); err != nil {
		t.Errorf("e2fsck after write-back: %v\n%s", err, out)
	}
}

// TestWriteBackRefuses: changes debugfs cannot express are refused before the filesystem
// is touched, with ErrWriteBackUnsupported (the caller rebuilds instead), and a change that
// does not fit is an error that says so.
func TestWriteBackRefuses(t *testing.T) {
	if _, err := exec.LookPath("debugfs"); err != nil {
		t.Skip("debugfs (e2fsprogs) is not installed")
	}
	ctx := context.Background()
	img := filepath.Join(t.TempDir(), "disk.img")
	const size = 4 << 20
	if err := CreateSparse(img, size); err != nil {
		t.Fatal(err)
	}
	if err := MakeExt4(ctx, img, 0, size, "", FSOptions{}); err != nil {
		t.Fatal(err)
	}
	f := FS{Type: FSExt4, Offset: 0, Size: size}
	before, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}

	target := t.TempDir()
	snap, err := SnapshotTree(target)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, `say "hi"`), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteBack(ctx, img, f, snap); !errors.Is(err, ErrWriteBackUnsupported) || !strings.Contains(err.Error(), `say \"hi\"`) {
		t.Errorf("a name with a double quote: got %v, want ErrWriteBackUnsupported naming it", err)
	}
	if err := WriteBack(ctx, img, FS{Type: FSVFAT, Size: size}, snap); !errors.Is(err, ErrWriteBackUnsupported) {
		t.Errorf("a FAT filesystem: got %v, want ErrWriteBackUnsupported", err)
	}
	if after, _ := os.ReadFile(img); string(after) != string(before) {
		t.Error("a refused write-back changed the image")
	}

	if err := os.Remove(filepath.Join(target, `say "hi"`)); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i)
	}
	if err := os.WriteFile(filepath.Join(target, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	err = WriteBack(ctx, img, f, snap)
	if err == nil || !strings.Contains(err.Error(), "write back to "+img) || !strings.Contains(err.Error(), "debugfs: ") {
		t.Errorf("8 MiB into a 4 MiB filesystem: got %v, want an error naming the image and debugfs's reason", err)
	}
}
