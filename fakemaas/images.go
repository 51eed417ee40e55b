package fakemaas

import (
	"context"
	"fmt"
	"net/http"
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
