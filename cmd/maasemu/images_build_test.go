package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestImagesBuildUsage(t *testing.T) {
	for _, args := range [][]string{
		{"images", "build", "everything"},
		{"images", "build", "test", "ephemeral"},
		{"images", "build", "--bogus"},
	} {
		var out, errb bytes.Buffer
		if code := Main(context.Background(), args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errb.String())
		}
	}
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"images", "build", "test", "--agent", filepath.Join(t.TempDir(), "missing")}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "--agent") {
		t.Errorf("missing agent: exit %d, stderr %s", code, errb.String())
	}
}

// TestImagesBuildTest runs `maasemu images build test` with the test agent on the shared
// cache ($MAASEMU_CACHE; a warm cache makes it a few seconds).
func TestImagesBuildTest(t *testing.T) {
	for _, tool := range []string{"apt-get", "dpkg", "mksquashfs", "mkfs.ext4", "mkfs.fat", "mcopy", "grub-mkimage", "depmod", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (see mk/images.mk)", tool)
		}
	}
	if testing.Short() {
		t.Skip("builds images (slow on a cold cache)")
	}
	agentDir := t.TempDir()
	cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(agentDir, "maasemu-agent"), "./harness/images/testagent")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test agent: %v %s", err, b)
	}
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"images", "build", "test", "--out", out, "--agent", filepath.Join(agentDir, "maasemu-agent")}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var m struct {
		Images []struct{ Name, File, Filetype, Expected string }
	}
	b, err := os.ReadFile(filepath.Join(out, "test", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Images) < 20 {
		t.Fatalf("manifest has %d images", len(m.Images))
	}
	for _, im := range m.Images {
		if _, err := os.Stat(filepath.Join(out, "test", im.File)); err != nil {
			t.Errorf("%s: %v", im.Name, err)
		}
		if !strings.Contains(stdout.String(), im.Name) {
			t.Errorf("output does not list %s", im.Name)
		}
	}
	// lint agrees with the manifest on a good and a lying image
	for name, code := range map[string]int{"good-ddxz": 0, "lying-filetype": 1} {
		for _, im := range m.Images {
			if im.Name == name {
				var o bytes.Buffer
				if got := Main(context.Background(), []string{"lint", filepath.Join(out, "test", im.File), "--filetype", im.Filetype}, &o, &o); got != code {
					t.Errorf("lint %s: exit %d, want %d\n%s", name, got, code, o.String())
				}
			}
		}
	}
}
