package imagedisk

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/maasemu/maasemu/harness/diskimage"
	"github.com/maasemu/maasemu/harness/installer/storage"
)

// GrubError is a failed (simulated) in-target grub command, reported like curtin reports
// a failed command.
type GrubError struct {
	Cmd      []string
	ExitCode int
	Output   string
}

func (e *GrubError) Error() string {
	return fmt.Sprintf("Unexpected error while running command.\nCommand: %s\nExit code: %d\nReason: -\nStdout: %s\nStderr: ''", storage.PyList(e.Cmd), e.ExitCode, strings.ReplaceAll(e.Output, "\n", "\n        "))
}

// EmulateGrub is the simulated path of curtin's install_grub for disk images: grub-install
// cannot run against an image file, so BIOS boot code is embedded with
// diskimage.EmbedGRUBBIOS (the host's i386-pc modules) and UEFI gets the target's GRUB EFI
// image copied into the ESP; grub.cfg is rewritten for the target's kernels and installed
// root the way update-grub (or grub2-mkconfig) would, replacing any the image ships. The checks that make real installs fail
// (grub package missing in the target) are kept.
func (b *Backend) EmulateGrub(ctx context.Context, req storage.GrubRequest, log io.Writer) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	target := req.Target
	dpkg := filepath.Join(target, "var/lib/dpkg/status")
	_, hasDpkg := os.Stat(dpkg)
	if req.Family == "debian" && hasDpkg == nil {
		pkg := "grub-pc"
		if req.UEFI {
			pkg = "grub-efi-amd64"
		}
		if !dpkgInstalled(dpkg, pkg) {
			return &GrubError{Cmd: []string{"dpkg-reconfigure", pkg}, ExitCode: 1, Output: fmt.Sprintf("/usr/sbin/dpkg-reconfigure: %s is not installed", pkg)}
		}
	}
	bootDir := "/boot/grub"
	if req.Family != "debian" {
		bootDir = "/boot/grub2"
	}
	if err := b.generateGrubCfg(target, bootDir, log); err != nil {
		return err
	}
	if req.UEFI {
		return b.emulateUEFI(ctx, req, log)
	}
	modDir := "usr/lib/grub/i386-pc"
	if _, err := os.Stat(filepath.Join(target, modDir)); err != nil {
		cmd := "grub-install"
		if req.Family != "debian" {
			cmd = "grub2-install"
			modDir = "usr/lib/grub/i386-pc"
		}
		return &GrubError{Cmd: []string{cmd}, ExitCode: 1, Output: fmt.Sprintf("%s: error: /%s/modinfo.sh doesn't exist. Please specify --target or --directory.", cmd, modDir)}
	}
	disks := map[*Disk]bool{}
	for _, id := range req.DeviceIDs {
		if d, ok := b.diskFor[id]; ok {
			disks[d] = true
		} else if p, ok := b.parts[id]; ok {
			disks[p.disk] = true
		}
	}
	if len(disks) == 0 && b.dd != nil {
		disks[b.dd.disk] = true
	}
	if len(disks) == 0 {
		for _, m := range b.mounts {
			disks[b.parts[b.formats[m.format].volume].disk] = true
		}
	}
	prefix := bootDir
	if b.hasMount("/boot") {
		prefix = strings.TrimPrefix(bootDir, "/boot")
	}
	var names []string
	for d := range disks {
		names = append(names, d.Name)
	}
	sort.Strings(names)
	for _, name := range names {
		var d *Disk
		for dd := range disks {
			if dd.Name == name {
				d = dd
			}
		}
		t, err := diskimage.ReadTable(d.Path)
		if err != nil {
			return fmt.Errorf("grub-install %s: %w", d.Name, err)
		}
		area, err := embedArea(t)
		if err != nil {
			cmd := []string{"grub-install", d.Name}
			return &GrubError{Cmd: cmd, ExitCode: 1, Output: "grub-install: warning: " + err.Error() + "\ngrub-install: error: embedding is not possible, but this is required for cross-disk install."}
		}
		fmt.Fprintf(log, "simulated grub-install %s: embedding core.img (prefix %s) into %s [%d, %d)\n", d.Name, prefix, d.Path, area.Start, area.End())
		if err := diskimage.EmbedGRUBBIOS(ctx, d.Path, area, prefix); err != nil {
			return err
		}
	}
	return nil
}

func (b *Backend) hasMount(p string) bool {
	for _, m := range b.mounts {
		if m.path == p {
			return true
		}
	}
	return false
}

// embedArea is where grub-install embeds core.img: the bios_grub partition on gpt, the
// gap between the MBR and the first partition on msdos.
func embedArea(t diskimage.Table) (diskimage.Partition, error) {
	if t.Type == diskimage.GPT {
		for _, p := range t.Partitions {
			if p.Flag == diskimage.FlagBIOSGrub || strings.EqualFold(p.TypeGUID, diskimage.TypeBIOSBoot) {
				return p, nil
			}
		}
		return diskimage.Partition{}, fmt.Errorf("this GPT partition label contains no BIOS Boot Partition; embedding won't be possible")
	}
	first := int64(1 << 62)
	for _, p := range t.Partitions {
		first = min(first, p.Start)
	}
	if first == 1<<62 || first < 2*diskimage.SectorSize {
		return diskimage.Partition{}, fmt.Errorf("your embedding area is unusually small.  core.img won't fit in it.")
	}
	return diskimage.Partition{Start: diskimage.SectorSize, Size: first - diskimage.SectorSize}, nil
}

func dpkgInstalled(status, pkg string) bool {
	f, err := os.Open(status)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	in := false
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "Package: ") {
			in = strings.TrimPrefix(l, "Package: ") == pkg
		}
		if in && strings.HasPrefix(l, "Status: ") {
			return strings.HasSuffix(l, " installed")
		}
	}
	return false
}

// rootUUID returns the UUID of the filesystem mounted at p, or of the dd root.
func (b *Backend) fsUUIDAt(p string) string {
	for _, m := range b.mounts {
		if m.path == p {
			return b.formats[m.format].uuid
		}
	}
	if b.dd != nil && p == "/" {
		return b.dd.fs.UUID
	}
	return ""
}

// generateGrubCfg writes <bootDir>/grub.cfg for the target's kernels, replacing any.
func (b *Backend) generateGrubCfg(target, bootDir string, log io.Writer) error {
	cfgPath := filepath.Join(target, bootDir, "grub.cfg")
	root := b.fsUUIDAt("/")
	bootUUID := root
	kprefix := "/boot"
	if b.hasMount("/boot") {
		bootUUID = b.fsUUIDAt("/boot")
		kprefix = ""
	}
	cmdline := grubDefault(target)
	kernels, _ := filepath.Glob(filepath.Join(target, "boot/vmlinuz-*"))
	sort.Sort(sort.Reverse(sort.StringSlice(kernels)))
	name := osName(target)
	var s strings.Builder
	s.WriteString("# Written by maasemu's simulated update-grub (grub-mkconfig cannot probe a disk image)\n")
	s.WriteString("set default=0\nset timeout=1\nserial --unit=0 --speed=115200\nterminal_input console serial\nterminal_output console serial\n")
	for _, k := range kernels {
		kv := strings.TrimPrefix(filepath.Base(k), "vmlinuz-")
		fmt.Fprintf(&s, "menuentry '%s, with Linux %s' {\n", name, kv)
		if bootUUID != "" {
			fmt.Fprintf(&s, "\tsearch --no-floppy --fs-uuid --set=root %s\n", bootUUID)
		}
		fmt.Fprintf(&s, "\tlinux %s/vmlinuz-%s root=UUID=%s ro %s\n", kprefix, kv, root, cmdline)
		for _, ird := range []string{"initrd.img-" + kv, "initramfs-" + kv + ".img"} {
			if _, err := os.Stat(filepath.Join(target, "boot", ird)); err == nil {
				fmt.Fprintf(&s, "\tinitrd %s/%s\n", kprefix, ird)
				break
			}
		}
		s.WriteString("}\n")
	}
	if len(kernels) == 0 {
		fmt.Fprintln(log, "simulated update-grub: no kernels (boot/vmlinuz-*) in the target; grub.cfg has no entries")
	}
	if err := os.MkdirAll(filepath.Dir(cfgPath), 0o755); err != nil {
		return err
	}
	fmt.Fprintf(log, "simulated update-grub: writing %s\n", filepath.Join(bootDir, "grub.cfg"))
	return os.WriteFile(cfgPath, []byte(s.String()), 0o644)
}

// grubDefault returns GRUB_CMDLINE_LINUX and GRUB_CMDLINE_LINUX_DEFAULT of the target.
func grubDefault(target string) string {
	vals := map[string]string{}
	files := []string{filepath.Join(target, "etc/default/grub")}
	more, _ := filepath.Glob(filepath.Join(target, "etc/default/grub.d/*.cfg"))
	files = append(files, more...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(l), "=")
			if ok && (k == "GRUB_CMDLINE_LINUX" || k == "GRUB_CMDLINE_LINUX_DEFAULT") {
				vals[k] = strings.Trim(v, `"'`)
			}
		}
	}
	return strings.TrimSpace(vals["GRUB_CMDLINE_LINUX"] + " " + vals["GRUB_CMDLINE_LINUX_DEFAULT"])
}

func osName(target string) string {
	b, _ := os.ReadFile(filepath.Join(target, "etc/os-release"))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

// emulateUEFI puts the target's GRUB EFI image into the ESP staged at /boot/efi.
func (b *Backend) emulateUEFI(ctx context.Context, req storage.GrubRequest, log io.Writer) error {
	target := req.Target
	if !b.hasMount("/boot/efi") {
		return &GrubError{Cmd: []string{"grub-install", "--target=x86_64-efi", "--efi-directory=/boot/efi"}, ExitCode: 1,
			Output: "grub-install: error: failed to get canonical path of `/boot/efi'."}
	}
	bootid := req.Variant
	if bootid == "rhel" || bootid == "ol" {
		bootid = "redhat"
	}
	esp := filepath.Join(target, "boot/efi/EFI")
	dir := filepath.Join(esp, bootid)
	if ents, _ := os.ReadDir(dir); len(ents) > 0 && req.Family != "debian" {
		fmt.Fprintf(log, "simulated grub install: EFI/%s already has a loader; keeping it\n", bootid)
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	signed := filepath.Join(target, "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed")
	shim := filepath.Join(target, "usr/lib/shim/shimx64.efi.signed")
	grub := filepath.Join(dir, "grubx64.efi")
	switch {
	case fileExists(signed):
		if err := copyFile(signed, grub); err != nil {
			return err
		}
	case fileExists(filepath.Join(target, "usr/lib/grub/x86_64-efi/modinfo.sh")):
		mods := filepath.Join(target, "usr/lib/grub/x86_64-efi")
		out, err := exec.CommandContext(ctx, "grub-mkimage", "-O", "x86_64-efi", "-d", mods, "-o", grub, "-p", "/EFI/"+bootid,
			"part_gpt", "part_msdos", "fat", "ext2", "normal", "linux", "configfile", "search", "search_fs_uuid", "echo", "test", "gzio", "efi_gop", "all_video", "serial", "terminal").CombinedOutput()
		if err != nil {
			return &GrubError{Cmd: []string{"grub-install", "--target=x86_64-efi"}, ExitCode: 1, Output: strings.TrimSpace(string(out))}
		}
	default:
		return &GrubError{Cmd: []string{"grub-install", "--target=x86_64-efi", "--efi-directory=/boot/efi", "--bootloader-id=" + bootid, "--recheck", "--no-nvram"}, ExitCode: 1,
			Output: "grub-install: error: /usr/lib/grub/x86_64-efi/modinfo.sh doesn't exist. Please specify --target or --directory."}
	}
	loader := grub
	if fileExists(shim) {
		if err := copyFile(shim, filepath.Join(dir, "shimx64.efi")); err != nil {
			return err
		}
		loader = filepath.Join(dir, "shimx64.efi")
	}
	bootUUID := b.fsUUIDAt("/")
	prefix := "/boot/grub"
	if b.hasMount("/boot") {
		bootUUID, prefix = b.fsUUIDAt("/boot"), "/grub"
	}
	cfg := fmt.Sprintf("search.fs_uuid %s root\nset prefix=($root)'%s'\nconfigfile $prefix/grub.cfg\n", bootUUID, prefix)
	if err := os.WriteFile(filepath.Join(dir, "grub.cfg"), []byte(cfg), 0o644); err != nil {
		return err
	}
	// No NVRAM entry can be made for a simulated machine: the removable-media path is
	// what its firmware finds.
	if err := os.MkdirAll(filepath.Join(esp, "BOOT"), 0o755); err != nil {
		return err
	}
	fmt.Fprintf(log, "simulated grub-install --target=x86_64-efi: EFI/%s/%s and EFI/BOOT/BOOTX64.EFI\n", bootid, filepath.Base(loader))
	if fileExists(shim) {
		if err := copyFile(grub, filepath.Join(esp, "BOOT/grubx64.efi")); err != nil {
			return err
		}
	}
	return copyFile(loader, filepath.Join(esp, "BOOT/BOOTX64.EFI"))
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
