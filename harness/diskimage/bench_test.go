package diskimage

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maasemu/maasemu/harness/images/qemuboot"
)

// BenchmarkMakeExt4 makes a 64 MiB ext4 filesystem from a small tree inside an image.
func BenchmarkMakeExt4(b *testing.B) {
	need(b, "mkfs.ext4")
	src := mkTree(b)
	img := sparse(b, 80*mib)
	for i := 0; i < b.N; i++ {
		if err := MakeExt4(context.Background(), img, mib, 64*mib, src, FSOptions{Label: "root"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGRUBBIOSBoot boots the embedded-GRUB test disk with SeaBIOS under TCG up to the
// grub.cfg marker.
func BenchmarkGRUBBIOSBoot(b *testing.B) {
	if why := qemuboot.Available("bios"); why != "" {
		b.Skip(why)
	}
	img, _ := grubDisk(b, "/boot/grub")
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		res, err := qemuboot.Run(ctx, qemuboot.Config{Disk: img, MemoryMiB: 256}, func(l string) bool { return strings.Contains(l, grubMarker) })
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.Duration.Seconds(), "s/boot")
	}
}

// BenchmarkReadFile reads files back from images: a small and a 3 MiB file and a 4 MiB
// file with holes from ext4 (debugfs), a small file from FAT (mtools).
func BenchmarkReadFile(b *testing.B) {
	need(b, "mkfs.ext4", "debugfs", "mkfs.fat", "mcopy", "mdir")
	src, _ := holeTree(b)
	if err := os.WriteFile(filepath.Join(src, "etc", "os-release"), []byte("ID=debian\nVERSION_ID=12\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(src, "big"), big, 0o644); err != nil {
		b.Fatal(err)
	}
	img := sparse(b, 64*mib)
	if err := MakeExt4(context.Background(), img, 0, 64*mib, src, FSOptions{}); err != nil {
		b.Fatal(err)
	}
	ext := FS{Size: 64 * mib, Type: FSExt4}
	fatImg, fat := fatImage(b, 16)
	for _, c := range []struct {
		name, img string
		fs        FS
		path      string
		size      int
	}{
		{"ext4-small", img, ext, "/etc/os-release", 24},
		{"ext4-3MiB", img, ext, "/big", 3 << 20},
		{"ext4-4MiB-holes", img, ext, "/f", 4 << 20},
		{"fat-small", fatImg, fat, "/startup.nsh", 8},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(c.size))
			for i := 0; i < b.N; i++ {
				got, err := ReadFile(c.img, c.fs, c.path)
				if err != nil || len(got) != c.size {
					b.Fatalf("ReadFile(%s) = %d bytes, %v", c.path, len(got), err)
				}
			}
		})
	}
}
