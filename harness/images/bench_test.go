package images

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maasemu/maasemu/harness/images/lint"
	"github.com/maasemu/maasemu/harness/images/qemuboot"
)

// BenchmarkEphemeralBoot: direct kernel boot of the test ephemeral under TCG, from QEMU's
// start to the agent's exec (DHCP, squashfs fetch over HTTP, overlayroot, udev).
func BenchmarkEphemeralBoot(b *testing.B) {
	if why := qemuboot.Available("bios"); why != "" {
		b.Skip(why)
	}
	e := testEphemeral(b)
	port := serveFile(b, e.Squashfs, "squashfs")
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		res, err := qemuboot.Run(ctx, qemuboot.Config{Kernel: e.Kernel, Initrd: e.Initrd, Append: ephemeralCmdline(port), MemoryMiB: 1536, NetUser: true, MAC: testMAC},
			func(l string) bool { return strings.Contains(l, "maasemu-testagent: ephemeral agent running") })
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.Duration.Seconds(), "s/boot")
	}
}

func benchDDBoot(b *testing.B, fw string) {
	if why := qemuboot.Available(fw); why != "" {
		b.Skip(why)
	}
	dir, m := testImages(b)
	im, _ := m.Image("good-ddraw")
	for i := 0; i < b.N; i++ {
		d := bootDD(b, filepath.Join(dir, im.File), fw)
		b.ReportMetric(d.Seconds(), "s/boot")
	}
}

// BenchmarkDDBootBIOS: SeaBIOS -> GRUB (embedded core.img) -> kernel -> initramfs ->
// first-boot probe, under TCG.
func BenchmarkDDBootBIOS(b *testing.B) { benchDDBoot(b, "bios") }

// BenchmarkDDBootUEFI: OVMF -> /EFI/BOOT/BOOTX64.EFI -> kernel -> first-boot probe.
func BenchmarkDDBootUEFI(b *testing.B) { benchDDBoot(b, "uefi") }

// BenchmarkTestImagesWarm: `images build test` when nothing changed (the cache hit path).
func BenchmarkTestImagesWarm(b *testing.B) {
	testImages(b)
	bl := testBuilder(b)
	for i := 0; i < b.N; i++ {
		if _, err := bl.TestImages(context.Background(), b.TempDir()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLint lints a compressed dd image (decompress, sparse spool, partition and file
// checks) and a root tarball.
func BenchmarkLint(b *testing.B) {
	dir, m := testImages(b)
	for _, name := range []string{"good-ddxz", "good-tgz"} {
		im, _ := m.Image(name)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(im.Size)
			for i := 0; i < b.N; i++ {
				r, err := lint.Lint(context.Background(), filepath.Join(dir, im.File), im.Filetype, lint.Options{TempDir: b.TempDir()})
				if err != nil || r.Errors() != 0 {
					b.Fatal(err, r)
				}
			}
		})
	}
}
