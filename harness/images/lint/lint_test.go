package lint

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSniff(t *testing.T) {
	mbr := make([]byte, 1024)
	mbr[446+4], mbr[510], mbr[511] = 0x83, 0x55, 0xaa
	gptDisk := make([]byte, 1024)
	copy(gptDisk[512:], "EFI PART")
	fat := make([]byte, 1024) // a FAT boot sector: 55AA but no partition entries
	fat[510], fat[511] = 0x55, 0xaa
	ext := make([]byte, 2048)
	ext[1080], ext[1081] = 0x53, 0xef
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"mbr", mbr, "disk"}, {"gpt", gptDisk, "disk"}, {"fat boot sector", fat, ""}, {"ext", ext, "filesystem"}, {"text", []byte("hello"), ""},
	} {
		if got := sniffInner(tc.b); got != tc.want {
			t.Errorf("%s: sniffInner = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestFiletypeFor(t *testing.T) {
	got := map[string]string{}
	for _, c := range []string{"", "gzip", "bzip2", "xz"} {
		for _, tr := range []bool{false, true} {
			for _, d := range []bool{false, true} {
				k := c + map[bool]string{true: "+tar", false: ""}[tr] + map[bool]string{true: "+disk", false: ""}[d]
				got[k] = filetypeFor(c, tr, d)
			}
		}
	}
	want := map[string]string{
		"": "", "+disk": "ddraw", "+tar": "tgz", "+tar+disk": "ddtar",
		"gzip": "", "gzip+disk": "ddgz", "gzip+tar": "tgz", "gzip+tar+disk": "ddtgz",
		"bzip2": "", "bzip2+disk": "ddbz2", "bzip2+tar": "tbz", "bzip2+tar+disk": "ddtbz",
		"xz": "", "xz+disk": "ddxz", "xz+tar": "txz", "xz+tar+disk": "ddtxz",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("filetypeFor (-want +got):\n%s", diff)
	}
	for alias, ft := range Filetypes {
		if _, ok := specs[ft]; !ok {
			t.Errorf("alias %s maps to %s, which has no spec", alias, ft)
		}
	}
}

// TestTarballChecks lints small tarballs built here.
func TestTarballChecks(t *testing.T) {
	type f struct {
		mode int64
		body string
		link string
	}
	mk := func(files map[string]f) string {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		for name, x := range files {
			h := &tar.Header{Name: "./" + name, Mode: x.mode, Size: int64(len(x.body)), Typeflag: tar.TypeReg}
			if x.link != "" {
				h = &tar.Header{Name: "./" + name, Mode: 0o777, Typeflag: tar.TypeSymlink, Linkname: x.link}
			}
			tw.WriteHeader(h)
			tw.Write([]byte(x.body))
		}
		tw.Close()
		zw.Close()
		p := filepath.Join(t.TempDir(), "root.tgz")
		os.WriteFile(p, buf.Bytes(), 0o644)
		return p
	}
	base := map[string]f{
		"curtin/curtin-hooks": {0o755, "#!/bin/sh\n", ""}, "usr/bin/cloud-init": {0o755, "x", ""},
		"usr/sbin/netplan": {0o755, "x", ""}, "boot/vmlinuz-6.1": {0o644, "k", ""}, "etc/os-release": {0o644, "ID=debian\n", ""},
	}
	with := func(extra map[string]f, drop ...string) map[string]f {
		m := map[string]f{}
		for k, v := range base {
			m[k] = v
		}
		for _, d := range drop {
			delete(m, d)
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		files map[string]f
		want  []string
	}{
		{"clean", base, nil},
		{"merged-usr symlinks resolve", with(map[string]f{"bin": {0, "", "usr/bin"}, "bin/cloud-init": {0, "", "../usr/bin/cloud-init"}}), nil},
		{"dangling cloud-init link", with(map[string]f{"usr/bin/cloud-init": {0, "", "/opt/nowhere"}}), []string{"no-cloud-init"}},
		{"python hook", with(map[string]f{"curtin/curtin-hooks": {0o755, "#!/usr/bin/env python3\nfrom curtin import util\n", ""}}), []string{"hook-imports-curtin"}},
		{"no hooks", with(nil, "curtin/curtin-hooks"), []string{"hooks-missing"}},
		{"fstab by label", with(map[string]f{"etc/fstab": {0o644, "LABEL=UEFI /boot/efi vfat defaults 0 1\nproc /proc proc defaults 0 0\n", ""}}), []string{"fstab-unresolvable"}},
		{"network disabled block style", with(map[string]f{"etc/cloud/cloud.cfg.d/99.cfg": {0o644, "network:\n  config: disabled\n", ""}}), []string{"network-disabled"}},
	} {
		r, err := Lint(context.Background(), mk(tc.files), "tgz", Options{})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if diff := cmp.Diff(tc.want, r.IDs(Error, Warning)); diff != "" {
			t.Errorf("%s (-want +got):\n%s\n%+v", tc.name, diff, r.Findings)
		}
	}
}
