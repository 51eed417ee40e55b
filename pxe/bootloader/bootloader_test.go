package bootloader

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/maasemu/maasemu/fakemaas"
)

func TestLookup(t *testing.T) {
	cases := []struct {
		name string
		want Entry
		ok   bool
	}{
		{"bootx64.efi", Entry{"uefi", "amd64", "bootx64.efi"}, true},
		{"grubx64.efi", Entry{"uefi", "amd64", "grubx64.efi"}, true},
		{"bootaa64.efi", Entry{"uefi", "arm64", "bootaa64.efi"}, true},
		{"bootppc64.bin", Entry{"open-firmware", "ppc64el", "bootppc64.bin"}, true},
		{"lpxelinux.0", Entry{"pxe", "i386", "lpxelinux.0"}, true},
		{"ldlinux.c32", Entry{"pxe", "i386", "ldlinux.c32"}, true},
		{"ifcpu64.c32", Entry{"pxe", "i386", "ifcpu64.c32"}, true},
		{"../ldlinux.c32", Entry{}, false},
		{"..c32", Entry{}, false},
		{".c32", Entry{}, false},
		{"vmlinuz", Entry{}, false},
	}
	for _, c := range cases {
		got, ok := Lookup(c.name)
		if ok != c.ok {
			t.Errorf("Lookup(%q) ok = %v, want %v", c.name, ok, c.ok)
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("Lookup(%q) (-want +got):\n%s", c.name, diff)
		}
	}
}

type fakeRegion struct {
	files map[string][]byte // "type/arch/name"
	err   error
	calls []string
}

func (r *fakeRegion) OpenBootloader(_ context.Context, typ, arch, name string) (fakemaas.ImageFile, error) {
	key := typ + "/" + arch + "/" + name
	r.calls = append(r.calls, key)
	if r.err != nil {
		return fakemaas.ImageFile{}, r.err
	}
	b, ok := r.files[key]
	if !ok {
		return fakemaas.ImageFile{}, fakemaas.ErrImageNotFound
	}
	return fakemaas.ImageFile{ReadSeekCloser: nopCloser{bytes.NewReader(b)}, Size: int64(len(b))}, nil
}

type nopCloser struct{ io.ReadSeeker }

func (nopCloser) Close() error { return nil }

func fakeHost(t *testing.T) Host {
	t.Helper()
	root := t.TempDir()
	h := Host{
		PXELinuxDir:  filepath.Join(root, "PXELINUX"),
		SyslinuxBIOS: filepath.Join(root, "bios"),
		ShimDir:      filepath.Join(root, "shim"),
		GRUBModules:  filepath.Join(root, "x86_64-efi"),
		CacheDir:     filepath.Join(root, "cache"),
		GRUBVersion:  func(context.Context) (string, error) { return "2.06-13+deb12u2", nil },
	}
	for path, data := range map[string]string{
		filepath.Join(h.PXELinuxDir, "lpxelinux.0"):          "host lpxelinux",
		filepath.Join(h.SyslinuxBIOS, "ldlinux.c32"):         "host ldlinux",
		filepath.Join(h.ShimDir, "shimx64.efi.signed"):       "host shim",
		filepath.Join(h.ShimDir, "mmx64.efi.signed"):         "host mok manager",
		filepath.Join(filepath.Dir(h.PXELinuxDir), "secret"): "outside",
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func readAll(t *testing.T, f fakemaas.ImageFile) string {
	t.Helper()
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != f.Size {
		t.Errorf("size %d, read %d bytes", f.Size, len(b))
	}
	return string(b)
}

func TestOpenRegionFirstThenHost(t *testing.T) {
	ctx := context.Background()
	region := &fakeRegion{files: map[string][]byte{"pxe/i386/lpxelinux.0": []byte("imported lpxelinux")}}
	l := New(region, fakeHost(t), nil)

	cases := []struct {
		name, want string
	}{
		{"lpxelinux.0", "imported lpxelinux"}, // the imported product wins
		{"ldlinux.c32", "host ldlinux"},       // region: ErrImageNotFound -> host package
		{"bootx64.efi", "host shim"},          // bootx64.efi is shim (shimx64.efi.signed)
		{"mmx64.efi", "host mok manager"},
	}
	for _, c := range cases {
		e, ok := Lookup(c.name)
		if !ok {
			t.Fatalf("Lookup(%q) failed", c.name)
		}
		f, err := l.Open(ctx, e)
		if err != nil {
			t.Fatalf("Open(%s): %v", c.name, err)
		}
		if got := readAll(t, f); got != c.want {
			t.Errorf("Open(%s) = %q, want %q", c.name, got, c.want)
		}
	}
	if diff := cmp.Diff([]string{"pxe/i386/lpxelinux.0", "pxe/i386/ldlinux.c32", "uefi/amd64/bootx64.efi", "uefi/amd64/mmx64.efi"}, region.calls); diff != "" {
		t.Errorf("region calls (-want +got):\n%s", diff)
	}
}

func TestOpenHostChecksum(t *testing.T) {
	l := New(nil, fakeHost(t), nil)
	f, err := l.Open(context.Background(), Entry{"pxe", "i386", "lpxelinux.0"})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("host lpxelinux"))
	if f.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("SHA256 = %s", f.SHA256)
	}
	if got := readAll(t, f); got != "host lpxelinux" {
		t.Errorf("content after checksum = %q (not rewound?)", got)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("database locked")
	cases := []struct {
		name     string
		region   Region
		entry    Entry
		notFound bool
		contains string
	}{
		{"region failure is not hidden by the host", &fakeRegion{err: boom}, Entry{"pxe", "i386", "lpxelinux.0"}, false, "database locked"},
		{"no host package for arm64", nil, Entry{"uefi", "arm64", "bootaa64.efi"}, true, "no host package provides it"},
		{"module missing on host", nil, Entry{"pxe", "i386", "menu.c32"}, true, "host package not installed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := New(c.region, fakeHost(t), nil)
			_, err := l.Open(ctx, c.entry)
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if errors.Is(err, fakemaas.ErrImageNotFound) != c.notFound {
				t.Errorf("errors.Is(ErrImageNotFound) = %v, want %v (%v)", !c.notFound, c.notFound, err)
			}
			if !strings.Contains(err.Error(), c.contains) {
				t.Errorf("error %q does not name %q", err, c.contains)
			}
		})
	}
}

func TestGRUBImageBuiltOnceAndCached(t *testing.T) {
	h := fakeHost(t)
	builds := 0
	h.GRUBImageBuild = func(_ context.Context, out string) error {
		builds++
		return os.WriteFile(out, []byte("MZ fake grub"), 0o644)
	}
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		l := New(nil, h, nil) // a new Loader (a new process) finds the cached image
		for j := 0; j < 2; j++ {
			f, err := l.Open(ctx, Entry{"uefi", "amd64", "grubx64.efi"})
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, f); got != "MZ fake grub" {
				t.Errorf("grubx64.efi = %q", got)
			}
		}
	}
	if builds != 1 {
		t.Errorf("built %d times, want 1", builds)
	}
	matches, _ := filepath.Glob(filepath.Join(h.CacheDir, "bootloaders", "grub-2.06-13+deb12u2-*", "grubx64.efi"))
	if len(matches) != 1 {
		t.Errorf("cached image not keyed by package version: %v", matches)
	}
}

func TestGRUBImageBuildFailure(t *testing.T) {
	h := fakeHost(t)
	h.GRUBImageBuild = func(context.Context, string) error { return errors.New("grub-mkimage: error: cannot open moddep.lst") }
	l := New(nil, h, nil)
	_, err := l.Open(context.Background(), Entry{"uefi", "amd64", "grubx64.efi"})
	if !errors.Is(err, fakemaas.ErrImageNotFound) || !strings.Contains(err.Error(), "moddep.lst") {
		t.Fatalf("err = %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(h.CacheDir, "bootloaders", "*", "*"))
	if len(left) != 0 {
		t.Errorf("failed build left files: %v", left)
	}
}

// TestRealHostBootloaders opens the Debian packages' files and builds a real GRUB image.
func TestRealHostBootloaders(t *testing.T) {
	host := DefaultHost(t.TempDir())
	for _, p := range []string{"/usr/lib/PXELINUX/lpxelinux.0", "/usr/lib/syslinux/modules/bios/ldlinux.c32", "/usr/lib/shim/shimx64.efi.signed", "/usr/lib/grub/x86_64-efi/moddep.lst"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("needs pxelinux, syslinux-common, shim-signed and grub-efi-amd64-bin (make deps): %v", err)
		}
	}
	if _, err := exec.LookPath("grub-mkimage"); err != nil {
		t.Skip("needs grub-mkimage (package grub-common)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := New(nil, host, nil)
	for _, name := range []string{"lpxelinux.0", "ldlinux.c32", "chain.c32", "ifcpu64.c32", "libcom32.c32", "libutil.c32", "bootx64.efi", "grubx64.efi"} {
		e, _ := Lookup(name)
		f, err := l.Open(ctx, e)
		if err != nil {
			t.Fatalf("Open(%s): %v", name, err)
		}
		head := make([]byte, 2)
		if _, err := io.ReadFull(f, head); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if strings.HasSuffix(name, ".efi") && string(head) != "MZ" {
			t.Errorf("%s is not a PE image: starts %q", name, head)
		}
		if f.Size == 0 || len(f.SHA256) != 64 {
			t.Errorf("%s: size %d sha256 %q", name, f.Size, f.SHA256)
		}
	}
}
