package bootloader

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/maasemu/maasemu/fakemaas"
)

// GRUBPrefix is the prefix built into the GRUB network image. It names no device, so GRUB
// keeps the protocol and server it was loaded from ((tftp,<server>) or the firmware's HTTP):
// grub/grub.cfg then comes from the rack, as with MAAS's signed grubnetx64.
const GRUBPrefix = "/grub"

// GRUBModules are built into grubx64.efi: the network stack, the commands MAAS's configs use
// (configfile, linux/initrd, search, chainloader, for/if/test, echo, halt, exit) and the file
// systems and partition tables the local-boot config searches. grub-mkimage adds their
// dependencies.
var GRUBModules = []string{
	"normal", "configfile", "echo", "test", "true", "sleep", "regexp", "ls", "cat", "loadenv",
	"net", "efinet", "tftp", "http",
	"linux", "linuxefi", "boot", "chain", "halt", "reboot", "gzio",
	"search", "search_fs_file", "search_fs_uuid", "search_label", "probe",
	"part_gpt", "part_msdos", "fat", "ext2",
	"all_video", "efi_gop", "efi_uga", "serial", "terminal",
}

var versionSafe = regexp.MustCompile(`[^A-Za-z0-9.+~_-]`)

// grubImage returns the path of the GRUB network image, building it once into
// CacheDir/bootloaders/grub-<package version>-<hash of modules and prefix>/grubx64.efi.
func (l *Loader) grubImage(ctx context.Context) (string, error) {
	l.grubMu.Lock()
	defer l.grubMu.Unlock()
	if l.grubPath != "" {
		return l.grubPath, nil
	}
	if l.host.CacheDir == "" {
		return "", fmt.Errorf("bootloader grubx64.efi: no cache directory to build it in: %w", fakemaas.ErrImageNotFound)
	}
	version, err := l.grubVersion(ctx)
	if err != nil {
		return "", fmt.Errorf("bootloader grubx64.efi: %w: %w", err, fakemaas.ErrImageNotFound)
	}
	h := sha256.Sum256([]byte(GRUBPrefix + "\n" + strings.Join(GRUBModules, " ")))
	dir := filepath.Join(l.host.CacheDir, "bootloaders",
		"grub-"+versionSafe.ReplaceAllString(version, "_")+"-"+hex.EncodeToString(h[:4]))
	out := filepath.Join(dir, "grubx64.efi")
	if st, err := os.Stat(out); err == nil && st.Size() > 0 {
		l.grubPath = out
		return out, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("bootloader grubx64.efi: %w", err)
	}
	// Build into a temporary name and rename, so a crash or a concurrent build never
	// leaves a half-written image under the final name.
	tmp, err := os.CreateTemp(dir, ".grubx64.efi-*")
	if err != nil {
		return "", fmt.Errorf("bootloader grubx64.efi: %w", err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	build := l.host.GRUBImageBuild
	if build == nil {
		build = l.mkimage
	}
	if err := build(ctx, tmp.Name()); err != nil {
		return "", fmt.Errorf("bootloader grubx64.efi: %w: %w", err, fakemaas.ErrImageNotFound)
	}
	if st, err := os.Stat(tmp.Name()); err != nil || st.Size() == 0 {
		return "", fmt.Errorf("bootloader grubx64.efi: build produced no image: %w", fakemaas.ErrImageNotFound)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", fmt.Errorf("bootloader grubx64.efi: %w", err)
	}
	l.log.Info("built GRUB network image", "path", out, "grub_version", version)
	l.grubPath = out
	return out, nil
}

// grubVersion is the grub-efi-amd64-bin package version, which keys the cached image.
func (l *Loader) grubVersion(ctx context.Context) (string, error) {
	if l.host.GRUBVersion != nil {
		return l.host.GRUBVersion(ctx)
	}
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Version}", "grub-efi-amd64-bin").Output()
	if err != nil || len(strings.TrimSpace(string(out))) == 0 {
		// Not a dpkg system, or the package is absent: fall back to grub-mkimage's own version.
		out2, err2 := exec.CommandContext(ctx, l.host.GRUBMkimage, "--version").Output()
		if err2 != nil {
			return "", fmt.Errorf("grub-efi-amd64-bin not installed (dpkg-query: %v; %s --version: %v)", err, l.host.GRUBMkimage, err2)
		}
		return strings.TrimSpace(strings.TrimPrefix(string(out2), "grub-mkimage (GRUB)")), nil
	}
	return strings.TrimSpace(string(out)), nil
}

func (l *Loader) mkimage(ctx context.Context, out string) error {
	if _, err := os.Stat(filepath.Join(l.host.GRUBModules, "moddep.lst")); err != nil {
		return fmt.Errorf("GRUB x86_64-efi modules not found in %s (package grub-efi-amd64-bin): %w", l.host.GRUBModules, err)
	}
	args := append([]string{"-O", "x86_64-efi", "-d", l.host.GRUBModules, "-p", GRUBPrefix, "-o", out}, GRUBModules...)
	cmd := exec.CommandContext(ctx, l.host.GRUBMkimage, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		var ee *exec.Error
		if errors.As(err, &ee) {
			return fmt.Errorf("grub-mkimage not available (package grub-common): %w", err)
		}
		return fmt.Errorf("grub-mkimage %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(b)))
	}
	return nil
}
