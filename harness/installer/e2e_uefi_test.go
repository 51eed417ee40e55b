package installer_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maasemu/maasemu/harness/diskimage"
	"github.com/maasemu/maasemu/harness/installer"
	fixture "github.com/maasemu/maasemu/harness/installer/installertest"
)

// TestImageInstallUEFI installs a tarball with MAAS's UEFI layout (ESP + root), a swap
// file, and checks the ESP (FAT, read in userspace) and the swap entry.
func TestImageInstallUEFI(t *testing.T) {
	needRoot(t)
	e := newEnv(t, 256*mib)
	root := filepath.Join(e.tmp, "root")
	if err := fixture.Root(root, fixture.RootOptions{CloudInit: "v2", GrubEFI: true}); err != nil {
		t.Fatal(err)
	}
	tb, err := fixture.Tar(root)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.files["/root.tgz"] = fixture.Gzip(tb)
	cfg := `partitioning_commands: {builtin: [curtin, block-meta, custom]}
storage:
  version: 1
  config:
  - {id: sda, type: disk, ptable: gpt, serial: QM00001, grub_device: true, wipe: superblock}
  - {id: sda-part1, type: partition, device: sda, number: 1, size: 64M, flag: boot}
  - {id: sda-part2, type: partition, device: sda, number: 2, size: 150M}
  - {id: sda-part1_format, type: format, volume: sda-part1, fstype: fat32, label: efi}
  - {id: sda-part2_format, type: format, volume: sda-part2, fstype: ext4, label: root}
  - {id: sda-part2_mount, type: mount, device: sda-part2_format, path: /}
  - {id: sda-part1_mount, type: mount, device: sda-part1_format, path: /boot/efi}
install: {log_file: /tmp/install.log}
swap: {size: 8M}
`
	uefi := true
	var log strings.Builder
	_, err = installer.Run(context.Background(), installer.Options{
		Configs: []string{cfg}, Args: []string{e.srv.URL + "/root.tgz"}, Backend: e.be, HTTPClient: e.srv.Client(),
		Log: &log, WorkDir: filepath.Join(e.tmp, "w"), HostRoot: e.host, UEFI: &uefi, MemoryBytes: 1 << 30,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	fss, err := diskimage.Probe(e.disk)
	if err != nil {
		t.Fatal(err)
	}
	var esp, rf diskimage.FS
	for _, f := range fss {
		switch f.Partition {
		case 1:
			esp = f
		case 2:
			rf = f
		}
	}
	if esp.Type != diskimage.FSVFAT || esp.Label != "EFI" {
		t.Fatalf("ESP %+v", esp)
	}
	fsck(t, e.disk, rf)
	for _, p := range []string{"/EFI/debian/grubx64.efi", "/EFI/BOOT/BOOTX64.EFI", "/EFI/debian/grub.cfg"} {
		if ok, err := diskimage.Exists(e.disk, esp, p); !ok {
			t.Errorf("ESP lacks %s (%v)", p, err)
		}
	}
	cfgb, _ := diskimage.ReadFile(e.disk, esp, "/EFI/debian/grub.cfg")
	if !strings.Contains(string(cfgb), "search.fs_uuid "+rf.UUID+" root") {
		t.Errorf("ESP grub.cfg does not find the root by UUID %s:\n%s", rf.UUID, cfgb)
	}
	// the ESP's files are not also in the root filesystem
	if ok, _ := diskimage.Exists(e.disk, rf, "/boot/efi/EFI"); ok {
		t.Error("/boot/efi/EFI was written into the root filesystem instead of the ESP")
	}
	fstab := readFile(t, e.disk, rf, "/etc/fstab")
	for _, want := range []string{
		"# /boot/efi was on /dev/vda1 during curtin installation\n/dev/disk/by-uuid/" + esp.UUID + " /boot/efi vfat defaults 0 1\n",
		"/swap.img\tnone\tswap\tsw\t0\t0\n",
	} {
		if !strings.Contains(fstab, want) {
			t.Errorf("fstab lacks %q:\n%s", want, fstab)
		}
	}
	ents, _ := diskimage.ReadDir(e.disk, rf, "/")
	for _, de := range ents {
		if de.Name == "swap.img" && de.Mode.Perm() != 0o600 {
			t.Errorf("swap.img mode %v", de.Mode)
		}
	}
	// The swap file has holes in the image (mke2fs -d keeps zero blocks sparse), which
	// diskimage.ReadFile does not read; dump it with debugfs.
	dump := filepath.Join(t.TempDir(), "swap.img")
	if out, err := exec.Command("debugfs", "-R", "dump /swap.img "+dump, fmt.Sprintf("%s?offset=%d", e.disk, rf.Offset)).CombinedOutput(); err != nil {
		t.Fatalf("debugfs dump: %v %s", err, out)
	}
	sw, err := os.ReadFile(dump)
	if err != nil || len(sw) != 8<<20 || string(sw[4096-10:4096]) != "SWAPSPACE2" {
		t.Errorf("swap.img: %d bytes, %v", len(sw), err)
	}
}

// TestRealCurtinOnPythonPath: with --curtin DIR a hook that imports curtin finds it.
func TestRealCurtinOnPythonPath(t *testing.T) {
	needRoot(t)
	e := newEnv(t, 64*mib)
	fake := filepath.Join(e.tmp, "curtin-src")
	for p, c := range map[string]string{
		"curtin/__init__.py":           "__version__ = '23.1.1'\n",
		"curtin/commands/__init__.py":  "",
		"curtin/commands/curthooks.py": "def builtin_curthooks(cfg, target, state):\n    open(target + '/builtin-from-real-curtin', 'w').write('yes')\n",
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(fake, p)), 0o755)
		os.WriteFile(filepath.Join(fake, p), []byte(c), 0o644)
	}
	hook := "#!/usr/bin/env python3\nimport os\nfrom curtin.commands import curthooks\ncurthooks.builtin_curthooks({}, os.environ['TARGET_MOUNT_POINT'], {})\n"
	img, _ := ddImage(t, e.tmp, 24*mib, fixture.RootOptions{Hooks: map[string]string{"curtin-hooks": hook}})
	raw, _ := os.ReadFile(img)
	e.srv.files["/img"] = fixture.Gzip(raw)
	var log strings.Builder
	_, err := installer.Run(context.Background(), installer.Options{
		Configs: []string{"install: {log_file: /tmp/install.log}\n"}, Args: []string{"dd-gz:" + e.srv.URL + "/img"},
		Backend: e.be, HTTPClient: e.srv.Client(), Log: &log, WorkDir: filepath.Join(e.tmp, "w"), HostRoot: e.host, CurtinDir: fake,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	rf := rootFS(t, e.disk)
	if got := readFile(t, e.disk, rf, "/builtin-from-real-curtin"); got != "yes" {
		t.Errorf("mark %q", got)
	}
}
