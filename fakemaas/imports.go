package fakemaas

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/ulikunitz/xz"

	"github.com/maasemu/maasemu/fakemaas/simplestreams"
)

// ImportResult summarises an import.
type ImportResult struct {
	Source      string
	Signed      bool     // index.sjson was used (its signature is not verified)
	Products    []string // products imported (latest version of each)
	Downloaded  int      // files fetched
	AlreadyHave int      // files whose content was already in the store
}

// supportedBootloaders are the bootloader products MAAS consumes: type -> os/arch.
var supportedBootloaders = map[string][][2]string{
	"pxe":           {{"pxelinux", "i386"}},
	"uefi":          {{"grub-efi-signed", "amd64"}, {"grub-efi", "arm64"}},
	"open-firmware": {{"grub-ieee1275", "ppc64el"}},
}

func bootloaderSupported(p simplestreams.Product) bool {
	for _, b := range supportedBootloaders[p.BootloaderType] {
		if b[0] == p.OS && b[1] == p.Arch {
			return true
		}
	}
	return false
}

// SelectionsSelector imports the products a boot source's selections match (os, release,
// arches, subarches, labels; "*" matches all). Bootloader products are always imported.
func SelectionsSelector(sels []*BootSourceSelection) simplestreams.Selector {
	match := func(list []string, v string) bool {
		if len(list) == 0 {
			return true
		}
		for _, x := range list {
			if x == "*" || x == v {
				return true
			}
		}
		return false
	}
	return func(name string, p simplestreams.Product) bool {
		if simplestreams.KindOf(name) == simplestreams.KindBootloader {
			return true
		}
		for _, s := range sels {
			if s.OS == p.OS && s.Release == p.Release && match(s.Arches, p.Arch) && match(s.Subarches, p.Subarch) && match(s.Labels, p.Label) {
				return true
			}
		}
		return false
	}
}

// Import reads the SimpleStreams tree at src (a directory, file:// or http(s):// URL),
// downloads the latest version of every product sel accepts (nil: all), verifies each
// file's size and sha256, and records synced boot resources; bootloader archives are
// extracted for OpenBootloader.
func (r *Region) Import(ctx context.Context, src string, sel simplestreams.Selector) (ImportResult, error) {
	res := ImportResult{Source: src}
	s, err := simplestreams.NewSource(src, r.opts.HTTPClient)
	if err != nil {
		return res, err
	}
	found, signed, err := s.Walk(ctx, sel)
	res.Signed = signed
	if signed {
		r.log.Info("simplestreams: using index.sjson; its PGP signature is NOT verified", "source", src)
	}
	if err != nil {
		return res, err
	}
	for _, f := range found {
		if f.Kind == simplestreams.KindBootloader && !bootloaderSupported(f.Product) {
			r.log.Info("simplestreams: skipping unsupported bootloader product", "product", f.Name)
			continue
		}
		if f.Kind == simplestreams.KindImage && (f.Product.OS == "" || f.Product.Release == "" || f.Product.Arch == "") {
			return res, fmt.Errorf("simplestreams: product %s: os, release and arch are required: %w", f.Name, simplestreams.ErrBadStream)
		}
		for _, name := range sortedKeys(f.Items) {
			it := f.Items[name]
			if r.blobs.Has(it.SHA256, it.Size) {
				res.AlreadyHave++
				continue
			}
			rc, err := s.Open(ctx, it.Path)
			if err != nil {
				return res, fmt.Errorf("product %s item %s: %w", f.Name, name, err)
			}
			err = r.blobs.Put(ctx, rc, it.Size, it.SHA256)
			rc.Close()
			if err != nil {
				return res, fmt.Errorf("product %s item %s (%s): %w", f.Name, name, it.Path, err)
			}
			res.Downloaded++
		}
		if err := r.recordProduct(f, s.Stream); err != nil {
			return res, err
		}
		res.Products = append(res.Products, f.Name)
	}
	r.log.Info("simplestreams import done", "source", src, "products", len(res.Products), "downloaded", res.Downloaded, "already_present", res.AlreadyHave)
	return res, nil
}

// recordProduct creates or updates the synced resource for a product whose files are all
// in the store.
func (r *Region) recordProduct(f simplestreams.Found, stream string) error {
	p := f.Product
	var name, arch, btype string
	extra := map[string]string{}
	switch f.Kind {
	case simplestreams.KindBootloader:
		btype = p.BootloaderType
		name = p.OS + "/" + btype
		arch = p.Arch + "/generic"
	default:
		name = p.OS + "/" + p.Release
		sub := p.Subarch
		if sub == "" {
			sub = "generic"
		}
		if p.KFlavor != "" && p.KFlavor != "generic" && (strings.HasPrefix(sub, "hwe-") || strings.HasPrefix(sub, "ga-")) {
			sub += "-" + p.KFlavor
		}
		arch = p.Arch + "/" + sub
		if p.Version != "" {
			extra["alias"] = p.OS + "/" + p.Version
		}
		if p.Subarches != "" {
			extra["subarches"] = p.Subarches
		}
		if p.ReleaseTitle != "" {
			extra["title"] = p.ReleaseTitle
		}
	}
	label := p.Label
	if label == "" || label == "daily" {
		label = stream
	}
	err := r.locked(func() error {
		var res *resource
		for _, o := range r.resources {
			if o.Type == rtypeSynced && o.Name == name && o.Architecture == arch {
				res = o.clone()
			}
		}
		isNew := res == nil
		if isNew {
			res = &resource{Type: rtypeSynced, Name: name, Architecture: arch, BootloaderType: btype}
		}
		res.Extra = extra
		for _, s := range res.Sets {
			if s.Version == f.Version && s.complete() {
				return nil // already imported
			}
		}
		var newFiles []*resourceFile
		err := r.commit(func(w *writer) error {
			if isNew {
				res.ID = int(w.next("resource"))
			}
			set := &resourceSet{ID: int(w.next("set")), Version: f.Version, Label: label}
			for _, iname := range sortedKeys(f.Items) {
				it := f.Items[iname]
				rf := &resourceFile{ID: int(w.next("file")), Filename: path.Base(it.Path), Filetype: it.FType,
					SHA256: it.SHA256, FilenameOnDisk: r.filenameOnDisk(it.SHA256), Size: it.Size, Uploaded: it.Size, Complete: true}
				if rf.Filetype == "" {
					rf.Filetype = iname
				}
				set.Files = append(set.Files, rf)
				newFiles = append(newFiles, rf)
			}
			var keep []*resourceSet
			for _, s := range res.Sets {
				if s.Version != f.Version {
					keep = append(keep, s)
				}
			}
			res.Sets = append(keep, set)
			w.putResource(res)
			return nil
		})
		if err != nil {
			return err
		}
		r.resources[res.ID] = res
		for _, nf := range newFiles {
			r.fileIndex[nf.ID] = res.ID
		}
		return nil
	})
	if err != nil {
		return err
	}
	if f.Kind == simplestreams.KindBootloader {
		for _, iname := range sortedKeys(f.Items) {
			it := f.Items[iname]
			if it.FType != "archive.tar.xz" {
				continue
			}
			if err := r.extractBootloader(btype, p.Arch, it.SHA256); err != nil {
				return fmt.Errorf("product %s item %s: %w", f.Name, iname, err)
			}
		}
	}
	return nil
}

func (r *Region) bootloaderDir(btype, arch string) string {
	return filepath.Join(r.opts.StateDir, "bootloaders", btype, arch)
}

// extractBootloader unpacks an archive.tar.xz blob into bootloaders/<type>/<arch>/.
// Entries that would escape the directory, links and devices are refused.
func (r *Region) extractBootloader(btype, arch, sha string) error {
	f, err := r.blobs.Open(sha)
	if err != nil {
		return err
	}
	defer f.Close()
	xr, err := xz.NewReader(f)
	if err != nil {
		return fmt.Errorf("bootloader archive %s: not an xz stream: %w", sha[:12], err)
	}
	dir := r.bootloaderDir(btype, arch)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(xr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("bootloader archive %s: %w", sha[:12], err)
		}
		name := path.Clean("/" + strings.TrimPrefix(h.Name, "./"))
		if strings.Contains(h.Name, "..") || name == "/" {
			if h.Typeflag == tar.TypeDir {
				continue
			}
			return fmt.Errorf("bootloader archive %s: entry %q escapes the extraction directory", sha[:12], h.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(name[1:]))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			tmp := target + ".tmp"
			out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			_, cerr := io.Copy(out, io.LimitReader(tr, h.Size))
			serr := out.Sync()
			if err := errors.Join(cerr, serr, out.Close()); err != nil {
				os.Remove(tmp)
				return err
			}
			if err := os.Rename(tmp, target); err != nil {
				return err
			}
		case tar.TypeSymlink, tar.TypeLink:
			// Bootloader archives hold regular files; links are not followed.
			r.log.Warn("bootloader archive: skipping link", "entry", h.Name)
		default:
			return fmt.Errorf("bootloader archive %s: entry %q has unsupported type %q", sha[:12], h.Name, h.Typeflag)
		}
	}
}

func (r *Region) removeBootloader(res *resource) {
	arch, _ := res.arch()
	if err := os.RemoveAll(r.bootloaderDir(res.BootloaderType, arch)); err != nil {
		r.log.Warn("removing bootloader files", "err", err)
	}
}

// StartImport starts importing from the configured boot sources in the background, as
// op=import does. An import already running is left alone.
func (r *Region) StartImport() {
	r.importMu.Lock()
	defer r.importMu.Unlock()
	if r.importDone != nil {
		select {
		case <-r.importDone:
		default:
			return
		}
	}
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan struct{})
	r.importStop, r.importDone = cancel, done
	r.mu.RLock()
	var sources []*bootSource
	for _, id := range sortedIntKeys(r.bootSources) {
		sources = append(sources, r.bootSources[id])
	}
	r.mu.RUnlock()
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		defer close(done)
		defer cancel()
		for _, s := range sources {
			if _, err := r.Import(ctx, s.URL, SelectionsSelector(s.Selections)); err != nil {
				r.log.Error("boot source import failed", "url", s.URL, "err", err)
			}
		}
	}()
}

// StopImport cancels an import in progress.
func (r *Region) StopImport() {
	r.importMu.Lock()
	defer r.importMu.Unlock()
	if r.importStop != nil {
		r.importStop()
	}
}

// IsImporting reports whether an import is running.
func (r *Region) IsImporting() bool {
	r.importMu.Lock()
	defer r.importMu.Unlock()
	if r.importDone == nil {
		return false
	}
	select {
	case <-r.importDone:
		return false
	default:
		return true
	}
}

// WaitImport blocks until a running import ends or ctx is done.
func (r *Region) WaitImport(ctx context.Context) error {
	r.importMu.Lock()
	done := r.importDone
	r.importMu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
