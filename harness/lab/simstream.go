package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/maasemu/maasemu/fakemaas/regiontest"
)

// WriteSimStream writes into dir a small SimpleStreams tree that simulated machines can
// boot: ubuntu noble and jammy ephemerals of a few KiB of kernel and initrd and a real,
// tiny squashfs (sims fetch the kernel and initrd and check the squashfs's header). It
// has no bootloader products, so the rack serves the host's bootloaders. It needs
// mksquashfs (squashfs-tools). Scenario runs and labtest.SimStream use it.
func WriteSimStream(ctx context.Context, dir string) error {
	work, err := os.MkdirTemp("", "maasemu-simstream-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	src := filepath.Join(work, "root")
	if err := os.MkdirAll(filepath.Join(src, "etc"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, "etc/os-release"), []byte("ID=maasemu-sim-ephemeral\n"), 0o644); err != nil {
		return err
	}
	sq := filepath.Join(work, "squashfs")
	if out, err := exec.CommandContext(ctx, "mksquashfs", src, sq, "-noappend", "-quiet").CombinedOutput(); err != nil {
		return fmt.Errorf("lab: a squashfs for the sim stream needs mksquashfs (squashfs-tools): %w: %s", err, bytes.TrimSpace(out))
	}
	squash, err := os.ReadFile(sq)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	s := regiontest.DefaultStream(dir)
	s.Bootloaders = nil
	base := s.Products[0]
	base.Files = map[string][]byte{"boot-kernel": bytes.Repeat([]byte("sim kernel "), 400),
		"boot-initrd": bytes.Repeat([]byte("sim initrd "), 600), "squashfs": squash, "manifest": []byte("maasemu sim ephemeral\n")}
	jammy := base
	jammy.Release, jammy.Version, jammy.Subarch, jammy.Subarches = "jammy", "22.04", "ga-22.04", "generic,ga-22.04"
	s.Products = []regiontest.StreamProduct{base, jammy}
	if err := s.Write(); err != nil {
		return fmt.Errorf("lab: writing the sim stream: %w", err)
	}
	return nil
}
