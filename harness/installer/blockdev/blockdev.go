// Package blockdev is the installer's storage backend for real block devices: it shells
// out like curtin does (sgdisk/sfdisk, wipefs, mkfs.*, mount, vgcreate/lvcreate, partprobe,
// udevadm settle, blkid) and runs as root inside the machine's ephemeral environment.
package blockdev

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
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/maasemu/maasemu/harness/diskimage"
	"github.com/maasemu/maasemu/harness/installer/storage"
)

// Backend installs onto block devices.
type Backend struct {
	// Disks, when set, are the only devices installed on (in this order); otherwise disks
	// are discovered in /sys/block (non-removable, not loop, ram, zram, sr, dm or md).
	Disks []string
	// PartitionDevice, when set, returns the device node of partition number of disk
	// spanning [start, start+size) bytes. Kernels that make partition devices need none;
	// hosts that make no loop partitions set it (e.g. to a loop device with --offset).
	PartitionDevice func(ctx context.Context, disk string, number int, start, size int64) (string, error)
	// Root is "/" normally; tests may point device lookups elsewhere (sysfs and /dev/disk).
	Root string

	mu     sync.Mutex
	dev    map[string]string // storage id -> device path
	fsuuid map[string]string // format id -> fs UUID
	mounts []string          // mount points under the target, in mount order
}

// New returns a Backend.
func New() *Backend { return &Backend{} }

func (b *Backend) init() {
	if b.dev == nil {
		b.dev = map[string]string{}
		b.fsuuid = map[string]string{}
	}
}

func (b *Backend) path(p string) string {
	if b.Root == "" || b.Root == "/" {
		return p
	}
	return filepath.Join(b.Root, p)
}

// run runs a command, its output to log, returning curtin-style errors.
func run(ctx context.Context, log io.Writer, stdin io.Reader, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.Stdin = stdin
	err := cmd.Run()
	if log != nil && out.Len() > 0 {
		log.Write(out.Bytes())
	}
	if err != nil {
		code := "-"
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = strconv.Itoa(ee.ExitCode())
		}
		return out.String(), fmt.Errorf("Unexpected error while running command.\nCommand: %s\nExit code: %s\nReason: -\nStdout: %s\nStderr: ''", storage.PyList(append([]string{name}, args...)), code, indent(out.String()))
	}
	return out.String(), nil
}

func indent(s string) string {
	if s == "" {
		return "''"
	}
	return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n        ")
}

func have(name string) bool { _, err := exec.LookPath(name); return err == nil }

// settle is udevadm settle when udev is there.
func settle(ctx context.Context) {
	if have("udevadm") {
		_, _ = run(ctx, nil, nil, "udevadm", "settle")
	}
}

// rescan is block.rescan_block_devices for one disk.
func rescan(ctx context.Context, disk string) {
	switch {
	case have("partprobe"):
		_, _ = run(ctx, nil, nil, "partprobe", disk)
	case have("blockdev"):
		_, _ = run(ctx, nil, nil, "blockdev", "--rereadpt", disk)
	}
	settle(ctx)
}

// kname is the kernel name of a device path (resolving symlinks).
func kname(dev string) string {
	if r, err := filepath.EvalSymlinks(dev); err == nil {
		dev = r
	}
	return filepath.Base(dev)
}

func partKname(disk string, n int) string {
	k := kname(disk)
	if last := k[len(k)-1]; last >= '0' && last <= '9' {
		return fmt.Sprintf("%sp%d", k, n)
	}
	return fmt.Sprintf("%s%d", k, n)
}

func readSys(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

// installable lists the disks curtin would consider (block.get_installable_blockdevs).
func (b *Backend) installable() []string {
	if len(b.Disks) > 0 {
		return b.Disks
	}
	ents, _ := os.ReadDir(b.path("/sys/block"))
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") || strings.HasPrefix(n, "sr") || strings.HasPrefix(n, "dm-") || strings.HasPrefix(n, "md") {
			continue
		}
		if readSys(b.path("/sys/block/"+n+"/removable")) == "1" || readSys(b.path("/sys/block/"+n+"/size")) == "0" {
			continue
		}
		out = append(out, "/dev/"+n)
	}
	sort.Strings(out)
	return out
}

// lookupDisk is block.lookup_disk and friends: serial through /dev/disk/by-id (the
// shortest name containing it), else /sys/block/*/serial or device/serial; wwn; path.
func (b *Backend) lookupDisk(it storage.Item) (string, error) {
	if it.Serial != "" {
		s := strings.ReplaceAll(it.Serial, " ", "_")
		ents, err := os.ReadDir(b.path("/dev/disk/by-id"))
		if err == nil {
			var names []string
			for _, e := range ents {
				if strings.Contains(e.Name(), s) {
					names = append(names, e.Name())
				}
			}
			sort.Slice(names, func(i, j int) bool { return len(names[i]) < len(names[j]) })
			if len(names) > 0 {
				p, err := filepath.EvalSymlinks(b.path("/dev/disk/by-id/" + names[0]))
				if err == nil {
					return p, nil
				}
			}
		}
		for _, d := range b.installable() {
			k := kname(d)
			for _, f := range []string{"/sys/block/" + k + "/serial", "/sys/block/" + k + "/device/serial"} {
				if v := readSys(b.path(f)); v != "" && strings.Contains(strings.ReplaceAll(v, " ", "_"), s) {
					return d, nil
				}
			}
		}
		return "", fmt.Errorf("no disk with serial '%s' found", s)
	}
	if it.WWN != "" {
		for _, d := range b.installable() {
			k := kname(d)
			for _, f := range []string{"/sys/block/" + k + "/wwid", "/sys/block/" + k + "/device/wwid"} {
				if v := readSys(b.path(f)); v != "" && strings.Contains(v, strings.TrimPrefix(it.WWN, "0x")) {
					return d, nil
				}
			}
		}
		return "", fmt.Errorf("no disk with wwn '%s' found", it.WWN)
	}
	if it.Path != "" {
		if _, err := os.Stat(it.Path); err != nil {
			return "", fmt.Errorf("disk '%s': path %s does not exist", it.ID, it.Path)
		}
		return it.Path, nil
	}
	return "", fmt.Errorf("disk '%s' has no serial, wwn or path to find it by", it.ID)
}

// ClearHolders deactivates volume groups on the named disks and refuses disks that are
// still held (mounted partitions, device-mapper or md on top).
func (b *Backend) ClearHolders(ctx context.Context, sc *storage.Config, log io.Writer) error {
	for _, it := range sc.Disks() {
		if it.Preserve {
			continue
		}
		d, err := b.lookupDisk(it)
		if err != nil {
			fmt.Fprintf(log, "clear-holders: skipping %s: %v\n", it.ID, err)
			continue
		}
		if have("pvs") {
			out, _ := run(ctx, nil, nil, "pvs", "--noheadings", "-o", "pv_name,vg_name")
			for _, l := range strings.Split(out, "\n") {
				f := strings.Fields(l)
				if len(f) == 2 && strings.HasPrefix(f[0], d) {
					_, _ = run(ctx, log, nil, "vgchange", "-an", f[1])
				}
			}
		}
		k := kname(d)
		holders, _ := filepath.Glob(b.path("/sys/block/" + k + "/*/holders/*"))
		more, _ := filepath.Glob(b.path("/sys/block/" + k + "/holders/*"))
		holders = append(holders, more...)
		if len(holders) > 0 {
			var hs []string
			for _, h := range holders {
				hs = append(hs, filepath.Base(h))
			}
			return fmt.Errorf("clear-holders: %s is still held by %v; maasemu does not tear down existing raid/bcache/crypt stacks", d, hs)
		}
	}
	return nil
}

// Apply applies one storage entry.
func (b *Backend) Apply(ctx context.Context, sc *storage.Config, it storage.Item, target string, log io.Writer) (storage.Applied, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	switch it.Type {
	case "disk":
		return b.disk(ctx, it, log)
	case "partition":
		return b.partition(ctx, sc, it, log)
	case "format":
		return b.format(ctx, it, log)
	case "mount":
		return b.mount(ctx, sc, it, target, log)
	case "lvm_volgroup":
		return b.volgroup(ctx, it, log)
	case "lvm_partition":
		return b.logicalVolume(ctx, sc, it, log)
	}
	return storage.Applied{}, fmt.Errorf("%s %q is not supported by maasemu", it.Type, it.ID)
}

func (b *Backend) disk(ctx context.Context, it storage.Item, log io.Writer) (storage.Applied, error) {
	d, err := b.lookupDisk(it)
	if err != nil {
		return storage.Applied{}, err
	}
	b.dev[it.ID] = d
	if it.Preserve {
		fmt.Fprintf(log, "disk '%s' marked to be preserved, so keeping partition table\n", d)
		return storage.Applied{Device: d}, nil
	}
	if storage.Boolean(it.Wipe) {
		if err := wipeVolume(ctx, d, it.Wipe, log); err != nil {
			return storage.Applied{}, err
		}
	}
	switch it.Ptable {
	case "gpt":
		fmt.Fprintf(log, "labeling device: '%s' with '%s' partition table\n", d, it.Ptable)
		if err := wipeVolume(ctx, d, "superblock", log); err != nil {
			return storage.Applied{}, err
		}
	case "msdos", "dos":
		fmt.Fprintf(log, "labeling device: '%s' with '%s' partition table\n", d, it.Ptable)
		if have("parted") {
			_, err = run(ctx, log, nil, "parted", d, "--script", "mklabel", "msdos")
		} else {
			_, err = run(ctx, log, strings.NewReader("label: dos\n"), "sfdisk", "--quiet", "--wipe", "always", d)
		}
		if err != nil {
			return storage.Applied{}, err
		}
	case "", "unsupported":
	default:
		return storage.Applied{}, fmt.Errorf("ptable %s of disk %q is not supported by maasemu", it.Ptable, it.ID)
	}
	return storage.Applied{Device: d}, nil
}

// wipeVolume is block.wipe_volume.
func wipeVolume(ctx context.Context, dev, mode string, log io.Writer) error {
	switch mode {
	case "superblock", "superblock-recursive":
		if have("wipefs") {
			_, _ = run(ctx, log, nil, "wipefs", "--all", "--force", dev)
		}
		size, err := devSize(dev)
		if err != nil {
			return err
		}
		return zero(dev, []int64{0, max(0, size-1<<20)}, 1<<20)
	case "pvremove":
		_, _ = run(ctx, log, nil, "pvremove", "--force", "--force", "--yes", dev)
		return nil
	case "zero", "random":
		return fill(ctx, dev, mode == "random")
	}
	return fmt.Errorf("wipe mode '%s' is not one of superblock, superblock-recursive, zero, random, pvremove", mode)
}

func devSize(dev string) (int64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", dev, err)
	}
	return n, nil
}

// fill overwrites the whole of dev with zeros or random bytes, as curtin's wipe_file does.
func fill(ctx context.Context, dev string, random bool) error {
	size, err := devSize(dev)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 4<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(int64(len(buf)), size-off)
		if random {
			rand.Read(buf[:n])
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return fmt.Errorf("wiping %s at %d: %w", dev, off, err)
		}
	}
	return f.Sync()
}

// zero writes length zero bytes at each offset of dev.
func zero(dev string, offsets []int64, length int64) error {
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, length)
	for _, o := range offsets {
		if _, err := f.WriteAt(buf, o); err != nil {
			return fmt.Errorf("zeroing %s at %d: %w", dev, o, err)
		}
	}
	return f.Sync()
}

func (b *Backend) partition(ctx context.Context, sc *storage.Config, it storage.Item, log io.Writer) (storage.Applied, error) {
	disk, ok := b.dev[it.Device]
	if !ok {
		return storage.Applied{}, fmt.Errorf("partition %q: its disk %q was not configured before it", it.ID, it.Device)
	}
	dit, _ := sc.Get(it.Device)
	exts, err := sc.Layout(512)
	if err != nil {
		return storage.Applied{}, err
	}
	var e storage.Extent
	for _, x := range exts {
		if x.ID == it.ID {
			e = x
		}
	}
	if !it.Preserve {
		fmt.Fprintf(log, "adding partition '%s' to disk '%s' (ptable: '%s')\n", it.ID, it.Device, dit.Ptable)
		start, end := e.Start/512, (e.Start+e.Size)/512-1
		if storage.Boolean(it.Wipe) && it.Flag != "extended" {
			if err := zero(disk, []int64{e.Start}, min(1<<20, e.Size)); err != nil {
				return storage.Applied{}, err
			}
		}
		switch dit.Ptable {
		case "gpt":
			code := storage.SgdiskFlags["linux"]
			if c, ok := storage.SgdiskFlags[it.Flag]; ok {
				code = c
			}
			if _, err := run(ctx, log, nil, "sgdisk", "--new", fmt.Sprintf("%d:%d:%d", e.Number, start, end), fmt.Sprintf("--typecode=%d:%s", e.Number, code), disk); err != nil {
				return storage.Applied{}, err
			}
		case "msdos", "dos":
			if it.Flag == "prep" {
				return storage.Applied{}, errors.New("PReP partitions require a GPT partition table")
			}
			typ := map[string]string{"extended": "5", "swap": "82", "lvm": "8e", "raid": "fd", "msftres": "c"}[it.Flag]
			if typ == "" {
				typ = "83"
			}
			boot := ""
			if it.Flag == "boot" {
				boot = ", bootable"
			}
			spec := fmt.Sprintf("%d : start=%d, size=%d, type=%s%s\n", e.Number, start, end-start+1, typ, boot)
			if _, err := run(ctx, log, strings.NewReader(spec), "sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", "-N", strconv.Itoa(e.Number), disk); err != nil {
				return storage.Applied{}, err
			}
		default:
			return storage.Applied{}, errors.New("parent partition has invalid partition table")
		}
		rescan(ctx, disk)
	}
	p, err := b.partDevice(ctx, disk, e.Number, e.Start, e.Size)
	if err != nil {
		return storage.Applied{}, err
	}
	b.dev[it.ID] = p
	if it.Wipe != "" && it.Wipe != "superblock" && it.Flag != "extended" {
		if err := wipeVolume(ctx, p, it.Wipe, log); err != nil {
			return storage.Applied{}, err
		}
	}
	return storage.Applied{Device: p}, nil
}

// partDevice returns the device node of a partition, waiting briefly for udev.
func (b *Backend) partDevice(ctx context.Context, disk string, n int, start, size int64) (string, error) {
	if b.PartitionDevice != nil {
		return b.PartitionDevice(ctx, disk, n, start, size)
	}
	p := "/dev/" + partKname(disk, n)
	for i := 0; i < 50; i++ {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("partition device %s did not appear after creating partition %d on %s", p, n, disk)
}

func (b *Backend) format(ctx context.Context, it storage.Item, log io.Writer) (storage.Applied, error) {
	vol, ok := b.dev[it.Volume]
	if !ok {
		return storage.Applied{}, fmt.Errorf("format %q: volume %q was not configured before it", it.ID, it.Volume)
	}
	if it.Preserve {
		id, _ := run(ctx, nil, nil, "blkid", "-o", "value", "-s", "UUID", vol)
		b.fsuuid[it.ID] = strings.TrimSpace(id)
		return storage.Applied{Device: vol, FSUUID: b.fsuuid[it.ID]}, nil
	}
	id := it.UUID
	if id == "" {
		id = uuid.NewString()
	}
	args, err := storage.MkfsArgs(it, vol, id)
	if err != nil {
		return storage.Applied{}, err
	}
	if !have(args[0]) {
		return storage.Applied{}, fmt.Errorf("need '%s' but it could not be found", args[0])
	}
	if _, err := run(ctx, log, nil, args[0], args[1:]...); err != nil {
		return storage.Applied{}, err
	}
	got, _ := run(ctx, nil, nil, "blkid", "-c", "/dev/null", "-o", "value", "-s", "UUID", vol)
	if g := strings.TrimSpace(got); g != "" {
		id = g
	}
	b.fsuuid[it.ID] = id
	return storage.Applied{Device: vol, FSUUID: id}, nil
}

func (b *Backend) mount(ctx context.Context, sc *storage.Config, it storage.Item, target string, log io.Writer) (storage.Applied, error) {
	if it.Device == "" {
		return storage.Applied{}, nil
	}
	f, _ := sc.Get(it.Device)
	vol := b.dev[f.Volume]
	ap := storage.Applied{Device: vol, FSUUID: b.fsuuid[it.Device]}
	ap.Spec = b.volumeSpec(ctx, sc, f.Volume, vol, ap.FSUUID)
	if it.MountPath == "" || it.MountPath == "none" || f.Fstype == "swap" {
		return ap, nil
	}
	mp := filepath.Join(target, it.MountPath)
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return ap, err
	}
	fstype := f.Fstype
	if storage.FSFamily(fstype) == "fat" {
		fstype = "vfat"
	}
	args := []string{"-t", fstype}
	if it.Options != "" && it.Options != "defaults" {
		args = append(args, "-o", it.Options)
	}
	if _, err := run(ctx, log, nil, "mount", append(args, vol, mp)...); err != nil {
		return ap, err
	}
	b.mounts = append(b.mounts, mp)
	return ap, nil
}

// volumeSpec is block_meta.get_volume_spec: dm-uuid for LVM, else by-uuid.
func (b *Backend) volumeSpec(ctx context.Context, sc *storage.Config, volID, vol, fsuuid string) string {
	if v, ok := sc.Get(volID); ok && v.Type == "lvm_partition" {
		out, err := run(ctx, nil, nil, "lvs", "--noheadings", "-o", "vg_uuid,lv_uuid", vol)
		if f := strings.Fields(out); err == nil && len(f) == 2 {
			return "/dev/disk/by-id/dm-uuid-LVM-" + strings.ReplaceAll(f[0], "-", "") + strings.ReplaceAll(f[1], "-", "")
		}
	}
	if fsuuid != "" {
		return "/dev/disk/by-uuid/" + fsuuid
	}
	return vol
}

func (b *Backend) volgroup(ctx context.Context, it storage.Item, log io.Writer) (storage.Applied, error) {
	var devs []string
	for _, d := range it.Devices {
		p, ok := b.dev[d]
		if !ok {
			return storage.Applied{}, fmt.Errorf("device '%s' could not be found in storage config", d)
		}
		devs = append(devs, p)
	}
	if !it.Preserve {
		if _, err := run(ctx, log, nil, "vgcreate", append([]string{"--force", "--zero=y", "--yes", it.Name}, devs...)...); err != nil {
			return storage.Applied{}, err
		}
	}
	b.dev[it.ID] = "/dev/" + it.Name
	return storage.Applied{Device: "/dev/" + it.Name}, nil
}

func (b *Backend) logicalVolume(ctx context.Context, sc *storage.Config, it storage.Item, log io.Writer) (storage.Applied, error) {
	vg, ok := sc.Get(it.Volgroup)
	if !ok {
		return storage.Applied{}, fmt.Errorf("lvm_partition %q: volgroup %q not in storage config", it.ID, it.Volgroup)
	}
	if !it.Preserve {
		args := []string{"-n", it.Name, "--yes", "--wipesignatures", "y", "--zero", "y"}
		if it.Size != "" {
			n, err := storage.HumanToBytes(it.Size)
			if err != nil {
				return storage.Applied{}, err
			}
			args = append(args, "--size", fmt.Sprintf("%dB", n))
		} else {
			args = append(args, "-l", "100%FREE")
		}
		args = append(args, vg.Name)
		if _, err := run(ctx, log, nil, "lvcreate", args...); err != nil {
			return storage.Applied{}, err
		}
	}
	p := "/dev/" + vg.Name + "/" + it.Name
	b.dev[it.ID] = p
	settle(ctx)
	return storage.Applied{Device: p}, nil
}

// WriteImage writes the image to the install disk like curtin's dd pipeline, then finds
// and mounts the root partition.
func (b *Backend) WriteImage(ctx context.Context, sc *storage.Config, r io.Reader, target string, log io.Writer) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	disk := ""
	if sc != nil {
		for _, it := range sc.Items {
			if it.Serial == "" {
				continue
			}
			d, err := b.lookupDisk(it)
			if err != nil {
				fmt.Fprintf(log, "Skipping disk '%s': %v\n", it.ID, err)
				continue
			}
			if it.GrubDevice {
				disk = d
				break
			}
		}
	}
	if disk == "" {
		ds := b.installable()
		if len(ds) == 0 {
			return errors.New("No valid target devices found that curtin can install on.")
		}
		disk = ds[0]
	}
	fmt.Fprintf(log, "installing in 'simple' mode to '%s'\n", disk)
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	buf := make([]byte, 4<<20)
	var written int64
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			m, werr := f.Write(buf[:n])
			written += int64(m)
			if werr != nil {
				f.Close()
				if errors.Is(werr, syscall.ENOSPC) || m < n {
					return &storage.DiskFullError{Device: disk, Written: written}
				}
				return werr
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			f.Close()
			return rerr
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	f.Close()
	rescan(ctx, disk)
	if have("vgchange") {
		_, _ = run(ctx, nil, nil, "vgchange", "--activate=y")
	}
	settle(ctx)
	parts, err := b.partitions(ctx, disk)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "curtin-root")
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	for _, p := range parts {
		if _, err := run(ctx, nil, nil, "mount", p, tmp); err != nil {
			continue
		}
		found := ""
		for _, m := range storage.RootMarkers {
			if st, err := os.Stat(filepath.Join(tmp, m)); err == nil && st.IsDir() {
				found = m
				break
			}
		}
		_, _ = run(ctx, nil, nil, "umount", tmp)
		if found != "" {
			fmt.Fprintf(log, "Found path '%s' on device '%s'\n", found, p)
			if _, err := run(ctx, log, nil, "mount", p, target); err != nil {
				return err
			}
			b.mounts = append(b.mounts, target)
			b.dev["__dd_root"] = p
			return nil
		}
	}
	return storage.DDNotFoundError([]string{disk})
}

// partitions lists a disk's partition devices from its table (read in userspace, so that
// PartitionDevice works where the kernel makes no partition nodes).
func (b *Backend) partitions(ctx context.Context, disk string) ([]string, error) {
	size, err := devSize(disk)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(disk)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := diskimage.ReadTableFrom(f, size)
	if err != nil {
		return nil, nil // no table: nothing to search
	}
	var out []string
	for _, p := range t.Partitions {
		if p.Flag == diskimage.FlagExtended {
			continue
		}
		d, err := b.partDevice(ctx, disk, p.Number, p.Start, p.Size)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// DevicePath resolves a storage id.
func (b *Backend) DevicePath(_ context.Context, sc *storage.Config, id string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	if p, ok := b.dev[id]; ok {
		return p, nil
	}
	if sc != nil {
		if it, ok := sc.Get(id); ok && it.Type == "disk" {
			return b.lookupDisk(*it)
		}
	}
	return "", fmt.Errorf("Failed to find storage volume id='%s'", id)
}

// TargetDisks returns the parent disks of the devices mounted under target.
func (b *Backend) TargetDisks(_ context.Context, target string) ([]string, error) {
	mounts, _ := os.ReadFile("/proc/self/mounts")
	seen := map[string]bool{}
	var out []string
	for _, l := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || !strings.HasPrefix(f[0], "/dev/") || !(f[1] == target || strings.HasPrefix(f[1], target+"/")) {
			continue
		}
		k := kname(f[0])
		parent := k
		if link, err := filepath.EvalSymlinks("/sys/class/block/" + k); err == nil {
			if _, err := os.Stat(filepath.Join(link, "partition")); err == nil {
				parent = filepath.Base(filepath.Dir(link))
			}
		}
		d := "/dev/" + parent
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out, nil
}

// Unmount unmounts everything under target, deepest first, and syncs.
func (b *Backend) Unmount(ctx context.Context, target string, log io.Writer) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	mounts, _ := os.ReadFile("/proc/self/mounts")
	var under []string
	for _, l := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && (f[1] == target || strings.HasPrefix(f[1], target+"/")) {
			under = append(under, f[1])
		}
	}
	sort.Slice(under, func(i, j int) bool { return len(under[i]) > len(under[j]) })
	var errs []error
	for _, m := range under {
		if err := syscall.Unmount(m, 0); err != nil {
			errs = append(errs, fmt.Errorf("umount %s: %w", m, err))
		}
	}
	b.mounts = nil
	syscall.Sync()
	return errors.Join(errs...)
}
