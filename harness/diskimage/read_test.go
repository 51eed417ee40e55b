package diskimage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// bounded runs f and fails the test when it has not returned within limit: the read
// functions must never hang, whatever the image.
func bounded(t testing.TB, limit time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf("%s did not return within %v", what, limit)
	}
}

// holeTree is a tree of files with holes (kept by mkfs.ext4 -d, which copies sparse files
// as sparse) and symbolic links.
func holeTree(t testing.TB) (dir string, want map[string][]byte) {
	t.Helper()
	dir = t.TempDir()
	want = map[string][]byte{}
	put := func(name string, size int64, at map[int64]string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, size)
		for off, s := range at {
			if _, err := f.WriteAt([]byte(s), off); err != nil {
				t.Fatal(err)
			}
			copy(b[off:], s)
		}
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		f.Close()
		want[name] = b
	}
	put("f", 4<<20, map[int64]string{0: "head"})                                         // the repro: data, then a 4 MiB hole
	put("empty-sparse", 1<<20, nil)                                                      // nothing but a hole
	put("hole-first", 3<<20, map[int64]string{(3 << 20) - 5: "tail\n"})                  // a hole, then data
	put("etc/middle", 5<<20, map[int64]string{0: "one", 2 << 20: "two", 5<<20 - 1: "3"}) // data, holes, data
	for name, target := range map[string]string{"etc/rel": "middle", "abs": "/etc/middle", "chain": "abs",
		"up": "../../../../../etc/middle", "dangling": "nothing-here", "loop1": "loop2", "loop2": "loop1", "dirlink": "etc"} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir, want
}

// TestReadFileHoles is the regression test for go-diskfs's ext4 reader looping forever
// on a file with holes (truncate -s 4M f; mkfs.ext4 -d): files with holes anywhere,
// unwritten (fallocated) extents over old data, and symbolic links read as the kernel
// would read them.
func TestReadFileHoles(t *testing.T) {
	need(t, "mkfs.ext4", "debugfs")
	src, want := holeTree(t)
	img := sparse(t, 48*mib)
	if err := MakeExt4(context.Background(), img, 0, 48*mib, src, FSOptions{}); err != nil {
		t.Fatal(err)
	}
	// Unwritten extents: blocks that held a file's data, freed, then fallocated to another
	// file, read as zeros (go-diskfs would return the old data).
	junk := filepath.Join(t.TempDir(), "junk")
	if err := os.WriteFile(junk, bytes.Repeat([]byte("OLD DATA "), 20000), 0o644); err != nil {
		t.Fatal(err)
	}
	sparse100k := filepath.Join(t.TempDir(), "sparse")
	if err := os.WriteFile(sparse100k, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(sparse100k, 100<<10); err != nil {
		t.Fatal(err)
	}
	for _, req := range []string{"write " + junk + " junk", "rm junk", "write " + sparse100k + " unwritten", "fallocate unwritten 0 24"} {
		if out, err := exec.Command("debugfs", "-w", "-R", req, img).CombinedOutput(); err != nil {
			t.Fatalf("debugfs %s: %v\n%s", req, err, out)
		}
	}
	if out, _ := exec.Command("debugfs", "-R", "stat unwritten", img).CombinedOutput(); !bytes.Contains(out, []byte("[u]")) {
		t.Fatalf("no unwritten extent made:\n%s", out)
	}
	want["unwritten"] = make([]byte, 100<<10)
	for _, l := range []string{"etc/rel", "abs", "chain", "up", "dirlink/middle", "dirlink/rel"} {
		want[l] = want["etc/middle"]
	}
	f := FS{Offset: 0, Size: 48 * mib, Type: FSExt4}
	for name, w := range want {
		var got []byte
		var err error
		bounded(t, 3*time.Minute, "ReadFile "+name, func() { got, err = ReadFile(img, f, "/"+name) })
		if err != nil {
			t.Errorf("ReadFile(%s): %v", name, err)
			continue
		}
		if !bytes.Equal(got, w) {
			t.Errorf("ReadFile(%s): %d bytes differ from the %d written", name, len(got), len(w))
		}
	}
	for _, tc := range []struct{ path, want string }{
		{"/dangling", "file does not exist"},
		{"/loop1", "more than 40 symbolic links"},
		{"/dirlink", "is a directory"},
		{"/etc", "is a directory"},
		{"/nope", "file does not exist"},
		{"/etc/middle/x", "file does not exist"},
		{`/a"b`, "debugfs cannot name a path holding a double quote or a newline"},
	} {
		_, err := ReadFile(img, f, tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), img) {
			t.Errorf("ReadFile(%s) = %v, want an error naming %s and saying %q", tc.path, err, img, tc.want)
		}
	}
	if _, err := ReadFile(img, f, "/dangling"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile of a dangling link = %v, want fs.ErrNotExist", err)
	}
	if ok, err := Exists(img, f, "/dangling"); !ok || err != nil {
		t.Errorf("Exists(/dangling) = %v, %v; a dangling link exists", ok, err)
	}
}

// TestReadBadExt: a filesystem debugfs cannot open, or a region outside the image, is an
// error naming the image and the reason, never "file not found".
func TestReadBadExt(t *testing.T) {
	need(t, "mkfs.ext4", "debugfs")
	img := sparse(t, 16*mib)
	if err := MakeExt4(context.Background(), img, 0, 16*mib, mkTree(t), FSOptions{}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(img)
	copy(b[1024+56:], []byte{0, 0}) // the superblock's magic
	bad := filepath.Join(t.TempDir(), "bad.img")
	os.WriteFile(bad, b, 0o644)
	f := FS{Offset: 0, Size: 16 * mib, Type: FSExt4}
	for what, call := range map[string]func() error{
		"ReadFile": func() error { _, err := ReadFile(bad, f, "/etc/os-release"); return err },
		"Exists":   func() error { _, err := Exists(bad, f, "/etc/os-release"); return err },
		"ReadDir":  func() error { _, err := ReadDir(bad, f, "/etc"); return err },
		"Readlink": func() error { _, err := Readlink(bad, f, "/etc/link"); return err },
	} {
		err := call()
		if err == nil || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), bad) ||
			!strings.Contains(err.Error(), "debugfs cannot open the filesystem: Bad magic number in super-block") {
			t.Errorf("%s on a broken superblock = %v", what, err)
		}
	}
	outside := FS{Offset: 8 * mib, Size: 16 * mib, Type: FSExt4}
	if _, err := ReadFile(img, outside, "/x"); err == nil || !strings.Contains(err.Error(), "is not inside the image") {
		t.Errorf("ReadFile past the image = %v", err)
	}
	if _, err := ReadDir(img, f, "/etc/os-release"); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("ReadDir of a file = %v", err)
	}
}

// fatImage makes a FAT filesystem of fatBits (FAT32: 40 MiB, else 16 MiB) with a small
// ESP tree; it returns the image and its filesystem.
func fatImage(t testing.TB, fatBits int) (string, FS) {
	t.Helper()
	need(t, "mkfs.fat", "mcopy", "mdir")
	size := int64(16 * mib)
	if fatBits == 32 {
		size = 40 * mib
	}
	src := t.TempDir()
	for name, body := range map[string]string{"EFI/BOOT/BOOTX64.EFI": "MZ shim", "EFI/debian/grub with space.cfg": "set x=1\n",
		"startup.nsh": "echo hi\n"} {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(src, "EFI", "empty"), 0o755)
	img := sparse(t, size)
	if err := MakeFAT(context.Background(), img, 0, size, src, FSOptions{FATBits: fatBits}); err != nil {
		t.Fatal(err)
	}
	return img, FS{Offset: 0, Size: size, Type: FSVFAT}
}

func TestReadFAT(t *testing.T) {
	img, f := fatImage(t, 16)
	ents, err := ReadDir(img, f, "/efi")
	if err != nil {
		t.Fatal(err)
	}
	want := []DirEntry{{"BOOT", fs.ModeDir | 0o755}, {"debian", fs.ModeDir | 0o755}, {"empty", fs.ModeDir | 0o755}}
	if diff := cmp.Diff(want, ents); diff != "" {
		t.Errorf("ReadDir(/efi) (-want +got):\n%s", diff)
	}
	if ents, err := ReadDir(img, f, "/EFI/debian"); err != nil || len(ents) != 1 || ents[0] != (DirEntry{"grub with space.cfg", 0o755}) {
		t.Errorf("ReadDir(/EFI/debian) = %+v, %v", ents, err)
	}
	if ents, err := ReadDir(img, f, "/EFI/empty"); err != nil || len(ents) != 0 {
		t.Errorf("ReadDir of an empty directory = %+v, %v", ents, err)
	}
	if b, err := ReadFile(img, f, "/efi/debian/GRUB WITH SPACE.CFG"); err != nil || string(b) != "set x=1\n" {
		t.Errorf("ReadFile, case-insensitive = %q, %v", b, err)
	}
	for p, want := range map[string]bool{"/": true, "/EFI": true, "/efi/boot/bootx64.efi": true, "/startup.nsh/x": false, "/nope": false} {
		if got, err := Exists(img, f, p); err != nil || got != want {
			t.Errorf("Exists(%s) = %v, %v; want %v", p, got, err, want)
		}
	}
	for _, tc := range []struct {
		call func() error
		want string
	}{
		{func() error { _, err := ReadFile(img, f, "/EFI"); return err }, "is a directory"},
		{func() error { _, err := ReadDir(img, f, "/startup.nsh"); return err }, "not a directory"},
		{func() error { _, err := ReadFile(img, f, "/nope"); return err }, "file does not exist"},
		{func() error { _, err := ReadDir(img, f, "/nope"); return err }, "file does not exist"},
		{func() error { _, err := ReadFile(img, f, "/EFI/*/BOOTX64.EFI"); return err }, "FAT names cannot hold '*'"},
		{func() error { _, err := Exists(img, f, "/start?p.nsh"); return err }, "FAT names cannot hold '?'"},
	} {
		if err := tc.call(); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), img) {
			t.Errorf("got %v, want an error naming the image and saying %q", err, tc.want)
		}
	}
	junk := sparse(t, 4*mib)
	if _, err := ReadDir(junk, FS{Size: 4 * mib, Type: FSVFAT}, "/"); err == nil || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "non DOS media") {
		t.Errorf("ReadDir of a zeroed region = %v, want mtools's reason", err)
	}
}

// patchFAT32 sets FAT entry n (in every FAT copy) of the FAT32 image img to v.
func patchFAT32(t testing.TB, img []byte, n, v uint32) {
	t.Helper()
	rsv := int(binary.LittleEndian.Uint16(img[14:16]))
	fatSize := int(binary.LittleEndian.Uint32(img[36:40])) * SectorSize
	for i := 0; i < int(img[16]); i++ {
		binary.LittleEndian.PutUint32(img[rsv*SectorSize+i*fatSize+4*int(n):], v)
	}
}

// TestFATClusterLoop: a directory whose cluster chain loops back on itself (go-diskfs
// appends clusters forever) is listed and read without hanging.
func TestFATClusterLoop(t *testing.T) {
	img, f := fatImage(t, 32)
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	root := binary.LittleEndian.Uint32(b[44:48])
	patchFAT32(t, b, root, root)
	if err := os.WriteFile(img, b, 0o644); err != nil {
		t.Fatal(err)
	}
	bounded(t, time.Minute, "reading a FAT with a looping cluster chain", func() {
		if ok, err := Exists(img, f, "/EFI/BOOT/BOOTX64.EFI"); err != nil || !ok {
			t.Errorf("Exists = %v, %v", ok, err)
		}
		if b, err := ReadFile(img, f, "/EFI/BOOT/BOOTX64.EFI"); err != nil || string(b) != "MZ shim" {
			t.Errorf("ReadFile = %q, %v", b, err)
		}
		ReadDir(img, f, "/")
	})
}
