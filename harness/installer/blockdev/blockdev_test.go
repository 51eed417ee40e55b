package blockdev_test

import (
	"bytes"
	"context"
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
	"github.com/maasemu/maasemu/harness/installer/blockdev"
	fixture "github.com/maasemu/maasemu/harness/installer/installertest"
)

const mib = 1 << 20

// loops attaches image files as loop devices and detaches them at cleanup.
type loops struct {
	t     *testing.T
	mu    sync.Mutex
	devs  []string
	parts map[int]string
}

func needLoop(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("block backend: needs root (loop devices, mkfs, mount)")
	}
	for _, tool := range []string{"losetup", "sgdisk", "mkfs.ext4", "mount", "wipefs", "blkid", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("block backend: needs %s", tool)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("block backend: needs /dev/loop-control")
	}
}

func (l *loops) attach(args ...string) string {
	out, err := exec.Command("losetup", append([]string{"--find", "--show"}, args...)...).CombinedOutput()
	if err != nil {
		l.t.Skipf("block backend: losetup %v: %v: %s", args, err, out)
	}
	dev := strings.TrimSpace(string(out))
	l.mu.Lock()
	l.devs = append(l.devs, dev)
	l.mu.Unlock()
	return dev
}

func (l *loops) detachAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.devs) - 1; i >= 0; i-- {
		exec.Command("losetup", "-d", l.devs[i]).Run()
	}
	l.devs = nil
	l.parts = map[int]string{}
}

// backend returns a block backend for the image file: the disk is a loop device, and each
// partition a loop device over its byte range (this host's kernel makes no loop
// partitions).
func newBackend(t *testing.T, img string) (*blockdev.Backend, *loops, string) {
	l := &loops{t: t, parts: map[int]string{}}
	t.Cleanup(l.detachAll)
	disk := l.attach(img)
	be := blockdev.New()
	be.Disks = []string{disk}
	be.PartitionDevice = func(_ context.Context, d string, n int, start, size int64) (string, error) {
		l.mu.Lock()
		p, ok := l.parts[n]
		l.mu.Unlock()
		if ok {
			exec.Command("losetup", "-d", p).Run()
		}
		p = l.attach("--offset", fmt.Sprint(start), "--sizelimit", fmt.Sprint(size), img)
		l.mu.Lock()
		l.parts[n] = p
		l.mu.Unlock()
		return p, nil
	}
	return be, l, disk
}

func serve(t *testing.T, files map[string][]byte) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

func TestBlockInstallTarballOnLoop(t *testing.T) {
	needLoop(t)
	tmp := t.TempDir()
	img := filepath.Join(tmp, "disk.img")
	if err := diskimage.CreateSparse(img, 128*mib); err != nil {
		t.Fatal(err)
	}
	be, l, disk := newBackend(t, img)
	root := filepath.Join(tmp, "root")
	if err := fixture.Root(root, fixture.RootOptions{CloudInit: "v2"}); err != nil {
		t.Fatal(err)
	}
	tb, err := fixture.Tar(root)
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, map[string][]byte{"/root.tgz": fixture.Gzip(tb)})
	cfg := fmt.Sprintf(`partitioning_commands: {builtin: [curtin, block-meta, custom]}
storage:
  version: 1
  config:
  - {id: sda, type: disk, ptable: gpt, path: %s, wipe: superblock}
  - {id: sda-part1, type: partition, device: sda, size: 1M, flag: bios_grub}
  - {id: sda-part2, type: partition, device: sda, size: 100M}
  - {id: sda-part2_format, type: format, volume: sda-part2, fstype: ext4, label: root}
  - {id: sda-part2_mount, type: mount, device: sda-part2_format, path: /}
network: {version: 1, config: [{type: physical, name: eth0, mac_address: '52:54:00:aa:bb:cc', subnets: [{type: dhcp}]}]}
grub: {install_devices: null}
install: {log_file: /tmp/install.log}
swap: {size: 0}
`, disk)
	var log bytes.Buffer
	rec := &installer.EventRecorder{}
	uefi := false
	_, err = installer.Run(context.Background(), installer.Options{
		Configs: []string{cfg}, Args: []string{srv.URL + "/root.tgz"}, Backend: be, HTTPClient: srv.Client(),
		Log: &log, WorkDir: filepath.Join(tmp, "work"), HostRoot: filepath.Join(tmp, "host"), Reporter: rec, UEFI: &uefi,
	})
	if err != nil {
		t.Fatalf("install: %v\n%s", err, log.String())
	}
	l.detachAll()

	tab, err := diskimage.ReadTable(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Partitions) != 2 || tab.Partitions[0].Flag != "bios_grub" || tab.Partitions[1].Start != 2*mib || tab.Partitions[1].Size != 100*mib {
		t.Fatalf("sgdisk made %+v", tab)
	}
	fss, err := diskimage.Probe(img)
	if err != nil {
		t.Fatal(err)
	}
	var rf diskimage.FS
	for _, f := range fss {
		if f.Partition == 2 {
			rf = f
		}
	}
	if rf.Type != "ext4" || rf.Label != "root" {
		t.Fatalf("root fs %+v", rf)
	}
	fstab, err := diskimage.ReadFile(img, rf, "/etc/fstab")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("/dev/disk/by-uuid/%s / ext4 defaults 0 1\n", rf.UUID)
	if !strings.HasSuffix(string(fstab), want) || !strings.HasPrefix(string(fstab), installer.FstabHeader) {
		t.Errorf("fstab:\n%s\nwant it to end with %q", fstab, want)
	}
	net, _ := diskimage.ReadFile(img, rf, "/etc/cloud/cloud.cfg.d/50-curtin-networking.cfg")
	if !strings.Contains(string(net), "mac_address: 52:54:00:aa:bb:cc") {
		t.Errorf("50-curtin-networking.cfg:\n%s", net)
	}
	// owners and modes from the tarball
	ents, err := diskimage.ReadDir(img, rf, "/bin")
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]string{}
	for _, e := range ents {
		modes[e.Name] = e.Mode.String()
	}
	if diff := cmp.Diff("-rwxr-xr-x", modes["busybox"]); diff != "" {
		t.Errorf("bin/busybox mode (-want +got):\n%s", diff)
	}
	if modes["sh"] != "Lrwxrwxrwx" {
		t.Errorf("bin/sh is %q, want a symlink", modes["sh"])
	}
}

func TestBlockInstallDDOnLoop(t *testing.T) {
	needLoop(t)
	tmp := t.TempDir()
	root := filepath.Join(tmp, "ddroot")
	if err := fixture.Root(root, fixture.RootOptions{Hooks: map[string]string{"curtin-hooks": "#!/bin/sh\necho block > \"$TARGET_MOUNT_POINT/hook-mark\"\n"}}); err != nil {
		t.Fatal(err)
	}
	ddimg := filepath.Join(tmp, "image.raw")
	if _, err := fixture.DDImage(context.Background(), ddimg, 32*mib, root); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(ddimg)
	xzb, err := fixture.XZ(raw)
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, map[string][]byte{"/root-dd.xz": xzb})
	img := filepath.Join(tmp, "disk.img")
	if err := diskimage.CreateSparse(img, 64*mib); err != nil {
		t.Fatal(err)
	}
	be, l, _ := newBackend(t, img)
	var log bytes.Buffer
	_, err = installer.Run(context.Background(), installer.Options{
		Configs: []string{"install: {log_file: /tmp/install.log}\n"}, Args: []string{"dd-xz:" + srv.URL + "/root-dd.xz"}, Backend: be, HTTPClient: srv.Client(),
		Log: &log, WorkDir: filepath.Join(tmp, "work"), HostRoot: filepath.Join(tmp, "host"),
	})
	if err != nil {
		t.Fatalf("install: %v\n%s", err, log.String())
	}
	l.detachAll()
	fss, err := diskimage.Probe(img)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fss {
		if f.Partition == 2 {
			b, err := diskimage.ReadFile(img, f, "/hook-mark")
			if err != nil || string(b) != "block\n" {
				t.Errorf("hook mark %q: %v", b, err)
			}
			if _, err := diskimage.ReadFile(img, f, "/root/curtin-install.log"); err != nil {
				t.Errorf("install log not copied into the target: %v", err)
			}
			return
		}
	}
	t.Fatalf("no root partition after dd: %+v", fss)
}
