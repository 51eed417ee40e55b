package images

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/maasemu/maasemu/harness/diskimage"
	"github.com/maasemu/maasemu/harness/images/qemuboot"
)

var (
	testImgOnce sync.Once
	testImgDir  string
	testImgMan  *TestManifest
	testImgErr  error
)

// testImages builds the test images once per test binary into a shared output dir.
func testImages(t testing.TB) (string, *TestManifest) {
	t.Helper()
	b := testBuilder(t)
	testImgOnce.Do(func() {
		testImgDir, testImgErr = os.MkdirTemp("", "maasemu-testimages-")
		if testImgErr == nil {
			testImgMan, testImgErr = b.TestImages(context.Background(), testImgDir)
		}
	})
	if testImgErr != nil {
		t.Fatal(testImgErr)
	}
	return testImgDir, testImgMan
}

func TestMain(m *testing.M) {
	code := m.Run()
	if testImgDir != "" {
		os.RemoveAll(testImgDir)
	}
	os.Exit(code)
}

func TestTestImageManifest(t *testing.T) {
	dir, m := testImages(t)
	var names []string
	for _, im := range m.Images {
		names = append(names, im.Name)
		sum, size, err := fileSHA256(filepath.Join(dir, im.File))
		if err != nil || sum != im.SHA256 || size != im.Size {
			t.Errorf("%s: %s sha256/size mismatch with the manifest (%v)", im.Name, im.File, err)
		}
		if im.Reproduces == "" || im.Filetype == "" || im.Expected == "" {
			t.Errorf("%s: incomplete manifest entry %+v", im.Name, im)
		}
		if im.Expected != ExpectDeployed && im.Diagnosis == "" {
			t.Errorf("%s: a broken image needs an expected diagnosis", im.Name)
		}
	}
	want := []string{"builtin-hooks", "dd-no-curtin", "efi-rocky-only", "efi-vendor-only", "fstab-foreign", "good-ddbz2", "good-ddgz", "good-ddraw", "good-ddtar",
		"good-ddtbz", "good-ddtgz", "good-ddtxz", "good-ddxz", "good-tbz", "good-tgz", "good-txz", "hook-imports-curtin",
		"hooks-exit-1", "hooks-not-executable", "lying-filetype", "network-disabled", "no-cloud-init", "no-kernel", "no-netplan", "truncated-tgz"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("test images (-want +got):\n%s", diff)
	}
	// published files exist in the output directory
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
		t.Error(err)
	}
}

// tarMembers lists a tarball with GNU tar (independent of our writer).
func tarMembers(t testing.TB, path string) map[string]string {
	t.Helper()
	out, err := exec.Command("tar", "-tvaf", path).Output()
	if err != nil {
		t.Fatalf("tar -tvf %s: %v", path, err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			continue
		}
		name := f[5]
		m[strings.TrimSuffix(strings.TrimPrefix(name, "./"), "/")] = f[0]
	}
	return m
}

func TestTestImageTarballs(t *testing.T) {
	dir, m := testImages(t)
	for _, im := range m.Images {
		if !strings.HasPrefix(im.Filetype, "t") || im.Name == "truncated-tgz" {
			continue
		}
		t.Run(im.Name, func(t *testing.T) {
			mem := tarMembers(t, filepath.Join(dir, im.File))
			has := func(p string) bool { _, ok := mem[p]; return ok }
			for _, p := range []string{"usr/bin/bash", "usr/bin/busybox", "usr/sbin/init", "etc/os-release", "usr/lib/os-release", "bin", "etc/passwd"} {
				if !has(p) {
					t.Errorf("lacks %s", p)
				}
			}
			if got := has("boot/vmlinuz") && has("boot/initrd.img"); got == (im.Name == "no-kernel") {
				t.Errorf("kernel present = %v", got)
			}
			if got := has("usr/bin/cloud-init"); got == (im.Name == "no-cloud-init") {
				t.Errorf("cloud-init present = %v", got)
			}
			if got := has("usr/sbin/netplan"); got == (im.Name == "no-netplan") {
				t.Errorf("netplan present = %v", got)
			}
			if got := has("usr/lib/grub/i386-pc/boot.img") && has("usr/lib/grub/x86_64-efi/linux.mod") && has("usr/sbin/grub-install"); got != (im.Name == "builtin-hooks") {
				t.Errorf("GRUB in the image = %v", got)
			}
			if got := has("curtin/curtin-hooks"); got == (im.Name == "builtin-hooks") {
				t.Errorf("curtin/curtin-hooks present = %v", got)
			}
			mode := mem["curtin/curtin-hooks"]
			if (im.Name == "hooks-not-executable") != (mode != "" && !strings.Contains(mode, "x")) {
				t.Errorf("curtin/curtin-hooks mode %q", mode)
			}
		})
	}
}

// rawDisk returns a raw copy of a dd test image (decompressed with the host tools curtin
// uses: zcat, xzcat, bzcat, tar -xO).
func rawDisk(t testing.TB, path, ft string) string {
	t.Helper()
	if ft == "ddraw" {
		return path
	}
	cmds := map[string]string{"ddgz": "zcat", "ddxz": "xzcat", "ddbz2": "bzcat", "ddtar": "tar -xOf -", "ddtgz": "tar -xOzf -", "ddtbz": "tar -xOjf -", "ddtxz": "tar -xOJf -"}
	out := filepath.Join(t.TempDir(), "disk.img")
	cmd := exec.Command("sh", "-c", cmds[ft]+" < '"+path+"' | cp --sparse=always /dev/stdin '"+out+"'")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v %s", cmds[ft], err, b)
	}
	return out
}

func copyRegion(t testing.TB, img string, off, size int64) string {
	t.Helper()
	in, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	p := filepath.Join(t.TempDir(), "part.img")
	out, _ := os.Create(p)
	defer out.Close()
	if _, err := io.Copy(out, io.NewSectionReader(in, off, size)); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTestImageDisks(t *testing.T) {
	dir, m := testImages(t)
	for _, im := range m.Images {
		if !strings.HasPrefix(im.Filetype, "dd") || im.Name == "lying-filetype" {
			continue
		}
		t.Run(im.Name, func(t *testing.T) {
			raw := rawDisk(t, filepath.Join(dir, im.File), im.Filetype)
			tb, err := diskimage.ReadTable(raw)
			if err != nil {
				t.Fatal(err)
			}
			var flags []string
			for _, p := range tb.Partitions {
				flags = append(flags, p.Flag)
			}
			if diff := cmp.Diff([]string{"bios_grub", "boot", "linux"}, flags); diff != "" {
				t.Errorf("partition flags (-want +got):\n%s", diff)
			}
			if out, err := exec.Command("sgdisk", "-v", raw).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
				t.Errorf("sgdisk -v: %v %s", err, out)
			}
			fss, err := diskimage.Probe(raw)
			if err != nil {
				t.Fatal(err)
			}
			esp, root := fss[1], fss[2]
			if esp.Type != diskimage.FSVFAT || root.Type != diskimage.FSExt4 || root.Label != rootLabel {
				t.Fatalf("filesystems %+v", fss)
			}
			if out, err := exec.Command("e2fsck", "-fn", copyRegion(t, raw, root.Offset, root.Size)).CombinedOutput(); err != nil {
				t.Errorf("e2fsck -fn root: %v\n%s", err, out)
			}
			if out, err := exec.Command("fsck.fat", "-n", copyRegion(t, raw, esp.Offset, esp.Size)).CombinedOutput(); err != nil {
				t.Errorf("fsck.fat -n ESP: %v\n%s", err, out)
			}
			hasCurtin, err := diskimage.Exists(raw, root, "/curtin")
			if err != nil || hasCurtin == (im.Name == "dd-no-curtin") {
				t.Errorf("/curtin present = %v (%v)", hasCurtin, err)
			}
			if im.RootUUID != "" && root.UUID != im.RootUUID {
				t.Errorf("root UUID %s, manifest says %s", root.UUID, im.RootUUID)
			}
			loader := map[string]string{"efi-rocky-only": "/EFI/rocky/grubx64.efi", "efi-vendor-only": "/EFI/almalinux/grubx64.efi"}[im.Name]
			boot, _ := diskimage.Exists(raw, esp, "/EFI/BOOT/BOOTX64.EFI")
			if boot != (loader == "") {
				t.Errorf("ESP: /EFI/BOOT/BOOTX64.EFI present = %v, want %v", boot, loader == "")
			}
			if loader != "" {
				if ok, _ := diskimage.Exists(raw, esp, loader); !ok {
					t.Errorf("ESP: %s missing", loader)
				}
			}
		})
	}
}

// TestDDImageBoots boots the good raw dd image by itself in QEMU with SeaBIOS and with
// OVMF, up to the first-boot probe (`cloud-init init`).
func TestDDImageBoots(t *testing.T) {
	dir, m := testImages(t)
	im, _ := m.Image("good-ddraw")
	for _, fw := range []string{"bios", "uefi"} {
		t.Run(fw, func(t *testing.T) {
			if why := qemuboot.Available(fw); why != "" {
				t.Skip(why)
			}
			d := bootDD(t, filepath.Join(dir, im.File), fw)
			t.Logf("%s: firmware to first-boot probe in %v (TCG)", fw, d)
		})
	}
}

func bootDD(t testing.TB, img, fw string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var marks []string
	res, err := qemuboot.Run(ctx, qemuboot.Config{Firmware: fw, Disk: img, DiskSnapshot: true, MemoryMiB: 768}, func(l string) bool {
		if strings.Contains(l, "maasemu-") {
			marks = append(marks, l)
		}
		return strings.Contains(l, "maasemu-testagent: cloud-init init") || strings.Contains(l, "FAILED")
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"maasemu-initramfs: root LABEL=" + rootLabel + " is", "maasemu-initramfs: switch_root to /sbin/init",
		"maasemu-image: first boot: Debian GNU/Linux 12 (bookworm) maasemu test image", "maasemu-image: first-boot probe: cloud-init init", "maasemu-testagent: cloud-init init"} {
		found := false
		for _, l := range marks {
			found = found || strings.Contains(l, want)
		}
		if !found {
			t.Errorf("console lacks %q; markers:\n%s", want, strings.Join(marks, "\n"))
		}
	}
	return res.Duration
}
