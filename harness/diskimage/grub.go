package diskimage

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// GRUBPCDir is where grub-pc-bin installs the i386-pc modules, boot.img and diskboot.img.
var GRUBPCDir = "/usr/lib/grub/i386-pc"

// GRUBBIOSModules are built into core.img so that it can boot Linux from ext2/3/4 or FAT
// on a GPT or msdos disk without loading modules from the disk.
var GRUBBIOSModules = []string{
	"biosdisk", "part_gpt", "part_msdos", "ext2", "fat", "normal", "linux", "configfile",
	"search", "search_fs_uuid", "search_fs_file", "search_label", "echo", "test", "serial",
	"terminal", "boot", "chain", "gzio", "ls", "cat", "minicmd", "halt", "reboot",
}

// Offsets in GRUB's i386-pc boot.img and diskboot.img (grub include/grub/i386/pc/boot.h).
const (
	grubBPBStart      = 0x03
	grubBPBEnd        = 0x5a
	grubKernelSector  = 0x5c
	grubBootDrive     = 0x64
	grubDriveCheck    = 0x66
	grubBootCodeEnd   = 0x1b8 // 440: disk signature and partition table follow
	grubBlocklistSize = 12    // u64 start, u16 len, u16 segment
	grubKernelSeg     = 0x800 // GRUB_BOOT_I386_PC_KERNEL_SEG
)

// EmbedGRUBBIOS makes GRUB boot the image img on BIOS firmware: it builds a core.img
// (grub-mkimage -O i386-pc with GRUBBIOSModules) whose prefix is grubPrefix, writes it into
// biosBootPart (the 1 MiB bios_grub partition on gpt, or the gap after the MBR on msdos),
// and writes boot.img's code into the MBR, keeping the disk signature and partition table.
// The sector pointers are set as grub-bios-setup sets them for an embedded core.img.
//
// grubPrefix is either a GRUB device path such as "(hd0,gpt3)/boot/grub", or an absolute
// path such as "/boot/grub": then core.img searches every disk for <prefix>/grub.cfg and
// uses the first partition that has it.
func EmbedGRUBBIOS(ctx context.Context, img string, biosBootPart Partition, grubPrefix string) error {
	if _, err := checkRegion(img, biosBootPart.Start, biosBootPart.Size, "GRUB embedding area"); err != nil {
		return err
	}
	if biosBootPart.Start < SectorSize {
		return fmt.Errorf("diskimage: GRUB embedding area in %s starts at %d, inside the MBR", img, biosBootPart.Start)
	}
	if grubPrefix == "" || !(strings.HasPrefix(grubPrefix, "(") || strings.HasPrefix(grubPrefix, "/")) || strings.ContainsAny(grubPrefix, " \t\n'\";") {
		return fmt.Errorf("diskimage: GRUB prefix %q must be a device path like (hd0,gpt3)/boot/grub or an absolute path like /boot/grub, without spaces or quotes", grubPrefix)
	}
	t, err := ReadTable(img)
	if err != nil {
		return fmt.Errorf("diskimage: embed GRUB: %w", err)
	}
	for _, p := range t.Partitions {
		if p.Flag == FlagExtended {
			continue
		}
		same := p.Start == biosBootPart.Start && p.Size == biosBootPart.Size
		if same && t.Type == GPT && p.TypeGUID != TypeBIOSBoot {
			return fmt.Errorf("diskimage: embed GRUB in %s: partition %d has type %s, not a BIOS boot partition (%s); GRUB would overwrite a filesystem", img, p.Number, p.TypeGUID, TypeBIOSBoot)
		}
		if !same && p.Start < biosBootPart.End() && biosBootPart.Start < p.End() {
			return fmt.Errorf("diskimage: embed GRUB in %s: area [%d, %d) overlaps partition %d [%d, %d)", img, biosBootPart.Start, biosBootPart.End(), p.Number, p.Start, p.End())
		}
	}
	if t.Type == GPT {
		found := false
		for _, p := range t.Partitions {
			if p.Start == biosBootPart.Start && p.Size == biosBootPart.Size {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("diskimage: embed GRUB in %s: on gpt the area [%d, %d) must be a bios_grub partition of the table", img, biosBootPart.Start, biosBootPart.End())
		}
	}
	bootImg, err := os.ReadFile(filepath.Join(GRUBPCDir, "boot.img"))
	if err != nil {
		return fmt.Errorf("diskimage: embed GRUB: %w (install grub-pc-bin)", err)
	}
	if len(bootImg) != SectorSize {
		return fmt.Errorf("diskimage: embed GRUB: %s/boot.img is %d bytes, not %d", GRUBPCDir, len(bootImg), SectorSize)
	}
	tmp, err := os.MkdirTemp("", "diskimage-grub-")
	if err != nil {
		return fmt.Errorf("diskimage: embed GRUB: %w", err)
	}
	defer os.RemoveAll(tmp)
	core := filepath.Join(tmp, "core.img")
	args := []string{"-O", "i386-pc", "-d", GRUBPCDir, "-o", core}
	if strings.HasPrefix(grubPrefix, "/") {
		early := filepath.Join(tmp, "early.cfg")
		cfg := fmt.Sprintf("search --no-floppy --file --set=root %s/grub.cfg\nset prefix=($root)%s\n", grubPrefix, grubPrefix)
		if err := os.WriteFile(early, []byte(cfg), 0o644); err != nil {
			return fmt.Errorf("diskimage: embed GRUB: %w", err)
		}
		args = append(args, "-c", early, "-p", grubPrefix)
	} else {
		args = append(args, "-p", grubPrefix)
	}
	args = append(args, GRUBBIOSModules...)
	if _, err := run(ctx, nil, "grub-mkimage", args...); err != nil {
		return err
	}
	coreImg, err := os.ReadFile(core)
	if err != nil {
		return fmt.Errorf("diskimage: embed GRUB: %w", err)
	}
	sectors := (int64(len(coreImg)) + SectorSize - 1) / SectorSize
	if sectors*SectorSize > biosBootPart.Size {
		return fmt.Errorf("diskimage: embed GRUB in %s: core.img needs %d bytes, the area has %d", img, sectors*SectorSize, biosBootPart.Size)
	}
	if sectors > 0xffff {
		return fmt.Errorf("diskimage: embed GRUB: core.img of %d sectors is too large", sectors)
	}
	coreImg = append(coreImg, make([]byte, int(sectors*SectorSize)-len(coreImg))...)
	// diskboot.img (the first sector of core.img) ends with the blocklist that says where
	// the rest of core.img is; grub-mkimage filled len and segment, we fill start.
	bl := coreImg[SectorSize-grubBlocklistSize : SectorSize]
	if seg := binary.LittleEndian.Uint16(bl[10:]); seg != grubKernelSeg+SectorSize>>4 {
		return fmt.Errorf("diskimage: embed GRUB: core.img blocklist segment is %#x, want %#x: not an i386-pc diskboot image", seg, grubKernelSeg+SectorSize>>4)
	}
	first := biosBootPart.Start / SectorSize
	binary.LittleEndian.PutUint64(bl[0:], uint64(first+1))
	binary.LittleEndian.PutUint16(bl[8:], uint16(sectors-1))
	// the entry before it (lower in memory) terminates the list
	clear(coreImg[SectorSize-2*grubBlocklistSize : SectorSize-grubBlocklistSize])

	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("diskimage: embed GRUB: %w", err)
	}
	defer f.Close()
	mbr := make([]byte, SectorSize)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		return fmt.Errorf("diskimage: embed GRUB: reading MBR of %s: %w", img, err)
	}
	boot := append([]byte(nil), bootImg...)
	copy(boot[grubBPBStart:grubBPBEnd], mbr[grubBPBStart:grubBPBEnd])
	binary.LittleEndian.PutUint64(boot[grubKernelSector:], uint64(first))
	boot[grubBootDrive] = 0xff
	// a hard disk: replace the floppy-probing jump with NOPs (grub-bios-setup does this
	// for BIOSes that pass a wrong boot drive)
	boot[grubDriveCheck], boot[grubDriveCheck+1] = 0x90, 0x90
	copy(mbr[:grubBootCodeEnd], boot[:grubBootCodeEnd])
	if _, err := f.WriteAt(coreImg, biosBootPart.Start); err != nil {
		return fmt.Errorf("diskimage: embed GRUB: writing core.img into %s: %w", img, err)
	}
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return fmt.Errorf("diskimage: embed GRUB: writing MBR of %s: %w", img, err)
	}
	return f.Close()
}
