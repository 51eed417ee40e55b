// Package imagedisk is the installer's storage backend for simulated machines: disks are
// sparse image files, the target is a staging directory, and filesystems are written into
// their partitions with package diskimage when the target is unmounted.
package imagedisk

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/google/uuid"

	"github.com/maasemu/maasemu/harness/diskimage"
	"github.com/maasemu/maasemu/harness/installer/storage"
)

// Disk is one disk of a simulated machine.
type Disk struct {
	// Path is the sparse image file; it must exist with the disk's size.
	Path string
	// Name is the device the disk stands for inside the machine, e.g. /dev/vda.
	Name string
	// Serial and WWN identify the disk for storage config matching.
	Serial string
	WWN    string
	// Aliases are other paths udev gives the disk inside the machine (e.g.
	// /dev/disk/by-id/virtio-<serial>), matched against a storage config's path.
	Aliases []string
}

// Backend installs into disk-image files. Create one per install.
type Backend struct {
	disks []Disk

	mu      sync.Mutex
	diskFor map[string]*Disk            // storage id (disk) -> disk
	tables  map[string]*diskimage.Table // disk path -> table being built
	parts   map[string]partRef          // storage id (partition) -> partition
	formats map[string]*fsPlan          // storage id (format) -> plan
	mounts  []mountPlan
	dd      *ddRoot
}

type partRef struct {
	disk *Disk
	part diskimage.Partition
}

type fsPlan struct {
	id      string
	volume  string // storage id of the partition
	fstype  string
	label   string
	uuid    string
	extra   []string
	mounted bool
}

type mountPlan struct {
	path   string // "/boot/efi"
	format string // format id
}

type ddRoot struct {
	disk *Disk
	fs   diskimage.FS
	// snap is the extracted tree as it came off the image, so that Unmount writes back
	// only what the install changed.
	snap *diskimage.Snapshot
}

// New returns a backend for disks; each Path must exist.
func New(disks ...Disk) (*Backend, error) {
	if len(disks) == 0 {
		return nil, errors.New("imagedisk: no disks")
	}
	for i, d := range disks {
		st, err := os.Stat(d.Path)
		if err != nil {
			return nil, fmt.Errorf("imagedisk: disk %d: %w", i, err)
		}
		if !st.Mode().IsRegular() || st.Size() == 0 {
			return nil, fmt.Errorf("imagedisk: disk %d: %s is not a non-empty regular file", i, d.Path)
		}
		if d.Name == "" {
			disks[i].Name = fmt.Sprintf("/dev/vd%c", 'a'+i)
		}
	}
	return &Backend{disks: disks, diskFor: map[string]*Disk{}, tables: map[string]*diskimage.Table{}, parts: map[string]partRef{}, formats: map[string]*fsPlan{}}, nil
}

func partName(disk string, n int) string {
	if last := disk[len(disk)-1]; last >= '0' && last <= '9' {
		return fmt.Sprintf("%sp%d", disk, n) // nvme0n1p1
	}
	return fmt.Sprintf("%s%d", disk, n)
}

func size(path string) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// lookup resolves a disk item like curtin's get_path_to_storage_volume: serial (matched as
// a substring of the by-id name, spaces as underscores), wwn, then path.
func (b *Backend) lookup(it storage.Item) (*Disk, error) {
	if it.Serial != "" {
		s := strings.ReplaceAll(it.Serial, " ", "_")
		for i := range b.disks {
			if b.disks[i].Serial != "" && strings.Contains(strings.ReplaceAll(b.disks[i].Serial, " ", "_"), s) {
				return &b.disks[i], nil
			}
		}
		return nil, fmt.Errorf("no disk with serial '%s' found", s)
	}
	if it.WWN != "" {
		for i := range b.disks {
			if b.disks[i].WWN != "" && strings.EqualFold(b.disks[i].WWN, it.WWN) {
				return &b.disks[i], nil
			}
		}
		return nil, fmt.Errorf("no disk with wwn '%s' found", it.WWN)
	}
	if it.Path != "" {
		for i := range b.disks {
			if b.disks[i].Name == it.Path || b.disks[i].Path == it.Path || slices.Contains(b.disks[i].Aliases, it.Path) {
				return &b.disks[i], nil
			}
		}
		return nil, fmt.Errorf("disk '%s' (path %s) does not exist on this machine", it.ID, it.Path)
	}
	return nil, fmt.Errorf("disk '%s' has no serial, wwn or path to find it by", it.ID)
}

// ClearHolders has nothing to shut down on image files.
func (b *Backend) ClearHolders(_ context.Context, sc *storage.Config, log io.Writer) error {
	fmt.Fprintln(log, "clear-holders: disk images have no holders")
	return nil
}

// Apply applies one storage entry.
func (b *Backend) Apply(ctx context.Context, sc *storage.Config, it storage.Item, target string, log io.Writer) (storage.Applied, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch it.Type {
	case "disk":
		return b.applyDisk(it, log)
	case "partition":
		return b.applyPartition(sc, it, log)
	case "format":
		return b.applyFormat(it)
	case "mount":
		return b.applyMount(sc, it, target)
	case "lvm_volgroup", "lvm_partition":
		return storage.Applied{}, fmt.Errorf("%s %q: LVM is not supported on simulated machines; use the libvirt driver", it.Type, it.ID)
	}
	return storage.Applied{}, fmt.Errorf("%s %q: not supported on simulated machines", it.Type, it.ID)
}

func (b *Backend) applyDisk(it storage.Item, log io.Writer) (storage.Applied, error) {
	d, err := b.lookup(it)
	if err != nil {
		return storage.Applied{}, err
	}
	b.diskFor[it.ID] = d
	if it.Preserve {
		t, err := diskimage.ReadTable(d.Path)
		if err != nil && it.Ptable != "" && it.Ptable != "unsupported" {
			return storage.Applied{}, fmt.Errorf("disk '%s' does not have correct partition table or cannot be read, but preserve is set to true (or wipe is not set).  cannot continue installation.", it.ID)
		}
		b.tables[d.Path] = &t
		return storage.Applied{Device: d.Name}, nil
	}
	sz, err := size(d.Path)
	if err != nil {
		return storage.Applied{}, err
	}
	if it.Wipe != "" {
		fmt.Fprintf(log, "wiping %s (mode=%s)\n", d.Name, it.Wipe)
		if err := wipe(d.Path, 0, sz, it.Wipe); err != nil {
			return storage.Applied{}, err
		}
	}
	if it.Ptable != "" {
		fmt.Fprintf(log, "labeling device: '%s' with '%s' partition table\n", d.Name, it.Ptable)
		// wipe_volume(superblock) for gpt; parted mklabel for msdos: both start empty.
		if err := wipe(d.Path, 0, sz, "superblock"); err != nil {
			return storage.Applied{}, err
		}
		typ := diskimage.GPT
		if it.Ptable == "msdos" || it.Ptable == "dos" {
			typ = diskimage.MSDOS
		} else if it.Ptable != "gpt" {
			return storage.Applied{}, fmt.Errorf("disk %q: ptable %s is not supported on simulated machines", it.ID, it.Ptable)
		}
		b.tables[d.Path] = &diskimage.Table{Type: typ}
		if err := diskimage.WriteTable(d.Path, *b.tables[d.Path]); err != nil {
			return storage.Applied{}, err
		}
	}
	return storage.Applied{Device: d.Name}, nil
}

func (b *Backend) applyPartition(sc *storage.Config, it storage.Item, log io.Writer) (storage.Applied, error) {
	d, ok := b.diskFor[it.Device]
	if !ok {
		return storage.Applied{}, fmt.Errorf("partition %q: its disk %q was not configured before it", it.ID, it.Device)
	}
	t := b.tables[d.Path]
	if t == nil {
		return storage.Applied{}, errors.New("parent partition has invalid partition table")
	}
	dit, _ := sc.Get(it.Device)
	exts, err := sc.Layout(diskimage.SectorSize)
	if err != nil {
		return storage.Applied{}, err
	}
	var e storage.Extent
	for _, x := range exts {
		if x.ID == it.ID {
			e = x
		}
	}
	sz, err := size(d.Path)
	if err != nil {
		return storage.Applied{}, err
	}
	if t.Type == diskimage.MSDOS && it.Flag == "prep" {
		return storage.Applied{}, errors.New("PReP partitions require a GPT partition table")
	}
	if it.Preserve {
		for _, p := range t.Partitions {
			if p.Number == e.Number {
				b.parts[it.ID] = partRef{disk: d, part: p}
				return storage.Applied{Device: partName(d.Name, e.Number)}, nil
			}
		}
		return storage.Applied{}, fmt.Errorf("partition %q: preserve is set but %s has no partition %d", it.ID, d.Name, e.Number)
	}
	if err := storage.CheckFits(e, dit.Ptable, sz, diskimage.SectorSize); err != nil {
		return storage.Applied{}, fmt.Errorf("%w; disk image %s", err, d.Path)
	}
	fmt.Fprintf(log, "adding partition '%s' to disk '%s' (ptable: '%s')\n", it.ID, it.Device, dit.Ptable)
	p := diskimage.Partition{Number: e.Number, Start: e.Start, Size: e.Size, Flag: it.Flag}
	if it.Flag == "primary" {
		p.Flag = ""
	}
	if t.Type == diskimage.GPT {
		p.UUID = strOf(it.Raw["uuid"])
		p.Name = strOf(it.Raw["partition_name"])
	}
	next := *t
	next.Partitions = append(append([]diskimage.Partition(nil), t.Partitions...), p)
	if storage.Boolean(it.Wipe) && it.Flag != "extended" {
		if err := wipe(d.Path, e.Start, min(1<<20, e.Size), "zero"); err != nil {
			return storage.Applied{}, err
		}
	}
	if err := diskimage.WriteTable(d.Path, next); err != nil {
		return storage.Applied{}, err
	}
	*t = next
	if it.Wipe != "" && it.Wipe != "superblock" && it.Flag != "extended" {
		if err := wipe(d.Path, e.Start, e.Size, it.Wipe); err != nil {
			return storage.Applied{}, err
		}
	}
	// Re-read so that generated GUIDs are known.
	if rt, err := diskimage.ReadTable(d.Path); err == nil {
		for _, rp := range rt.Partitions {
			if rp.Number == e.Number {
				p = rp
			}
		}
	}
	b.parts[it.ID] = partRef{disk: d, part: p}
	return storage.Applied{Device: partName(d.Name, e.Number)}, nil
}

func strOf(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func (b *Backend) applyFormat(it storage.Item) (storage.Applied, error) {
	if it.Preserve {
		return storage.Applied{}, fmt.Errorf("format %q: preserve is not supported on simulated machines", it.ID)
	}
	pr, ok := b.parts[it.Volume]
	if !ok {
		if _, isDisk := b.diskFor[it.Volume]; isDisk {
			return storage.Applied{}, fmt.Errorf("format %q: filesystems on whole disks are not supported on simulated machines", it.ID)
		}
		return storage.Applied{}, fmt.Errorf("format %q: volume %q was not configured before it", it.ID, it.Volume)
	}
	fam := storage.FSFamily(it.Fstype)
	switch {
	case fam == "ext", fam == "fat", it.Fstype == "swap":
	case it.Fstype == "xfs":
		return storage.Applied{}, fmt.Errorf("format %q: xfs cannot be populated without mounting it, which simulated machines do not do; use ext4 or the libvirt driver", it.ID)
	default:
		return storage.Applied{}, fmt.Errorf("format %q: fstype %s is not supported on simulated machines (ext2, ext3, ext4, vfat/fat*, swap are)", it.ID, it.Fstype)
	}
	label := it.Label
	if lim := storage.LabelLimit(it.Fstype); lim > 0 && len(label) > lim {
		label = label[:lim]
	}
	id := it.UUID
	if fam == "fat" {
		var v [4]byte
		_, _ = rand.Read(v[:])
		id = fmt.Sprintf("%02X%02X-%02X%02X", v[0], v[1], v[2], v[3])
	} else if id == "" {
		id = uuid.NewString()
	} else if _, err := uuid.Parse(id); err != nil {
		return storage.Applied{}, fmt.Errorf("format %q: uuid %q is not a UUID", it.ID, id)
	}
	b.formats[it.ID] = &fsPlan{id: it.ID, volume: it.Volume, fstype: it.Fstype, label: label, uuid: id, extra: it.ExtraOptions}
	return storage.Applied{Device: partName(pr.disk.Name, pr.part.Number), FSUUID: id}, nil
}

func (b *Backend) applyMount(sc *storage.Config, it storage.Item, target string) (storage.Applied, error) {
	if it.Device == "" {
		// spec mounts (tmpfs, ...) only produce an fstab line
		return storage.Applied{}, nil
	}
	f, ok := b.formats[it.Device]
	if !ok {
		return storage.Applied{}, fmt.Errorf("mount %q: format %q was not configured before it", it.ID, it.Device)
	}
	pr := b.parts[f.volume]
	dev := partName(pr.disk.Name, pr.part.Number)
	ap := storage.Applied{Device: dev, FSUUID: f.uuid, Spec: "/dev/disk/by-uuid/" + f.uuid}
	if it.MountPath == "" || it.MountPath == "none" || f.fstype == "swap" {
		return ap, nil
	}
	if !strings.HasPrefix(it.MountPath, "/") {
		return ap, fmt.Errorf("mount %q: path %q must be absolute", it.ID, it.MountPath)
	}
	for _, m := range b.mounts {
		if m.path == filepath.Clean(it.MountPath) {
			return ap, fmt.Errorf("mount %q: %s is already mounted", it.ID, it.MountPath)
		}
	}
	if err := os.MkdirAll(filepath.Join(target, it.MountPath), 0o755); err != nil {
		return ap, err
	}
	f.mounted = true
	b.mounts = append(b.mounts, mountPlan{path: filepath.Clean(it.MountPath), format: it.Device})
	return ap, nil
}

// wipe is block.wipe_volume on a region of an image: superblock zeroes 1 MiB at the start
// and end, zero the whole region (punched, so the image stays sparse), random fills it.
func wipe(path string, off, length int64, mode string) error {
	switch mode {
	case "superblock", "superblock-recursive", "pvremove":
		if err := zeroRange(path, off, min(1<<20, length)); err != nil {
			return err
		}
		if length > 1<<20 {
			return zeroRange(path, off+length-(1<<20), 1<<20)
		}
		return nil
	case "zero":
		return zeroRange(path, off, length)
	case "random":
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(io.NewOffsetWriter(f, off), io.LimitReader(rand.Reader, length))
		return err
	}
	return fmt.Errorf("wipe mode '%s' is not one of superblock, superblock-recursive, zero, random", mode)
}

func zeroRange(path string, off, length int64) error {
	if length <= 0 {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	const punch = 0x02 | 0x01 // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
	if err := syscall.Fallocate(int(f.Fd()), punch, off, length); err == nil {
		return nil
	}
	buf := make([]byte, 1<<20)
	for done := int64(0); done < length; {
		n := min(int64(len(buf)), length-done)
		if _, err := f.WriteAt(buf[:n], off+done); err != nil {
			return err
		}
		done += n
	}
	return nil
}

// WriteImage writes a raw disk image onto the install disk, keeping the file sparse
// (zero blocks are punched, not written), then extracts the root filesystem (the first
// one holding a storage.RootMarkers directory) into target.
func (b *Backend) WriteImage(ctx context.Context, sc *storage.Config, r io.Reader, target string, log io.Writer) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := &b.disks[0]
	if sc != nil {
		for _, it := range sc.Items {
			if it.Serial == "" {
				continue
			}
			dd, err := b.lookup(it)
			if err != nil {
				fmt.Fprintf(log, "Skipping disk '%s': %v\n", it.ID, err)
				continue
			}
			if it.GrubDevice {
				d = dd
				break
			}
		}
	}
	fmt.Fprintf(log, "installing in 'simple' mode to '%s'\n", d.Name)
	if err := streamToImage(ctx, r, d.Path, d.Name); err != nil {
		return err
	}
	fss, err := diskimage.Probe(d.Path)
	if err != nil {
		fss = nil
	}
	for _, f := range fss {
		if f.Partition == 0 || (!strings.HasPrefix(f.Type, "ext") && f.Type != diskimage.FSVFAT) {
			continue
		}
		for _, m := range storage.RootMarkers {
			ok, err := diskimage.Exists(d.Path, f, m)
			if err == nil && ok {
				fmt.Fprintf(log, "Found path '%s' on device '%s'\n", m, partName(d.Name, f.Partition))
				if err := diskimage.ExtractTree(ctx, d.Path, f, target); err != nil {
					return fmt.Errorf("reading the root filesystem of %s: %w", d.Name, err)
				}
				snap, err := diskimage.SnapshotTree(target)
				if err != nil {
					return err
				}
				b.dd = &ddRoot{disk: d, fs: f, snap: snap}
				return nil
			}
		}
	}
	return storage.DDNotFoundError([]string{d.Name})
}

func streamToImage(ctx context.Context, r io.Reader, path, name string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	limit := st.Size()
	// 1 MiB at a time: a hundred simulated machines write at once, and a bigger buffer
	// only costs their memory.
	buf := make([]byte, 1<<20)
	var off int64
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			chunk := buf[:n]
			if off+int64(n) > limit {
				chunk = chunk[:limit-off]
			}
			if err := writeChunk(f, chunk, off); err != nil {
				return err
			}
			off += int64(len(chunk))
			if len(chunk) < n {
				return &storage.DiskFullError{Device: name, Written: off}
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

var zeroBlock = make([]byte, 64<<10)

// writeChunk writes p at off, punching holes for all-zero 64 KiB blocks.
func writeChunk(f *os.File, p []byte, off int64) error {
	const bs = 64 << 10
	for i := 0; i < len(p); i += bs {
		blk := p[i:min(i+bs, len(p))]
		if bytes.Equal(blk, zeroBlock[:len(blk)]) {
			if err := syscall.Fallocate(int(f.Fd()), 0x03, off+int64(i), int64(len(blk))); err == nil {
				continue
			}
		}
		if _, err := f.WriteAt(blk, off+int64(i)); err != nil {
			return err
		}
	}
	return nil
}

// DevicePath resolves a disk or partition id.
func (b *Backend) DevicePath(_ context.Context, sc *storage.Config, id string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d, ok := b.diskFor[id]; ok {
		return d.Name, nil
	}
	if p, ok := b.parts[id]; ok {
		return partName(p.disk.Name, p.part.Number), nil
	}
	if sc != nil {
		if it, ok := sc.Get(id); ok && it.Type == "disk" {
			d, err := b.lookup(*it)
			if err != nil {
				return "", err
			}
			return d.Name, nil
		}
	}
	return "", fmt.Errorf("Failed to find storage volume id='%s'", id)
}

// TargetDisks returns the disks holding mounted filesystems.
func (b *Backend) TargetDisks(context.Context, string) ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	if b.dd != nil {
		return []string{b.dd.disk.Name}, nil
	}
	for _, m := range b.mounts {
		d := b.parts[b.formats[m.format].volume].disk
		if !seen[d.Name] {
			seen[d.Name] = true
			out = append(out, d.Name)
		}
	}
	return out, nil
}

// TargetFS reports the type and free space of the filesystem that will hold dir.
func (b *Backend) TargetFS(_ context.Context, target, dir string) (string, int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dd != nil {
		used, _ := duBytes(target)
		return b.dd.fs.Type, b.dd.fs.Size - used, nil
	}
	best := ""
	var plan *fsPlan
	for _, m := range b.mounts {
		if (dir == m.path || strings.HasPrefix(dir, strings.TrimSuffix(m.path, "/")+"/") || m.path == "/") && len(m.path) > len(best) {
			best, plan = m.path, b.formats[m.format]
		}
	}
	if plan == nil {
		return "", 0, fmt.Errorf("no filesystem is mounted at %s", dir)
	}
	used, _ := duBytes(filepath.Join(target, best))
	fstype := plan.fstype
	if storage.FSFamily(fstype) == "fat" {
		fstype = "vfat"
	}
	return fstype, b.parts[plan.volume].part.Size - used, nil
}

func duBytes(dir string) (int64, error) {
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// Unmount writes every planned filesystem into its partition from the staging tree
// (deepest mounts first, each excluded from its parent), or writes back what the install
// changed in a dd image's root, then empties the staging directory.
func (b *Backend) Unmount(ctx context.Context, target string, log io.Writer) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dd != nil {
		f := b.dd.fs
		fmt.Fprintf(log, "writing root filesystem changes back to %s\n", partName(b.dd.disk.Name, f.Partition))
		err := diskimage.WriteBack(ctx, b.dd.disk.Path, f, b.dd.snap)
		if errors.Is(err, diskimage.ErrWriteBackUnsupported) {
			// A FAT root, or a name debugfs cannot spell: rebuild the filesystem from the tree.
			fmt.Fprintf(log, "rebuilding the %s filesystem from the target instead (%v)\n", f.Type, err)
			err = makeFS(ctx, b.dd.disk.Path, f.Offset, f.Size, f.Type, target, f.Label, f.UUID, nil)
		}
		b.dd = nil
		return err
	}
	mounts := append([]mountPlan(nil), b.mounts...)
	sort.SliceStable(mounts, func(i, j int) bool { return depth(mounts[i].path) > depth(mounts[j].path) })
	tmp, err := os.MkdirTemp(filepath.Dir(target), "unmount")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var errs []error
	built := map[string]bool{}
	for i, m := range mounts {
		plan := b.formats[m.format]
		pr := b.parts[plan.volume]
		src := filepath.Join(target, m.path)
		fmt.Fprintf(log, "writing %s filesystem for %s into %s\n", plan.fstype, m.path, partName(pr.disk.Name, pr.part.Number))
		if err := makeFS(ctx, pr.disk.Path, pr.part.Start, pr.part.Size, plan.fstype, src, plan.label, plan.uuid, plan.extra); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.path, err))
		}
		built[m.format] = true
		// Move the mounted tree aside so the parent filesystem gets an empty mount point.
		if m.path != "/" {
			aside := filepath.Join(tmp, fmt.Sprint(i))
			if err := os.Rename(src, aside); err == nil {
				st, _ := os.Stat(aside)
				mode := os.FileMode(0o755)
				if st != nil {
					mode = st.Mode().Perm()
				}
				_ = os.Mkdir(src, mode)
			}
		}
	}
	// Formats never mounted (swap, or a filesystem without a mount) are made empty.
	ids := make([]string, 0, len(b.formats))
	for id := range b.formats {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if built[id] {
			continue
		}
		plan := b.formats[id]
		pr := b.parts[plan.volume]
		if err := makeFS(ctx, pr.disk.Path, pr.part.Start, pr.part.Size, plan.fstype, "", plan.label, plan.uuid, plan.extra); err != nil {
			errs = append(errs, fmt.Errorf("format %s: %w", id, err))
		}
	}
	b.mounts = nil
	return errors.Join(errs...)
}

func depth(p string) int {
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

// makeFS writes a filesystem of fstype into [off, off+size) of img from srcDir.
func makeFS(ctx context.Context, img string, off, size int64, fstype, srcDir, label, id string, extra []string) error {
	if srcDir != "" {
		if ents, err := os.ReadDir(srcDir); err != nil || len(ents) == 0 {
			srcDir = ""
		}
	}
	switch fstype {
	case "ext4":
		size -= size % 4096
		return diskimage.MakeExt4(ctx, img, off, size, srcDir, diskimage.FSOptions{Label: label, UUID: id})
	case "ext2", "ext3":
		return mke2fs(ctx, img, off, size, fstype, srcDir, label, id)
	case "vfat", "fat", "fat12", "fat16", "fat32":
		bits := 0
		switch fstype {
		case "fat12":
			bits = 12
		case "fat16":
			bits = 16
		case "fat32":
			bits = 32
		}
		return diskimage.MakeFAT(ctx, img, off, size, srcDir, diskimage.FSOptions{Label: label, UUID: id, FATBits: bits})
	case "swap":
		return diskimage.MakeSwap(ctx, img, off, size, diskimage.FSOptions{Label: label, UUID: id})
	}
	return fmt.Errorf("cannot write a %s filesystem into a disk image", fstype)
}

// mke2fs makes ext2/ext3 at an offset (diskimage makes ext4).
func mke2fs(ctx context.Context, img string, off, size int64, fstype, srcDir, label, id string) error {
	size -= size % 4096
	args := []string{"-F", "-q", "-t", fstype, "-b", "4096", "-E", fmt.Sprintf("offset=%d,nodiscard", off)}
	if label != "" {
		args = append(args, "-L", label)
	}
	if id != "" {
		args = append(args, "-U", id)
	}
	if srcDir != "" {
		args = append(args, "-d", srcDir)
	}
	args = append(args, img, fmt.Sprintf("%dk", size/1024))
	out, err := exec.CommandContext(ctx, "mke2fs", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mke2fs -t %s on %s at offset %d: %v: %s", fstype, img, off, err, strings.TrimSpace(string(out)))
	}
	return nil
}
