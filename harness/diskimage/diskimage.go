// Package diskimage builds and inspects partitioned disk-image files entirely in userspace.
//
// The host kernel makes no loop partitions and cannot mount vfat, so everything here works
// on plain image files at byte offsets: partition tables are encoded in Go (GPT through
// github.com/diskfs/go-diskfs, MBR with extended/logical partitions by hand), filesystems
// are made with e2fsprogs, dosfstools and mtools run against the file with an offset, files
// are read back with debugfs (ext) and mtools (FAT), each run bounded in time so that no
// image, however malformed, can hang a caller (go-diskfs's readers loop forever on an ext4
// file with holes and on a FAT cluster chain that loops), and GRUB's BIOS boot code is
// embedded the way grub-bios-setup does it. Every function validates its input and returns
// an error that names the image, the input and the rule it broke, before changing anything.
package diskimage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// SectorSize is the logical sector size of every image this package makes or reads.
const SectorSize = 512

// CreateSparse creates a new sparse file of size bytes at path. The file must not exist yet
// and size must be a positive multiple of SectorSize.
func CreateSparse(path string, size int64) error {
	if path == "" {
		return errors.New("diskimage: create sparse image: empty path")
	}
	if size <= 0 || size%SectorSize != 0 {
		return fmt.Errorf("diskimage: create sparse image %s: size %d must be a positive multiple of %d bytes", path, size, SectorSize)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("diskimage: create sparse image: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("diskimage: create sparse image %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("diskimage: create sparse image %s: %w", path, err)
	}
	return nil
}

// imageSize returns the size of the image file at path, or an error naming it.
func imageSize(path string) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("diskimage: %w", err)
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("diskimage: %s is not a regular file (mode %v)", path, st.Mode())
	}
	return st.Size(), nil
}

// checkRegion validates that [off, off+size) is a sector-aligned, non-empty region inside
// the image file img, and returns the image size.
func checkRegion(img string, off, size int64, what string) (int64, error) {
	isz, err := imageSize(img)
	if err != nil {
		return 0, err
	}
	switch {
	case off < 0 || off%SectorSize != 0:
		return 0, fmt.Errorf("diskimage: %s in %s: offset %d must be a non-negative multiple of %d", what, img, off, SectorSize)
	case size <= 0 || size%SectorSize != 0:
		return 0, fmt.Errorf("diskimage: %s in %s: size %d must be a positive multiple of %d", what, img, size, SectorSize)
	case off+size > isz:
		return 0, fmt.Errorf("diskimage: %s in %s: region [%d, %d) ends past the end of the image (%d bytes)", what, img, off, off+size, isz)
	}
	return isz, nil
}

// run executes a host tool and returns its stdout; a failure names the command and carries
// its stderr.
func run(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	if _, err := exec.LookPath(name); err != nil {
		return nil, fmt.Errorf("diskimage: %s is needed: %w", name, err)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("diskimage: %s: %w", name, ctx.Err())
		}
		return stdout.Bytes(), fmt.Errorf("diskimage: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
