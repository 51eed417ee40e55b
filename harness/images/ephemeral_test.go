package images

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maasemu/maasemu/fakemaas/simplestreams"
	"github.com/maasemu/maasemu/harness/images/qemuboot"
	"github.com/maasemu/maasemu/trace"
)

func TestEphemeralContents(t *testing.T) {
	e := testEphemeral(t)
	for _, f := range []string{e.Kernel, e.Initrd, e.Squashfs, e.Manifest} {
		st, err := os.Stat(f)
		if err != nil || st.Size() == 0 {
			t.Fatalf("%s: %v", f, err)
		}
		t.Logf("%s: %.1f MiB", filepath.Base(f), float64(st.Size())/(1<<20))
	}
	out, err := exec.Command("unsquashfs", "-l", "-no-progress", e.Squashfs).Output()
	if err != nil {
		t.Fatal(err)
	}
	list := string(out)
	for _, want := range []string{
		"/sbin", "/usr/sbin/init", "/usr/bin/maasemu-agent", "/usr/bin/bash", "/usr/bin/python3", "/usr/sbin/sgdisk",
		"/usr/sbin/mkfs.ext4", "/usr/sbin/mkfs.vfat", "/usr/sbin/mkfs.xfs", "/usr/sbin/lvm", "/usr/sbin/dmsetup",
		"/usr/sbin/parted", "/usr/sbin/sfdisk", "/usr/bin/udevadm", "/usr/lib/systemd/systemd-udevd",
		"/usr/sbin/grub-install", "/usr/lib/grub/i386-pc/boot.img", "/usr/lib/grub/x86_64-efi/linux.mod",
		"/usr/bin/efibootmgr", "/usr/bin/wget", "/usr/bin/rsync", "/usr/bin/zstd", "/usr/bin/xz", "/usr/bin/awk",
		"/usr/lib/modules/" + e.KernelVersion + "/modules.dep", "/usr/lib/modules/" + e.KernelVersion + "/kernel/fs/ext4/ext4.ko",
	} {
		if !strings.Contains(list, "squashfs-root"+want+"\n") {
			t.Errorf("squashfs lacks %s", want)
		}
	}
	out, err = exec.Command("sh", "-c", "zcat "+e.Initrd+" | cpio -it --quiet").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"init", "bin/busybox", "bin/udhcpc", "bin/switch_root", "etc/udhcpc.script", "etc/modules.load", "dev/console",
		"lib/modules/" + e.KernelVersion + "/kernel/drivers/net/virtio_net.ko", "lib/modules/" + e.KernelVersion + "/kernel/fs/overlayfs/overlay.ko"} {
		if !strings.Contains("\n"+string(out), "\n"+want+"\n") {
			t.Errorf("initrd lacks %s", want)
		}
	}
	man, _ := os.ReadFile(e.Manifest)
	if !strings.Contains(string(man), "python3\t") || !strings.Contains(string(man), "linux-image-") {
		t.Errorf("manifest lacks python3 or the kernel:\n%s", man)
	}
	// a second build with the same inputs is the cache hit
	e2, err := testBuilder(t).Ephemeral(context.Background())
	if err != nil || e2.Dir != e.Dir || e2.Version != e.Version {
		t.Errorf("rebuild with the same inputs: %+v, %v; want the cached %s", e2, err, e.Dir)
	}
}

func TestPublishEphemeralStreams(t *testing.T) {
	e := testEphemeral(t)
	out := t.TempDir()
	s, err := testBuilder(t).PublishEphemeral(context.Background(), e, out)
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Format string `json:"format"`
		Index  map[string]struct {
			Path     string   `json:"path"`
			Products []string `json:"products"`
		} `json:"index"`
	}
	readJSON(t, filepath.Join(out, "streams/v1/index.json"), &idx)
	if idx.Format != "index:1.0" || len(idx.Index) != 2 {
		t.Fatalf("index.json = %+v", idx)
	}
	type item struct {
		FType, Path, SHA256 string
		Size                int64
	}
	type product struct {
		OS             string `json:"os"`
		Label          string `json:"label"`
		ReleaseTitle   string `json:"release_title"`
		BootloaderType string `json:"bootloader-type"`
		Versions       map[string]struct {
			Items map[string]item `json:"items"`
		} `json:"versions"`
	}
	seen := 0
	for cid, ent := range idx.Index {
		var doc struct {
			ContentID string             `json:"content_id"`
			Products  map[string]product `json:"products"`
		}
		readJSON(t, filepath.Join(out, ent.Path), &doc)
		if doc.ContentID != cid {
			t.Errorf("%s: content_id %q", ent.Path, doc.ContentID)
		}
		for _, name := range ent.Products {
			p, ok := doc.Products[name]
			if !ok {
				t.Errorf("%s lists %s but the products file lacks it", cid, name)
				continue
			}
			seen++
			for _, v := range p.Versions {
				for key, it := range v.Items {
					sum, size, err := fileSHA256(filepath.Join(out, it.Path))
					if err != nil || sum != it.SHA256 || size != it.Size {
						t.Errorf("%s %s: file %s sha256/size mismatch (%v)", name, key, it.Path, err)
					}
				}
				if strings.Contains(name, ":boot:") {
					for _, ft := range []string{"boot-kernel", "boot-initrd", "squashfs", "manifest"} {
						if _, ok := v.Items[ft]; !ok {
							t.Errorf("%s lacks item %s", name, ft)
						}
					}
					if !strings.Contains(p.ReleaseTitle, "maasemu test ephemeral") || p.Label != "stable" {
						t.Errorf("%s: release_title %q label %q", name, p.ReleaseTitle, p.Label)
					}
				}
			}
		}
	}
	want := []string{"com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04", "com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04",
		"com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64", "com.ubuntu.maas.stable:1:pxelinux:pxe:i386"}
	if seen != len(want) || len(s.Products) != len(want) {
		t.Errorf("published %v, want %v", s.Products, want)
	}
	out2, err := exec.Command("sh", "-c", "for f in $(find "+out+"/bootloaders -name '*.tar.xz'); do tar -tJf $f; done").CombinedOutput()
	if err != nil {
		t.Fatalf("%v %s", err, out2)
	}
	for _, f := range []string{"lpxelinux.0", "chain.c32", "ldlinux.c32", "bootx64.efi", "grubx64.efi"} {
		if !strings.Contains(string(out2), f+"\n") {
			t.Errorf("bootloader archives lack %s:\n%s", f, out2)
		}
	}
}

func readJSON(t testing.TB, p string, v any) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
}

// serveFile serves path at /<name> on a loopback port the QEMU guest reaches as 10.0.2.2.
func serveFile(t testing.TB, path, name string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/"+name, func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, path) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

const testMAC = "52:54:00:12:34:56"

// ephemeralCmdline is the command line MAAS composes for an ephemeral boot (kernel_opts.py),
// with the squashfs on the test's HTTP server and pxelinux's BOOTIF appended.
func ephemeralCmdline(port int) string {
	return ephemeralCmdlineBOOTIF(port, "01-"+strings.ReplaceAll(testMAC, ":", "-"))
}

// ephemeralCmdlineBOOTIF is ephemeralCmdline with a given BOOTIF value: pxelinux's
// IPAPPEND 2 gives 01-aa-bb-..., MAAS's GRUB template 01-${net_default_mac} (colons).
func ephemeralCmdlineBOOTIF(port int, bootif string) string {
	return fmt.Sprintf("nomodeset root=squash:http://10.0.2.2:%d/squashfs ip=::::maasemu-eph:BOOTIF:dhcp ip6=off "+
		"cc:{'datasource_list': ['MAAS']}end_cc cloud-config-url=http://10.0.2.2:%d/MAAS/metadata/latest/by-id/abc123/?op=get_preseed "+
		"ro overlayroot=tmpfs overlayroot_cfgdisk=disabled log_host=10.0.2.2 log_port=5247 console=tty0 console=ttyS0,115200 BOOTIF=%s",
		port, port, bootif)
}

// TestEphemeralBoots boots the ephemeral kernel+initrd in QEMU (TCG) with user networking
// and the MAAS command line, and follows the console to the exec of the agent.
func TestEphemeralBoots(t *testing.T) {
	if why := qemuboot.Available("bios"); why != "" {
		t.Skip(why)
	}
	e := testEphemeral(t)
	port := serveFile(t, e.Squashfs, "squashfs")
	for name, bootif := range map[string]string{
		"pxelinux": "01-" + strings.ReplaceAll(testMAC, ":", "-"),
		"grub":     "01-" + strings.ToUpper(testMAC),
	} {
		t.Run(name, func(t *testing.T) { bootEphemeral(t, e, ephemeralCmdlineBOOTIF(port, bootif)) })
	}
}

func bootEphemeral(t *testing.T, e *Ephemeral, cmdline string) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var lines []string
	rec := trace.NewRecorder(nil)
	res, err := qemuboot.Run(ctx, qemuboot.Config{Kernel: e.Kernel, Initrd: e.Initrd, Append: cmdline, MemoryMiB: 1536, NetUser: true, MAC: testMAC, Sink: rec, Machine: "eph"},
		func(l string) bool {
			if strings.Contains(l, "maasemu-") {
				lines = append(lines, l)
			}
			return strings.Contains(l, "maasemu-testagent: ephemeral agent running") || strings.Contains(l, "FAILED")
		})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"maasemu-initramfs: start",
		"maasemu-initramfs: BOOTIF " + testMAC + " is",
		"maasemu-initramfs: dhcp ",
		"maasemu-initramfs: fetching squashfs http://10.0.2.2:",
		"maasemu-initramfs: root mounted: squashfs overlaid on tmpfs",
		"maasemu-initramfs: switch_root to /sbin/init",
		"maasemu-ephemeral: start",
		"maasemu-ephemeral: udev settled",
		"maasemu-ephemeral: exec /usr/bin/maasemu-agent ephemeral (host maasemu-eph",
		"maasemu-testagent: ephemeral agent running on maasemu-eph",
	} {
		found := false
		for _, l := range lines {
			if strings.Contains(l, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("console lacks %q; markers seen:\n%s", want, strings.Join(lines, "\n"))
		}
	}
	n := 0
	for _, ev := range rec.Events() {
		if ev.Kind == trace.KindConsoleLine && ev.Source == trace.SourceConsole && ev.Machine == "eph" {
			n++
		}
	}
	if n == 0 || n != len(res.Lines) {
		t.Errorf("%d console.line events for %d console lines", n, len(res.Lines))
	}
	t.Logf("ephemeral: kernel start to agent exec in %v (TCG)", res.Duration)
}

// TestPublishedStreamsReadByRegion reads the published tree with the region's SimpleStreams
// reader (what `maasemu images import --source DIR` uses).
func TestPublishedStreamsReadByRegion(t *testing.T) {
	e := testEphemeral(t)
	out := filepath.Join(t.TempDir(), "stable")
	if _, err := testBuilder(t).PublishEphemeral(context.Background(), e, out); err != nil {
		t.Fatal(err)
	}
	src, err := simplestreams.NewSource(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	found, _, err := src.Walk(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range found {
		got = append(got, f.Name)
		if f.Kind == simplestreams.KindImage {
			for _, ft := range []string{"boot-kernel", "boot-initrd", "squashfs", "manifest"} {
				if _, ok := f.Items[ft]; !ok {
					t.Errorf("%s: the region sees no %s item", f.Name, ft)
				}
			}
		}
	}
	want := []string{"com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64", "com.ubuntu.maas.stable:1:pxelinux:pxe:i386",
		"com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04", "com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("the region's reader found %v, want %v", got, want)
	}
}
