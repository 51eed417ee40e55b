// Package bootloader finds the bootloader binaries a MAAS rack serves (lpxelinux.0 and the
// syslinux modules, shim as bootx64.efi, a GRUB network image as grubx64.efi...): from the
// region's imported SimpleStreams bootloader products first, else from the host's Debian
// packages, building the GRUB image once with grub-mkimage.
package bootloader

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/maasemu/maasemu/fakemaas"
)

// Region is the region's bootloader store (fakemaas.Region.OpenBootloader): files of the
// imported SimpleStreams bootloader products, by bootloader type, architecture and name. It
// returns an error wrapping fakemaas.ErrImageNotFound when it has no such file.
type Region interface {
	OpenBootloader(ctx context.Context, bootloaderType, arch, name string) (fakemaas.ImageFile, error)
}

// Entry places a bootloader file name in MAAS's bootloader tree
// (<image-storage>/bootloaders/<type>/<arch>/<name>).
type Entry struct {
	Type string // fakemaas.BootloaderPXE, BootloaderUEFI, BootloaderOpenFirmware
	Arch string // "i386", "amd64", "arm64", "ppc64el"
	Name string
}

// names are the files MAAS's rack HTTP agent rewrites to the bootloader tree wherever they
// appear in a path (src/maasagent/internal/httpproxy/service.go), with their products.
var names = map[string]Entry{
	"bootx64.efi":   {fakemaas.BootloaderUEFI, "amd64", "bootx64.efi"},
	"grubx64.efi":   {fakemaas.BootloaderUEFI, "amd64", "grubx64.efi"},
	"mmx64.efi":     {fakemaas.BootloaderUEFI, "amd64", "mmx64.efi"},
	"bootaa64.efi":  {fakemaas.BootloaderUEFI, "arm64", "bootaa64.efi"},
	"grubaa64.efi":  {fakemaas.BootloaderUEFI, "arm64", "grubaa64.efi"},
	"mmaa64.efi":    {fakemaas.BootloaderUEFI, "arm64", "mmaa64.efi"},
	"bootppc64.bin": {fakemaas.BootloaderOpenFirmware, "ppc64el", "bootppc64.bin"},
	"lpxelinux.0":   {fakemaas.BootloaderPXE, "i386", "lpxelinux.0"},
}

// c32Name matches syslinux COM32 modules (chain.c32, ifcpu64.c32, ldlinux.c32, libcom32.c32,
// libutil.c32 are the ones MAAS lists; the pxelinux product ships the whole set).
var c32Name = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\.c32$`)

// Lookup reports whether name (a base name) is a bootloader file, and where it lives.
func Lookup(name string) (Entry, bool) {
	if e, ok := names[name]; ok {
		return e, true
	}
	if c32Name.MatchString(name) {
		return Entry{fakemaas.BootloaderPXE, "i386", name}, true
	}
	return Entry{}, false
}

// Host says where the host's Debian packages keep bootloaders. The zero value is not usable;
// start from DefaultHost.
type Host struct {
	PXELinuxDir    string // pxelinux: lpxelinux.0
	SyslinuxBIOS   string // syslinux-common: *.c32 for BIOS
	ShimDir        string // shim-signed, shim-helpers-amd64-signed: shimx64.efi.signed, mmx64.efi.signed
	GRUBModules    string // grub-efi-amd64-bin: x86_64-efi modules
	GRUBMkimage    string // grub-common: grub-mkimage
	CacheDir       string // built images go to CacheDir/bootloaders/...
	GRUBVersion    func(ctx context.Context) (string, error)
	GRUBImageBuild func(ctx context.Context, out string) error // nil: run grub-mkimage
}

// DefaultHost is Debian 12's layout, caching in cacheDir (the caller passes $MAASEMU_CACHE).
func DefaultHost(cacheDir string) Host {
	return Host{
		PXELinuxDir:  "/usr/lib/PXELINUX",
		SyslinuxBIOS: "/usr/lib/syslinux/modules/bios",
		ShimDir:      "/usr/lib/shim",
		GRUBModules:  "/usr/lib/grub/x86_64-efi",
		GRUBMkimage:  "grub-mkimage",
		CacheDir:     cacheDir,
	}
}

// DefaultCacheDir is $MAASEMU_CACHE, else ~/.cache/maasemu (the Makefile's default).
func DefaultCacheDir() string {
	if d := os.Getenv("MAASEMU_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "maasemu")
	}
	return filepath.Join(os.TempDir(), "maasemu-cache")
}

// Loader opens bootloader files: the region's first, the host's when the region has none.
type Loader struct {
	region Region // may be nil
	host   Host
	log    *slog.Logger

	grubMu   sync.Mutex
	grubPath string // built GRUB image, once known

	sumMu sync.Mutex
	sums  map[string]fileSum // host file checksums by path
}

type fileSum struct {
	size    int64
	modTime int64
	sha256  string
}

// New returns a Loader. region may be nil (host packages only); log may be nil.
func New(region Region, host Host, log *slog.Logger) *Loader {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Loader{region: region, host: host, log: log, sums: map[string]fileSum{}}
}

// Open opens the bootloader file e. The error wraps fakemaas.ErrImageNotFound when neither
// the region nor the host has it.
func (l *Loader) Open(ctx context.Context, e Entry) (fakemaas.ImageFile, error) {
	if l.region != nil {
		f, err := l.region.OpenBootloader(ctx, e.Type, e.Arch, e.Name)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fakemaas.ErrImageNotFound) {
			return fakemaas.ImageFile{}, fmt.Errorf("bootloader %s/%s/%s from region: %w", e.Type, e.Arch, e.Name, err)
		}
	}
	path, err := l.hostPath(ctx, e)
	if err != nil {
		return fakemaas.ImageFile{}, err
	}
	return l.openHostFile(path)
}

// hostPath maps a bootloader to the host file that provides it. Names come from the fixed
// table or match c32Name (no separators, no ".."), so the joined path stays in its directory.
func (l *Loader) hostPath(ctx context.Context, e Entry) (string, error) {
	notFound := fmt.Errorf("bootloader %s/%s/%s: not imported and no host package provides it: %w",
		e.Type, e.Arch, e.Name, fakemaas.ErrImageNotFound)
	switch {
	case e.Type == fakemaas.BootloaderPXE && e.Name == "lpxelinux.0":
		return filepath.Join(l.host.PXELinuxDir, "lpxelinux.0"), nil
	case e.Type == fakemaas.BootloaderPXE && c32Name.MatchString(e.Name):
		return filepath.Join(l.host.SyslinuxBIOS, e.Name), nil
	case e.Type == fakemaas.BootloaderUEFI && e.Arch == "amd64":
		switch e.Name {
		case "bootx64.efi":
			// Shim, as MAAS serves it; with Secure Boot off it loads an unsigned GRUB.
			return filepath.Join(l.host.ShimDir, "shimx64.efi.signed"), nil
		case "mmx64.efi":
			return filepath.Join(l.host.ShimDir, "mmx64.efi.signed"), nil
		case "grubx64.efi":
			return l.grubImage(ctx)
		}
	}
	return "", notFound
}

func (l *Loader) openHostFile(path string) (fakemaas.ImageFile, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fakemaas.ImageFile{}, fmt.Errorf("bootloader %s: host package not installed: %w", path, fakemaas.ErrImageNotFound)
		}
		return fakemaas.ImageFile{}, fmt.Errorf("open bootloader: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fakemaas.ImageFile{}, fmt.Errorf("open bootloader: %w", err)
	}
	sum, err := l.sum(path, f, st)
	if err != nil {
		f.Close()
		return fakemaas.ImageFile{}, err
	}
	return fakemaas.ImageFile{ReadSeekCloser: f, Size: st.Size(), SHA256: sum, ModTime: st.ModTime()}, nil
}

// sum returns the file's sha256, cached by path, size and modification time.
func (l *Loader) sum(path string, f *os.File, st os.FileInfo) (string, error) {
	l.sumMu.Lock()
	c, ok := l.sums[path]
	l.sumMu.Unlock()
	if ok && c.size == st.Size() && c.modTime == st.ModTime().UnixNano() {
		return c.sha256, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("checksum bootloader %s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("checksum bootloader %s: %w", path, err)
	}
	s := hex.EncodeToString(h.Sum(nil))
	l.sumMu.Lock()
	l.sums[path] = fileSum{st.Size(), st.ModTime().UnixNano(), s}
	l.sumMu.Unlock()
	return s, nil
}
