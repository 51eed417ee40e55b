package fakemaas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// This file is the contract between the region and the rack (package pxe): the rack asks
// "what should this machine boot?" and "give me this image file"; the region answers from
// its state. It mirrors MAAS's GetBootConfig RPC (src/maasserver/rpc/boot.py) and the
// KernelParameters tuple the rack renders configs from (src/provisioningserver/kernel_opts.py).

// Boot purposes, as MAAS names them (Node.get_boot_purpose and the enlistment path).
const (
	PurposeCommissioning = "commissioning"
	PurposeXInstall      = "xinstall"
	PurposeLocal         = "local"
	PurposePoweroff      = "poweroff"
	PurposeEnlist        = "enlist"
)

// BootRequest is what the rack knows when a machine asks for a boot config: from the TFTP
// or HTTP path (MAC, hardware UUID, arch and subarch of a default-* file) and from the
// connection (addresses).
type BootRequest struct {
	MAC          string // aa:bb:cc:dd:ee:ff, lowercase; empty when the file named none
	HardwareUUID string // from pxelinux.cfg/<uuid>; empty when none
	Arch         string // "amd64", "arm64", "ppc64el", "i386", ...; empty when the file named none
	Subarch      string // "generic" when the file named none
	Bootloader   string // boot method that asked: "pxe", "uefi", "ipxe", "open-firmware", ...
	LocalIP      string // the rack address the request arrived on
	RemoteIP     string // the machine's address
}

// KernelParams is what the rack renders a boot config and a kernel command line from. Image
// paths are relative to the rack's /images/ and already carry MAAS's hash prefix, e.g.
// "54fe42a/ubuntu/amd64/ga-24.04/noble/stable/boot-kernel".
type KernelParams struct {
	Purpose string // one of the Purpose* constants

	SystemID string
	Hostname string
	Domain   string

	Arch    string // "amd64"
	Subarch string // "ga-24.04", "generic", ...

	OSystem string // of the booted (ephemeral) image
	Release string
	Label   string // "stable", "candidate", "uploaded", or "no-such-image" when missing

	KernelOSystem string // the OS the kernel comes from, when it differs (custom images)
	KernelRelease string
	KernelLabel   string

	Kernel       string // path under /images/
	Initrd       string // path under /images/
	BootDTB      string // path under /images/, arm only
	XInstallPath string // squashfs path under /images/, empty when none

	FSHost     string // address the booted system fetches images from (the rack)
	PreseedURL string // cloud-config-url
	LogHost    string
	LogPort    int

	KernelOptions string // architecture kernel options, before ephemeral options
	EphemeralOpts string // options for the ephemeral only
	ExtraOpts     string // global + tag kernel_opts, written after the "---" separator
	HTTPBoot      bool   // the bootloader came over HTTP
}

// ErrNoBootConfig means the region has no answer for the request (a MAC that matches no
// machine and no architecture given): the rack answers TFTP file-not-found so that the
// bootloader falls through to its default config, as MAAS does.
var ErrNoBootConfig = errors.New("no boot config for this request")

// ImageFile is one stored image file opened for serving.
type ImageFile struct {
	io.ReadSeekCloser
	Size    int64
	SHA256  string
	ModTime time.Time
}

// ErrImageNotFound means no complete file matches the requested hash prefix.
var ErrImageNotFound = errors.New("image file not found")

// Bootloader types, as SimpleStreams bootloader products name them.
const (
	BootloaderPXE          = "pxe"           // pxelinux, i386
	BootloaderUEFI         = "uefi"          // shim + grub, amd64 / arm64
	BootloaderOpenFirmware = "open-firmware" // grub-ieee1275, ppc64el
)

// OpenBootloader opens a file (lpxelinux.0, ldlinux.c32, bootx64.efi, grubx64.efi, ...) of
// the imported SimpleStreams bootloader product for bootloaderType ("pxe", "uefi",
// "open-firmware") and arch ("i386", "amd64", "arm64", "ppc64el"). ErrImageNotFound when
// no such product is imported or it has no such file; a name that is not a plain file
// name is refused.
func (r *Region) OpenBootloader(ctx context.Context, bootloaderType, arch, name string) (ImageFile, error) {
	if err := ctx.Err(); err != nil {
		return ImageFile{}, err
	}
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		return ImageFile{}, fmt.Errorf("fakemaas: bootloader file %q: must be a plain file name: %w", name, ErrImageNotFound)
	}
	if strings.ContainsAny(bootloaderType+arch, "/\\.\x00") || bootloaderType == "" || arch == "" {
		return ImageFile{}, fmt.Errorf("fakemaas: bootloader %q/%q: invalid type or architecture: %w", bootloaderType, arch, ErrImageNotFound)
	}
	r.mu.RLock()
	imported := false
	for _, res := range r.resources {
		a, _ := res.arch()
		if res.BootloaderType == bootloaderType && a == arch && res.latestComplete() != nil {
			imported = true
		}
	}
	r.mu.RUnlock()
	if !imported {
		return ImageFile{}, fmt.Errorf("fakemaas: no %s bootloader imported for %s: %w", bootloaderType, arch, ErrImageNotFound)
	}
	f, err := os.Open(filepath.Join(r.bootloaderDir(bootloaderType, arch), name))
	if errors.Is(err, fs.ErrNotExist) {
		return ImageFile{}, fmt.Errorf("fakemaas: %s bootloader for %s has no file %q: %w", bootloaderType, arch, name, ErrImageNotFound)
	}
	if err != nil {
		return ImageFile{}, fmt.Errorf("fakemaas: bootloader file %q: %w", name, err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return ImageFile{}, fmt.Errorf("fakemaas: bootloader file %q is not a regular file: %w", name, ErrImageNotFound)
	}
	return ImageFile{ReadSeekCloser: f, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}
