package main

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/maasemu/maasemu/harness/diskimage"
	"github.com/maasemu/maasemu/harness/installer"
	fixture "github.com/maasemu/maasemu/harness/installer/installertest"
)

func run(t *testing.T, argv ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), argv, nil, &out, &errb)
	return code, out.String(), errb.String()
}

func TestProbeEntries(t *testing.T) {
	cases := []struct {
		argv     []string
		code     int
		out, err string
	}{
		{[]string{"/usr/bin/cloud-init", "--version"}, 0, "/usr/bin/cloud-init 22.4.2-maasemu-probe\n", ""},
		{[]string{"cloud-init", "features"}, 0, "NETWORK_CONFIG_V1\nNETWORK_CONFIG_V2\n", ""},
		{[]string{"maasemu-agent", "cloud-init", "features"}, 0, "NETWORK_CONFIG_V1\nNETWORK_CONFIG_V2\n", ""},
		{[]string{"cloud-init", "init", "--local"}, 0, "maasemu-probe: init --local: nothing to do before the network stage\n", ""},
		{[]string{"cloud-init", "clean"}, 2, "", "maasemu-probe: cloud-init clean is not implemented by the maasemu probe\n"},
		{[]string{"/usr/sbin/netplan", "generate"}, 0, "maasemu-probe: netplan generate: nothing to render (the probe configures the network itself at first boot)\n", ""},
		{[]string{"maasemu-agent", "bogus"}, 2, "", "maasemu-agent: unknown mode \"bogus\""},
		{[]string{"curtin", "features"}, 0, "CENTOS_APPLY_NETWORK_CONFIG\nNETWORK_CONFIG_V1\nNETWORK_CONFIG_V2\nREPORTING_EVENTS_WEBHOOK\nSTORAGE_CONFIG_V1\nHAS_VERSION_MODULE\n", ""},
		{[]string{"curtin", "pack"}, 2, "curtin: maasemu implements the subcommands block-meta, net-meta, extract, curthooks, hook and in-target; not \"pack\"\n", ""},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.argv, " "), func(t *testing.T) {
			code, out, errs := run(t, c.argv...)
			if code != c.code || out != c.out || !strings.HasPrefix(errs, c.err) {
				t.Errorf("got code %d out %q err %q; want %d %q %q", code, out, errs, c.code, c.out, c.err)
			}
		})
	}
	code, out, _ := run(t, "netplan", "info")
	if code != 0 || !strings.Contains(out, "netplan.io:") || !strings.Contains(out, "maasemu probe") {
		t.Errorf("netplan info: %d %q", code, out)
	}
}

func TestCurtinInTargetReportsAndPassesExitStatus(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("curtin in-target: needs root (chroot, bind mounts)")
	}
	tmp := t.TempDir()
	target := filepath.Join(tmp, "target")
	if err := fixture.Root(target, fixture.RootOptions{}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var events []installer.Event
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e installer.Event
		json.NewDecoder(r.Body).Decode(&e)
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
		w.WriteHeader(204)
	}))
	defer srv.Close()
	cfg := filepath.Join(tmp, "config")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`{"reporting": {"maas": {"type": "webhook", "endpoint": "%s/MAAS/metadata/status/x", "token_key": "tk"}}}`, srv.URL)), 0o644)
	t.Setenv("TARGET_MOUNT_POINT", target)
	t.Setenv("CONFIG", cfg)
	t.Setenv("CURTIN_REPORTSTACK", "cmd-install/stage-late/99-check")
	code, out, errs := run(t, "curtin", "in-target", "--", "sh", "-c", "echo inside; id -u > /in-target-mark; exit 7")
	if code != 7 {
		t.Fatalf("exit %d, want the command's 7; out %q err %q", code, out, errs)
	}
	if got := fixture.MustRead(filepath.Join(target, "in-target-mark")); got != "0" {
		t.Errorf("mark = %q", got)
	}
	if !strings.Contains(out, "inside") {
		t.Errorf("output %q", out)
	}
	// nothing left mounted under the target
	mounts, _ := os.ReadFile("/proc/self/mounts")
	if strings.Contains(string(mounts), target) {
		t.Errorf("mounts left under %s:\n%s", target, mounts)
	}
	mu.Lock()
	defer mu.Unlock()
	var got []string
	for _, e := range events {
		got = append(got, e.EventType+" "+e.Name+" "+e.Result)
	}
	want := []string{"start cmd-install/stage-late/99-check/cmd-in-target ", "finish cmd-install/stage-late/99-check/cmd-in-target FAIL"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	code, _, _ = run(t, "curtin", "in-target", "--", "no-such-program")
	if code != 3 {
		t.Errorf("missing program: exit %d, want 3", code)
	}
}

// TestStaticAgentInstall builds the agent as CI does and runs `install` with an image
// disk; a shell late command reaches `curtin in-target` through the agent on PATH.
func TestStaticAgentInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent binary")
	}
	if os.Geteuid() != 0 {
		t.Skip("agent install: needs root (tar ownership, in-target chroot)")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "maasemu-agent")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("agent binary has an ELF interpreter: not static")
		}
	}
	ef.Close()
	root := filepath.Join(tmp, "root")
	if err := fixture.Root(root, fixture.RootOptions{CloudInit: "v1"}); err != nil {
		t.Fatal(err)
	}
	tb, err := fixture.Tar(root)
	if err != nil {
		t.Fatal(err)
	}
	tgz := filepath.Join(tmp, "root.tgz")
	os.WriteFile(tgz, fixture.Gzip(tb), 0o644)
	disk := filepath.Join(tmp, "disk.img")
	if err := diskimage.CreateSparse(disk, 96<<20); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(tmp, "cfg.yaml")
	os.WriteFile(cfg, []byte(`partitioning_commands: {builtin: [curtin, block-meta, custom]}
storage:
  version: 1
  config:
  - {id: d, type: disk, ptable: msdos, serial: SER1}
  - {id: p1, type: partition, device: d, size: 64M, flag: boot}
  - {id: f1, type: format, volume: p1, fstype: ext4}
  - {id: m1, type: mount, device: f1, path: /}
network: {version: 1, config: [{type: physical, name: eth0, mac_address: '52:54:00:00:00:01', subnets: [{type: static, address: 198.18.0.10/24, gateway: 198.18.0.1}]}, {type: nameserver, address: [198.18.0.1]}]}
grub: {install_devices: null}
install: {log_file: /tmp/install.log}
late_commands:
  shell: "curtin in-target -- sh -c 'echo shell > /root/shell-mark'"
`), 0o644)
	cmd := exec.Command(bin, "install", "--config", cfg, "--image-disk", disk+",name=/dev/sda,serial=SER1", "--workdir", filepath.Join(tmp, "w"), "--host-root", filepath.Join(tmp, "host"), tgz)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("agent install: %v\n%s", err, out)
	}
	tab, err := diskimage.ReadTable(disk)
	if err != nil || tab.Type != diskimage.MSDOS || len(tab.Partitions) != 1 || !tab.Partitions[0].Bootable {
		t.Fatalf("table %+v %v", tab, err)
	}
	fss, _ := diskimage.Probe(disk)
	var rf diskimage.FS
	for _, f := range fss {
		if f.Partition == 1 {
			rf = f
		}
	}
	for p, want := range map[string]string{
		"/root/shell-mark": "shell\n",
		// cloud-init without NETWORK_CONFIG_V2: curtin renders v1 to ENI and disables cloud-init's networking
		"/etc/cloud/cloud.cfg.d/curtin-disable-cloudinit-networking.cfg": "network: {config: disabled}\n",
		"/etc/network/interfaces": "auto lo\niface lo inet loopback\n    dns-nameservers 198.18.0.1\n\nauto eth0\niface eth0 inet static\n    address 198.18.0.10/24\n    gateway 198.18.0.1\n",
	} {
		b, err := diskimage.ReadFile(disk, rf, p)
		if err != nil || string(b) != want {
			t.Errorf("%s = %q (%v), want %q", p, b, err, want)
		}
	}
	// a failing install exits 3 with curtin's message
	bad := exec.Command(bin, "install", "--config", cfg, "--image-disk", disk+",serial=OTHER", "--workdir", filepath.Join(tmp, "w"), "--host-root", filepath.Join(tmp, "host"), tgz)
	out, err = bad.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 || !strings.Contains(string(out), "no disk with serial 'SER1' found") {
		t.Errorf("install onto a machine without the disk: %v\n%s", err, out)
	}
}
