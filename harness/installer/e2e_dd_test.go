package installer_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/maasemu/maasemu/harness/diskimage"
	"github.com/maasemu/maasemu/harness/installer"
	fixture "github.com/maasemu/maasemu/harness/installer/installertest"
)

// hookScript is a curtin-hooks that records its environment in the target.
const hookScript = `#!/bin/sh
set -e
t="$TARGET_MOUNT_POINT"
echo "hook ran" > "$t/hook-mark"
for v in WORKING_DIR OUTPUT_FSTAB OUTPUT_INTERFACES OUTPUT_NETWORK_CONFIG OUTPUT_NETWORK_STATE TARGET_MOUNT_POINT CONFIG CURTIN_REPORTSTACK; do
  eval "echo $v=\${$v}" >> "$t/hook-env"
done
cp "$CONFIG" "$t/hook-config.json"
cp "$OUTPUT_NETWORK_CONFIG" "$t/hook-netconfig"
echo "from-hook" >> "$t/etc/hostname"
`

const netHook = `#!/bin/sh
echo "network-config hook ran" > "$TARGET_MOUNT_POINT/netconfig-mark"
`

const finalize = `#!/bin/sh
echo "finalize ran" > "$TARGET_MOUNT_POINT/finalize-mark"
`

// ddImage builds a dd disk image whose root has the given hooks.
func ddImage(t *testing.T, dir string, size int64, o fixture.RootOptions) (string, string) {
	t.Helper()
	root := filepath.Join(dir, "ddroot")
	if err := fixture.Root(root, o); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "image.raw")
	id, err := fixture.DDImage(context.Background(), img, size, root)
	if err != nil {
		t.Fatal(err)
	}
	return img, id
}

func TestImageInstallDD(t *testing.T) {
	needRoot(t)
	e := newEnv(t, 128*mib)
	img, rootUUID := ddImage(t, e.tmp, 48*mib, fixture.RootOptions{CloudInit: "v2", Hooks: map[string]string{"curtin-hooks": hookScript, "network-config": netHook, "finalize": finalize}})
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.files["/images/x/root-dd.gz"] = fixture.Gzip(raw)
	res, err := e.run(t, maasConfig(e.srv.URL, ""), "dd-gz:"+e.srv.URL+"/images/x/root-dd.gz")
	if err != nil {
		t.Fatalf("install: %v\nlog:\n%s", err, e.log.String())
	}
	if diff := cmp.Diff([]string{"network-config", "curtin-hooks", "finalize"}, res.HookRan); diff != "" {
		t.Errorf("hooks run (-want +got):\n%s", diff)
	}
	// The disk: the image's table, written as is.
	tab, err := diskimage.ReadTable(e.disk)
	if err != nil {
		t.Fatal(err)
	}
	if tab.Type != diskimage.GPT || len(tab.Partitions) != 2 || tab.Partitions[1].Start != 2*mib {
		t.Errorf("partition table after dd: %+v", tab)
	}
	rf := rootFS(t, e.disk)
	if rf.UUID != rootUUID || rf.Label != "cloudimg-rootfs" {
		t.Errorf("root fs identity changed: %+v (want UUID %s)", rf, rootUUID)
	}
	fsck(t, e.disk, rf)
	for p, want := range map[string]string{
		"/hook-mark":      "hook ran\n",
		"/netconfig-mark": "network-config hook ran\n",
		"/finalize-mark":  "finalize ran\n",
		"/etc/hostname":   "localhost\nfrom-hook\n",
	} {
		if got := readFile(t, e.disk, rf, p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	henv := map[string]string{}
	for _, l := range strings.Split(readFile(t, e.disk, rf, "/hook-env"), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			henv[k] = v
		}
	}
	top := filepath.Dir(filepath.Dir(henv["CONFIG"]))
	wantEnv := map[string]string{
		"WORKING_DIR": top + "/scratch", "OUTPUT_FSTAB": top + "/state/fstab", "OUTPUT_INTERFACES": top + "/state/interfaces",
		"OUTPUT_NETWORK_CONFIG": top + "/state/network_config", "OUTPUT_NETWORK_STATE": top + "/state/network_state",
		"TARGET_MOUNT_POINT": top + "/target", "CONFIG": top + "/state/config",
		"CURTIN_REPORTSTACK": "cmd-install/stage-curthooks/builtin/cmd-curthooks",
	}
	if diff := cmp.Diff(wantEnv, henv); diff != "" {
		t.Errorf("hook environment (-want +got):\n%s", diff)
	}
	// CONFIG is JSON, with the source from the command line.
	cj := readFile(t, e.disk, rf, "/hook-config.json")
	if !strings.HasPrefix(cj, "{") || !strings.Contains(cj, `"00_cmdline":{"type":"dd-gz","uri":"`+e.srv.URL+`/images/x/root-dd.gz"}`) {
		t.Errorf("CONFIG is not curtin's JSON config: %.300s", cj)
	}
	// The network-config hook replaced net-meta: nothing was written to OUTPUT_NETWORK_CONFIG.
	if got := readFile(t, e.disk, rf, "/hook-netconfig"); got != "" {
		t.Errorf("OUTPUT_NETWORK_CONFIG = %q, want empty (the image's network-config hook ran instead)", got)
	}
	// curtin-hooks replaced the builtin hooks: no fstab, no networking file from curtin.
	if ok, _ := diskimage.Exists(e.disk, rf, "/etc/fstab"); ok {
		t.Error("etc/fstab written although curtin-hooks replaced the builtin hooks")
	}
	if ok, _ := diskimage.Exists(e.disk, rf, "/etc/cloud/cloud.cfg.d/50-curtin-networking.cfg"); ok {
		t.Error("50-curtin-networking.cfg written although curtin-hooks replaced the builtin hooks")
	}
	if got := readFile(t, e.disk, rf, "/root/late-mark"); got != "late\n" {
		t.Errorf("late in-target mark = %q", got)
	}
}

// installErr runs an install expected to fail and returns its error and log.
func installErr(t *testing.T, e *env, configs []string, args ...string) (*installer.InstallError, string) {
	t.Helper()
	_, err := e.run(t, configs, args...)
	var ie *installer.InstallError
	if !errors.As(err, &ie) {
		t.Fatalf("install error %v (%T), want *installer.InstallError\nlog:\n%s", err, err, e.log.String())
	}
	if ie.ExitCode != 3 {
		t.Errorf("exit code %d, want 3", ie.ExitCode)
	}
	// every failure ends with cmd-install FAIL carrying the log
	evs := e.rec.Events()
	last := evs[len(evs)-1]
	if last.Name != "cmd-install" || last.Result != installer.ResultFail || last.Level != "ERROR" || len(last.Files) == 0 || last.Files[0].Content == nil {
		t.Errorf("last event %+v, want cmd-install FAIL with the install log attached", last)
	}
	if len(last.Files) > 1 && last.Files[1].Content == nil {
		t.Errorf("error tarfile not attached on failure: %+v", last.Files[1])
	}
	log, _ := os.ReadFile(filepath.Join(e.host, "tmp/install.log"))
	if !strings.Contains(string(log), "curtin: Installation failed with exception: ") {
		t.Errorf("install log lacks curtin's failure message:\n%s", log)
	}
	return ie, string(log)
}

func TestFailureModes(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	_ = ctx
	type tc struct {
		name string
		// setup serves the source and returns the install args and extra config.
		setup     func(t *testing.T, e *env) ([]string, string)
		diskSize  int64
		wantMsg   []string // substrings of the exception message
		wantLog   []string // substrings of the install log
		wantDiag  string
		failStage string
	}
	ddWith := func(o fixture.RootOptions, typ string, declared string) func(t *testing.T, e *env) ([]string, string) {
		return func(t *testing.T, e *env) ([]string, string) {
			img, _ := ddImage(t, e.tmp, 24*mib, o)
			raw, _ := os.ReadFile(img)
			var body []byte
			switch typ {
			case "gz":
				body = fixture.Gzip(raw)
			case "raw":
				body = raw
			}
			e.srv.files["/img"] = body
			return []string{declared + ":" + e.srv.URL + "/img"}, ""
		}
	}
	cases := []tc{
		{
			name:      "curtin-hooks exits 1",
			setup:     ddWith(fixture.RootOptions{Hooks: map[string]string{"curtin-hooks": "#!/bin/sh\necho hook failing >&2\nexit 1\n"}}, "gz", "dd-gz"),
			diskSize:  64 * mib,
			wantMsg:   []string{"Unexpected error while running command.\nCommand: ['curtin', 'curthooks']\nExit code: 3"},
			wantLog:   []string{"hook failing", "/target/curtin/curtin-hooks']\nExit code: 1"},
			failStage: "cmd-install/stage-curthooks",
		},
		{
			name: "bad archive",
			setup: func(t *testing.T, e *env) ([]string, string) {
				e.srv.files["/root.tgz"] = fixture.Gzip([]byte("this is not a tar archive at all, just text\n"))
				return []string{e.srv.URL + "/root.tgz"}, ""
			},
			diskSize:  256 * mib,
			wantMsg:   []string{"Command: ['curtin', 'extract']\nExit code: 3"},
			wantLog:   []string{"tar: This does not look like a tar archive"},
			failStage: "cmd-install/stage-extract",
		},
		{
			name:      "raw dd.gz declared dd-tgz",
			setup:     ddWith(fixture.RootOptions{Hooks: map[string]string{"curtin-hooks": "#!/bin/sh\n"}}, "gz", "dd-tgz"),
			diskSize:  64 * mib,
			wantMsg:   []string{"Command: ['curtin', 'block-meta', 'custom']\nExit code: 3"},
			wantLog:   []string{"tar: This does not look like a tar archive", "Did not find any filesystem on ['/dev/vda'] that contained one of ['curtin', 'system-data/var/lib/snapd', 'snaps']"},
			failStage: "cmd-install/stage-partitioning",
		},
		{
			name:      "no curtin directory in the image",
			setup:     ddWith(fixture.RootOptions{}, "raw", "dd-raw"),
			diskSize:  64 * mib,
			wantLog:   []string{"Did not find any filesystem on ['/dev/vda'] that contained one of ['curtin', 'system-data/var/lib/snapd', 'snaps']"},
			failStage: "cmd-install/stage-partitioning",
		},
		{
			name:      "disk too small for the image",
			setup:     ddWith(fixture.RootOptions{Hooks: map[string]string{"curtin-hooks": "#!/bin/sh\n"}}, "gz", "dd-gz"),
			diskSize:  16 * mib,
			wantLog:   []string{"dd: error writing '/dev/vda': No space left on device", `| zcat | dd bs=4M of="$2"`},
			failStage: "cmd-install/stage-partitioning",
		},
		{
			name: "two disk images",
			setup: func(t *testing.T, e *env) ([]string, string) {
				return []string{"dd-gz:" + e.srv.URL + "/a", "dd-xz:" + e.srv.URL + "/b"}, ""
			},
			diskSize: 64 * mib,
			wantMsg:  []string{"You may not use more than one disk image"},
		},
		{
			name:      "hook imports curtin without a real curtin",
			setup:     ddWith(fixture.RootOptions{Hooks: map[string]string{"curtin-hooks": "#!/usr/bin/env python3\nfrom curtin.commands import curthooks\n"}}, "gz", "dd-gz"),
			diskSize:  64 * mib,
			wantLog:   []string{"ModuleNotFoundError: No module named 'curtin'"},
			wantDiag:  "A real curtin is needed: run with --curtin DIR",
			failStage: "cmd-install/stage-curthooks",
		},
		{
			name: "partition larger than the disk",
			setup: func(t *testing.T, e *env) ([]string, string) {
				return []string{e.srv.URL + "/never-fetched.tgz"}, ""
			},
			diskSize:  128 * mib,
			wantLog:   []string{"Could not create partition 2 from 4096 to 413695"},
			failStage: "cmd-install/stage-partitioning",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if strings.Contains(c.name, "python") || strings.Contains(c.name, "imports curtin") {
				if _, err := os.Stat("/usr/lib/python3/dist-packages/curtin"); err == nil {
					t.Skip("python3-curtin is installed here: the hook would find a real curtin")
				}
			}
			e := newEnv(t, c.diskSize)
			args, extra := c.setup(t, e)
			ie, log := installErr(t, e, maasConfig(e.srv.URL, extra), args...)
			for _, m := range c.wantMsg {
				if !strings.Contains(ie.Message, m) {
					t.Errorf("exception %q lacks %q", ie.Message, m)
				}
			}
			for _, m := range c.wantLog {
				if !strings.Contains(log, m) {
					t.Errorf("install log lacks %q:\n%s", m, log)
				}
			}
			if c.wantDiag != "" && !strings.Contains(ie.Diagnosis, c.wantDiag) {
				t.Errorf("diagnosis %q lacks %q", ie.Diagnosis, c.wantDiag)
			}
			if c.failStage != "" {
				found := false
				for _, ev := range e.rec.Events() {
					if ev.Name == c.failStage && ev.EventType == "finish" {
						found = true
						if ev.Result != installer.ResultFail {
							t.Errorf("%s finished %s, want FAIL", c.failStage, ev.Result)
						}
					}
				}
				if !found {
					t.Errorf("no finish event for %s", c.failStage)
				}
			}
		})
	}
}
