package curtincfg

import (
	"crypto/sha1"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/maasemu/maasemu/fakemaas/curtincfg/pyyaml"
)

// Storage constants (maasserver/models/partitiontable.py, partition.py,
// filesystemgroup.py, storage_layouts.py).
const (
	mib                     = int64(1) << 20
	gib                     = int64(1) << 30
	initialPartitionOffset  = 4 * mib
	endOfPartitionTable     = 1 * mib
	partitionTableExtra     = initialPartitionOffset + endOfPartitionTable
	prepPartitionSize       = 8 * mib
	biosGrubPartitionSize   = 1 * mib
	partitionAlignment      = 4 * mib
	minPartitionSize        = partitionAlignment
	efiPartitionSize        = 512 * mib
	minBootPartitionSize    = 512 * mib
	minRootPartitionSize    = 3 * gib
	lvmPESize               = 4 * mib
	maxMBRPartitionSizeRaw  = ((int64(1)<<32)-1)*512 - mib
	layoutFlat              = "flat"
	layoutLVM               = "lvm"
	layoutCustom            = "custom"
	defaultVGName           = "vgroot"
	defaultLVName           = "lvroot"
	ptableGPT               = "gpt"
	ptableMSDOS             = "msdos"
	fstypeSwap              = "swap"
	fstypeLVMPV             = "lvm-pv"
	storageUUIDNamespaceStr = "maasemu/curtincfg/storage"
)

// The storage model: MAAS's block devices, partition tables, partitions, filesystems,
// volume groups and logical volumes, as far as the layouts and the curtin generator
// need them.
type sDisk struct {
	dev    BlockDevice
	ptable string // "" (none), gpt, msdos
	parts  []*sPart
	fs     *sFS // a filesystem on the whole disk
}

type sPart struct {
	disk     *sDisk
	index    int
	size     int64
	uuid     string
	bootable bool
	fs       *sFS
}

func (p *sPart) name() string { return fmt.Sprintf("%s-part%d", p.disk.dev.Name, p.index) }

type sFS struct {
	fstype       string
	label        any // string, or nil for MAAS's None
	uuid         string
	mountPoint   string // "" when not mounted
	mountOptions any    // string, or nil
	vg           *sVG   // an LVM physical volume of this group
}

type sVG struct {
	name, uuid string
	pvs        []any // *sDisk or *sPart
}

type sLV struct {
	vg   *sVG
	name string
	size int64
	fs   *sFS
}

func (l *sLV) fullName() string { return l.vg.name + "-" + l.name }

type storageModel struct {
	arch, bootMethod, osystem, series string
	disks                             []*sDisk
	boot                              *sDisk
	vgs                               []*sVG
	lvs                               []*sLV
}

func roundDown(size, block int64) int64 { return size / block * block }

// overhead is PartitionTable.get_overhead_size.
func (m *storageModel) overhead() int64 {
	extra := partitionTableExtra
	if m.arch == "ppc64el" {
		extra += prepPartitionSize
	} else if m.arch == "amd64" && m.bootMethod != "uefi" {
		extra += biosGrubPartitionSize
	}
	return extra
}

func (m *storageModel) availableSize(d *sDisk) int64 {
	used := m.overhead()
	for _, p := range d.parts {
		used += p.size
	}
	return roundDown(d.dev.Size-used, partitionAlignment)
}

// addPartition is PartitionTable.add_partition with Partition's save-time validation:
// the size is aligned down to 4 MiB, a missing size takes the rest of the disk, and a
// partition that does not fit (one block of slack allowed) is refused.
func (m *storageModel) addPartition(d *sDisk, size int64, bootable bool, uuid func(string) string, field string) (*sPart, error) {
	if size == 0 {
		size = m.availableSize(d)
		if d.ptable == ptableMSDOS {
			size = min(size, roundDown(maxMBRPartitionSizeRaw, partitionAlignment))
		}
	}
	size = roundDown(size, partitionAlignment)
	if size < minPartitionSize {
		return nil, bad(field, d.dev.Name, "the layout does not fit the disk: a partition of %d bytes is left, and MAAS requires at least %d (Ensure this value is greater than or equal to %d.)", size, minPartitionSize, minPartitionSize)
	}
	if avail := m.availableSize(d); avail < size {
		if avail < size-int64(d.blockSize()) {
			return nil, bad(field, d.dev.Name, "the layout does not fit the disk: Partition cannot be saved; not enough free space on the block device (%d bytes needed, %d available)", size, avail)
		}
		size -= int64(d.blockSize())
	}
	index := len(d.parts) + 1
	if len(d.parts) > 0 {
		index = d.parts[len(d.parts)-1].index + 1
	}
	if index == 4 && d.ptable == ptableMSDOS {
		index = 5 // the fourth MBR slot holds the extended partition
	} else if index == 1 && d.ptable == ptableGPT {
		needPrep := m.arch == "ppc64el" && d == m.boot
		needBiosGrub := m.arch == "amd64" && m.bootMethod != "uefi"
		if needPrep || needBiosGrub {
			index = 2
		}
	}
	p := &sPart{disk: d, index: index, size: size, bootable: bootable}
	p.uuid = uuid(p.name())
	d.parts = append(d.parts, p)
	return p, nil
}

func (d *sDisk) blockSize() int {
	if d.dev.BlockSize <= 0 {
		return 512
	}
	return d.dev.BlockSize
}

// storageUUID returns the input's UUID for a storage id, or a UUID (version 5, SHA-1)
// derived from the system_id and the id, so the same machine always gets the same
// UUIDs and no two machines share them.
func (in *Input) storageUUID(id string) string {
	if u, ok := in.Storage.UUIDs[id]; ok && u != "" {
		return u
	}
	return uuidV5(storageUUIDNamespace, in.Machine.SystemID+"/"+id)
}

var storageUUIDNamespace = func() [16]byte {
	// The namespace itself is the version-5 UUID of a fixed name in the nil namespace.
	return uuidV5Bytes([16]byte{}, storageUUIDNamespaceStr)
}()

func uuidV5Bytes(ns [16]byte, name string) [16]byte {
	h := sha1.New()
	h.Write(ns[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = (u[6] & 0x0f) | 0x50
	u[8] = (u[8] & 0x3f) | 0x80
	return u
}

func uuidV5(ns [16]byte, name string) string {
	u := uuidV5Bytes(ns, name)
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// validateDisks checks the block devices the storage generator relies on.
func (in *Input) validateDisks() error {
	seen := map[string]bool{}
	for i, d := range in.Machine.BlockDevices {
		field := fmt.Sprintf("machine.block_devices[%d]", i)
		if d.Name == "" || strings.ContainsAny(d.Name, "/ ") {
			return bad(field+".name", d.Name, "must be a kernel device name such as sda")
		}
		if seen[d.Name] {
			return bad(field+".name", d.Name, "is used by two block devices")
		}
		seen[d.Name] = true
		if d.Size <= 0 {
			return bad(field+".size", fmt.Sprint(d.Size), "must be the disk size in bytes")
		}
		if (d.Model == "" || d.Serial == "") && d.IDPath == "" {
			return bad(field, d.Name, "needs model and serial, or id_path, for curtin to find the disk")
		}
		if d.BlockSize < 0 || (d.BlockSize != 0 && d.BlockSize&(d.BlockSize-1) != 0) {
			return bad(field+".block_size", fmt.Sprint(d.BlockSize), "must be a power of two (512 or 4096)")
		}
	}
	return nil
}

// bootDisk is Node.get_boot_disk.
func (in *Input) bootDisk() (*BlockDevice, error) {
	devs := in.Machine.BlockDevices
	if in.Machine.BootDisk != "" {
		for i := range devs {
			if devs[i].Name == in.Machine.BootDisk {
				return &devs[i], nil
			}
		}
		return nil, bad("machine.boot_disk", in.Machine.BootDisk, "names no block device of the machine")
	}
	for i := range devs {
		if devs[i].Size >= minBootPartitionSize {
			return &devs[i], nil
		}
	}
	if len(devs) == 0 {
		return nil, bad("machine.block_devices", "", "Node doesn't have any storage devices to configure.")
	}
	return nil, bad("machine.block_devices", "", "Node doesn't have a boot partition defined: no disk of at least %d bytes", minBootPartitionSize)
}

func (in *Input) newModel() (*storageModel, error) {
	if err := in.validateDisks(); err != nil {
		return nil, err
	}
	boot, err := in.bootDisk()
	if err != nil {
		return nil, err
	}
	m := &storageModel{arch: in.Machine.Arch, bootMethod: in.Machine.biosBootMethod(), osystem: in.Deployment.OSystem, series: in.Deployment.Series}
	for _, d := range in.Machine.BlockDevices {
		sd := &sDisk{dev: d}
		m.disks = append(m.disks, sd)
		if d.Name == boot.Name {
			m.boot = sd
		}
	}
	return m, nil
}

func (m *storageModel) disk(name string) *sDisk {
	for _, d := range m.disks {
		if d.dev.Name == name {
			return d
		}
	}
	return nil
}

// layout applies the flat or lvm storage layout (storage_layouts.py) to the machine.
func (in *Input) layout() (*storageModel, error) {
	st := &in.Storage
	name := st.Layout
	if name == "" {
		name = layoutFlat
	}
	if name != layoutFlat && name != layoutLVM {
		return nil, bad("storage.layout", st.Layout, "must be flat, lvm or custom")
	}
	m, err := in.newModel()
	if err != nil {
		return nil, err
	}
	bootSize := m.boot.dev.Size
	if st.BootSize < 0 || st.RootSize < 0 || st.LVSize < 0 {
		return nil, bad("storage", fmt.Sprint(st.BootSize, st.RootSize, st.LVSize), "sizes must not be negative")
	}
	// StorageLayoutBase.clean_boot_size / clean_root_size / clean.
	if st.BootSize != 0 {
		if st.BootSize < minBootPartitionSize {
			return nil, bad("storage.boot_size", fmt.Sprint(st.BootSize), "Size is too small. Minimum size is %d.", minBootPartitionSize)
		}
		if maxB := bootSize - efiPartitionSize - minRootPartitionSize; st.BootSize > maxB {
			return nil, bad("storage.boot_size", fmt.Sprint(st.BootSize), "Size is too large. Maximum size is %d.", maxB)
		}
	}
	if st.RootSize != 0 {
		if st.RootSize < minRootPartitionSize {
			return nil, bad("storage.root_size", fmt.Sprint(st.RootSize), "Size is too small. Minimum size is %d.", minRootPartitionSize)
		}
		if maxR := bootSize - efiPartitionSize - minBootPartitionSize; st.RootSize > maxR {
			return nil, bad("storage.root_size", fmt.Sprint(st.RootSize), "Size is too large. Maximum size is %d.", maxR)
		}
		if efiPartitionSize+st.BootSize+st.RootSize > bootSize {
			return nil, bad("storage.root_size", fmt.Sprint(st.RootSize), "Size of the boot partition and root partition are larger than the available space on the boot disk.")
		}
	}
	lvSize := st.LVSize
	if name == layoutLVM && lvSize != 0 {
		rootSize := st.RootSize
		if rootSize == 0 {
			rootSize = bootSize - efiPartitionSize - st.BootSize
		}
		if lvSize < minRootPartitionSize {
			return nil, bad("storage.lv_size", fmt.Sprint(lvSize), "Size is too small. Minimum size is %d.", minRootPartitionSize)
		}
		if lvSize > rootSize {
			return nil, bad("storage.lv_size", fmt.Sprint(lvSize), "Size is too large. Maximum size is %d.", rootSize)
		}
	}
	root, err := in.basicLayout(m)
	if err != nil {
		return nil, err
	}
	if name == layoutFlat {
		root.fs = &sFS{fstype: "ext4", label: "root", uuid: in.storageUUID(root.name() + "_format"), mountPoint: "/"}
		return m, nil
	}
	vgName, lvName := st.VGName, st.LVName
	if vgName == "" {
		vgName = defaultVGName
	}
	if lvName == "" {
		lvName = defaultLVName
	}
	vg := &sVG{name: vgName, uuid: in.storageUUID(vgName), pvs: []any{root}}
	root.fs = &sFS{fstype: fstypeLVMPV, uuid: in.storageUUID(root.name() + "_format"), vg: vg}
	// FilesystemGroup.get_lvm_size: whole extents, one reserved per PV for LVM headers.
	vgSize := (root.size/lvmPESize - 1) * lvmPESize
	if lvSize == 0 {
		lvSize = vgSize
	}
	lvSize = roundDown(lvSize, partitionAlignment)
	if lvSize > vgSize {
		return nil, bad("storage.lv_size", fmt.Sprint(st.LVSize), "There is not enough free space (%d bytes) on volume group %s.", vgSize, vgName)
	}
	if lvSize < minPartitionSize {
		return nil, bad("storage.layout", name, "the layout does not fit the disk: volume group %s has %d bytes", vgName, vgSize)
	}
	lv := &sLV{vg: vg, name: lvName, size: lvSize}
	lv.fs = &sFS{fstype: "ext4", label: "root", uuid: in.storageUUID(lv.fullName() + "_format"), mountPoint: "/"}
	m.vgs = append(m.vgs, vg)
	m.lvs = append(m.lvs, lv)
	return m, nil
}

// basicLayout is StorageLayoutBase.create_basic_layout: GPT on the boot disk, an ESP on
// UEFI, an optional /boot, and the root partition.
func (in *Input) basicLayout(m *storageModel) (*sPart, error) {
	st := &in.Storage
	uuid := func(id string) string { return in.storageUUID(id) }
	m.boot.ptable = ptableGPT
	switch {
	case m.bootMethod == "uefi" && m.arch != "ppc64el":
		efi, err := m.addPartition(m.boot, efiPartitionSize, true, uuid, "machine.boot_disk")
		if err != nil {
			return nil, err
		}
		efi.fs = &sFS{fstype: "fat32", label: "efi", uuid: in.storageUUID(efi.name() + "_format"), mountPoint: "/boot/efi"}
	case m.bootMethod != "uefi" && m.arch == "arm64":
		// MAAS checks the boot_size argument, which is always None here.
		bp, err := m.addPartition(m.boot, minBootPartitionSize, true, uuid, "machine.boot_disk")
		if err != nil {
			return nil, err
		}
		bp.fs = &sFS{fstype: "ext4", label: "boot", uuid: in.storageUUID(bp.name() + "_format"), mountPoint: "/boot"}
	}
	if st.BootSize > 0 {
		bp, err := m.addPartition(m.boot, st.BootSize, true, uuid, "storage.boot_size")
		if err != nil {
			return nil, err
		}
		bp.fs = &sFS{fstype: "ext4", label: "boot", uuid: in.storageUUID(bp.name() + "_format"), mountPoint: "/boot"}
	}
	rootDisk := m.boot
	if st.RootDevice != "" && st.RootDevice != m.boot.dev.Name {
		rootDisk = m.disk(st.RootDevice)
		if rootDisk == nil {
			return nil, bad("storage.root_device", st.RootDevice, "names no block device of the machine")
		}
		rootDisk.ptable = ptableGPT
	}
	return m.addPartition(rootDisk, st.RootSize, false, uuid, "storage.root_size")
}

type fsRef struct {
	fs   *sFS
	name string // the device or partition carrying it
}

// generate is CurtinStorageGenerator: the storage v1 config list.
func (m *storageModel) generate() ([]any, error) {
	grub := map[*sDisk]bool{m.boot: true}
	requiresPrep := func(d *sDisk) bool { return m.arch == "ppc64el" && grub[d] }
	requiresBiosGrub := m.arch == "amd64" && m.bootMethod != "uefi"

	var partOps []*sPart
	bootFirst := map[*sPart]bool{}
	for _, d := range m.disks {
		for i, p := range d.parts {
			if (requiresPrep(d) || requiresBiosGrub) && grub[d] && i == 0 {
				bootFirst[p] = true
			}
			partOps = append(partOps, p)
		}
	}
	var formats, mounts []fsRef
	addFS := func(fs *sFS, name string) {
		if fs == nil || fs.vg != nil {
			return
		}
		formats = append(formats, fsRef{fs, name})
		if fs.mountPoint != "" {
			mounts = append(mounts, fsRef{fs, name})
		}
	}
	for _, d := range m.disks {
		if d.fs != nil && d.fs.vg == nil {
			addFS(d.fs, d.dev.Name)
			continue
		}
		for _, p := range d.parts {
			addFS(p.fs, p.name())
		}
	}
	for _, lv := range m.lvs {
		addFS(lv.fs, lv.fullName())
	}

	var cfg []*pyyaml.Map
	for _, d := range m.disks {
		op := pyyaml.M("id", d.dev.Name, "name", d.dev.Name, "type", "disk", "wipe", "superblock")
		if d.dev.Model != "" && d.dev.Serial != "" {
			op.Set("model", d.dev.Model).Set("serial", d.dev.Serial)
		} else {
			op.Set("path", d.dev.IDPath)
		}
		addPrep := false
		if d.ptable != "" {
			op.Set("ptable", d.ptable)
		} else if grub[d] {
			gpt := slices.Contains([]string{"uefi", "powernv", "powerkvm"}, m.bootMethod) ||
				(m.bootMethod != "uefi" && m.arch == "amd64")
			op.Set("ptable", map[bool]string{true: ptableGPT, false: ptableMSDOS}[gpt])
			addPrep = m.arch == "ppc64el" && slices.Contains([]string{"uefi", "powernv", "powerkvm"}, m.bootMethod)
		}
		pt, _ := op.Get("ptable")
		addBiosGrub := pt == ptableGPT && m.arch == "amd64" && m.bootMethod != "uefi" && m.osystem != OSESXi
		if grub[d] && !requiresPrep(d) {
			op.Set("grub_device", true)
		}
		cfg = append(cfg, op)
		if addPrep {
			cfg = append(cfg, prepPartition(d.dev.Name))
		}
		if addBiosGrub {
			cfg = append(cfg, pyyaml.M("id", d.dev.Name+"-part1", "type", "partition", "number", 1,
				"offset", fmt.Sprintf("%dB", initialPartitionOffset), "size", fmt.Sprintf("%dB", biosGrubPartitionSize),
				"device", d.dev.Name, "wipe", "zero", "flag", "bios_grub"))
		}
	}
	for _, vg := range m.vgs {
		var devs []string
		for _, pv := range vg.pvs {
			switch x := pv.(type) {
			case *sPart:
				devs = append(devs, x.name())
			case *sDisk:
				devs = append(devs, x.dev.Name)
			}
		}
		slices.Sort(devs)
		cfg = append(cfg, pyyaml.M("id", vg.name, "name", vg.name, "type", "lvm_volgroup", "uuid", vg.uuid, "devices", pyyaml.Strings(devs)))
	}
	for _, lv := range m.lvs {
		cfg = append(cfg, pyyaml.M("id", lv.fullName(), "name", lv.name, "type", "lvm_partition",
			"volgroup", lv.vg.name, "size", fmt.Sprintf("%dB", lv.size)))
	}
	for _, p := range partOps {
		include := true
		if bootFirst[p] {
			if requiresPrep(p.disk) {
				cfg = append(cfg, prepPartition(p.disk.dev.Name))
			}
			include = false
		}
		cfg = append(cfg, m.partitionOps(p, include)...)
	}
	for _, f := range formats {
		op := pyyaml.M("id", f.name+"_format", "type", "format", "fstype", f.fs.fstype,
			"uuid", f.fs.uuid, "label", f.fs.label, "volume", f.name)
		if f.fs.fstype == "ext4" && m.osystem == OSSUSE && strings.HasPrefix(m.series, "sles12") {
			op.Set("extra_options", pyyaml.L("-O", "^metadata_csum"))
		}
		cfg = append(cfg, op)
	}
	if err := orderDependencies(&cfg); err != nil {
		return nil, err
	}
	sort.SliceStable(mounts, func(i, j int) bool { return mountKey(mounts[i].fs) < mountKey(mounts[j].fs) })
	for _, mt := range mounts {
		op := pyyaml.M("type", "mount", "id", mt.name+"_mount", "device", mt.name+"_format")
		if mt.fs.fstype != fstypeSwap {
			op.Set("path", mt.fs.mountPoint)
		}
		if mt.fs.mountOptions != nil {
			op.Set("options", mt.fs.mountOptions)
		}
		cfg = append(cfg, op)
	}
	out := make([]any, len(cfg))
	for i, c := range cfg {
		out[i] = c
	}
	return out, nil
}

// mountKey is the mount point MAAS sorts mounts by: swap's is "none".
func mountKey(fs *sFS) string {
	if fs.fstype == fstypeSwap {
		return "none"
	}
	return fs.mountPoint
}

func prepPartition(dev string) *pyyaml.Map {
	return pyyaml.M("id", dev+"-part1", "name", dev+"-part1", "type", "partition", "number", 1,
		"offset", fmt.Sprintf("%dB", initialPartitionOffset), "size", fmt.Sprintf("%dB", prepPartitionSize),
		"device", dev, "wipe", "zero", "flag", "prep", "grub_device", true)
}

// partitionOps is _generate_partition_operation, with MBR's extended/logical handling.
func (m *storageModel) partitionOps(p *sPart, includeInitial bool) []*pyyaml.Map {
	d := p.disk
	op := pyyaml.M("id", p.name(), "name", p.name(), "type", "partition", "number", p.index,
		"uuid", p.uuid, "size", fmt.Sprintf("%dB", p.size), "device", d.dev.Name, "wipe", "superblock")
	if p.index == 1 && includeInitial {
		op.Set("offset", fmt.Sprintf("%dB", initialPartitionOffset))
	}
	if p.bootable {
		op.Set("flag", "boot")
	}
	var out []*pyyaml.Map
	if d.ptable == ptableMSDOS {
		switch {
		case p.index == 5:
			extended := d.dev.Size - partitionTableExtra
			following := 0
			for _, q := range d.parts {
				if q.index < p.index {
					extended -= q.size
				} else {
					following++
				}
			}
			extended -= int64(following) * mib
			out = append(out, pyyaml.M("id", d.dev.Name+"-part4", "type", "partition", "number", 4,
				"device", d.dev.Name, "flag", "extended", "size", fmt.Sprintf("%dB", extended)))
			op.Set("flag", "logical").Set("size", fmt.Sprintf("%dB", p.size-mib))
		case p.index > 5:
			op.Set("flag", "logical").Set("size", fmt.Sprintf("%dB", p.size-mib))
		}
	}
	return append(out, op)
}

// orderDependencies is _order_config_dependency: move each operation after the
// operations it refers to, until one full pass finds nothing to move.
func orderDependencies(cfg *[]*pyyaml.Map) error {
	str := func(m *pyyaml.Map, k string) string {
		v, _ := m.Get(k)
		s, _ := v.(string)
		return s
	}
	list := func(m *pyyaml.Map, k string) []string {
		v, _ := m.Get(k)
		var out []string
		if l, ok := v.([]any); ok {
			for _, e := range l {
				if s, ok := e.(string); ok {
					out = append(out, s)
				}
			}
		}
		return out
	}
	move := func(op *pyyaml.Map, dep string) error {
		c := *cfg
		i := slices.Index(c, op)
		c = slices.Delete(c, i, i+1)
		j := slices.IndexFunc(c, func(o *pyyaml.Map) bool { return str(o, "id") == dep })
		if j < 0 {
			return fmt.Errorf("storage item %s depends on %s, which is not in the storage configuration", str(op, "id"), dep)
		}
		*cfg = slices.Insert(c, j+1, op)
		return nil
	}
	for range 10000 {
		above := map[string]bool{}
		moved := false
		for _, op := range slices.Clone(*cfg) {
			var deps []string
			switch str(op, "type") {
			case "disk":
			case "partition":
				deps = []string{str(op, "device")}
			case "format":
				deps = []string{str(op, "volume")}
			case "lvm_volgroup":
				deps = list(op, "devices")
			case "lvm_partition":
				deps = []string{str(op, "volgroup")}
			default:
				return fmt.Errorf("unknown storage operation type %q", str(op, "type"))
			}
			for _, dep := range deps {
				if !above[dep] {
					if err := move(op, dep); err != nil {
						return err
					}
					moved = true
					break
				}
			}
			if moved {
				break
			}
			above[str(op, "id")] = true
		}
		if !moved {
			return nil
		}
	}
	return fmt.Errorf("storage configuration dependencies do not resolve (a cycle)")
}

// storageDocument is compose_curtin_storage_config: the layout's storage v1, or the
// custom configuration passed through.
func (in *Input) storageDocument() (*pyyaml.Map, error) {
	var storage *pyyaml.Map
	if in.Storage.Layout == layoutCustom {
		s, err := parseCustomStorage(in.Storage.Custom)
		if err != nil {
			return nil, err
		}
		storage = s
	} else {
		if in.Storage.Custom != "" {
			return nil, bad("storage.custom", firstLine(in.Storage.Custom), "is only used with layout custom (layout is %q)", in.Storage.Layout)
		}
		m, err := in.layout()
		if err != nil {
			return nil, err
		}
		cfg, err := m.generate()
		if err != nil {
			return nil, err
		}
		storage = pyyaml.M("version", 1, "config", cfg)
	}
	return pyyaml.M(
		"partitioning_commands", pyyaml.M("builtin", pyyaml.L("curtin", "block-meta", "custom")),
		"storage", storage,
	), nil
}

// storageHasSwap says whether a swap filesystem is configured on a device (MAAS then
// sends swap size 0B so curtin makes no swap file).
func (in *Input) storageHasSwap() bool {
	if in.Storage.Layout != layoutCustom {
		return false // the flat and lvm layouts make no swap
	}
	s, err := parseCustomStorage(in.Storage.Custom)
	if err != nil {
		return false
	}
	v, _ := s.Get("config")
	items, _ := v.([]any)
	for _, it := range items {
		m, ok := it.(*pyyaml.Map)
		if !ok {
			continue
		}
		t, _ := m.Get("type")
		f, _ := m.Get("fstype")
		if t == "format" && f == fstypeSwap {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	if len(l) > 60 {
		l = l[:60] + "..."
	}
	return l
}
