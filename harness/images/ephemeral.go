package images

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/maasemu/maasemu/harness/images/debs"
)

// EphemeralPackages is the userland of the test ephemeral: what curtin and custom images'
// curtin hooks expect to find in MAAS's Ubuntu ephemeral.
var EphemeralPackages = []string{
	"bash", "python3", "python3-yaml", "coreutils", "util-linux", "mount", "e2fsprogs", "dosfstools",
	"xfsprogs", "gdisk", "fdisk", "parted", "lvm2", "dmsetup", "mdadm", "udev", "kmod", "wget",
	"tar", "gzip", "xz-utils", "bzip2", "zstd", "rsync", "grub-pc-bin", "grub-efi-amd64-bin",
	"grub-common", "grub2-common", "efibootmgr", "iproute2", "debconf", "busybox-static", "procps",
	"findutils", "grep", "sed", "mawk",
}

// ephemeralModules are the kernel modules the ephemeral userland can load (storage, RAID,
// LVM, filesystems, NICs), with their dependencies.
var ephemeralModules = []string{
	"fs/ext4/*", "fs/xfs/*", "fs/btrfs/*", "fs/fat/*", "fs/nls/*", "fs/squashfs/*", "fs/overlayfs/*",
	"fs/isofs/*", "fs/efivarfs/*", "fs/fuse/*", "drivers/md/*", "drivers/block/loop.ko",
	"drivers/block/virtio_blk.ko", "drivers/nvme/host/*", "drivers/ata/ahci.ko", "drivers/scsi/sd_mod.ko",
	"drivers/scsi/sr_mod.ko", "drivers/scsi/virtio_scsi.ko", "drivers/virtio/*", "drivers/net/virtio_net.ko",
	"drivers/net/ethernet/intel/e1000/*", "drivers/net/ethernet/intel/e1000e/*", "crypto/*",
}

// ephemeralRecipe versions the ephemeral's layout; part of the cache key.
const ephemeralRecipe = "ephemeral-v1"

// Ephemeral is a built test ephemeral.
type Ephemeral struct {
	Dir           string // cache directory holding the files
	Kernel        string // boot-kernel
	Initrd        string // boot-initrd
	Squashfs      string // squashfs
	Manifest      string // squashfs.manifest ("package\tversion" lines)
	KernelVersion string
	Version       string // the SimpleStreams version name (build date)
	Key           string // hash of every input
}

// Ephemeral builds the test ephemeral, or returns the cached one when no input changed
// (package versions, kernel, agent binary, init scripts, recipe).
func (b *Builder) Ephemeral(ctx context.Context) (*Ephemeral, error) {
	unlock, err := b.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	agent, err := b.agentBytes()
	if err != nil {
		return nil, err
	}
	k, err := b.getKernel(ctx)
	if err != nil {
		return nil, err
	}
	root, pkgs, err := b.stageRoot(ctx, EphemeralPackages)
	if err != nil {
		return nil, err
	}
	tools, toolPkgs, err := b.initrdTools(ctx)
	if err != nil {
		return nil, err
	}
	key := hashOf(ephemeralRecipe, debs.Key(pkgs), debs.Key(toolPkgs), k.Package.String(), agent, initramfsInit, udhcpcScript, ephemeralInit, strings.Join(initrdModules, ","), strings.Join(ephemeralModules, ","))
	dir := filepath.Join(b.cacheDir(), "ephemeral", key[:16])
	e := &Ephemeral{
		Dir: dir, Kernel: filepath.Join(dir, "boot-kernel"), Initrd: filepath.Join(dir, "boot-initrd"),
		Squashfs: filepath.Join(dir, "squashfs"), Manifest: filepath.Join(dir, "squashfs.manifest"),
		KernelVersion: k.Version, Key: key,
	}
	if v, err := os.ReadFile(filepath.Join(dir, ".complete")); err == nil {
		e.Version = strings.TrimSpace(string(v))
		now := time.Now()
		os.Chtimes(dir, now, now) // recently used: pruneCache keeps it
		return e, nil
	}
	start := time.Now()
	b.log().Info("building the test ephemeral", "kernel", k.Version, "packages", len(pkgs), "dir", dir)
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	if err := copyFile(k.Vmlinuz, e.Kernel, 0o644); err != nil {
		return nil, err
	}
	if err := b.buildInitrd(ctx, k, tools, e.Initrd); err != nil {
		return nil, err
	}
	// the squashfs tree: the staged Debian root plus modules, init and the agent
	tree := filepath.Join(b.cacheDir(), "work", "ephemeral-"+key[:16])
	if err := cloneTree(ctx, root, tree); err != nil {
		return nil, err
	}
	defer os.RemoveAll(tree)
	mods, err := k.Modules(ephemeralModules)
	if err != nil {
		return nil, err
	}
	if err := k.InstallModules(ctx, mods, tree); err != nil {
		return nil, err
	}
	osRelease := "PRETTY_NAME=\"maasemu test ephemeral (Debian 12 packages)\"\nNAME=\"maasemu ephemeral\"\nID=debian\nID_LIKE=ubuntu\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nHOME_URL=\"https://github.com/maasemu/maasemu\"\n"
	for _, err := range []error{
		putFile(tree, "sbin/init", ephemeralInit, 0o755),
		putFile(tree, "usr/bin/maasemu-agent", agent, 0o755),
		putFile(tree, "etc/os-release", []byte(osRelease), 0o644),
		putFile(tree, "etc/hostname", []byte("maasemu-ephemeral\n"), 0o644),
		putLink(tree, "etc/resolv.conf", "../run/resolv.conf"),
	} {
		if err != nil {
			return nil, err
		}
	}
	if err := mksquashfs(ctx, tree, e.Squashfs); err != nil {
		return nil, err
	}
	var man strings.Builder
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	for _, p := range pkgs {
		fmt.Fprintf(&man, "%s\t%s\n", p.Name, p.Version)
	}
	fmt.Fprintf(&man, "%s\t%s\n", k.Package.Name, k.Package.Version)
	if err := writeFileAtomic(e.Manifest, []byte(man.String()), 0o644); err != nil {
		return nil, err
	}
	e.Version = time.Now().UTC().Format("20060102")
	meta, _ := json.MarshalIndent(map[string]any{"key": key, "kernel": k.Package.String(), "packages": pkgs, "built": time.Now().UTC()}, "", "  ")
	if err := writeFileAtomic(filepath.Join(dir, "build.json"), meta, 0o644); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, ".complete"), []byte(e.Version+"\n"), 0o644); err != nil {
		return nil, err
	}
	pruneCache(filepath.Dir(dir), 3)
	b.log().Info("built the test ephemeral", "dir", dir, "took", time.Since(start).Round(time.Millisecond))
	return e, nil
}

// mksquashfs packs tree into a squashfs at out (xz, all files owned by root).
func mksquashfs(ctx context.Context, tree, out string) error {
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		return fmt.Errorf("images: mksquashfs is needed (apt-get install squashfs-tools): %w", err)
	}
	tmp := out + ".tmp"
	os.Remove(tmp)
	cmd := exec.CommandContext(ctx, "mksquashfs", tree, tmp, "-noappend", "-comp", "xz", "-b", "1M",
		"-all-root", "-no-progress", "-quiet", "-processors", "2")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("images: mksquashfs %s: %w: %s", tree, err, b)
	}
	return os.Rename(tmp, out)
}
