package curtincfg

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func python(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("pack tests: needs python3")
	}
	return p
}

// writeFakeCurtin creates a FAKE curtin package, not curtin: its pack.pack_install only
// records the arguments it was called with (to $FAKECURTIN_RECORD) and returns a
// recognisable script. It lets the test check that Pack calls curtin's pack_install as
// MAAS does, on a host where the real curtin cannot be installed.
func writeFakeCurtin(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fakecurtin")
	if err := os.MkdirAll(filepath.Join(dir, "curtin"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"curtin/__init__.py": "# FAKE curtin for maasemu's curtincfg tests. Not curtin.\n",
		"curtin/pack.py": `# FAKE curtin.pack for maasemu's curtincfg tests. Not curtin.
import json, os

def pack_install(fdout=None, configs=None, paths=None, add_files=None, copy_files=None, args=None):
    with open(os.environ["FAKECURTIN_RECORD"], "w") as f:
        json.dump({"configs": configs, "args": args, "fdout": fdout, "paths": paths,
                   "add_files": add_files, "copy_files": copy_files}, f)
    return "#!/bin/sh\n# FAKE curtin pack: %d configs\n" % len(configs)
`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestPackWithFakeCurtin(t *testing.T) {
	python(t)
	dir := writeFakeCurtin(t)
	record := filepath.Join(t.TempDir(), "record.json")
	t.Setenv("FAKECURTIN_RECORD", record)
	c, err := CurtinConfig(baseInput())
	if err != nil {
		t.Fatal(err)
	}
	spec := c.InstallerSpec()
	out, err := Packer{CurtinDir: dir}.Pack(context.Background(), spec)
	if err != nil {
		t.Fatalf("Pack: %v", err)
	}
	if want := "#!/bin/sh\n# FAKE curtin pack: 8 configs\n"; string(out) != want {
		t.Errorf("Pack output = %q, want the fake's %q", out, want)
	}
	b, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("the fake pack_install was not called: %v", err)
	}
	var got struct {
		Configs   []string `json:"configs"`
		Args      []string `json:"args"`
		Fdout     any      `json:"fdout"`
		Paths     any      `json:"paths"`
		AddFiles  any      `json:"add_files"`
		CopyFiles any      `json:"copy_files"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	// MAAS: pack_install(configs=get_curtin_yaml_config(...), args=[get_curtin_installer_url(node)])
	if diff := cmp.Diff(spec.Configs, got.Configs); diff != "" {
		t.Errorf("configs passed to pack_install (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(spec.Args, got.Args); diff != "" {
		t.Errorf("args passed to pack_install (-want +got):\n%s", diff)
	}
	if got.Fdout != nil || got.Paths != nil || got.AddFiles != nil || got.CopyFiles != nil {
		t.Errorf("pack_install got extra arguments: %+v", got)
	}
}

func TestPackCurtinUnavailable(t *testing.T) {
	py := python(t)
	spec := InstallerSpec{Configs: []string{"a: 1\n"}, Args: []string{"http://x/root.tgz"}}
	tests := []struct {
		name   string
		packer Packer
		detail string
	}{
		{"directory without curtin", Packer{CurtinDir: t.TempDir()}, "holds no curtin/__init__.py"},
		{"no python", Packer{Python: "/nonexistent/python3"}, "no Python interpreter"},
		{"curtin that does not import", Packer{CurtinDir: brokenCurtin(t)}, "SyntaxError"},
	}
	if exec.Command(py, "-c", "import curtin.pack").Run() != nil {
		tests = append(tests, struct {
			name   string
			packer Packer
			detail string
		}{"host without curtin", Packer{}, "No module named"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.packer.Pack(context.Background(), spec)
			if !errors.Is(err, ErrCurtinUnavailable) {
				t.Fatalf("Pack error = %v, want ErrCurtinUnavailable", err)
			}
			if !strings.Contains(err.Error(), "curtin is not available on this host") || !strings.Contains(err.Error(), tt.detail) {
				t.Errorf("error %q does not say curtin is unavailable and why (%q)", err, tt.detail)
			}
		})
	}
}

func brokenCurtin(t *testing.T) string {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "curtin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "curtin", "__init__.py"), []byte("this is not python(\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPackBadSpec(t *testing.T) {
	for _, spec := range []InstallerSpec{{Args: []string{"x"}}, {Configs: []string{"a: 1\n"}}} {
		if _, err := Pack(context.Background(), spec); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("Pack(%+v) error = %v, want invalid input", spec, err)
		}
	}
}

func TestPackCancelled(t *testing.T) {
	python(t)
	dir := writeFakeCurtin(t)
	t.Setenv("FAKECURTIN_RECORD", filepath.Join(t.TempDir(), "r.json"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Packer{CurtinDir: dir}.Pack(ctx, InstallerSpec{Configs: []string{"a: 1\n"}, Args: []string{"x"}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Pack with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestInstallerSpecJSON(t *testing.T) {
	b, err := json.Marshal(InstallerSpec{Configs: []string{"a: 1\n"}, Args: []string{"dd-gz:http://x/root-dd.gz"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"configs":["a: 1\n"],"args":["dd-gz:http://x/root-dd.gz"]}`; string(b) != want {
		t.Errorf("InstallerSpec JSON = %s, want %s", b, want)
	}
}
