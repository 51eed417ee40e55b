package images

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestELFClosure(t *testing.T) {
	// the host's own ls: libc and the loader at least, each once
	files, err := elfClosure("/", "usr/bin/ls")
	if err != nil {
		t.Fatal(err)
	}
	var dsts []string
	for _, f := range files {
		dsts = append(dsts, f.dst)
		if fi, err := os.Stat(f.src); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: source %s is not a regular file (%v)", f.dst, f.src, err)
		}
	}
	for _, want := range []string{"usr/bin/ls", "lib64/ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu/libc.so.6"} {
		if !slices.Contains(dsts, want) {
			t.Errorf("closure %v lacks %s", dsts, want)
		}
	}
	slices.Sort(dsts)
	if len(slices.Compact(slices.Clone(dsts))) != len(dsts) {
		t.Errorf("closure lists a file twice: %v", dsts)
	}
}

func TestELFClosureErrors(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/bin/script"), []byte("#!/bin/sh\n"), 0o755)
	// an ELF whose libraries are not in root
	ls, _ := os.ReadFile("/usr/bin/ls")
	os.WriteFile(filepath.Join(root, "usr/bin/ls"), ls, 0o755)
	os.Symlink("/usr/bin/ls", filepath.Join(root, "usr/bin/abs"))
	for _, tc := range []struct{ bin, want string }{
		{"usr/bin/script", "usr/bin/script in " + root},
		{"usr/bin/missing", "no such file"},
		{"usr/bin/ls", "lib64/ld-linux-x86-64.so.2, which usr/bin/ls needs, in " + root},
		{"usr/bin/abs", "which usr/bin/abs needs"}, // an absolute link resolves inside root
	} {
		_, err := elfClosure(root, tc.bin)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to say %q", tc.bin, err, tc.want)
		}
	}
	// with the loader there, the first missing library is named
	ld, _ := os.ReadFile("/lib64/ld-linux-x86-64.so.2")
	os.MkdirAll(filepath.Join(root, "lib64"), 0o755)
	os.WriteFile(filepath.Join(root, "lib64/ld-linux-x86-64.so.2"), ld, 0o755)
	if _, err := elfClosure(root, "usr/bin/ls"); err == nil || !strings.Contains(err.Error(), "usr/bin/ls needs lib") || !strings.Contains(err.Error(), "which is in none of") {
		t.Errorf("missing library: err = %v", err)
	}
}
