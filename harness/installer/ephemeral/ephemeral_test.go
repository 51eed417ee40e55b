package ephemeral_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/maasemu/maasemu/harness/diskimage"
	"github.com/maasemu/maasemu/harness/installer"
	"github.com/maasemu/maasemu/harness/installer/cloudinit"
	"github.com/maasemu/maasemu/harness/installer/ephemeral"
	"github.com/maasemu/maasemu/harness/installer/firstboot"
	"github.com/maasemu/maasemu/harness/installer/imagedisk"
	fixture "github.com/maasemu/maasemu/harness/installer/installertest"
)

// region is a tiny stand-in for fakemaas's metadata service, enough to drive the agent.
type region struct {
	*httptest.Server
	mu        sync.Mutex
	files     map[string][]byte
	events    []installer.Event
	unsigned  []string // paths read without OAuth that need it
	userRead  int
	installer ephemeral.InstallerConfig
}

func newRegion(t *testing.T) *region {
	r := &region{files: map[string][]byte{}}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *region) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := req.URL.Path
	signed := strings.Contains(req.Header.Get("Authorization"), `oauth_token="tk"`)
	switch {
	case p == "/MAAS/metadata/latest/by-id/abc123/" && req.URL.Query().Get("op") == "get_preseed":
		fmt.Fprintf(w, `#cloud-config
datasource:
  MAAS: {metadata_url: '%[1]s/MAAS/metadata/curtin', consumer_key: ck, token_key: tk, token_secret: ts}
reporting:
  maas: {type: webhook, endpoint: '%[1]s/MAAS/metadata/status/abc123', consumer_key: ck, token_key: tk, token_secret: ts}
power_state: {delay: now, mode: reboot, timeout: 1800, condition: "test ! -e /tmp/block-reboot"}
`, r.URL)
		return
	case strings.HasPrefix(p, "/MAAS/metadata/status/"):
		if !signed {
			r.unsigned = append(r.unsigned, p)
		}
		var e installer.Event
		json.NewDecoder(req.Body).Decode(&e)
		r.events = append(r.events, e)
		w.WriteHeader(http.StatusNoContent)
		return
	case strings.HasPrefix(p, "/MAAS/metadata/"):
		if !signed {
			r.unsigned = append(r.unsigned, p)
			http.Error(w, "Authorization Error", http.StatusUnauthorized)
			return
		}
	}
	switch p {
	case "/MAAS/metadata/curtin/2012-03-01/meta-data/instance-id", "/MAAS/metadata/2012-03-01/meta-data/instance-id":
		io.WriteString(w, "abc123")
	case "/MAAS/metadata/curtin/2012-03-01/meta-data/local-hostname", "/MAAS/metadata/2012-03-01/meta-data/local-hostname":
		io.WriteString(w, "node1.maas")
	case "/MAAS/metadata/curtin/2012-03-01/meta-data/vendor-data", "/MAAS/metadata/2012-03-01/meta-data/vendor-data":
		io.WriteString(w, "cloud-init: \"#cloud-config\\nntp: {}\\n\"\n")
	case "/MAAS/metadata/curtin/2012-03-01/user-data":
		io.WriteString(w, "#!/bin/sh\n# script runner\n")
	case "/MAAS/metadata/2012-03-01/user-data":
		r.userRead++
		io.WriteString(w, "#cloud-config\n{}\n")
	case "/MAAS/metadata/curtin/" + cloudinit.InstallerPath:
		json.NewEncoder(w).Encode(r.installer)
	default:
		b, ok := r.files[p]
		if !ok {
			http.NotFound(w, req)
			return
		}
		w.Write(b)
	}
}

type fakeNet struct{ got []firstboot.NetConfig }

func (f *fakeNet) Up(_ context.Context, nc firstboot.NetConfig) ([]firstboot.Link, error) {
	f.got = append(f.got, nc)
	return []firstboot.Link{{Name: "ens3", Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.10/24")}}}, nil
}

func TestEphemeralDeployThenFirstBoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("ephemeral deploy: needs root (tar ownership, in-target chroot)")
	}
	if _, err := exec.LookPath("grub-mkimage"); err != nil {
		t.Skip("ephemeral deploy: needs grub-mkimage (grub-common)")
	}
	tmp := t.TempDir()
	rg := newRegion(t)
	root := filepath.Join(tmp, "root")
	if err := fixture.Root(root, fixture.RootOptions{CloudInit: "v2", GrubPC: true}); err != nil {
		t.Fatal(err)
	}
	tb, err := fixture.Tar(root)
	if err != nil {
		t.Fatal(err)
	}
	rg.files["/images/abc/root.tgz"] = fixture.Gzip(tb)
	rg.installer = ephemeral.InstallerConfig{
		Configs: []string{
			`partitioning_commands: {builtin: [curtin, block-meta, custom]}
storage:
  version: 1
  config:
  - {id: sda, type: disk, ptable: gpt, serial: QM00001, grub_device: true, wipe: superblock}
  - {id: sda-part1, type: partition, device: sda, size: 1M, flag: bios_grub}
  - {id: sda-part2, type: partition, device: sda, size: 100M}
  - {id: sda-part2_format, type: format, volume: sda-part2, fstype: ext4, label: root}
  - {id: sda-part2_mount, type: mount, device: sda-part2_format, path: /}
`,
			fmt.Sprintf(`reporting:
  maas: {type: webhook, endpoint: '%[1]s/MAAS/metadata/status/abc123', consumer_key: ck, token_key: tk, token_secret: ts}
install: {log_file: /tmp/install.log, error_tarfile: /tmp/curtin-logs.tar, post_files: [/tmp/install.log, /tmp/curtin-logs.tar]}
network_commands: {builtin: [curtin, net-meta, custom]}
network: {version: 2, ethernets: {ens3: {match: {macaddress: '52:54:00:12:34:56'}, set-name: ens3, dhcp4: true}}}
cloudconfig:
  maas-datasource: {content: "datasource_list: [ MAAS ]\n"}
  maas-cloud-config: {content: "#cloud-config\ndatasource:\n  MAAS: {consumer_key: ck, metadata_url: '%[1]s/MAAS/metadata/', token_key: tk, token_secret: ts}\n"}
  maas-reporting: {content: "#cloud-config\nreporting:\n  maas: {type: webhook, endpoint: '%[1]s/MAAS/metadata/status/abc123', consumer_key: ck, token_key: tk, token_secret: ts}\n"}
late_commands:
  98-validate-custom-image-has-cloud-init: [curtin, in-target, --, sh, -c, 'cloud-init --version || (echo "cloud-init not detected, MAAS will not be able to configure this machine properly" && exit 1)']
`, rg.URL),
		},
		Args: []string{rg.URL + "/images/abc/root.tgz"},
	}
	disk := filepath.Join(tmp, "disk.img")
	if err := diskimage.CreateSparse(disk, 128<<20); err != nil {
		t.Fatal(err)
	}
	be, err := imagedisk.New(imagedisk.Disk{Path: disk, Name: "/dev/vda", Serial: "QM00001"})
	if err != nil {
		t.Fatal(err)
	}
	machine := filepath.Join(tmp, "ephemeral-root")
	var console bytes.Buffer
	var powered []string
	uefi := false
	res, err := ephemeral.Run(context.Background(), ephemeral.Options{
		Cmdline: fmt.Sprintf("nomodeset root=squash:%s/images/x/squashfs ip=::::node1:BOOTIF:dhcp ip6=off cc:{'datasource_list': ['MAAS']}end_cc cloud-config-url=%s/MAAS/metadata/latest/by-id/abc123/?op=get_preseed ro overlayroot=tmpfs log_host=127.0.0.1 log_port=5247 console=ttyS0 --- quiet BOOTIF=01-52-54-00-12-34-56", rg.URL, rg.URL),
		Root:    machine, HTTPClient: rg.Client(), Backend: be, Console: &console, WorkDir: filepath.Join(tmp, "work"), UEFI: &uefi,
		Power: func(_ context.Context, mode string) error { powered = append(powered, mode); return nil },
	})
	if err != nil {
		t.Fatalf("ephemeral: %v\nconsole:\n%s", err, console.String())
	}
	if diff := cmp.Diff([]string{"reboot"}, powered); diff != "" {
		t.Errorf("power_state (-want +got):\n%s", diff)
	}
	if res.Cmdline.BootMAC != "52:54:00:12:34:56" || res.Cmdline.LogPort != "5247" || res.MetaData.InstanceID != "abc123" {
		t.Errorf("parsed %+v / %+v", res.Cmdline, res.MetaData)
	}
	st, err := os.Stat(filepath.Join(machine, "etc/cloud/cloud.cfg.d/91_kernel_cmdline_url.cfg"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("91_kernel_cmdline_url.cfg: %v %v", st, err)
	}
	rg.mu.Lock()
	events := append([]installer.Event(nil), rg.events...)
	unsigned := rg.unsigned
	rg.mu.Unlock()
	if len(unsigned) > 0 {
		t.Errorf("requests without OAuth: %v", unsigned)
	}
	// cloud-init's stage events frame curtin's.
	var top []string
	for _, e := range events {
		if !strings.Contains(e.Name, "/") {
			top = append(top, e.Origin+" "+e.EventType+" "+e.Name+" "+e.Result)
		}
	}
	wantTop := []string{
		"cloudinit start init-local ", "cloudinit finish init-local SUCCESS",
		"cloudinit start init-network ", "cloudinit finish init-network SUCCESS",
		"cloudinit start modules-config ", "cloudinit finish modules-config SUCCESS",
		"cloudinit start modules-final ",
		"curtin start cmd-install ", "curtin finish cmd-install SUCCESS",
		"cloudinit finish modules-final SUCCESS",
	}
	if diff := cmp.Diff(wantTop, top); diff != "" {
		t.Errorf("top-level events (-want +got):\n%s", diff)
	}
	for _, e := range events {
		if e.Origin == "cloudinit" && (e.Level != "" || (e.EventType == "finish" && e.Duration == nil)) {
			t.Errorf("cloud-init event shape: %+v", e)
		}
	}

	// First boot of the installed disk, read in userspace.
	droot, err := firstboot.FindRoot(disk)
	if err != nil {
		t.Fatal(err)
	}
	rg.mu.Lock()
	rg.events = nil
	rg.mu.Unlock()
	fn := &fakeNet{}
	var fbConsole bytes.Buffer
	fb, err := firstboot.Run(context.Background(), firstboot.Options{Root: droot, HTTPClient: rg.Client(), Network: fn, Console: &fbConsole})
	if err != nil {
		t.Fatalf("first boot: %v\n%s", err, fbConsole.String())
	}
	wantNet := []firstboot.NetConfig{{Version: 2, Ifaces: []firstboot.Iface{{Name: "ens3", MatchMAC: "52:54:00:12:34:56", DHCP4: true}}}}
	if diff := cmp.Diff(wantNet, fn.got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("network config applied at first boot (-want +got):\n%s", diff)
	}
	if fb.Datasource.MetadataURL != rg.URL+"/MAAS/metadata/" {
		t.Errorf("first boot datasource %+v (want the non-curtin metadata_url from 95-cloudconfig-maas-cloud-config.cfg)", fb.Datasource)
	}
	rg.mu.Lock()
	userRead := rg.userRead
	fbEvents := append([]installer.Event(nil), rg.events...)
	rg.mu.Unlock()
	if userRead != 1 {
		t.Errorf("user-data read %d times at first boot, want 1 (what marks the machine Deployed)", userRead)
	}
	for _, want := range []string{"maasemu-probe: network up on ens3 198.18.0.10/24", "maasemu-probe: user-data read, deployed"} {
		if !strings.Contains(fbConsole.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, fbConsole.String())
		}
	}
	var names []string
	for _, e := range fbEvents {
		names = append(names, e.EventType+" "+e.Name)
	}
	wantNames := []string{"start init-local", "finish init-local", "start init-network", "start init-network/search-MAAS",
		"finish init-network/search-MAAS", "finish init-network", "start modules-config", "finish modules-config", "start modules-final", "finish modules-final"}
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Errorf("first boot webhook events (-want +got):\n%s", diff)
	}
}

func TestEphemeralRefusesBadPreseed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "#!/bin/sh\necho not cloud-config\n")
	}))
	defer srv.Close()
	tmp := t.TempDir()
	be, _ := imagedisk.New(imagedisk.Disk{Path: mkDisk(t, tmp), Name: "/dev/vda"})
	_, err := ephemeral.Run(context.Background(), ephemeral.Options{Cmdline: "cloud-config-url=" + srv.URL + "/p", Root: tmp, HTTPClient: srv.Client(), Backend: be})
	if err == nil || !strings.Contains(err.Error(), "did not start with #cloud-config") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "etc/cloud/cloud.cfg.d/91_kernel_cmdline_url.cfg")); err == nil {
		t.Error("a bad preseed was written")
	}
	_, err = ephemeral.Run(context.Background(), ephemeral.Options{Cmdline: "ro quiet", Root: tmp, Backend: be})
	if err == nil || !strings.Contains(err.Error(), "no cloud-config-url=") {
		t.Fatalf("err = %v", err)
	}
}

func mkDisk(t *testing.T, dir string) string {
	p := filepath.Join(dir, "d.img")
	if err := diskimage.CreateSparse(p, 8<<20); err != nil {
		t.Fatal(err)
	}
	return p
}
