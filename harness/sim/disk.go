package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"strings"

	"github.com/maasemu/maasemu/harness/diskimage"
	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/harness/sim/bootscript"
)

// disks is GRUB's and the firmware's view of the machine's disks: hdN devices whose
// partitions hold filesystems read in userspace.
type disks struct {
	imgs []string
	fss  [][]diskimage.FS
}

func (m *Machine) openDisks() (*disks, error) {
	d := &disks{imgs: m.disks}
	for _, img := range m.disks {
		fss, err := diskimage.Probe(img)
		if err != nil {
			// A blank disk has no table: nothing on it.
			fss = nil
		}
		d.fss = append(d.fss, fss)
	}
	return d, nil
}

var devRe = regexp.MustCompile(`^hd(\d+)(?:,(?:gpt|msdos)?(\d+))?$`)

// fs returns the disk image and filesystem a GRUB device names.
func (d *disks) fs(dev string) (string, diskimage.FS, bool) {
	m := devRe.FindStringSubmatch(strings.Trim(dev, "()"))
	if m == nil {
		return "", diskimage.FS{}, false
	}
	var disk, part int
	fmt.Sscan(m[1], &disk)
	if m[2] != "" {
		fmt.Sscan(m[2], &part)
	}
	if disk >= len(d.imgs) {
		return "", diskimage.FS{}, false
	}
	for _, f := range d.fss[disk] {
		if f.Partition == part && f.Type != "" {
			return d.imgs[disk], f, true
		}
	}
	return "", diskimage.FS{}, false
}

// devName is the GRUB device of a filesystem.
func (d *disks) devName(disk int, f diskimage.FS, table string) string {
	if f.Partition == 0 {
		return fmt.Sprintf("hd%d", disk)
	}
	return fmt.Sprintf("hd%d,%s%d", disk, table, f.Partition)
}

func (d *disks) tableType(disk int) string {
	t, err := diskimage.ReadTable(d.imgs[disk])
	if err != nil || t.Type == "" {
		return "gpt"
	}
	return t.Type
}

// ReadFile implements bootscript.GrubEnv.
func (d *disks) ReadFile(dev, p string) ([]byte, error) {
	img, f, ok := d.fs(dev)
	if !ok {
		return nil, fmt.Errorf("no such device (%s)", dev)
	}
	return diskimage.ReadFile(img, f, p)
}

// FileExists implements bootscript.GrubEnv.
func (d *disks) FileExists(dev, p string) bool {
	img, f, ok := d.fs(dev)
	if !ok {
		return false
	}
	ok, _ = diskimage.Exists(img, f, p)
	return ok
}

// Search implements bootscript.GrubEnv: GRUB's search over every filesystem.
func (d *disks) Search(by, value string) (string, bool) {
	for i, fss := range d.fss {
		table := d.tableType(i)
		for _, f := range fss {
			if f.Type == "" || f.Type == diskimage.FSSwap {
				continue
			}
			var hit bool
			switch by {
			case "file":
				hit, _ = diskimage.Exists(d.imgs[i], f, value)
			case "fs-uuid":
				hit = strings.EqualFold(f.UUID, value)
			case "label":
				hit = f.Label == value
			}
			if hit {
				return d.devName(i, f, table), true
			}
		}
	}
	return "", false
}

// find returns the device of the first filesystem satisfying ok.
func (d *disks) find(ok func(img string, f diskimage.FS) bool) (string, string, diskimage.FS, bool) {
	for i, fss := range d.fss {
		for _, f := range fss {
			if f.Type != "" && ok(d.imgs[i], f) {
				return d.devName(i, f, d.tableType(i)), d.imgs[i], f, true
			}
		}
	}
	return "", "", diskimage.FS{}, false
}

// diskBoot boots from the first disk as the firmware would after the network boot said
// so: chain.c32 / the MBR on BIOS, the loader MAAS's GRUB chainloaded or the removable
// media path on UEFI.
func (m *Machine) diskBoot(ctx context.Context, fw *firmware, act bootscript.Action) nextStep {
	con := fw.con
	d, _ := m.openDisks()
	var lin bootscript.Action
	var err error
	switch {
	case act.Kind == "chain" && act.Path != "":
		con.say("sim: GRUB chainloads %s%s", act.Device, act.Path)
		lin, err = m.efiLoad(con, d, strings.Trim(act.Device, "()"), act.Path)
	case m.spec.Firmware == machine.UEFI:
		con.say("BdsDxe: trying the next boot option: the first disk's removable media path")
		lin, err = m.efiDefault(con, d)
	default:
		con.say("Booting from Hard Disk...")
		lin, err = m.biosBoot(con, d)
	}
	if err != nil {
		con.say("%v", err)
		return bootRetry
	}
	return m.firstBoot(ctx, fw, d, lin)
}

// biosBoot follows the MBR's GRUB to its config on disk.
func (m *Machine) biosBoot(con *console, d *disks) (bootscript.Action, error) {
	f, err := os.Open(d.imgs[0])
	if err != nil {
		return bootscript.Action{}, err
	}
	mbr := make([]byte, 512)
	_, err = f.ReadAt(mbr, 0)
	f.Close()
	if err != nil {
		return bootscript.Action{}, err
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa || bytes.Count(mbr[:440], []byte{0}) == 440 {
		return bootscript.Action{}, firmwareSays("Boot failed: not a bootable disk (no boot code in the MBR)")
	}
	if !bytes.Contains(mbr[:440], []byte("GRUB")) {
		return bootscript.Action{}, errors.New("sim: the MBR holds boot code other than GRUB's; this simulated machine follows only GRUB (the libvirt driver boots anything)")
	}
	prefix := "/boot/grub"
	dev, img, fsys, ok := d.find(func(img string, f diskimage.FS) bool {
		for _, prefix = range []string{"/boot/grub", "/grub"} { // "/grub": a separate /boot
			if ok, _ := diskimage.Exists(img, f, prefix+"/grub.cfg"); ok {
				return true
			}
		}
		return false
	})
	if !ok {
		return bootscript.Action{}, errors.New("GRUB loading.\nWelcome to GRUB!\nerror: file '/boot/grub/grub.cfg' not found.\ngrub rescue>")
	}
	// Whether GRUB needs modules from the disk depends on what its core image embeds,
	// which the sim cannot read (it is compressed): the modules are not checked.
	cfg, err := diskimage.ReadFile(img, fsys, prefix+"/grub.cfg")
	if err != nil {
		return bootscript.Action{}, err
	}
	con.say("GRUB (from disk: (%s)%s/grub.cfg)", dev, prefix)
	vars := map[string]string{"root": dev, "prefix": "(" + dev + ")" + prefix, "grub_platform": "pc", "grub_cpu": "i386"}
	act, err := bootscript.Grub(string(cfg), vars, d)
	for _, l := range act.Output {
		con.say("%s", l)
	}
	if err != nil {
		return act, fmt.Errorf("GRUB: %w", err)
	}
	if act.Kind != "linux" {
		return act, fmt.Errorf("GRUB on disk ended with %q instead of booting a kernel", act.Kind)
	}
	return act, nil
}

// efiDefault is the firmware booting \EFI\BOOT\BOOTX64.EFI from an ESP.
func (m *Machine) efiDefault(con *console, d *disks) (bootscript.Action, error) {
	dev, _, _, ok := d.find(func(img string, f diskimage.FS) bool {
		if f.Type != diskimage.FSVFAT {
			return false
		}
		ok, _ := diskimage.Exists(img, f, "/EFI/BOOT/BOOTX64.EFI")
		return ok
	})
	if !ok {
		return bootscript.Action{}, firmwareSays("BdsDxe: No bootable option or device was found. (no \\EFI\\BOOT\\BOOTX64.EFI on any EFI system partition)")
	}
	return m.efiLoad(con, d, dev, "/EFI/BOOT/BOOTX64.EFI")
}

var fsUUIDRe = regexp.MustCompile(`search(?:\.fs_uuid| --fs-uuid[^\n]*?) ([0-9a-fA-F-]{8,36})`)

// efiLoad runs an EFI binary from a disk: shim hands over to grubx64.efi beside it; GRUB
// finds its config as its embedded prefix or config says.
func (m *Machine) efiLoad(con *console, d *disks, dev, p string) (bootscript.Action, error) {
	b, err := d.ReadFile(dev, p)
	if err != nil {
		return bootscript.Action{}, firmwareSays(fmt.Sprintf("Failed to load image %s: Not Found", p))
	}
	if len(b) < 2 || b[0] != 'M' || b[1] != 'Z' {
		return bootscript.Action{}, fmt.Errorf("%s is not an EFI executable (no MZ header)", p)
	}
	if bytes.Contains(b, []byte("UEFI SHIM")) || bytes.Contains(b, []byte("shim_lock")) && !bytes.Contains(b, []byte("GNU GRUB")) {
		grub := path.Join(path.Dir(p), "grubx64.efi")
		con.say("sim: shim loads %s", grub)
		gb, err := d.ReadFile(dev, grub)
		if err != nil {
			return bootscript.Action{}, firmwareSays(fmt.Sprintf("Failed to open %s - Not Found\nstart_image() returned Not Found", strings.ReplaceAll(grub, "/", `\`)))
		}
		b, p = gb, grub
	}
	if !bytes.Contains(b, []byte("GNU GRUB")) {
		return bootscript.Action{}, fmt.Errorf("sim: %s is not GRUB; this simulated machine follows only shim and GRUB (the libvirt driver boots anything)", p)
	}
	// Where is GRUB's config? An embedded search by UUID, grub.cfg beside the binary, or
	// /boot/grub/grub.cfg.
	var cfgDev, cfgPath string
	if mm := fsUUIDRe.FindSubmatch(b); mm != nil {
		if dv, ok := d.Search("fs-uuid", string(mm[1])); ok {
			cfgDev, cfgPath = dv, "/boot/grub/grub.cfg"
		}
	}
	if cfgDev == "" && d.FileExists(dev, path.Join(path.Dir(p), "grub.cfg")) {
		cfgDev, cfgPath = dev, path.Join(path.Dir(p), "grub.cfg")
	}
	if cfgDev == "" {
		if dv, ok := d.Search("file", "/boot/grub/grub.cfg"); ok {
			cfgDev, cfgPath = dv, "/boot/grub/grub.cfg"
		}
	}
	if cfgDev == "" {
		return bootscript.Action{}, errors.New("GRUB: no grub.cfg found beside the loader or in /boot/grub\ngrub>")
	}
	cfg, err := d.ReadFile(cfgDev, cfgPath)
	if err != nil {
		return bootscript.Action{}, err
	}
	con.say("GRUB (from disk: (%s)%s)", cfgDev, cfgPath)
	vars := map[string]string{"root": cfgDev, "prefix": "(" + cfgDev + ")" + path.Dir(cfgPath), "grub_platform": "efi", "grub_cpu": "x86_64"}
	act, err := bootscript.Grub(string(cfg), vars, d)
	for _, l := range act.Output {
		con.say("%s", l)
	}
	if err != nil {
		return act, fmt.Errorf("GRUB: %w", err)
	}
	if act.Kind != "linux" {
		return act, fmt.Errorf("GRUB on disk ended with %q instead of booting a kernel", act.Kind)
	}
	return act, nil
}

// rootFS finds the filesystem the kernel command line's root= names.
func (d *disks) rootFS(cmdline string) (string, diskimage.FS, error) {
	root := cmdParam(cmdline, "root")
	if root == "" {
		return "", diskimage.FS{}, errors.New("the kernel command line has no root=")
	}
	match := func(f diskimage.FS, i int) bool {
		switch {
		case strings.HasPrefix(root, "UUID="):
			return strings.EqualFold(f.UUID, strings.TrimPrefix(root, "UUID="))
		case strings.HasPrefix(root, "/dev/disk/by-uuid/"):
			return strings.EqualFold(f.UUID, path.Base(root))
		case strings.HasPrefix(root, "LABEL="):
			return f.Label == strings.TrimPrefix(root, "LABEL=")
		case strings.HasPrefix(root, "/dev/disk/by-label/"):
			return f.Label == path.Base(root)
		case strings.HasPrefix(root, "PARTUUID="):
			return strings.EqualFold(f.PartUUID, strings.TrimPrefix(root, "PARTUUID="))
		case strings.HasPrefix(root, "/dev/"):
			return root == linuxDev(i, f.Partition)
		}
		return false
	}
	for i, fss := range d.fss {
		for _, f := range fss {
			if f.Type != "" && match(f, i) {
				return d.imgs[i], f, nil
			}
		}
	}
	return "", diskimage.FS{}, fmt.Errorf("root=%s matches no filesystem on the disks", root)
}

// device reports whether an fstab spec names a device present on the machine.
func (d *disks) device(spec string) bool {
	for i, fss := range d.fss {
		for _, f := range fss {
			switch {
			case strings.HasPrefix(spec, "UUID=") && strings.EqualFold(f.UUID, spec[5:]),
				strings.HasPrefix(spec, "/dev/disk/by-uuid/") && strings.EqualFold(f.UUID, path.Base(spec)),
				strings.HasPrefix(spec, "LABEL=") && f.Label == spec[6:] && f.Label != "",
				strings.HasPrefix(spec, "/dev/disk/by-label/") && f.Label == path.Base(spec) && f.Label != "",
				strings.HasPrefix(spec, "PARTUUID=") && strings.EqualFold(f.PartUUID, spec[9:]),
				strings.HasPrefix(spec, "/dev/disk/by-partuuid/") && strings.EqualFold(f.PartUUID, path.Base(spec)),
				spec == linuxDev(i, f.Partition):
				return true
			}
		}
	}
	return false
}

func linuxDev(disk, part int) string {
	dev := fmt.Sprintf("/dev/vd%c", 'a'+disk)
	if part == 0 {
		return dev
	}
	return fmt.Sprintf("%s%d", dev, part)
}

func cmdParam(cmdline, key string) string {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// firmwareSays is a boot failure in the words the firmware or bootloader prints it.
type firmwareSays string

func (f firmwareSays) Error() string { return string(f) }
