package diskimage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/google/uuid"
)

// Partition table types.
const (
	GPT   = "gpt"
	MSDOS = "msdos"
)

// Curtin partition flags (storage config v1 "flag").
const (
	FlagBIOSGrub = "bios_grub"
	FlagBoot     = "boot" // the ESP on gpt, the active flag on msdos
	FlagPReP     = "prep"
	FlagLVM      = "lvm"
	FlagRAID     = "raid"
	FlagSwap     = "swap"
	FlagLinux    = "linux"
	FlagHome     = "home"
	FlagMSFTRes  = "msftres"
	FlagLogical  = "logical"
	FlagExtended = "extended"
)

// Well-known GPT partition type GUIDs (upper case, as sgdisk prints them).
const (
	TypeBIOSBoot   = "21686148-6449-6E6F-744E-656564454649"
	TypeESP        = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	TypePReP       = "9E1A2D38-C612-4316-AA26-8B49521E5A8B"
	TypeLinuxLVM   = "E6D6D379-F507-44C2-A23C-238F2A3DF928"
	TypeLinuxRAID  = "A19D880F-05FC-4D3B-A006-743F0F84911E"
	TypeLinuxSwap  = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
	TypeLinuxFS    = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	TypeLinuxHome  = "933AC7E1-2EB4-4F13-B844-0E14E2AEF915"
	TypeMSReserved = "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"
)

var gptTypeForFlag = map[string]string{
	FlagBIOSGrub: TypeBIOSBoot,
	FlagBoot:     TypeESP,
	FlagPReP:     TypePReP,
	FlagLVM:      TypeLinuxLVM,
	FlagRAID:     TypeLinuxRAID,
	FlagSwap:     TypeLinuxSwap,
	FlagLinux:    TypeLinuxFS,
	"":           TypeLinuxFS,
	FlagHome:     TypeLinuxHome,
	FlagMSFTRes:  TypeMSReserved,
}

var mbrTypeForFlag = map[string]byte{
	"":           0x83,
	FlagLinux:    0x83,
	FlagHome:     0x83,
	FlagBoot:     0x83, // plus the active flag
	FlagLogical:  0x83,
	FlagLVM:      0x8e,
	FlagRAID:     0xfd,
	FlagSwap:     0x82,
	FlagPReP:     0x41,
	FlagExtended: 0x05,
	FlagMSFTRes:  0x0c,
}

// Table is a partition table.
type Table struct {
	Type string // GPT or MSDOS
	// DiskGUID is the GPT disk GUID, or for msdos the 32-bit disk identifier as 8 hex
	// digits (blkid's PTUUID). Empty on write: one is generated.
	DiskGUID   string
	Partitions []Partition
}

// Partition is one partition. Start and Size are in bytes and must be sector aligned.
type Partition struct {
	Number int
	Start  int64
	Size   int64
	// Flag is the curtin flag; on write it chooses the type when TypeGUID/MBRType are unset,
	// on read it is derived from the type.
	Flag     string
	TypeGUID string // gpt only
	MBRType  byte   // msdos only: the partition type byte
	Bootable bool   // msdos only: the active flag (set for FlagBoot)
	Name     string // gpt only
	UUID     string // gpt partition GUID; empty on write: one is generated
}

// End returns the first byte after the partition.
func (p Partition) End() int64 { return p.Start + p.Size }

const (
	gptEntries   = 128
	gptFirstLBA  = 2 + gptEntries*128/SectorSize // 34
	mbrSignature = 0xaa55
)

var hexID = regexp.MustCompile(`^(0x)?[0-9a-fA-F]{1,8}$`)

// WriteTable writes t to the image file at path. For gpt it writes a protective MBR
// (keeping the boot code already in sector 0), the primary and backup headers and
// partition arrays; partition types come from TypeGUID or else the curtin flag. For msdos
// it writes the four primary entries and the EBR chain of logical partitions inside the
// extended one, keeping the boot code. The table is validated first; on error nothing is
// written.
func WriteTable(path string, t Table) error {
	size, err := imageSize(path)
	if err != nil {
		return err
	}
	t, err = normalize(path, size, t)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("diskimage: write table: %w", err)
	}
	defer f.Close()
	switch t.Type {
	case GPT:
		err = writeGPT(f, size, t)
	default:
		err = writeMBR(f, t)
	}
	if err != nil {
		return fmt.Errorf("diskimage: write %s table to %s: %w", t.Type, path, err)
	}
	return f.Close()
}

// normalize validates t against an image of size bytes and fills in derived fields.
func normalize(path string, size int64, t Table) (Table, error) {
	bad := func(format string, a ...any) (Table, error) {
		return Table{}, fmt.Errorf("diskimage: partition table for %s: "+format, append([]any{path}, a...)...)
	}
	parts := append([]Partition(nil), t.Partitions...)
	sort.Slice(parts, func(i, j int) bool { return parts[i].Number < parts[j].Number })
	t.Partitions = parts
	switch t.Type {
	case GPT:
		if size < (gptFirstLBA*2+1)*SectorSize {
			return bad("image of %d bytes is too small for gpt", size)
		}
		if t.DiskGUID != "" {
			if _, err := uuid.Parse(t.DiskGUID); err != nil {
				return bad("disk GUID %q is not a GUID", t.DiskGUID)
			}
		}
		first := int64(gptFirstLBA * SectorSize)
		last := size - (gptFirstLBA-1)*SectorSize // first byte of the backup array
		seen := map[int]bool{}
		for i := range parts {
			p := &parts[i]
			if p.Number < 1 || p.Number > gptEntries {
				return bad("partition number %d must be in 1..%d", p.Number, gptEntries)
			}
			if seen[p.Number] {
				return bad("partition number %d is used twice", p.Number)
			}
			seen[p.Number] = true
			if err := checkPart(*p); err != nil {
				return bad("%v", err)
			}
			if p.Start < first || p.End() > last {
				return bad("partition %d [%d, %d) is outside the usable area [%d, %d)", p.Number, p.Start, p.End(), first, last)
			}
			if p.TypeGUID == "" {
				g, ok := gptTypeForFlag[p.Flag]
				if !ok {
					return bad("partition %d: flag %q has no gpt type (known: bios_grub boot prep lvm raid swap linux home msftres)", p.Number, p.Flag)
				}
				p.TypeGUID = g
			} else if _, err := uuid.Parse(p.TypeGUID); err != nil {
				return bad("partition %d: type GUID %q is not a GUID", p.Number, p.TypeGUID)
			}
			p.TypeGUID = strings.ToUpper(p.TypeGUID)
			if p.UUID != "" {
				if _, err := uuid.Parse(p.UUID); err != nil {
					return bad("partition %d: UUID %q is not a GUID", p.Number, p.UUID)
				}
			} else {
				p.UUID = uuid.NewString()
			}
			p.UUID = strings.ToUpper(p.UUID)
			if n := len([]rune(p.Name)); n > 36 {
				return bad("partition %d: name %q has %d characters, gpt allows 36", p.Number, p.Name, n)
			}
		}
		if err := checkOverlap(parts); err != nil {
			return bad("%v", err)
		}
	case MSDOS:
		if t.DiskGUID != "" && !hexID.MatchString(t.DiskGUID) {
			return bad("msdos disk identifier %q must be up to 8 hex digits", t.DiskGUID)
		}
		if size/SectorSize > 1<<32 {
			return bad("image of %d bytes is larger than msdos can address (2 TiB)", size)
		}
		var ext *Partition
		var primaries, logicals []Partition
		seen := map[int]bool{}
		for i := range parts {
			p := &parts[i]
			if seen[p.Number] {
				return bad("partition number %d is used twice", p.Number)
			}
			seen[p.Number] = true
			if err := checkPart(*p); err != nil {
				return bad("%v", err)
			}
			if p.Name != "" || p.TypeGUID != "" {
				return bad("partition %d: name and type GUID are gpt-only", p.Number)
			}
			if p.MBRType == 0 {
				b, ok := mbrTypeForFlag[p.Flag]
				if !ok {
					return bad("partition %d: flag %q is not valid on msdos (known: boot prep lvm raid swap linux home msftres logical extended)", p.Number, p.Flag)
				}
				p.MBRType = b
			}
			if p.Flag == FlagBoot {
				p.Bootable = true
			}
			if p.End() > size {
				return bad("partition %d [%d, %d) ends past the end of the image (%d bytes)", p.Number, p.Start, p.End(), size)
			}
			isExt := p.Flag == FlagExtended || p.MBRType == 0x05 || p.MBRType == 0x0f || p.MBRType == 0x85
			switch {
			case p.Number >= 1 && p.Number <= 4:
				if p.Flag == FlagLogical {
					return bad("partition %d: a logical partition must be numbered 5 or more", p.Number)
				}
				if p.Start < SectorSize {
					return bad("partition %d starts at %d, inside the MBR", p.Number, p.Start)
				}
				if isExt {
					if ext != nil {
						return bad("partitions %d and %d are both extended; msdos allows one", ext.Number, p.Number)
					}
					ext = p
				}
				primaries = append(primaries, *p)
			case p.Number >= 5:
				if isExt {
					return bad("partition %d: an extended partition must be numbered 1..4", p.Number)
				}
				logicals = append(logicals, *p)
			default:
				return bad("partition number %d must be 1..4 (primary) or 5 and up (logical)", p.Number)
			}
		}
		if err := checkOverlap(primaries); err != nil {
			return bad("%v", err)
		}
		if len(logicals) > 0 {
			if ext == nil {
				return bad("logical partitions need an extended partition")
			}
			for i, l := range logicals {
				if l.Number != 5+i {
					return bad("logical partitions must be numbered 5, 6, ... without gaps; got %d", l.Number)
				}
				// the first EBR is the extended partition's first sector; the others sit in the
				// sector before their logical partition
				if l.Start <= ext.Start || l.End() > ext.End() {
					return bad("logical partition %d [%d, %d) must lie inside extended partition %d [%d, %d) after its first sector (the EBR)", l.Number, l.Start, l.End(), ext.Number, ext.Start, ext.End())
				}
				if i > 0 && l.Start-SectorSize < logicals[i-1].End() {
					return bad("logical partition %d must start at least one sector after partition %d ends (room for its EBR)", l.Number, logicals[i-1].Number)
				}
			}
		}
	default:
		return bad("type %q must be %q or %q", t.Type, GPT, MSDOS)
	}
	return t, nil
}

func checkPart(p Partition) error {
	if p.Start%SectorSize != 0 || p.Start < 0 {
		return fmt.Errorf("partition %d: start %d must be a non-negative multiple of %d", p.Number, p.Start, SectorSize)
	}
	if p.Size <= 0 || p.Size%SectorSize != 0 {
		return fmt.Errorf("partition %d: size %d must be a positive multiple of %d", p.Number, p.Size, SectorSize)
	}
	return nil
}

func checkOverlap(parts []Partition) error {
	s := append([]Partition(nil), parts...)
	sort.Slice(s, func(i, j int) bool { return s[i].Start < s[j].Start })
	for i := 1; i < len(s); i++ {
		if s[i].Start < s[i-1].End() {
			return fmt.Errorf("partitions %d [%d, %d) and %d [%d, %d) overlap", s[i-1].Number, s[i-1].Start, s[i-1].End(), s[i].Number, s[i].Start, s[i].End())
		}
	}
	return nil
}

func writeGPT(f *os.File, size int64, t Table) error {
	gt := &gpt.Table{LogicalSectorSize: SectorSize, PhysicalSectorSize: SectorSize, GUID: t.DiskGUID, ProtectiveMBR: false}
	for _, p := range t.Partitions {
		gt.Partitions = append(gt.Partitions, &gpt.Partition{
			Index: p.Number,
			Start: uint64(p.Start / SectorSize),
			End:   uint64(p.End()/SectorSize - 1),
			Size:  uint64(p.Size),
			Type:  gpt.Type(p.TypeGUID),
			Name:  p.Name,
			GUID:  p.UUID,
		})
	}
	if err := gt.Write(f, size); err != nil {
		return err
	}
	// Protective MBR: one 0xEE entry over the whole disk (capped at 2^32-1 sectors as the
	// UEFI spec says), the rest of the table cleared, the boot code kept.
	mbr := make([]byte, SectorSize)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		return err
	}
	clear(mbr[446:510])
	e := mbr[446:462]
	e[1], e[2], e[3] = 0x00, 0x02, 0x00 // CHS 0/0/2
	e[4] = 0xee
	e[5], e[6], e[7] = 0xff, 0xff, 0xff
	binary.LittleEndian.PutUint32(e[8:], 1)
	sectors := size/SectorSize - 1
	if sectors > 0xffffffff {
		sectors = 0xffffffff
	}
	binary.LittleEndian.PutUint32(e[12:], uint32(sectors))
	binary.LittleEndian.PutUint16(mbr[510:], mbrSignature)
	_, err := f.WriteAt(mbr, 0)
	return err
}

func mbrEntry(b []byte, bootable bool, typ byte, lbaStart, sectors int64) {
	clear(b[:16])
	if bootable {
		b[0] = 0x80
	}
	// CHS fields: use the "beyond 1024 cylinders" marker everywhere; every current
	// firmware and tool uses the LBA fields.
	b[1], b[2], b[3] = 0xfe, 0xff, 0xff
	b[4] = typ
	b[5], b[6], b[7] = 0xfe, 0xff, 0xff
	binary.LittleEndian.PutUint32(b[8:], uint32(lbaStart))
	binary.LittleEndian.PutUint32(b[12:], uint32(sectors))
}

func writeMBR(f *os.File, t Table) error {
	mbr := make([]byte, SectorSize)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		return err
	}
	id := uint32(0)
	if t.DiskGUID != "" {
		var v uint64
		fmt.Sscanf(strings.TrimPrefix(strings.ToLower(t.DiskGUID), "0x"), "%x", &v)
		id = uint32(v)
	} else {
		u := uuid.New()
		id = binary.LittleEndian.Uint32(u[:4])
	}
	binary.LittleEndian.PutUint32(mbr[440:], id)
	mbr[444], mbr[445] = 0, 0
	clear(mbr[446:510])
	var ext *Partition
	var logicals []Partition
	for i := range t.Partitions {
		p := t.Partitions[i]
		if p.Number <= 4 {
			mbrEntry(mbr[446+16*(p.Number-1):], p.Bootable, p.MBRType, p.Start/SectorSize, p.Size/SectorSize)
			if p.MBRType == 0x05 || p.MBRType == 0x0f || p.MBRType == 0x85 {
				ext = &t.Partitions[i]
			}
		} else {
			logicals = append(logicals, p)
		}
	}
	binary.LittleEndian.PutUint16(mbr[510:], mbrSignature)
	// EBR chain: the EBR of logical i sits in the sector before it; entry 1 points at the
	// logical relative to its EBR, entry 2 at the next EBR relative to the extended start.
	if ext != nil {
		if len(logicals) == 0 {
			// an empty extended partition: zero its first sector so no stale chain remains
			if _, err := f.WriteAt(make([]byte, SectorSize), ext.Start); err != nil {
				return err
			}
		}
		ebrLBA := func(i int) int64 {
			if i == 0 {
				return ext.Start / SectorSize
			}
			return logicals[i].Start/SectorSize - 1
		}
		for i, l := range logicals {
			at := ebrLBA(i)
			ebr := make([]byte, SectorSize)
			mbrEntry(ebr[446:], l.Bootable, l.MBRType, l.Start/SectorSize-at, l.Size/SectorSize)
			if i+1 < len(logicals) {
				n := logicals[i+1]
				next := ebrLBA(i + 1)
				mbrEntry(ebr[462:], false, 0x05, next-ext.Start/SectorSize, n.End()/SectorSize-next)
			}
			binary.LittleEndian.PutUint16(ebr[510:], mbrSignature)
			if _, err := f.WriteAt(ebr, at*SectorSize); err != nil {
				return err
			}
		}
	}
	_, err := f.WriteAt(mbr, 0)
	return err
}

// ErrNoTable is returned by ReadTable when the image has neither a GPT nor an MBR.
var ErrNoTable = errors.New("no partition table")

// ReadTable reads the partition table of the image file at path. A GPT is recognised by
// its header (a protective MBR alone is not enough); otherwise an MBR with the 0x55AA
// signature and at least one entry is read, following the EBR chain of an extended
// partition. Flags are derived from the partition types.
func ReadTable(path string) (Table, error) {
	size, err := imageSize(path)
	if err != nil {
		return Table{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return Table{}, fmt.Errorf("diskimage: read table: %w", err)
	}
	defer f.Close()
	t, err := ReadTableFrom(f, size)
	if err != nil {
		return Table{}, fmt.Errorf("diskimage: read table of %s: %w", path, err)
	}
	return t, nil
}

// ReadTableFrom reads a partition table from r, a disk of size bytes.
func ReadTableFrom(r io.ReaderAt, size int64) (Table, error) {
	if size < 2*SectorSize {
		return Table{}, fmt.Errorf("%w: %d bytes is smaller than two sectors", ErrNoTable, size)
	}
	mbr := make([]byte, SectorSize)
	if _, err := r.ReadAt(mbr, 0); err != nil {
		return Table{}, err
	}
	hdr := make([]byte, SectorSize)
	if _, err := r.ReadAt(hdr, SectorSize); err != nil {
		return Table{}, err
	}
	if string(hdr[:8]) == "EFI PART" {
		return readGPT(r, size)
	}
	if binary.LittleEndian.Uint16(mbr[510:]) != mbrSignature {
		return Table{}, fmt.Errorf("%w: sector 0 has no 0x55AA signature and sector 1 no GPT header", ErrNoTable)
	}
	return readMBR(r, size, mbr)
}

// sectionFile adapts an io.ReaderAt to what go-diskfs reads tables from.
type sectionFile struct {
	*io.SectionReader
}

func (sectionFile) Stat() (os.FileInfo, error) { return nil, errors.New("no stat") }
func (sectionFile) Close() error               { return nil }

func readGPT(r io.ReaderAt, size int64) (Table, error) {
	gt, err := gpt.Read(sectionFile{io.NewSectionReader(r, 0, size)}, SectorSize, SectorSize)
	if err != nil {
		return Table{}, fmt.Errorf("gpt: %w", err)
	}
	t := Table{Type: GPT, DiskGUID: strings.ToUpper(gt.GUID)}
	for _, p := range gt.Partitions {
		typ := strings.ToUpper(string(p.Type))
		if p.End < p.Start {
			return Table{}, fmt.Errorf("gpt: partition %d ends (LBA %d) before it starts (LBA %d)", p.Index, p.End, p.Start)
		}
		q := Partition{
			Number:   p.Index,
			Start:    int64(p.Start) * SectorSize,
			Size:     int64(p.End-p.Start+1) * SectorSize,
			TypeGUID: typ,
			Name:     p.Name,
			UUID:     strings.ToUpper(p.GUID),
		}
		for fl, g := range gptTypeForFlag {
			if g == typ && fl != "" {
				q.Flag = fl
			}
		}
		if q.End() > size {
			return Table{}, fmt.Errorf("gpt: partition %d [%d, %d) ends past the end of the disk (%d bytes)", q.Number, q.Start, q.End(), size)
		}
		t.Partitions = append(t.Partitions, q)
	}
	sort.Slice(t.Partitions, func(i, j int) bool { return t.Partitions[i].Number < t.Partitions[j].Number })
	return t, nil
}

func mbrFlag(typ byte, bootable bool) string {
	switch {
	case typ == 0x05 || typ == 0x0f || typ == 0x85:
		return FlagExtended
	case bootable:
		return FlagBoot
	case typ == 0x8e:
		return FlagLVM
	case typ == 0xfd:
		return FlagRAID
	case typ == 0x82:
		return FlagSwap
	case typ == 0x41:
		return FlagPReP
	case typ == 0x0c || typ == 0x0b || typ == 0x07:
		return FlagMSFTRes
	case typ == 0x83:
		return FlagLinux
	}
	return ""
}

func readMBR(r io.ReaderAt, size int64, mbr []byte) (Table, error) {
	t := Table{Type: MSDOS, DiskGUID: fmt.Sprintf("%08x", binary.LittleEndian.Uint32(mbr[440:]))}
	var ext *Partition
	for i := 0; i < 4; i++ {
		e := mbr[446+16*i : 462+16*i]
		if e[0] != 0 && e[0] != 0x80 {
			return Table{}, fmt.Errorf("%w: MBR entry %d has status byte %#x (must be 0x00 or 0x80): not a partition table", ErrNoTable, i+1, e[0])
		}
		typ := e[4]
		start := int64(binary.LittleEndian.Uint32(e[8:])) * SectorSize
		n := int64(binary.LittleEndian.Uint32(e[12:])) * SectorSize
		if typ == 0 || n == 0 {
			continue
		}
		if typ == 0xee {
			return Table{}, fmt.Errorf("%w: protective MBR (type 0xEE) without a GPT header in sector 1", ErrNoTable)
		}
		p := Partition{Number: i + 1, Start: start, Size: n, MBRType: typ, Bootable: e[0] == 0x80, Flag: mbrFlag(typ, e[0] == 0x80)}
		if p.End() > size {
			return Table{}, fmt.Errorf("msdos: partition %d [%d, %d) ends past the end of the disk (%d bytes)", p.Number, p.Start, p.End(), size)
		}
		t.Partitions = append(t.Partitions, p)
		if p.Flag == FlagExtended {
			ext = &t.Partitions[len(t.Partitions)-1]
		}
	}
	if len(t.Partitions) == 0 {
		return Table{}, fmt.Errorf("%w: MBR signature present but no partition entries", ErrNoTable)
	}
	if ext != nil {
		extStart := ext.Start
		ebrAt := extStart
		for num := 5; ; num++ {
			if num > 5+256 {
				return Table{}, errors.New("msdos: EBR chain longer than 256 entries (a loop?)")
			}
			ebr := make([]byte, SectorSize)
			if _, err := r.ReadAt(ebr, ebrAt); err != nil {
				return Table{}, fmt.Errorf("msdos: reading EBR at %d: %w", ebrAt, err)
			}
			if binary.LittleEndian.Uint16(ebr[510:]) != mbrSignature {
				break
			}
			e := ebr[446:462]
			if e[4] == 0 {
				break
			}
			p := Partition{
				Number:   num,
				Start:    ebrAt + int64(binary.LittleEndian.Uint32(e[8:]))*SectorSize,
				Size:     int64(binary.LittleEndian.Uint32(e[12:])) * SectorSize,
				MBRType:  e[4],
				Bootable: e[0] == 0x80,
			}
			p.Flag = FlagLogical
			if f := mbrFlag(p.MBRType, false); f != FlagLinux && f != "" {
				p.Flag = f
			}
			if p.Start < extStart || p.End() > ext.End() {
				return Table{}, fmt.Errorf("msdos: logical partition %d [%d, %d) lies outside extended partition %d", p.Number, p.Start, p.End(), ext.Number)
			}
			t.Partitions = append(t.Partitions, p)
			next := ebr[462:478]
			if next[4] == 0 {
				break
			}
			nextAt := extStart + int64(binary.LittleEndian.Uint32(next[8:]))*SectorSize
			if nextAt <= ebrAt {
				return Table{}, fmt.Errorf("msdos: EBR at %d points backwards to %d", ebrAt, nextAt)
			}
			ebrAt = nextAt
		}
	}
	return t, nil
}
