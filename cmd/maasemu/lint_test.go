package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// writeTgz writes a gzip-compressed tar with the given files (name -> mode, content).
func writeTgz(t *testing.T, path string, files map[string]struct {
	mode int64
	body string
}) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: "./" + name, Mode: f.mode, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f.body))
	}
	tw.Close()
	zw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

type file = struct {
	mode int64
	body string
}

func TestLintCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tgz")
	writeTgz(t, good, map[string]file{
		"curtin/curtin-hooks": {0o755, "#!/bin/sh\nexit 0\n"},
		"usr/bin/cloud-init":  {0o755, "x"},
		"usr/sbin/netplan":    {0o755, "x"},
		"boot/vmlinuz-6.1":    {0o644, "x"},
		"etc/os-release":      {0o644, "ID=debian\n"},
	})
	bad := filepath.Join(dir, "bad.tgz")
	writeTgz(t, bad, map[string]file{
		"curtin/curtin-hooks": {0o644, "#!/bin/sh\nexit 0\n"},
		"etc/os-release":      {0o644, "ID=debian\n"},
	})
	// a gzip-compressed raw disk (an MBR with one partition) declared as ddtgz
	disk := make([]byte, 4096)
	disk[446+4], disk[446+8], disk[446+12] = 0x83, 1, 4
	disk[510], disk[511] = 0x55, 0xaa
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(disk)
	zw.Close()
	ddgz := filepath.Join(dir, "disk.img.gz")
	os.WriteFile(ddgz, gz.Bytes(), 0o644)

	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"clean", []string{"lint", good, "--filetype", "tgz"}, 0, []string{"no findings"}},
		{"flags first", []string{"lint", "--filetype=root-tgz", good}, 0, []string{"no findings"}},
		{"errors", []string{"lint", bad, "--filetype", "tgz"}, 1, []string{"ERROR   hooks-not-executable", "ERROR   no-cloud-init", "ERROR   no-kernel", "WARNING no-netplan"}},
		{"lying filetype", []string{"lint", ddgz, "--filetype", "ddtgz"}, 1, []string{"upload with --filetype ddgz", "tar: This does not look like a tar archive"}},
		{"no args", []string{"lint"}, 2, nil},
		{"no filetype", []string{"lint", good}, 2, nil},
		{"bad filetype", []string{"lint", good, "--filetype", "zip"}, 2, []string{`filetype "zip" is not one MAAS accepts`}},
		{"missing file", []string{"lint", filepath.Join(dir, "nope"), "--filetype", "tgz"}, 2, []string{"no such file"}},
	} {
		var out, errb bytes.Buffer
		code := Main(context.Background(), tc.args, &out, &errb)
		if code != tc.code {
			t.Errorf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", tc.name, code, tc.code, out.String(), errb.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String()+errb.String(), w) {
				t.Errorf("%s: output lacks %q:\n%s%s", tc.name, w, out.String(), errb.String())
			}
		}
	}

	var out bytes.Buffer
	if code := Main(context.Background(), []string{"lint", bad, "--filetype", "tgz", "--json"}, &out, &out); code != 1 {
		t.Fatalf("--json: exit %d: %s", code, out.String())
	}
	var r struct {
		Filetype string
		Findings []struct{ ID, Severity string }
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	var ids []string
	for _, f := range r.Findings {
		ids = append(ids, f.Severity+":"+f.ID)
	}
	want := []string{"error:hooks-not-executable", "error:no-cloud-init", "error:no-kernel", "warning:no-netplan"}
	if diff := cmp.Diff(want, ids); diff != "" || r.Filetype != "tgz" {
		t.Errorf("--json findings (-want +got):\n%s", diff)
	}
}
