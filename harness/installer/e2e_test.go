package installer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/maasemu/maasemu/harness/diskimage"
	"github.com/maasemu/maasemu/harness/installer"
	"github.com/maasemu/maasemu/harness/installer/imagedisk"
	fixture "github.com/maasemu/maasemu/harness/installer/installertest"
)

const mib = 1 << 20

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("image-backend install: needs root (tar keeps numeric owners, in-target chroots)")
	}
	for _, tool := range []string{"tar", "mkfs.ext4", "debugfs", "e2fsck", "sfdisk", "grub-mkimage", "mcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("image-backend install: needs %s (mk/base.mk)", tool)
		}
	}
	if _, err := os.Stat(diskimage.GRUBPCDir); err != nil {
		t.Skip("image-backend install: needs grub-pc-bin")
	}
}

// server serves files and records webhook posts.
type server struct {
	*httptest.Server
	mu     sync.Mutex
	files  map[string][]byte
	posts  []installer.Event
	auths  []string
	status int
}

func newServer(t *testing.T) *server {
	s := &server{files: map[string][]byte{}, status: http.StatusNoContent}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/MAAS/metadata/status/") {
			var e installer.Event
			b, _ := io.ReadAll(r.Body)
			if err := json.Unmarshal(b, &e); err != nil {
				http.Error(w, "bad json", 400)
				return
			}
			s.posts = append(s.posts, e)
			s.auths = append(s.auths, r.Header.Get("Authorization"))
			w.WriteHeader(s.status)
			return
		}
		b, ok := s.files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) Posts() ([]installer.Event, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]installer.Event(nil), s.posts...), append([]string(nil), s.auths...)
}

// maasConfig is a curtin config shaped like the documents MAAS sends.
func maasConfig(endpoint string, extra string) []string {
	storage := `partitioning_commands:
  builtin: [curtin, block-meta, custom]
storage:
  version: 1
  config:
  - {id: sda, type: disk, ptable: gpt, serial: QM00001, model: QEMU HARDDISK, name: sda, wipe: superblock, grub_device: true}
  - {id: sda-part1, type: partition, device: sda, number: 1, size: 1048576B, flag: bios_grub, wipe: zero, offset: 4194304B}
  - {id: sda-part2, type: partition, device: sda, number: 2, size: 200M, wipe: superblock}
  - {id: sda-part2_format, type: format, volume: sda-part2, fstype: ext4, label: root, uuid: 9a1a2b3c-4d5e-4f60-8a7b-1c2d3e4f5a6b}
  - {id: sda-part2_mount, type: mount, device: sda-part2_format, path: /, options: ''}
`
	reporter := fmt.Sprintf(`reporting:
  maas: {type: webhook, endpoint: '%s/MAAS/metadata/status/abc123', consumer_key: ck, token_key: tk, token_secret: ts}
install:
  log_file: /tmp/install.log
  error_tarfile: /tmp/curtin-logs.tar
  post_files: [/tmp/install.log, /tmp/curtin-logs.tar]
`, endpoint)
	network := `network_commands:
  builtin: [curtin, net-meta, custom]
network:
  version: 2
  ethernets:
    ens3:
      match: {macaddress: '52:54:00:12:34:56'}
      set-name: ens3
      dhcp4: true
`
	main := `debconf_selections:
  grub2: "grub2   grub2/update_nvram  boolean false"
late_commands:
  maas: [sh, -c, 'echo netboot_off']
  90_mark: [curtin, in-target, --, sh, -c, 'echo late > /root/late-mark']
  91_shell: "curtin in-target -- sh -c 'echo shim > /root/shim-mark'"
cloudconfig:
  maas-datasource:
    path: /etc/cloud/cloud.cfg.d/90_maas_datasource.cfg
    content: "datasource_list: [ MAAS ]"
`
	docs := []string{storage, reporter, network, main}
	if extra != "" {
		docs = append(docs, extra)
	}
	return docs
}

type env struct {
	tmp, disk, host string
	srv             *server
	be              *imagedisk.Backend
	rec             *installer.EventRecorder
	log             bytes.Buffer
}

func newEnv(t *testing.T, diskSize int64) *env {
	e := &env{tmp: t.TempDir(), rec: &installer.EventRecorder{}}
	e.disk = filepath.Join(e.tmp, "disk.img")
	e.host = filepath.Join(e.tmp, "host")
	if err := diskimage.CreateSparse(e.disk, diskSize); err != nil {
		t.Fatal(err)
	}
	be, err := imagedisk.New(imagedisk.Disk{Path: e.disk, Name: "/dev/vda", Serial: "QM00001"})
	if err != nil {
		t.Fatal(err)
	}
	e.be = be
	e.srv = newServer(t)
	return e
}

func (e *env) run(t *testing.T, configs []string, args ...string) (installer.Result, error) {
	uefi := false
	return installer.Run(context.Background(), installer.Options{
		Configs: configs, Args: args, Backend: e.be, HTTPClient: e.srv.Client(),
		Reporter: e.rec, Log: &e.log, WorkDir: filepath.Join(e.tmp, "work"), HostRoot: e.host,
		MemoryBytes: 1 << 30, UEFI: &uefi, ProcCmdline: "BOOT_IMAGE=/vmlinuz console=ttyS0 ip=::::h:BOOTIF:dhcp --- quiet BOOTIF=01-52-54-00-12-34-56",
	})
}

func rootFS(t *testing.T, disk string) diskimage.FS {
	t.Helper()
	fss, err := diskimage.Probe(disk)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fss {
		if strings.HasPrefix(f.Type, "ext") {
			return f
		}
	}
	t.Fatalf("no ext filesystem on %s: %+v", disk, fss)
	return diskimage.FS{}
}

func readFile(t *testing.T, disk string, f diskimage.FS, p string) string {
	t.Helper()
	b, err := diskimage.ReadFile(disk, f, p)
	if err != nil {
		t.Fatalf("reading %s from the installed disk: %v", p, err)
	}
	return string(b)
}

// fsck copies the filesystem region out and runs e2fsck -fn on it.
func fsck(t *testing.T, disk string, f diskimage.FS) {
	t.Helper()
	src, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p := filepath.Join(t.TempDir(), "part.img")
	dst, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, io.NewSectionReader(src, f.Offset, f.Size)); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	out, err := exec.Command("e2fsck", "-fn", p).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn of partition %d: %v\n%s", f.Partition, err, out)
	}
}

// shape reduces events to what is compared (timestamps and file contents vary).
type shape struct {
	Name, Type, Desc, Level, Result, Origin string
	Files                                   []string
}

func shapes(evs []installer.Event) []shape {
	var out []shape
	for _, e := range evs {
		s := shape{Name: e.Name, Type: e.EventType, Desc: e.Description, Level: e.Level, Result: e.Result, Origin: e.Origin}
		for _, f := range e.Files {
			has := "null"
			if f.Content != nil {
				has = "content"
			}
			s.Files = append(s.Files, f.Path+"="+has)
		}
		out = append(out, s)
	}
	return out
}

func TestImageInstallTarball(t *testing.T) {
	needRoot(t)
	e := newEnv(t, 256*mib)
	root := filepath.Join(e.tmp, "root")
	if err := fixture.Root(root, fixture.RootOptions{CloudInit: "v2", GrubPC: true, Exec: map[string]string{
		"usr/bin/debconf-set-selections": "#!/bin/sh\nmkdir -p /var/cache\ncat >> /var/cache/debconf-selections\n",
	}}); err != nil {
		t.Fatal(err)
	}
	tb, err := fixture.Tar(root)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.files["/images/abc/custom/amd64/generic/test/uploaded/root.tgz"] = fixture.Gzip(tb)
	res, err := e.run(t, maasConfig(e.srv.URL, ""), e.srv.URL+"/images/abc/custom/amd64/generic/test/uploaded/root.tgz")
	if err != nil {
		t.Fatalf("install: %v\nlog:\n%s", err, e.log.String())
	}
	if diff := cmp.Diff([]installer.Source{{Type: "tgz", URI: e.srv.URL + "/images/abc/custom/amd64/generic/test/uploaded/root.tgz"}}, res.Sources); diff != "" {
		t.Errorf("sources (-want +got):\n%s", diff)
	}

	// The partition table, read independently.
	tab, err := diskimage.ReadTable(e.disk)
	if err != nil {
		t.Fatal(err)
	}
	type geo struct {
		N           int
		Start, Size int64
		Flag        string
	}
	var got []geo
	for _, p := range tab.Partitions {
		got = append(got, geo{p.Number, p.Start, p.Size, p.Flag})
	}
	want := []geo{{1, 1 * mib, 1 * mib, "bios_grub"}, {2, 2 * mib, 200 * mib, "linux"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("partitions (-want +got):\n%s", diff)
	}
	out, err := exec.Command("sfdisk", "-d", e.disk).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "label: gpt") || !strings.Contains(string(out), "start=        4096, size=      409600, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4") {
		t.Errorf("sfdisk -d: %v\n%s", err, out)
	}
	mbr := make([]byte, 440)
	f, _ := os.Open(e.disk)
	f.ReadAt(mbr, 0)
	f.Close()
	if bytes.Equal(mbr, make([]byte, 440)) {
		t.Error("MBR has no boot code: GRUB was not embedded")
	}

	rf := rootFS(t, e.disk)
	if rf.Partition != 2 || rf.UUID != "9a1a2b3c-4d5e-4f60-8a7b-1c2d3e4f5a6b" || rf.Label != "root" {
		t.Errorf("root filesystem %+v", rf)
	}
	fsck(t, e.disk, rf)
	wantFstab := installer.FstabHeader + "\n# / was on /dev/vda2 during curtin installation\n/dev/disk/by-uuid/9a1a2b3c-4d5e-4f60-8a7b-1c2d3e4f5a6b / ext4 defaults 0 1\n"
	if diff := cmp.Diff(wantFstab, readFile(t, e.disk, rf, "/etc/fstab")); diff != "" {
		t.Errorf("etc/fstab (-want +got):\n%s", diff)
	}
	var netcfg map[string]any
	if err := yaml.Unmarshal([]byte(readFile(t, e.disk, rf, "/etc/cloud/cloud.cfg.d/50-curtin-networking.cfg")), &netcfg); err != nil {
		t.Fatal(err)
	}
	wantNet := map[string]any{"network": map[string]any{"version": 2, "ethernets": map[string]any{"ens3": map[string]any{
		"match": map[string]any{"macaddress": "52:54:00:12:34:56"}, "set-name": "ens3", "dhcp4": true}}}}
	if diff := cmp.Diff(wantNet, netcfg); diff != "" {
		t.Errorf("50-curtin-networking.cfg (-want +got):\n%s", diff)
	}
	if got := readFile(t, e.disk, rf, "/etc/cloud/cloud.cfg.d/95-cloudconfig-maas-datasource.cfg"); got != "datasource_list: [ MAAS ]" {
		t.Errorf("95-cloudconfig-maas-datasource.cfg = %q", got)
	}
	if got := readFile(t, e.disk, rf, "/root/late-mark"); got != "late\n" {
		t.Errorf("late command mark = %q", got)
	}
	if got := readFile(t, e.disk, rf, "/root/shim-mark"); got != "shim\n" {
		t.Errorf("shell late command through curtin on PATH: mark = %q", got)
	}
	// debconf_selections went through the target's debconf-set-selections, then
	// install-grub's grub-pc/install_devices.
	if got := readFile(t, e.disk, rf, "/var/cache/debconf-selections"); got != "grub2   grub2/update_nvram  boolean false\ngrub-pc grub-pc/install_devices multiselect /dev/vda\n" {
		t.Errorf("debconf selections = %q", got)
	}
	if got := readFile(t, e.disk, rf, "/etc/default/grub"); got != "GRUB_CMDLINE_LINUX_DEFAULT=\"console=ttyS0 quiet\"\n" {
		t.Errorf("etc/default/grub = %q", got)
	}
	if got := readFile(t, e.disk, rf, "/etc/default/grub.d/50-curtin-settings.cfg"); !strings.Contains(got, `GRUB_DISABLE_OS_PROBER="true"`) || !strings.Contains(got, `GRUB_TERMINAL="console"`) {
		t.Errorf("50-curtin-settings.cfg = %q", got)
	}
	if got := readFile(t, e.disk, rf, "/boot/grub/grub.cfg"); !strings.Contains(got, "root=UUID=9a1a2b3c-4d5e-4f60-8a7b-1c2d3e4f5a6b ro console=ttyS0 quiet") {
		t.Errorf("grub.cfg = %q", got)
	}
	if got := readFile(t, e.disk, rf, "/root/curtin-install.log"); !strings.Contains(got, "curtin: Installation started. (") || !strings.Contains(got, installer.MsgFinished) {
		t.Errorf("root/curtin-install.log lacks curtin's messages:\n%s", got)
	}
	ents, err := diskimage.ReadDir(e.disk, rf, "/root")
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]os.FileMode{}
	for _, de := range ents {
		modes[de.Name] = de.Mode.Perm()
	}
	if modes["curtin-install-cfg.yaml"] != 0o400 || modes["curtin-install.log"] != 0o400 {
		t.Errorf("modes in /root: %v (want 0400 for the saved config and log)", modes)
	}
	cfgSaved := readFile(t, e.disk, rf, "/root/curtin-install-cfg.yaml")
	if !strings.Contains(cfgSaved, "token_secret: ts") || !strings.Contains(cfgSaved, "00_cmdline:") {
		t.Errorf("saved config lacks the merged config:\n%s", cfgSaved)
	}
	// busybox kept its mode and the sh symlink survived.
	if b, err := diskimage.ReadFile(e.disk, rf, "/bin/busybox"); err != nil || len(b) < 100000 {
		t.Errorf("bin/busybox: %v (%d bytes)", err, len(b))
	}

	evs := shapes(e.rec.Events())
	wantEvents := tarballEvents(e.srv.URL + "/images/abc/custom/amd64/generic/test/uploaded/root.tgz")
	if diff := cmp.Diff(wantEvents, evs); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	posts, auths := e.srv.Posts()
	if diff := cmp.Diff(evs, shapes(posts)); diff != "" {
		t.Errorf("webhook posts differ from the in-process events (-in-process +posted):\n%s", diff)
	}
	authRE := regexp.MustCompile(`^OAuth oauth_version="1.0", oauth_signature_method="PLAINTEXT", oauth_consumer_key="ck", oauth_token="tk", oauth_signature="&ts", oauth_nonce="[0-9a-f]+", oauth_timestamp="[0-9]+"$`)
	for _, a := range auths {
		if !authRE.MatchString(a) {
			t.Fatalf("Authorization header %q", a)
		}
	}
	last := posts[len(posts)-1]
	if len(last.Files) != 2 || last.Files[0].Content == nil || last.Files[1].Content != nil {
		t.Errorf("cmd-install finish files: %+v", last.Files)
	}
	// the host's install log
	if b, err := os.ReadFile(filepath.Join(e.host, "tmp/install.log")); err != nil || !strings.Contains(string(b), installer.MsgFinished) {
		t.Errorf("host install log: %v\n%s", err, b)
	}
}

func ev(name, typ, desc, level, result string, files ...string) shape {
	return shape{Name: name, Type: typ, Desc: desc, Level: level, Result: result, Origin: "curtin", Files: files}
}

// startFinish returns the start and finish events of a successful stack.
func sf(name, desc, level string) (shape, shape) {
	return ev(name, "start", desc, level, ""), ev(name, "finish", desc, level, "SUCCESS")
}

func tarballEvents(uri string) []shape {
	var out []shape
	add := func(s ...shape) { out = append(out, s...) }
	wrap := func(name, desc, level string, inner func()) {
		s, f := sf(name, desc, level)
		add(s)
		inner()
		add(f)
	}
	item := func(prefix, desc string) { s, f := sf(prefix, desc, "INFO"); add(s, f) }
	add(ev("cmd-install", "start", "curtin command install", "DEBUG", ""))
	wrap("cmd-install/stage-early", "preparing for installation", "INFO", func() {})
	wrap("cmd-install/stage-partitioning", "configuring storage", "INFO", func() {
		wrap("cmd-install/stage-partitioning/builtin", "running 'curtin block-meta custom'", "DEBUG", func() {
			p := "cmd-install/stage-partitioning/builtin/cmd-block-meta"
			wrap(p, "curtin command block-meta", "DEBUG", func() {
				item(p+"/clear-holders", "removing previous storage devices")
				for _, d := range []string{"disk: sda", "partition: sda-part1", "partition: sda-part2", "format: sda-part2_format", "mount: sda-part2_mount"} {
					item(p, "configuring "+d)
				}
			})
		})
	})
	wrap("cmd-install/stage-network", "configuring network", "INFO", func() {
		wrap("cmd-install/stage-network/builtin", "running 'curtin net-meta custom'", "DEBUG", func() {
			wrap("cmd-install/stage-network/builtin/cmd-net-meta", "curtin command net-meta", "DEBUG", func() {})
		})
	})
	wrap("cmd-install/stage-extract", "writing install sources to disk", "INFO", func() {
		wrap("cmd-install/stage-extract/builtin", "running 'curtin extract'", "DEBUG", func() {
			p := "cmd-install/stage-extract/builtin/cmd-extract"
			wrap(p, "curtin command extract", "DEBUG", func() {
				item(p, "acquiring and extracting image from "+uri)
			})
		})
	})
	wrap("cmd-install/stage-curthooks", "configuring installed system", "INFO", func() {
		wrap("cmd-install/stage-curthooks/builtin", "running 'curtin curthooks'", "DEBUG", func() {
			p := "cmd-install/stage-curthooks/builtin/cmd-curthooks"
			wrap(p, "curtin command curthooks", "DEBUG", func() {
				for _, s := range [][2]string{
					{"writing-apt-config", "configuring apt configuring apt"},
					{"installing-missing-packages", "installing missing packages"},
					{"configuring-iscsi-service", "configuring iscsi service"},
					{"configuring-mdadm-service", "configuring raid (mdadm) service"},
					{"configuring-nvme-over-tcp", "configuring NVMe over TCP"},
					{"installing-kernel", "installing kernel"},
					{"setting-up-swap", "setting up swap"},
					{"apply-networking-config", "apply networking config"},
					{"writing-etc-fstab", "writing etc/fstab"},
					{"configuring-multipath", "configuring multipath"},
					{"system-upgrade", "updating packages on target system"},
					{"pollinate-user-agent", "configuring pollinate user-agent on target"},
					{"configuring-kernel-crash-dumps", "configuring kernel crash dumps settings"},
					{"final-kernel-configuration", "final kernel configuration"},
				} {
					item(p+"/"+s[0], s[1])
				}
				wrap(p+"/configuring-bootloader", "configuring target system bootloader", "INFO", func() {
					item(p+"/install-grub", "installing grub to target devices")
				})
				item(p+"/copy-cdrom-metadata", "copying metadata from /cdrom")
			})
		})
	})
	wrap("cmd-install/stage-hook", "finalizing installation", "INFO", func() {
		wrap("cmd-install/stage-hook/builtin", "running 'curtin hook'", "DEBUG", func() {
			wrap("cmd-install/stage-hook/builtin/cmd-hook", "curtin command hook", "DEBUG", func() {})
		})
	})
	wrap("cmd-install/stage-late", "executing late commands", "INFO", func() {
		wrap("cmd-install/stage-late/90_mark", "running 'curtin in-target -- sh -c echo late > /root/late-mark'", "DEBUG", func() {
			wrap("cmd-install/stage-late/90_mark/cmd-in-target", "curtin command in-target", "DEBUG", func() {})
		})
		shell := "curtin in-target -- sh -c 'echo shim > /root/shim-mark'"
		wrap("cmd-install/stage-late/91_shell", "running '"+strings.Join(strings.Split(shell, ""), " ")+"'", "DEBUG", func() {})
		wrap("cmd-install/stage-late/maas", "running 'sh -c echo netboot_off'", "DEBUG", func() {})
	})
	add(ev("cmd-install", "finish", "curtin command install", "DEBUG", "SUCCESS", "/tmp/install.log=content", "/tmp/curtin-logs.tar=null"))
	return out
}
