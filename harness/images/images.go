// Package images builds maasemu's boot and test images from Debian packages: the test
// ephemeral (kernel, initramfs, squashfs published as a SimpleStreams tree, plus bootloader
// products) and the custom test images of every MAAS filetype, good and broken.
package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/maasemu/maasemu/harness/images/debs"
	"github.com/maasemu/maasemu/harness/images/initramfs"
)

// Files installed into the images.
var (
	//go:embed files/initramfs-init
	initramfsInit []byte
	//go:embed files/udhcpc.script
	udhcpcScript []byte
	//go:embed files/ephemeral-init
	ephemeralInit []byte
	//go:embed files/image-init
	imageInit []byte
)

// Builder builds images into a cache and publishes them to output directories.
type Builder struct {
	// Cache is the cache directory (default DefaultCache()).
	Cache string
	// Agent is the static maasemu-agent binary installed into the ephemeral (as
	// /usr/bin/maasemu-agent) and the test images (as cloud-init and netplan).
	Agent string
	Log   *slog.Logger

	debFetcher *debs.Fetcher
	kernel     *Kernel
	mu         sync.Mutex // serialises builds in this process; lock() across processes
}

// DefaultCache is $MAASEMU_CACHE, else ~/.cache/maasemu.
func DefaultCache() string {
	if c := os.Getenv("MAASEMU_CACHE"); c != "" {
		return c
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "maasemu")
	}
	return filepath.Join(os.TempDir(), "maasemu-cache")
}

func (b *Builder) cacheDir() string {
	if b.Cache == "" {
		b.Cache = DefaultCache()
	}
	return b.Cache
}

func (b *Builder) log() *slog.Logger {
	if b.Log == nil {
		b.Log = slog.New(slog.DiscardHandler)
	}
	return b.Log
}

// lock takes the cache's build lock (flock on Cache/.lock), so that concurrent builders
// (parallel test binaries, two CLI runs) never write the same cache entry at once.
func (b *Builder) lock(ctx context.Context) (func(), error) {
	b.mu.Lock()
	if err := os.MkdirAll(b.cacheDir(), 0o755); err != nil {
		b.mu.Unlock()
		return nil, fmt.Errorf("images: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(b.cacheDir(), ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		b.mu.Unlock()
		return nil, fmt.Errorf("images: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if err != syscall.EWOULDBLOCK {
			f.Close()
			b.mu.Unlock()
			return nil, fmt.Errorf("images: locking %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			b.mu.Unlock()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
		b.mu.Unlock()
	}, nil
}

func (b *Builder) fetcher() *debs.Fetcher {
	if b.debFetcher == nil {
		b.debFetcher = debs.NewFetcher(filepath.Join(b.cacheDir(), "debs"), b.log())
	}
	return b.debFetcher
}

// Kernel returns the Debian kernel the images boot (fetched once).
func (b *Builder) Kernel(ctx context.Context) (*Kernel, error) {
	unlock, err := b.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return b.getKernel(ctx)
}

func (b *Builder) getKernel(ctx context.Context) (*Kernel, error) {
	if b.kernel != nil {
		return b.kernel, nil
	}
	k, err := FetchKernel(ctx, b.fetcher(), b.cacheDir())
	if err != nil {
		return nil, err
	}
	b.kernel = k
	return k, nil
}

func (b *Builder) agentBytes() ([]byte, error) {
	if b.Agent == "" {
		return nil, fmt.Errorf("images: no agent binary given (build one with BuildAgent)")
	}
	a, err := os.ReadFile(b.Agent)
	if err != nil {
		return nil, fmt.Errorf("images: agent: %w", err)
	}
	if len(a) < 4 || string(a[1:4]) != "ELF" {
		return nil, fmt.Errorf("images: agent %s is not an ELF executable", b.Agent)
	}
	return a, nil
}

// BuildAgent builds cmd/maasemu-agent of the module at moduleDir as a static binary
// (CGO_ENABLED=0) into outDir and returns its path.
func BuildAgent(ctx context.Context, moduleDir, outDir string) (string, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", fmt.Errorf("images: %w", err)
	}
	out := filepath.Join(outDir, "maasemu-agent")
	goBin := "go"
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		goBin = p
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-o", out, "./cmd/maasemu-agent")
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("images: building maasemu-agent in %s: %w: %s", moduleDir, err, b)
	}
	return out, nil
}

// hashOf hashes strings and byte slices for cache keys.
func hashOf(parts ...any) string {
	h := sha256.New()
	for _, p := range parts {
		switch v := p.(type) {
		case []byte:
			fmt.Fprintf(h, "%d:", len(v))
			h.Write(v)
		default:
			s := fmt.Sprint(v)
			fmt.Fprintf(h, "%d:%s", len(s), s)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func fileSHA256(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// initrdModules are what the initramfs loads: disk and NIC drivers for QEMU and common
// hardware, the filesystems the root and the ephemeral need, and the bonding, VLAN and
// bridge drivers a deployed system's network config can ask for.
var initrdModules = []string{
	"crc32c_generic", // before libcrc32c (btrfs, xfs), whose softdep it is
	"virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi", "e1000", "e1000e", "ahci", "sd_mod",
	"sr_mod", "nvme", "squashfs", "overlay", "loop", "ext4", "vfat", "xfs", "btrfs", "dm_mod",
	"nls_cp437", "nls_ascii", "nls_iso8859_1", "nls_utf8", // vfat: Debian's default iocharset is ascii
	"af_packet", "isofs", "efivarfs",
	"bonding", "8021q", "bridge",
}

// busyboxApplets are the applet links the initramfs and the test images get.
func busyboxApplets(ctx context.Context, busybox string) ([]string, error) {
	out, err := exec.CommandContext(ctx, busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("images: %s --list: %w", busybox, err)
	}
	return strings.Fields(string(out)), nil
}

// InitrdPackages are the Debian packages the initramfs takes its tools from: busybox, and
// LVM's lvm with its libraries, to activate a root on a logical volume.
var InitrdPackages = []string{"busybox-static", "lvm2"}

// initrdTools stages InitrdPackages, returning the root and the packages (for cache keys).
func (b *Builder) initrdTools(ctx context.Context) (string, []debs.Package, error) {
	return b.stageRoot(ctx, InitrdPackages)
}

// buildInitrd writes the maasemu initramfs (busybox, lvm, modules in load order, /init)
// to out, taking the tools from tools, a root staged by initrdTools.
func (b *Builder) buildInitrd(ctx context.Context, k *Kernel, tools string, out string) error {
	mods, err := k.Modules(initrdModules)
	if err != nil {
		return err
	}
	lvm, err := elfClosure(tools, "usr/sbin/lvm")
	if err != nil {
		return err
	}
	busybox := filepath.Join(tools, "usr/bin/busybox")
	applets, err := busyboxApplets(ctx, busybox)
	if err != nil {
		return err
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	var buf bytes.Buffer
	err = initramfs.WriteGzip(&buf, func(w *initramfs.Writer) error {
		for _, d := range []string{"bin", "sbin", "etc", "proc", "sys", "dev", "run", "tmp", "newroot", "lib/modules/" + k.Version} {
			if err := w.Dir(d, 0o755); err != nil {
				return err
			}
		}
		if err := w.CharDev("dev/console", 0o600, 5, 1); err != nil {
			return err
		}
		if err := w.CharDev("dev/null", 0o666, 1, 3); err != nil {
			return err
		}
		if err := w.File("bin/busybox", 0o755, bb); err != nil {
			return err
		}
		sort.Strings(applets)
		for _, a := range applets {
			if a == "busybox" {
				continue
			}
			if err := w.Symlink("bin/"+a, "busybox"); err != nil {
				return err
			}
		}
		for _, f := range lvm {
			data, err := os.ReadFile(f.src)
			if err != nil {
				return err
			}
			// the initramfs has no /usr: what the package keeps there goes to /
			if err := w.File(strings.TrimPrefix(f.dst, "usr/"), 0o755, data); err != nil {
				return err
			}
		}
		if err := w.File("init", 0o755, initramfsInit); err != nil {
			return err
		}
		if err := w.File("etc/udhcpc.script", 0o755, udhcpcScript); err != nil {
			return err
		}
		for _, m := range mods {
			data, err := os.ReadFile(filepath.Join(k.ModulesDir(), m))
			if err != nil {
				return err
			}
			if err := w.File(filepath.Join("lib/modules", k.Version, m), 0o644, data); err != nil {
				return err
			}
		}
		return w.File("etc/modules.load", 0o644, []byte(strings.Join(mods, "\n")+"\n"))
	})
	if err != nil {
		return fmt.Errorf("images: initramfs: %w", err)
	}
	return writeFileAtomic(out, buf.Bytes(), 0o644)
}

func writeFileAtomic(p string, b []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return nil
}

// linkOrCopy publishes a cached file at dst (hard link when possible).
func linkOrCopy(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	os.Remove(dst)
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return copyFile(src, dst, st.Mode().Perm())
}

// runTool runs a host tool and returns its combined output.
func runTool(ctx context.Context, name string, args ...string) ([]byte, error) {
	if _, err := exec.LookPath(name); err != nil {
		return nil, fmt.Errorf("images: %s is needed: %w", name, err)
	}
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

// pruneCache keeps the newest keep entries of the cache directory parent (by modification
// time) and removes the others, so that rebuilds with changing inputs do not fill the disk.
func pruneCache(parent string, keep int) {
	ents, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	type ent struct {
		name string
		mod  time.Time
	}
	var es []ent
	for _, e := range ents {
		if info, err := e.Info(); err == nil && e.IsDir() {
			es = append(es, ent{e.Name(), info.ModTime()})
		}
	}
	sort.Slice(es, func(i, j int) bool { return es[i].mod.After(es[j].mod) })
	for i := keep; i < len(es); i++ {
		os.RemoveAll(filepath.Join(parent, es[i].name))
	}
}
