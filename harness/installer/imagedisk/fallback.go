package imagedisk

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/maasemu/maasemu/harness/diskimage"
)

// hostGRUB is where the host's GRUB modules are: the tools a curtin hook finds in MAAS's
// ephemeral, which the simulated machine's ephemeral is running on.
var hostGRUB = "/usr/lib/grub"

// EnsureBootloader stands in for a curtin hook's own bootloader install on a simulated
// machine. Hooks run there without block devices (a sandboxed /dev), so a hook that runs
// grub-install against the target disk cannot; when the hook left no bootloader, GRUB is
// installed the way such a hook's grub-install would, from the host's GRUB modules, and
// the install log says so. It reports whether it installed one. dd images carry their
// own bootloader and are only checked.
func (b *Backend) EnsureBootloader(ctx context.Context, target string, uefi bool, log io.Writer) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dd != nil {
		return false, nil
	}
	if uefi {
		if hasEFILoader(filepath.Join(target, "boot/efi")) {
			return false, nil
		}
	} else {
		all := true
		for _, d := range b.biosDisks() {
			if !hasBootCode(d.Path) {
				all = false
			}
		}
		if all && len(b.biosDisks()) > 0 {
			return false, nil
		}
	}
	fmt.Fprintln(log, "maasemu sim: the image's curtin-hooks left no bootloader; on a simulated machine hooks have no block devices, "+
		"so GRUB is installed here as the hook's grub-install would (the libvirt driver runs the hook's own install)")
	// The hook's own install would have configured GRUB for this disk (update-grub, or
	// its own grub.cfg): what the image shipped names its build machine's root.
	if err := b.generateGrubCfg(target, "/boot/grub", log); err != nil {
		return false, err
	}
	if uefi {
		return true, b.fallbackUEFI(ctx, target, log)
	}
	return true, b.fallbackBIOS(ctx, target, log)
}

// biosDisks are the disks holding a bios_grub partition (where grub-install embeds).
func (b *Backend) biosDisks() []*Disk {
	var out []*Disk
	seen := map[*Disk]bool{}
	for _, p := range b.parts {
		if p.part.Flag == diskimage.FlagBIOSGrub && !seen[p.disk] {
			seen[p.disk] = true
			out = append(out, p.disk)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func hasBootCode(img string) bool {
	f, err := os.Open(img)
	if err != nil {
		return false
	}
	defer f.Close()
	mbr := make([]byte, 440)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		return false
	}
	return !bytes.Equal(mbr, make([]byte, 440))
}

func hasEFILoader(esp string) bool {
	found := false
	_ = filepath.WalkDir(filepath.Join(esp), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.EqualFold(filepath.Ext(p), ".efi") {
			found = true
			return filepath.SkipAll
		}
		return nil
	})
	return found
}

func (b *Backend) fallbackBIOS(ctx context.Context, target string, log io.Writer) error {
	disks := b.biosDisks()
	if len(disks) == 0 {
		return &GrubError{Cmd: []string{"grub-install", "--target=i386-pc"}, ExitCode: 1,
			Output: "grub-install: warning: this GPT partition label contains no BIOS Boot Partition; embedding won't be possible.\ngrub-install: error: embedding is not possible, but this is required for cross-disk install."}
	}
	// grub-install copies its modules under the boot directory.
	if err := copyModules(filepath.Join(hostGRUB, "i386-pc"), filepath.Join(target, "boot/grub/i386-pc")); err != nil {
		return err
	}
	for _, d := range disks {
		t, err := diskimage.ReadTable(d.Path)
		if err != nil {
			return err
		}
		area, err := embedArea(t)
		if err != nil {
			return err
		}
		fmt.Fprintf(log, "maasemu sim: grub-install --target=i386-pc --boot-directory=$TARGET/boot %s\n", d.Name)
		if err := diskimage.EmbedGRUBBIOS(ctx, d.Path, area, "/boot/grub"); err != nil {
			return err
		}
	}
	return nil
}

func (b *Backend) fallbackUEFI(ctx context.Context, target string, log io.Writer) error {
	if !b.hasMount("/boot/efi") {
		return &GrubError{Cmd: []string{"grub-install", "--target=x86_64-efi", "--efi-directory=/boot/efi"}, ExitCode: 1,
			Output: "grub-install: error: failed to get canonical path of `/boot/efi'."}
	}
	dir := filepath.Join(target, "boot/efi/EFI/BOOT")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := copyModules(filepath.Join(hostGRUB, "x86_64-efi"), filepath.Join(target, "boot/grub/x86_64-efi")); err != nil {
		return err
	}
	loader := filepath.Join(dir, "BOOTX64.EFI")
	out, err := exec.CommandContext(ctx, "grub-mkimage", "-O", "x86_64-efi", "-d", filepath.Join(hostGRUB, "x86_64-efi"), "-o", loader, "-p", "/EFI/BOOT",
		"part_gpt", "part_msdos", "fat", "ext2", "normal", "linux", "configfile", "search", "search_fs_uuid", "echo", "test", "gzio", "efi_gop", "all_video", "serial", "terminal").CombinedOutput()
	if err != nil {
		return &GrubError{Cmd: []string{"grub-install", "--target=x86_64-efi", "--removable"}, ExitCode: 1, Output: strings.TrimSpace(string(out))}
	}
	bootUUID, prefix := b.fsUUIDAt("/"), "/boot/grub"
	if b.hasMount("/boot") {
		bootUUID, prefix = b.fsUUIDAt("/boot"), "/grub"
	}
	cfg := fmt.Sprintf("search.fs_uuid %s root\nset prefix=($root)'%s'\nconfigfile $prefix/grub.cfg\n", bootUUID, prefix)
	fmt.Fprintln(log, "maasemu sim: grub-install --target=x86_64-efi --efi-directory=$TARGET/boot/efi --removable")
	return os.WriteFile(filepath.Join(dir, "grub.cfg"), []byte(cfg), 0o644)
}

func copyModules(src, dst string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("GRUB modules: %w (install grub-pc-bin / grub-efi-amd64-bin)", err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() || !(strings.HasSuffix(e.Name(), ".mod") || strings.HasSuffix(e.Name(), ".lst")) {
			continue
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
