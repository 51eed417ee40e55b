package fakemaas

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// OpenImage opens the complete boot resource file whose filename_on_disk is hashPrefix
// (the first path element after the rack's /images/, e.g. "54fe42a"). Incomplete uploads
// are never served. ErrImageNotFound when none matches.
func (r *Region) OpenImage(ctx context.Context, hashPrefix string) (ImageFile, error) {
	if err := ctx.Err(); err != nil {
		return ImageFile{}, err
	}
	hashPrefix, _, _ = strings.Cut(strings.TrimPrefix(hashPrefix, "/"), "/")
	r.mu.RLock()
	var sha string
	var size int64
	for _, res := range r.resources {
		for _, s := range res.Sets {
			for _, f := range s.Files {
				if f.FilenameOnDisk == hashPrefix && f.Complete {
					sha, size = f.SHA256, f.Size
				}
			}
		}
	}
	r.mu.RUnlock()
	if sha == "" {
		return ImageFile{}, fmt.Errorf("fakemaas: image %q: %w", hashPrefix, ErrImageNotFound)
	}
	f, err := r.blobs.Open(sha)
	if err != nil {
		return ImageFile{}, fmt.Errorf("fakemaas: image %q: %w: %w", hashPrefix, ErrImageNotFound, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return ImageFile{}, fmt.Errorf("fakemaas: image %q: %w", hashPrefix, err)
	}
	if fi.Size() != size {
		f.Close()
		return ImageFile{}, fmt.Errorf("fakemaas: image %q: stored size %d, want %d: %w", hashPrefix, fi.Size(), size, ErrImageNotFound)
	}
	return ImageFile{ReadSeekCloser: f, Size: size, SHA256: sha, ModTime: fi.ModTime()}, nil
}

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

// serveBootResourceFile serves GET /MAAS/boot-resources/<filename_on_disk>/<labels...>,
// as the region's nginx does for racks: the first element names the file.
func (r *Region) serveBootResourceFile(w http.ResponseWriter, hr *http.Request) {
	if hr.Method != http.MethodGet && hr.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	rest := strings.TrimPrefix(hr.URL.Path, "/MAAS/boot-resources/")
	img, err := r.OpenImage(hr.Context(), rest)
	if err != nil {
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	}
	defer img.Close()
	http.ServeContent(w, hr, "", img.ModTime, img.ReadSeekCloser)
}
