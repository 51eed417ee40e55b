package diskimage

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maasemu/maasemu/harness/images/qemuboot"
)

const grubMarker = "MAASEMU-GRUB-BIOS-OK"

// grubDisk makes a small gpt disk with a bios_grub partition and an ext4 root whose
// /boot/grub/grub.cfg prints a marker on the serial console and halts.
func grubDisk(t testing.TB, prefix string) (string, Partition) {
	t.Helper()
	need(t, "grub-mkimage", "mkfs.ext4")
	if _, err := os.Stat(filepath.Join(GRUBPCDir, "boot.img")); err != nil {
		t.Skip("needs grub-pc-bin (" + GRUBPCDir + ")")
	}
	img := sparse(t, 24*mib)
	bios := Partition{Number: 1, Start: mib, Size: mib, Flag: FlagBIOSGrub}
	root := Partition{Number: 2, Start: 2 * mib, Size: 20 * mib, Flag: FlagLinux}
	if err := WriteTable(img, Table{Type: GPT, Partitions: []Partition{bios, root}}); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "boot", "grub"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := "serial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\necho " + grubMarker + "\nhalt\n"
	if err := os.WriteFile(filepath.Join(src, "boot", "grub", "grub.cfg"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := MakeExt4(context.Background(), img, root.Start, root.Size, src, FSOptions{Label: "root"}); err != nil {
		t.Fatal(err)
	}
	if err := EmbedGRUBBIOS(context.Background(), img, bios, prefix); err != nil {
		t.Fatal(err)
	}
	return img, bios
}

func TestEmbedGRUBBIOSLayout(t *testing.T) {
	img, bios := grubDisk(t, "(hd0,gpt2)/boot/grub")
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint64(b[grubKernelSector:]); got != uint64(bios.Start/SectorSize) {
		t.Errorf("boot.img kernel sector = %d, want %d", got, bios.Start/SectorSize)
	}
	if b[grubBootDrive] != 0xff || b[grubDriveCheck] != 0x90 || b[grubDriveCheck+1] != 0x90 {
		t.Errorf("boot drive %#x / drive check %#x %#x, want 0xff / NOPs", b[grubBootDrive], b[grubDriveCheck], b[grubDriveCheck+1])
	}
	bl := b[bios.Start+SectorSize-grubBlocklistSize : bios.Start+SectorSize]
	if got := binary.LittleEndian.Uint64(bl); got != uint64(bios.Start/SectorSize+1) {
		t.Errorf("core.img blocklist start = %d, want %d", got, bios.Start/SectorSize+1)
	}
	if binary.LittleEndian.Uint16(bl[8:]) == 0 {
		t.Error("core.img blocklist length is 0")
	}
	// the partition table survived
	tb, err := ReadTable(img)
	if err != nil || len(tb.Partitions) != 2 {
		t.Fatalf("ReadTable after embedding = %+v, %v", tb, err)
	}
}

func TestEmbedGRUBBIOSRefusesBadInput(t *testing.T) {
	img, bios := grubDisk(t, "/boot/grub")
	before := fileHash(t, img)
	ctx := context.Background()
	tests := []struct {
		name   string
		part   Partition
		prefix string
		want   string
	}{
		{"root partition", Partition{Start: 2 * mib, Size: 20 * mib}, "/boot/grub", "not a BIOS boot partition"},
		{"overlap", Partition{Start: mib, Size: 2 * mib}, "/boot/grub", "overlaps partition"},
		{"in MBR", Partition{Start: 0, Size: mib}, "/boot/grub", "inside the MBR"},
		{"not a partition", Partition{Start: 512 * 40, Size: 512 * 100}, "/boot/grub", "must be a bios_grub partition"},
		{"bad prefix", bios, "boot grub", "GRUB prefix"},
		{"past end", Partition{Start: 23 * mib, Size: 2 * mib}, "/boot/grub", "past the end"},
	}
	for _, tc := range tests {
		err := EmbedGRUBBIOS(ctx, img, tc.part, tc.prefix)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: EmbedGRUBBIOS = %v, want error containing %q", tc.name, err, tc.want)
		}
	}
	if fileHash(t, img) != before {
		t.Error("a refused EmbedGRUBBIOS changed the image")
	}
}

// TestEmbedGRUBBIOSBoots boots the disk with SeaBIOS under TCG: boot.img loads core.img
// from the bios_grub partition, which reads grub.cfg from ext4 and prints the marker.
func TestEmbedGRUBBIOSBoots(t *testing.T) {
	if why := qemuboot.Available("bios"); why != "" {
		t.Skip(why)
	}
	for name, prefix := range map[string]string{"device": "(hd0,gpt2)/boot/grub", "search": "/boot/grub"} {
		t.Run(name, func(t *testing.T) {
			img, _ := grubDisk(t, prefix)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			res, err := qemuboot.Run(ctx, qemuboot.Config{Disk: img, MemoryMiB: 256}, func(l string) bool {
				return strings.Contains(l, grubMarker)
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("SeaBIOS -> GRUB core.img -> grub.cfg marker after %v", res.Duration)
		})
	}
}
