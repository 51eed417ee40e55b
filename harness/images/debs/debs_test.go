package debs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPackageNaming(t *testing.T) {
	p := Package{Name: "busybox-static", Version: "1:1.35.0-4+b1", Arch: "amd64"}
	if got, want := p.Filename(), "busybox-static_1%3a1.35.0-4+b1_amd64.deb"; got != want {
		t.Errorf("Filename = %q, want %q (apt-get download's name)", got, want)
	}
	a := []Package{{"a", "1", "amd64"}, {"b", "2", "all"}}
	b := []Package{{"b", "2", "all"}, {"a", "1", "amd64"}}
	if Key(a) != Key(b) {
		t.Error("Key depends on order")
	}
	if Key(a) == Key([]Package{{"a", "1.1", "amd64"}, {"b", "2", "all"}}) {
		t.Error("Key ignores versions")
	}
}

func TestRefusesBadNames(t *testing.T) {
	f := NewFetcher(t.TempDir(), nil)
	for _, names := range [][]string{nil, {"Bash"}, {"bash; rm -rf /"}, {"-o"}, {""}} {
		if _, err := f.Resolve(context.Background(), names); err == nil || !strings.Contains(err.Error(), "debs:") {
			t.Errorf("Resolve(%q) = %v, want a refusal", names, err)
		}
	}
	if _, err := f.Candidate(context.Background(), "../x"); err == nil {
		t.Error("Candidate accepted a bad name")
	}
}

// TestResolveDownloadUnpack resolves, downloads and unpacks busybox-static with the host's
// apt (the closure of a static binary is itself).
func TestResolveDownloadUnpack(t *testing.T) {
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (a Debian host)", tool)
		}
	}
	cache := filepath.Join(t.TempDir(), "debs")
	f := NewFetcher(cache, nil)
	ctx := context.Background()
	pkgs, err := f.Resolve(ctx, []string{"busybox-static"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pkgs {
		names = append(names, p.Name)
	}
	if diff := cmp.Diff([]string{"busybox-static"}, names); diff != "" {
		t.Fatalf("closure (-want +got):\n%s", diff)
	}
	paths, err := f.Download(ctx, pkgs)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(paths[0])
	if err != nil || st.Size() == 0 {
		t.Fatalf("downloaded %v: %v", paths, err)
	}
	// a second download is a cache hit: same file, untouched
	again, err := f.Download(ctx, pkgs)
	st2, _ := os.Stat(again[0])
	if err != nil || !st2.ModTime().Equal(st.ModTime()) {
		t.Errorf("second Download re-fetched (%v)", err)
	}
	root := t.TempDir()
	if err := Unpack(ctx, paths, root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "bin", "busybox")); err != nil {
		t.Errorf("unpacked tree lacks bin/busybox: %v", err)
	}
	// the closure of python3 has its interpreter and libc, chosen by apt's solver
	py, err := f.Resolve(ctx, []string{"python3-minimal"})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, p := range py {
		have[p.Name] = true
	}
	for _, want := range []string{"python3-minimal", "libc6"} {
		if !have[want] {
			t.Errorf("closure of python3-minimal lacks %s: %v", want, py)
		}
	}
	if err := Unpack(ctx, []string{filepath.Join(root, "nope.deb")}, root); err == nil {
		t.Error("Unpack of a missing .deb succeeded")
	}
}
