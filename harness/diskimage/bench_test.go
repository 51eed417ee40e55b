package diskimage

import (
	"context"
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
