package installer

import (
	"context"
	"io"

	"github.com/maasemu/maasemu/harness/installer/storage"
)

// Backend is where the storage of an install lives: real block devices inside a VM's
// ephemeral (package blockdev), or sparse disk-image files for simulated machines (package
// imagedisk).
type Backend interface {
	// ClearHolders is block-meta's clear-holders step for the disks the config names.
	ClearHolders(ctx context.Context, sc *storage.Config, log io.Writer) error
	// Apply applies one storage.config entry in custom mode. For a mount entry it mounts
	// the volume at target+path and reports the volume for the fstab line.
	Apply(ctx context.Context, sc *storage.Config, it storage.Item, target string, log io.Writer) (storage.Applied, error)
	// WriteImage is block-meta simple for dd sources: it streams a raw disk image onto the
	// install disk (the disk whose serial resolves and has grub_device, else the first
	// installable disk; sc may be nil), finds the partition holding one of
	// storage.RootMarkers and mounts it at target.
	WriteImage(ctx context.Context, sc *storage.Config, r io.Reader, target string, log io.Writer) error
	// DevicePath resolves a storage id (disk or partition) to its device path.
	DevicePath(ctx context.Context, sc *storage.Config, id string) (string, error)
	// TargetDisks returns the parent disks of what is mounted at target (grub's devices
	// when the config names none).
	TargetDisks(ctx context.Context, target string) ([]string, error)
	// Unmount ends the install: nothing is written to the target after it.
	Unmount(ctx context.Context, target string, log io.Writer) error
}

// GrubEmulator is implemented by backends that cannot run grub-install against a device
// (disk-image files): they put the boot loader in place themselves.
type GrubEmulator interface {
	EmulateGrub(ctx context.Context, req storage.GrubRequest, log io.Writer) error
}

// BootloaderEnsurer is implemented by backends on which an image's curtin-hooks cannot
// install a bootloader themselves (simulated machines: no block devices): after the hooks
// ran, it installs one where they left none, saying so in the log, and reports whether it did.
type BootloaderEnsurer interface {
	EnsureBootloader(ctx context.Context, target string, uefi bool, log io.Writer) (bool, error)
}

// SwapEmulator is implemented by backends whose target is not a mounted filesystem and
// so need to know its free space and type for curtin's swap sizing.
type SwapEmulator interface {
	// TargetFS returns the filesystem type and free bytes of the filesystem holding dir
	// under target.
	TargetFS(ctx context.Context, target, dir string) (fstype string, avail int64, err error)
}

// noBackend answers every storage request with an error naming what is missing.
type noBackend struct{}

var errNoBackend = errorString("this curtin entry has no storage backend: block-meta runs inside `curtin install`")

type errorString string

func (e errorString) Error() string { return string(e) }

func (noBackend) ClearHolders(context.Context, *storage.Config, io.Writer) error { return errNoBackend }
func (noBackend) Apply(context.Context, *storage.Config, storage.Item, string, io.Writer) (storage.Applied, error) {
	return storage.Applied{}, errNoBackend
}
func (noBackend) WriteImage(context.Context, *storage.Config, io.Reader, string, io.Writer) error {
	return errNoBackend
}
func (noBackend) DevicePath(context.Context, *storage.Config, string) (string, error) {
	return "", errNoBackend
}
func (noBackend) TargetDisks(context.Context, string) ([]string, error) { return nil, errNoBackend }
func (noBackend) Unmount(context.Context, string, io.Writer) error      { return nil }
