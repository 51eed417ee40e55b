// Package storage parses curtin storage configuration (version 1) and computes what curtin's
// block-meta derives from it: partition geometry, filesystem options and fstab lines.
package storage

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Item is one entry of storage.config. Only the fields curtin's v1 handlers read are typed;
// Raw keeps the whole entry.
type Item struct {
	ID   string
	Type string
	Raw  map[string]any

	// disk
	Ptable     string
	Wipe       string
	Serial     string
	WWN        string
	Path       string
	GrubDevice bool
	Name       string
	Preserve   bool

	// partition
	Device string
	Size   string // as written ("8G", "536870912B"); empty for lvm_partition "rest"
	Number int    // 0 when not given
	Flag   string
	Offset string

	// format
	Volume       string
	Fstype       string
	Label        string
	UUID         string
	ExtraOptions []string

	// mount
	MountPath string // "path"
	Options   string
	Spec      string
	Freq      string
	Passno    string

	// lvm_volgroup
	Devices []string
	// lvm_partition
	Volgroup string
}

// Config is a parsed `storage:` section.
type Config struct {
	Version int
	Items   []Item
	byID    map[string]int
}

// Get returns the item with id, or false.
func (c *Config) Get(id string) (*Item, bool) {
	i, ok := c.byID[id]
	if !ok {
		return nil, false
	}
	return &c.Items[i], true
}

// Parse reads the `storage` value of a merged curtin config. Like curtin's
// extract_storage_ordered_dict it keeps list order and requires id and type on each entry;
// it also rejects what curtin's handlers would reject later, naming the entry.
func Parse(storage any) (*Config, error) {
	m, ok := storage.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("storage: must be a mapping with version and config, got %T", storage)
	}
	c := &Config{Version: 1, byID: map[string]int{}}
	if v, ok := m["version"]; ok {
		n, err := toInt(v)
		if err != nil || (n != 1 && n != 2) {
			return nil, fmt.Errorf("storage: version %v: only versions 1 and 2 exist", v)
		}
		c.Version = n
	}
	list, ok := m["config"].([]any)
	if !ok {
		return nil, fmt.Errorf("storage: 'config' must be a list of entries, got %T", m["config"])
	}
	for i, e := range list {
		em, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("storage: config[%d] is %T, not a mapping", i, e)
		}
		it, err := parseItem(em)
		if err != nil {
			return nil, fmt.Errorf("storage: config[%d]: %w", i, err)
		}
		if _, dup := c.byID[it.ID]; dup {
			return nil, fmt.Errorf("storage: config[%d]: duplicate id %q", i, it.ID)
		}
		c.byID[it.ID] = len(c.Items)
		c.Items = append(c.Items, it)
	}
	return c, nil
}

func parseItem(m map[string]any) (Item, error) {
	it := Item{Raw: m}
	it.ID = str(m["id"])
	it.Type = str(m["type"])
	if it.ID == "" || it.Type == "" {
		return it, fmt.Errorf("entry %v lacks 'id' or 'type' (both are required)", m)
	}
	it.Ptable = str(m["ptable"])
	it.Wipe = str(m["wipe"])
	it.Serial = str(m["serial"])
	it.WWN = str(m["wwn"])
	it.Path = str(m["path"])
	it.GrubDevice = Boolean(m["grub_device"])
	it.Name = str(m["name"])
	it.Preserve = Boolean(m["preserve"])
	it.Device = str(m["device"])
	it.Size = str(m["size"])
	if n, ok := m["number"]; ok && n != nil {
		v, err := toInt(n)
		if err != nil || v < 1 {
			return it, fmt.Errorf("%s %q: number %v is not a positive integer", it.Type, it.ID, n)
		}
		it.Number = v
	}
	it.Flag = str(m["flag"])
	it.Offset = str(m["offset"])
	it.Volume = str(m["volume"])
	it.Fstype = str(m["fstype"])
	it.Label = str(m["label"])
	it.UUID = str(m["uuid"])
	if xs, ok := m["extra_options"].([]any); ok {
		for _, x := range xs {
			it.ExtraOptions = append(it.ExtraOptions, str(x))
		}
	}
	if it.Type == "mount" {
		it.MountPath = str(m["path"])
		it.Path = ""
	}
	it.Options = str(m["options"])
	it.Spec = str(m["spec"])
	it.Freq = str(m["freq"])
	it.Passno = str(m["passno"])
	if xs, ok := m["devices"].([]any); ok {
		for _, x := range xs {
			it.Devices = append(it.Devices, str(x))
		}
	}
	it.Volgroup = str(m["volgroup"])
	switch it.Type {
	case "disk":
		if it.Ptable != "" && !validPtable(it.Ptable) {
			return it, fmt.Errorf("Invalid partition table type: %s in %v", it.Ptable, m)
		}
	case "partition":
		if it.Device == "" {
			return it, fmt.Errorf("partition %q: device must be set for partition to be created", it.ID)
		}
		if it.Size == "" {
			return it, fmt.Errorf("partition %q: size must be specified for partition to be created", it.ID)
		}
		if _, err := HumanToBytes(it.Size); err != nil {
			return it, fmt.Errorf("partition %q: size: %w", it.ID, err)
		}
		if it.Flag != "" {
			if _, ok := validFlags[it.Flag]; !ok {
				return it, fmt.Errorf("partition %q: flag %q is not one of %s", it.ID, it.Flag, strings.Join(sortedKeys(validFlags), ", "))
			}
		}
	case "format":
		if it.Volume == "" {
			return it, fmt.Errorf("volume must be specified for partition '%s'", it.ID)
		}
		if it.Fstype == "" {
			return it, fmt.Errorf("format %q: fstype is required", it.ID)
		}
	case "mount":
		if it.MountPath == "" && it.Device == "" && it.Spec == "" {
			return it, fmt.Errorf("mount %q: needs one of path, device or spec", it.ID)
		}
	case "lvm_volgroup":
		if len(it.Devices) == 0 {
			return it, fmt.Errorf("devices for volgroup '%s' must be specified", it.ID)
		}
		if it.Name == "" {
			return it, fmt.Errorf("name for volgroups needs to be specified")
		}
	case "lvm_partition":
		if it.Volgroup == "" {
			return it, fmt.Errorf("lvm_partition %q: volgroup must be specified", it.ID)
		}
		if it.Name == "" {
			return it, fmt.Errorf("lvm_partition %q: name must be specified", it.ID)
		}
	}
	return it, nil
}

func validPtable(p string) bool {
	switch p {
	case "msdos", "dos", "gpt", "vtoc", "unsupported":
		return true
	}
	return false
}

var validFlags = map[string]struct{}{
	"bios_grub": {}, "boot": {}, "extended": {}, "home": {}, "linux": {}, "logical": {},
	"lvm": {}, "mbr": {}, "msftres": {}, "prep": {}, "raid": {}, "swap": {}, "primary": {},
}

// SgdiskFlags maps curtin partition flags to sgdisk type codes (block_meta.SGDISK_FLAGS).
var SgdiskFlags = map[string]string{
	"bios_grub": "ef02",
	"boot":      "ef00",
	"home":      "8302",
	"linux":     "8300",
	"lvm":       "8e00",
	"msftres":   "0c01",
	"prep":      "4100",
	"raid":      "fd00",
	"swap":      "8200",
}

// Boolean is curtin's config.value_as_boolean.
func Boolean(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case int:
		return x != 0
	case float64:
		return x != 0
	case string:
		switch x {
		case "0", "False", "false", "None", "none", "":
			return false
		}
		return true
	}
	return true
}

// HumanToBytes is curtin's util.human2bytes: an optional trailing "B", then a power-of-two
// unit among K, M, G, T; fractional values must come out whole.
func HumanToBytes(s string) (int64, error) {
	in := s
	s = strings.TrimSuffix(s, "B")
	mult := float64(1)
	for _, u := range []struct {
		s string
		m float64
	}{{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}} {
		if strings.HasSuffix(s, u.s) {
			mult = u.m
			s = strings.TrimSuffix(s, u.s)
			break
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
		return 0, fmt.Errorf("'%s' is not valid input.", in)
	}
	if n < 0 {
		return 0, fmt.Errorf("'%s': cannot be negative", in)
	}
	v := n * mult
	if v != math.Trunc(v) {
		return 0, fmt.Errorf("'%s': resulted in non-integer (%v)", in, v)
	}
	return int64(v), nil
}

// PartitionNumber is block_meta.determine_partition_number: the explicit number, else for a
// logical partition 5 plus the logical partitions before it on the disk, else 1 plus every
// partition before it on the disk.
func (c *Config) PartitionNumber(id string) (int, error) {
	it, ok := c.Get(id)
	if !ok {
		return 0, fmt.Errorf("partition %q not found in storage config", id)
	}
	if it.Number > 0 {
		return it.Number, nil
	}
	n := 1
	if it.Flag == "logical" {
		n = 5
	}
	for _, o := range c.Items {
		if o.ID == id {
			break
		}
		if o.Type != "partition" || o.Device != it.Device {
			continue
		}
		if it.Flag != "logical" || o.Flag == "logical" {
			n++
		}
	}
	return n, nil
}

// Extent is one partition placed on its disk.
type Extent struct {
	ID     string
	Disk   string // disk item id
	Number int
	Start  int64 // bytes
	Size   int64 // bytes
	Flag   string
}

// Layout places every partition the way curtin's v1 partition_handler does: the first at
// 1 MiB, each next one right after the previous (in config order), logical partitions one
// alignment unit after the extended start or the previous logical end. v1 ignores `offset`
// (MAAS still sends one for the first partition); v2 honours it.
func (c *Config) Layout(sectorSize int64) ([]Extent, error) {
	if sectorSize <= 0 {
		sectorSize = 512
	}
	align := int64(1<<20) / sectorSize
	type startSize struct{ start, size int64 } // sectors, size as curtin's sysfs view
	placed := map[string]map[int]startSize{}
	var out []Extent
	for _, it := range c.Items {
		if it.Type != "partition" {
			continue
		}
		disk, ok := c.Get(it.Device)
		if !ok {
			return nil, fmt.Errorf("partition %q: device %q not found in storage config", it.ID, it.Device)
		}
		ptable := disk.Ptable
		num, err := c.PartitionNumber(it.ID)
		if err != nil {
			return nil, err
		}
		if placed[disk.ID] == nil {
			placed[disk.ID] = map[int]startSize{}
		}
		var prev startSize
		if num > 1 {
			pnum := 0
			if num == 5 && (ptable == "msdos" || ptable == "dos") {
				ext := ""
				for _, o := range c.Items {
					if o.Type == "partition" && o.Device == it.Device && o.Flag == "extended" {
						ext = o.ID
						break
					}
				}
				if ext == "" {
					return nil, fmt.Errorf("Logical partition id=%s requires an extended partition and no extended partition '(type: partition, flag: extended)' was found in the storage config.", it.ID)
				}
				pnum, _ = c.PartitionNumber(ext)
			} else {
				for _, o := range c.Items {
					if o.ID == it.ID {
						break
					}
					if o.Type == "partition" && o.Device == it.Device && o.Flag != "extended" {
						pnum, _ = c.PartitionNumber(o.ID)
					}
				}
			}
			p, ok := placed[disk.ID][pnum]
			if !ok {
				return nil, fmt.Errorf("Cannot find previous partition on disk %s", disk.ID)
			}
			prev = p
		}
		var offset int64
		switch {
		case c.Version >= 2 && it.Offset != "":
			b, err := HumanToBytes(it.Offset)
			if err != nil {
				return nil, fmt.Errorf("partition %q: offset: %w", it.ID, err)
			}
			offset = b / sectorSize
		case num == 1:
			offset = align
		case ptable == "gpt" || it.Flag != "logical":
			offset = prev.start + prev.size
		case num == 5:
			offset = prev.start + align
		default:
			offset = prev.start + prev.size + align
		}
		length, _ := HumanToBytes(it.Size)
		lengthSectors := length/sectorSize - 1
		if it.Flag == "extended" {
			logical := 0
			for _, o := range c.Items {
				if o.Device == it.Device && o.Flag == "logical" {
					logical++
				}
			}
			lengthSectors += int64(logical) * align
		}
		if lengthSectors < 0 {
			return nil, fmt.Errorf("partition %q: size %s is smaller than one sector", it.ID, it.Size)
		}
		size := lengthSectors + 1
		placed[disk.ID][num] = startSize{offset, size}
		out = append(out, Extent{ID: it.ID, Disk: disk.ID, Number: num, Start: offset * sectorSize, Size: size * sectorSize, Flag: it.Flag})
	}
	return out, nil
}

// CheckFits returns an error like sgdisk's when an extent does not fit on its disk of
// diskSize bytes (GPT keeps 33 sectors at the end for the backup table).
func CheckFits(e Extent, ptable string, diskSize, sectorSize int64) error {
	if sectorSize <= 0 {
		sectorSize = 512
	}
	last := diskSize/sectorSize - 1
	if ptable == "gpt" {
		last -= 33
	}
	end := (e.Start+e.Size)/sectorSize - 1
	if end > last {
		return fmt.Errorf("Could not create partition %d from %d to %d (disk %s has %d sectors; last usable sector is %d)",
			e.Number, e.Start/sectorSize, end, e.Disk, diskSize/sectorSize, last)
	}
	return nil
}

// FstabData is block_meta.FstabData.
type FstabData struct {
	Spec    string // explicit spec from the mount entry, else ""
	Path    string
	Fstype  string
	Options string
	Freq    string
	Passno  string
	Device  string // the volume's device path (e.g. /dev/vda2)
}

// MountData is block_meta.mount_data: it resolves a mount entry against the config.
func (c *Config) MountData(it Item) (FstabData, error) {
	if it.Type != "mount" {
		return FstabData{}, fmt.Errorf("entry is not type 'mount' (%v)", it.Raw)
	}
	fd := FstabData{Spec: it.Spec, Path: it.MountPath, Fstype: it.Fstype, Freq: "0", Passno: "-1"}
	if it.Freq != "" {
		fd.Freq = it.Freq
	}
	if it.Passno != "" {
		fd.Passno = it.Passno
	}
	opts := "defaults"
	if it.Options != "" {
		opts = it.Options
	}
	fd.Options = opts
	if it.Device == "" {
		var missing []string
		if it.Spec == "" {
			missing = append(missing, "'spec'")
		}
		if it.Fstype == "" {
			missing = append(missing, "'fstype'")
		}
		if len(missing) > 0 {
			return fd, fmt.Errorf("mount entry without 'device' missing: [%s]. (%v)", strings.Join(missing, ", "), it.Raw)
		}
	} else {
		f, ok := c.Get(it.Device)
		if !ok {
			return fd, fmt.Errorf("mount entry refers to non-existent device %s: (%v)", it.Device, it.Raw)
		}
		if fd.Fstype == "" {
			fd.Fstype = f.Fstype
		}
		if fd.Spec == "" {
			if _, ok := c.Get(f.Volume); !ok {
				return fd, fmt.Errorf("format type refers to non-existent id %s: (%v)", f.Volume, f.Raw)
			}
		}
	}
	switch fd.Fstype {
	case "fat", "fat12", "fat16", "fat32", "fat64":
		fd.Fstype = "vfat"
	}
	return fd, nil
}

// nodevFilesystems are the /proc/filesystems "nodev" entries curtin meets in mount specs.
var nodevFilesystems = map[string]bool{
	"tmpfs": true, "ramfs": true, "proc": true, "sysfs": true, "devtmpfs": true, "devpts": true,
	"cgroup": true, "cgroup2": true, "securityfs": true, "debugfs": true, "tracefs": true,
	"hugetlbfs": true, "mqueue": true, "pstore": true, "bpf": true, "configfs": true,
	"fusectl": true, "overlay": true, "autofs": true, "efivarfs": true, "nfs": true, "nfs4": true,
	"cifs": true, "9p": true, "binfmt_misc": true, "rpc_pipefs": true, "nfsd": true,
}

// Passno is block_meta.proc_filesystems_passno: 0 for swap, none and nodev filesystems.
func Passno(fstype string) string {
	if fstype == "swap" || fstype == "none" || nodevFilesystems[fstype] {
		return "0"
	}
	return "1"
}

// FstabLine is block_meta.fstab_line_for_data with the resolved spec (e.g.
// /dev/disk/by-uuid/<uuid>): a "# <path> was on <device> during curtin installation"
// comment and the entry, newline-terminated.
func FstabLine(fd FstabData, spec string) (string, error) {
	path := fd.Path
	if path == "" {
		if fd.Fstype != "swap" {
			return "", fmt.Errorf("empty path in %+v.", fd)
		}
		path = "none"
	}
	if fd.Spec != "" {
		spec = fd.Spec
	}
	if spec == "" {
		return "", fmt.Errorf("FstabData missing both spec and device.")
	}
	options := fd.Options
	if options == "" || options == "defaults" {
		options = "defaults"
		if fd.Fstype == "swap" {
			options = "sw"
		}
	}
	passno := fd.Passno
	if n, err := strconv.Atoi(passno); err != nil || n < 0 {
		passno = Passno(fd.Fstype)
	}
	entry := strings.Join([]string{spec, path, fd.Fstype, options, fd.Freq, passno}, " ") + "\n"
	if path == "none" {
		return entry, nil
	}
	device := fd.Spec
	if device == "" {
		device = fd.Device
	}
	if device == "" {
		device = spec
	}
	return fmt.Sprintf("# %s was on %s during curtin installation\n%s", path, device, entry), nil
}

// FSFamily maps fstypes to curtin's mkfs families.
func FSFamily(fstype string) string {
	switch fstype {
	case "ext2", "ext3", "ext4":
		return "ext"
	case "fat", "fat12", "fat16", "fat32", "vfat":
		return "fat"
	}
	return fstype
}

// LabelLimit is mkfs.label_length_limits; labels longer than this are truncated.
func LabelLimit(fstype string) int {
	switch FSFamily(fstype) {
	case "ext", "jfs", "reiserfs":
		return 16
	case "fat":
		return 11
	case "swap":
		return 15
	case "xfs":
		return 12
	case "ntfs":
		return 32
	case "btrfs":
		return 256
	case "f2fs":
		return 512
	}
	return 0
}

var mkfsCommands = map[string]string{
	"btrfs": "mkfs.btrfs", "ext2": "mkfs.ext2", "ext3": "mkfs.ext3", "ext4": "mkfs.ext4",
	"f2fs": "mkfs.f2fs", "fat": "mkfs.vfat", "fat12": "mkfs.vfat", "fat16": "mkfs.vfat",
	"fat32": "mkfs.vfat", "vfat": "mkfs.vfat", "jfs": "jfs_mkfs", "ntfs": "mkntfs",
	"reiserfs": "mkfs.reiserfs", "swap": "mkswap", "xfs": "mkfs.xfs",
}

// MkfsArgs is curtin's block.mkfs.mkfs command line for a format entry on devPath, with uuid
// already chosen (curtin generates one when the entry has none). force adds the family's
// force flag as mkfs_from_config does.
func MkfsArgs(it Item, devPath, uuid string) ([]string, error) {
	cmd, ok := mkfsCommands[it.Fstype]
	if !ok {
		return nil, fmt.Errorf("unsupported fs type '%s'", it.Fstype)
	}
	fam := FSFamily(it.Fstype)
	args := []string{cmd}
	force := map[string]string{"btrfs": "--force", "ext": "-F", "f2fs": "-f", "fat": "-I", "jfs": "-q", "ntfs": "--force", "reiserfs": "-f", "swap": "--force", "xfs": "-f"}
	if f := force[fam]; f != "" {
		args = append(args, f)
	}
	if it.Label != "" {
		label := it.Label
		if lim := LabelLimit(it.Fstype); lim > 0 && len(label) > lim {
			label = label[:lim]
		}
		lf := map[string]string{"btrfs": "--label", "ext": "-L", "f2fs": "-l", "fat": "-n", "jfs": "-L", "ntfs": "--label", "reiserfs": "--label", "swap": "--label", "xfs": "-L"}
		if f := lf[fam]; f != "" {
			args = append(args, f, label)
		}
	}
	switch fam {
	case "btrfs", "reiserfs", "swap":
		args = append(args, "--uuid", uuid)
	case "ext", "f2fs":
		args = append(args, "-U", uuid)
	case "xfs":
		args = append(args, "-m", "uuid="+uuid)
	}
	if fam == "fat" {
		if sz := strings.TrimLeft(it.Fstype, "abcdefghijklmnopqrstuvwxyz"); sz == "12" || sz == "16" || sz == "32" {
			args = append(args, "-F", sz)
		}
	}
	args = append(args, it.ExtraOptions...)
	return append(args, devPath), nil
}

// GrubDevices returns the ids of disks and partitions marked grub_device, in config order.
func (c *Config) GrubDevices() []string {
	var out []string
	for _, it := range c.Items {
		if it.GrubDevice {
			out = append(out, it.ID)
		}
	}
	return out
}

// Disks returns the disk items in config order.
func (c *Config) Disks() []Item {
	var out []Item
	for _, it := range c.Items {
		if it.Type == "disk" {
			out = append(out, it)
		}
	}
	return out
}

func str(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		if x {
			return "True"
		}
		return "False"
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

func toInt(v any) (int, error) {
	switch x := v.(type) {
	case int:
		return x, nil
	case int64:
		return int(x), nil
	case float64:
		if x == math.Trunc(x) {
			return int(x), nil
		}
	case string:
		return strconv.Atoi(x)
	}
	return 0, fmt.Errorf("not an integer: %v", v)
}

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// RootMarkers are the directories block-meta's dd path looks for to pick the root
// partition: most images (curtin), Ubuntu Core 16/18, Ubuntu Core 20.
var RootMarkers = []string{"curtin", "system-data/var/lib/snapd", "snaps"}

// Applied is what a backend reports for an applied entry.
type Applied struct {
	Device string // device path of the volume (e.g. /dev/vda2)
	FSUUID string // filesystem UUID of a formatted volume
	// Spec is the fstab spec for a mounted volume (e.g. /dev/disk/by-uuid/<uuid>).
	Spec string
}

// GrubRequest is what curtin's install_grub needs, for backends that emulate it.
type GrubRequest struct {
	Target  string
	UEFI    bool
	Family  string // debian, redhat, suse
	Variant string // os-release ID (the EFI bootloader id)
	// DeviceIDs are storage ids marked grub_device (BIOS: disks to embed into; UEFI: ESPs).
	DeviceIDs []string
	Config    *Config
	// Commands are what curtin would run in the target, for the log.
	Commands [][]string
}

// DDNotFoundError is block.get_root_device's failure.
func DDNotFoundError(devs []string) error {
	return fmt.Errorf("Did not find any filesystem on %s that contained one of %s", pyList(devs), pyList(RootMarkers))
}

// pyList formats strings as Python's repr of a list.
func pyList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = "'" + x + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// PyList is Python's repr of a list of strings, as curtin's messages show them.
func PyList(xs []string) string { return pyList(xs) }

// DiskFullError says a dd image did not fit on its disk (dd's "No space left on device").
type DiskFullError struct {
	Device  string
	Written int64
}

func (e *DiskFullError) Error() string {
	return fmt.Sprintf("dd: error writing '%s': No space left on device (%d bytes written)", e.Device, e.Written)
}
