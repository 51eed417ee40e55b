package diskimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/uuid"
)

// Filesystem types Probe reports.
const (
	FSExt2     = "ext2"
	FSExt3     = "ext3"
	FSExt4     = "ext4"
	FSVFAT     = "vfat"
	FSXFS      = "xfs"
	FSBtrfs    = "btrfs"
	FSSwap     = "swap"
	FSSquashfs = "squashfs"
	FSLVM      = "LVM2_member"
	FSRAID     = "linux_raid_member"
	FSISO9660  = "iso9660"
)

// FS is a filesystem (or other signature) found on a partition, like a blkid line.
type FS struct {
	Partition int   // partition number; 0 for a filesystem on the whole image
	Offset    int64 // bytes from the start of the image
	Size      int64
	Type      string // one of the FS* constants, or "" when nothing was recognised
	Label     string
	UUID      string
	// PartUUID and PartFlag describe the partition (empty for the whole image).
	PartUUID string
	PartFlag string
}

// Probe reads the partition table of img and the superblock of each partition, the way
// blkid does. An image without a partition table is probed as one filesystem
// (Partition 0). Partitions with no recognised signature are listed with an empty Type;
// an extended msdos partition is skipped.
func Probe(img string) ([]FS, error) {
	size, err := imageSize(img)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(img)
	if err != nil {
		return nil, fmt.Errorf("diskimage: probe: %w", err)
	}
	defer f.Close()
	out, err := ProbeFrom(f, size)
	if err != nil {
		return nil, fmt.Errorf("diskimage: probe %s: %w", img, err)
	}
	return out, nil
}

// ProbeFrom is Probe on a disk of size bytes read through r.
func ProbeFrom(r io.ReaderAt, size int64) ([]FS, error) {
	t, err := ReadTableFrom(r, size)
	if errors.Is(err, ErrNoTable) {
		fs, perr := ProbeRegion(r, 0, size)
		if perr != nil {
			return nil, perr
		}
		return []FS{fs}, nil
	}
	if err != nil {
		return nil, err
	}
	var out []FS
	for _, p := range t.Partitions {
		if p.Flag == FlagExtended {
			continue
		}
		fs, err := ProbeRegion(r, p.Start, p.Size)
		if err != nil {
			return nil, fmt.Errorf("partition %d: %w", p.Number, err)
		}
		fs.Partition = p.Number
		fs.PartUUID = strings.ToLower(p.UUID)
		fs.PartFlag = p.Flag
		out = append(out, fs)
	}
	return out, nil
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.TrimRight(string(b), " ")
}

// ProbeRegion identifies the filesystem in [off, off+size) of r. A region too short to hold
// a signature, or with none recognised, gives an FS with an empty Type and no error.
func ProbeRegion(r io.ReaderAt, off, size int64) (FS, error) {
	fs := FS{Offset: off, Size: size}
	n := int64(128 << 10)
	if n > size {
		n = size
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return fs, fmt.Errorf("reading superblock area at %d: %w", off, err)
	}
	at := func(o, l int) []byte {
		if o+l > len(buf) {
			return nil
		}
		return buf[o : o+l]
	}
	// ext2/3/4: magic 0xEF53 at 1024+56
	if m := at(1024+56, 2); m != nil && binary.LittleEndian.Uint16(m) == 0xef53 {
		sb := at(1024, 1024)
		compat := binary.LittleEndian.Uint32(sb[92:])
		incompat := binary.LittleEndian.Uint32(sb[96:])
		rocompat := binary.LittleEndian.Uint32(sb[100:])
		fs.Type = FSExt2
		if compat&0x4 != 0 { // has_journal
			fs.Type = FSExt3
		}
		// extents, 64bit, flex_bg, or ro features beyond ext3 (huge_file, dir_nlink,
		// extra_isize, metadata_csum) make it ext4
		if incompat&(0x40|0x80|0x200) != 0 || rocompat&(0x8|0x20|0x40|0x400) != 0 {
			fs.Type = FSExt4
		}
		u, _ := uuid.FromBytes(sb[104:120])
		fs.UUID = u.String()
		fs.Label = cstr(sb[120:136])
		return fs, nil
	}
	if m := at(0, 4); m != nil && string(m) == "XFSB" {
		fs.Type = FSXFS
		u, _ := uuid.FromBytes(buf[32:48])
		fs.UUID = u.String()
		fs.Label = cstr(buf[108:120])
		return fs, nil
	}
	if m := at(0, 4); m != nil && string(m) == "hsqs" {
		fs.Type = FSSquashfs
		return fs, nil
	}
	if m := at(65536+64, 8); m != nil && string(m) == "_BHRfS_M" {
		fs.Type = FSBtrfs
		sb := buf[65536:]
		u, _ := uuid.FromBytes(sb[32:48])
		fs.UUID = u.String()
		fs.Label = cstr(sb[299 : 299+256])
		return fs, nil
	}
	for _, ps := range []int{4096, 8192, 16384, 65536} {
		if m := at(ps-10, 10); m != nil && (string(m) == "SWAPSPACE2" || string(m) == "SWAP-SPACE") {
			fs.Type = FSSwap
			if string(m) == "SWAPSPACE2" {
				u, _ := uuid.FromBytes(buf[1036:1052])
				fs.UUID = u.String()
				fs.Label = cstr(buf[1052:1068])
			}
			return fs, nil
		}
	}
	if m := at(512+0, 8); m != nil && string(m) == "LABELONE" && string(buf[512+24:512+32]) == "LVM2 001" {
		fs.Type = FSLVM
		return fs, nil
	}
	for _, o := range []int{4096, 0} { // md superblock 1.2 / 1.1
		if m := at(o, 4); m != nil && binary.LittleEndian.Uint32(m) == 0xa92b4efc {
			fs.Type = FSRAID
			u, _ := uuid.FromBytes(buf[o+16 : o+32])
			fs.UUID = u.String()
			fs.Label = cstr(buf[o+32 : o+64])
			return fs, nil
		}
	}
	if m := at(32769, 5); m != nil && string(m) == "CD001" {
		fs.Type = FSISO9660
		fs.Label = cstr(buf[32768+40 : 32768+72])
		return fs, nil
	}
	// FAT: a boot sector with a jump, 0x55AA, a sane BPB and a FAT type string
	if bs := at(0, 512); bs != nil && binary.LittleEndian.Uint16(bs[510:]) == 0xaa55 && (bs[0] == 0xeb || bs[0] == 0xe9) {
		bps := binary.LittleEndian.Uint16(bs[11:])
		spc := bs[13]
		if (bps == 512 || bps == 1024 || bps == 2048 || bps == 4096) && spc != 0 && spc&(spc-1) == 0 {
			var id uint32
			var label string
			switch {
			case string(bs[82:87]) == "FAT32":
				id = binary.LittleEndian.Uint32(bs[67:])
				label = cstr(bs[71:82])
			case strings.HasPrefix(string(bs[54:59]), "FAT1"):
				id = binary.LittleEndian.Uint32(bs[39:])
				label = cstr(bs[43:54])
			default:
				return fs, nil
			}
			fs.Type = FSVFAT
			fs.UUID = fmt.Sprintf("%04X-%04X", id>>16, id&0xffff)
			if label != "NO NAME" {
				fs.Label = label
			}
			return fs, nil
		}
	}
	return fs, nil
}
