// Package bootfiles is the tree of files a MAAS rack serves over TFTP and HTTP: rendered boot
// configs, the static pre-loader configs, bootloaders and images. It resolves a requested name
// the way MAAS's TFTP backend and rack nginx do, and never reads anything outside that tree.
package bootfiles

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/pxe/bootconfig"
	"github.com/maasemu/maasemu/pxe/bootloader"
	"github.com/maasemu/maasemu/trace"
)

// Region is what the rack asks the region (fakemaas.Region implements it).
type Region interface {
	// BootConfig answers MAAS's GetBootConfig: what the machine behind req should boot.
	// fakemaas.ErrNoBootConfig means "no answer": the rack says file-not-found.
	BootConfig(ctx context.Context, req fakemaas.BootRequest) (fakemaas.KernelParams, error)
	// OpenImage opens the stored file whose sha256 starts with hashPrefix (MAAS's
	// filename_on_disk); fakemaas.ErrImageNotFound when there is none.
	OpenImage(ctx context.Context, hashPrefix string) (fakemaas.ImageFile, error)
	// OpenBootloader opens a file of an imported bootloader product;
	// fakemaas.ErrImageNotFound sends the rack to the host's packages.
	OpenBootloader(ctx context.Context, bootloaderType, arch, name string) (fakemaas.ImageFile, error)
}

// MaxNameLen bounds requested names. MAAS's longest names (an image path with a 64-character
// hash) stay well below it.
const MaxNameLen = 255

// ErrNotFound means the name is not in the tree (TFTP error 1, HTTP 404).
var ErrNotFound = errors.New("file not found")

// RefusedError is a request the rack will not serve whatever the tree holds: traversal,
// control characters, over-long names and the like. It names the rule broken.
type RefusedError struct {
	Name   string // the name as requested
	Reason string
}

func (e *RefusedError) Error() string {
	name := e.Name
	if len(name) > 64 {
		name = name[:64] + "..." // the reason gives the length; keep TFTP error packets small
	}
	return fmt.Sprintf("refused %q: %s", name, e.Reason)
}

// Kinds of file in the tree.
const (
	KindConfig     = "config"     // rendered from the region's boot config
	KindStatic     = "static"     // grub/grub.cfg, ipxe.cfg
	KindBootloader = "bootloader" // lpxelinux.0, bootx64.efi, ...
	KindImage      = "image"      // region image file, by hash prefix
	KindEmpty      = "empty"      // a missing *.lst GRUB asks for
)

// File is an opened file of the tree. Close it.
type File struct {
	io.ReadSeekCloser
	Name    string // the cleaned name
	Kind    string
	Size    int64
	SHA256  string    // empty when unknown
	ModTime time.Time // zero for generated files
}

// Request is one read of the tree.
type Request struct {
	Name     string              // as the client sent it
	Protocol bootconfig.Protocol // how it arrived
	LocalIP  netip.Addr          // the rack address it arrived on (fs_host of rendered configs)
	RemoteIP netip.Addr          // the client
}

// Config configures a Tree.
type Config struct {
	Region     Region
	Bootloader *bootloader.Loader // nil: Region's bootloaders, else the host's (DefaultHost(DefaultCacheDir()))
	Render     bootconfig.Options
	Sink       trace.Sink // nil: trace.Nop
	Logger     *slog.Logger
}

// Tree resolves names. It is safe for concurrent use.
type Tree struct {
	region Region
	boot   *bootloader.Loader
	render bootconfig.Options
	sink   trace.Sink
	log    *slog.Logger
}

// New returns a Tree.
func New(c Config) *Tree {
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	boot := c.Bootloader
	if boot == nil {
		var r bootloader.Region
		if c.Region != nil {
			r = c.Region
		}
		boot = bootloader.New(r, bootloader.DefaultHost(bootloader.DefaultCacheDir()), log)
	}
	return &Tree{region: c.Region, boot: boot, render: c.Render, sink: trace.OrNop(c.Sink), log: log}
}

var driveLetter = regexp.MustCompile(`^[A-Za-z]:`)

// Clean checks a requested name against the rules and returns it normalised: backslashes
// become slashes (tftp.py does this for bootloaders that send DOS paths), leading slashes
// and empty segments go (MAAS's regexes accept "^/*"; a TFTP root is the top of the tree).
func Clean(name string) (string, error) {
	refuse := func(reason string) (string, error) { return "", &RefusedError{Name: name, Reason: reason} }
	if len(name) > MaxNameLen {
		return refuse(fmt.Sprintf("name is %d bytes, longer than %d", len(name), MaxNameLen))
	}
	if name == "" {
		return refuse("empty name")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return refuse(fmt.Sprintf("control character %U in name", r))
		}
	}
	n := strings.ReplaceAll(name, `\`, "/")
	if driveLetter.MatchString(n) {
		return refuse("absolute DOS path outside the served tree")
	}
	var segs []string
	for _, s := range strings.Split(n, "/") {
		switch s {
		case "", ".":
			continue
		case "..":
			return refuse("'..' path segment (traversal outside the served tree)")
		}
		segs = append(segs, s)
	}
	if len(segs) == 0 {
		return refuse("names no file")
	}
	return strings.Join(segs, "/"), nil
}

// Open resolves a name as MAAS's TFTP backend does (and the rack's HTTP server for paths
// outside /images/): boot-method configs, then the static files of the TFTP root, then
// bootloaders and images (tftp.py get_cache_reader -> nginx /images/), then an empty file
// for a missing *.lst.
func (t *Tree) Open(ctx context.Context, req Request) (File, error) {
	name, err := Clean(req.Name)
	if err != nil {
		return File{}, err
	}
	if m, ok := bootconfig.MatchPath(name); ok {
		return t.config(ctx, req, name, m)
	}
	switch name {
	case "grub/grub.cfg":
		return static(name, bootconfig.GRUBPreloader), nil
	case "ipxe.cfg":
		return static(name, bootconfig.IPXEPreloader), nil
	}
	f, err := t.openImageOrBootloader(ctx, name)
	if errors.Is(err, ErrNotFound) && strings.Contains(name, ".lst") {
		// tftp.py: GRUB asks for command.lst, fs.lst, crypto.lst and terminal.lst and
		// expects empty files, not errors.
		return File{ReadSeekCloser: nopCloser{bytes.NewReader(nil)}, Name: name, Kind: KindEmpty}, nil
	}
	return f, err
}

// OpenImage resolves a path under the rack's /images/ as nginx and the rack agent do: the
// first segment names a stored file by hash prefix; otherwise a bootloader name anywhere in
// the path (".*/bootx64.efi" and the like) names a bootloader.
func (t *Tree) OpenImage(ctx context.Context, req Request) (File, error) {
	name, err := Clean(req.Name)
	if err != nil {
		return File{}, err
	}
	return t.openImageOrBootloader(ctx, name)
}

// imageHash is MAAS's filename_on_disk: the sha256 truncated to 7 hex digits, longer on a
// collision (SHORTSHA256_MIN_PREFIX_LEN = 7).
var imageHash = regexp.MustCompile(`^[0-9a-f]{7,64}$`)

func (t *Tree) openImageOrBootloader(ctx context.Context, name string) (File, error) {
	rest := strings.TrimPrefix(name, "images/") // the agent's ".*/images/(.*)" rule
	first, _, _ := strings.Cut(rest, "/")
	if imageHash.MatchString(first) && t.region != nil {
		img, err := t.region.OpenImage(ctx, first)
		if err == nil {
			return File{ReadSeekCloser: img.ReadSeekCloser, Name: name, Kind: KindImage,
				Size: img.Size, SHA256: img.SHA256, ModTime: img.ModTime}, nil
		}
		if !errors.Is(err, fakemaas.ErrImageNotFound) {
			return File{}, fmt.Errorf("open image %s: %w", first, err)
		}
	}
	if e, ok := bootloader.Lookup(path.Base(name)); ok {
		img, err := t.boot.Open(ctx, e)
		if err == nil {
			return File{ReadSeekCloser: img.ReadSeekCloser, Name: name, Kind: KindBootloader,
				Size: img.Size, SHA256: img.SHA256, ModTime: img.ModTime}, nil
		}
		if !errors.Is(err, fakemaas.ErrImageNotFound) {
			return File{}, err
		}
		return File{}, fmt.Errorf("%s: %w: %w", name, ErrNotFound, err)
	}
	return File{}, fmt.Errorf("%s: no such file in the served tree: %w", name, ErrNotFound)
}

// config renders a boot-method config for the machine the name identifies.
func (t *Tree) config(ctx context.Context, req Request, name string, m bootconfig.Match) (File, error) {
	if t.region == nil {
		return File{}, fmt.Errorf("%s: no region to ask for a boot config: %w", name, ErrNotFound)
	}
	local := ""
	if req.LocalIP.IsValid() {
		local = req.LocalIP.Unmap().String()
	}
	remote := ""
	if req.RemoteIP.IsValid() {
		remote = req.RemoteIP.Unmap().String()
	}
	subarch := m.Subarch
	if subarch == "" {
		subarch = "generic"
	}
	breq := fakemaas.BootRequest{
		MAC: m.MAC, HardwareUUID: m.UUID, Arch: m.Arch, Subarch: subarch,
		Bootloader: m.Bootloader, LocalIP: local, RemoteIP: remote,
	}
	p, err := t.region.BootConfig(ctx, breq)
	if err != nil {
		if errors.Is(err, fakemaas.ErrNoBootConfig) {
			// rpc/boot.py BootConfigNoResponse -> TFTP file not found, so pxelinux moves on
			// to its next name (01-<mac> -> ... -> default).
			return File{}, fmt.Errorf("%s: region has no boot config for this machine: %w", name, ErrNotFound)
		}
		return File{}, fmt.Errorf("%s: region boot config: %w", name, err)
	}
	if p.FSHost == "" {
		p.FSHost = local // get_config: fs_host = local_ip
	}
	source := trace.SourceTFTP
	if req.Protocol == bootconfig.HTTP {
		source = trace.SourceHTTP
	}
	if p.Purpose != fakemaas.PurposeLocal {
		t.imageMissing(source, m.MAC, p)
	}
	cfg, err := bootconfig.Render(m.Format, p, req.Protocol, t.render)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w: %w", name, ErrNotFound, err)
	}
	t.sink.Emit(trace.Event{
		Source: source, Kind: trace.KindBootConfig, MAC: m.MAC, Machine: p.SystemID,
		Message: fmt.Sprintf("rendered %s for purpose %s", name, p.Purpose),
		Attrs: map[string]any{
			"purpose": p.Purpose, "file": name, "bootloader": m.Bootloader, "format": m.Format.String(),
			"template": cfg.Template, "kernel": p.Kernel, "initrd": p.Initrd, "protocol": string(req.Protocol),
			"arch": p.Arch, "subarch": p.Subarch, "osystem": p.OSystem, "release": p.Release, "label": p.Label,
		},
	})
	f := static(name, string(cfg.Data))
	f.Kind = KindConfig
	return f, nil
}

// imageMissing reports what tftp.py's get_boot_image logs for a missing kernel or image
// ("Missing kernel image <os>/<arch>/<subarch>/<release>." / "Missing boot image ...").
func (t *Tree) imageMissing(source, mac string, p fakemaas.KernelParams) {
	report := func(what, osys, release string) {
		img := fmt.Sprintf("%s/%s/%s/%s", osys, p.Arch, p.Subarch, release)
		t.sink.Emit(trace.Event{
			Source: source, Kind: trace.KindBootImageMissing, Level: trace.LevelError, MAC: mac, Machine: p.SystemID,
			Message: fmt.Sprintf("Missing %s image %s.", what, img),
			Attrs:   map[string]any{"image": img, "what": what, "purpose": p.Purpose},
		})
		t.log.Error("missing boot image", "what", what, "image", img, "system_id", p.SystemID)
	}
	if p.KernelLabel == "no-such-image" {
		osys, rel := p.KernelOSystem, p.KernelRelease
		if osys == "" {
			osys, rel = p.OSystem, p.Release
		}
		report("kernel", osys, rel)
	}
	if p.Label == "no-such-image" {
		report("boot", p.OSystem, p.Release)
	}
}

func static(name, data string) File {
	sum := sha256.Sum256([]byte(data))
	return File{
		ReadSeekCloser: nopCloser{strings.NewReader(data)}, Name: name, Kind: KindStatic,
		Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]),
	}
}

type nopCloser struct{ io.ReadSeeker }

func (nopCloser) Close() error { return nil }
