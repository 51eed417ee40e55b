package firstboot

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/maasemu/maasemu/harness/diskimage"
)

// DiskRoot is an fs.FS over a filesystem of a disk image, read in userspace with package
// diskimage: how a simulated machine's first boot sees its installed files.
type DiskRoot struct {
	Image string
	FS    diskimage.FS
}

// FindRoot returns the DiskRoot of the partition of img holding etc/os-release (the
// installed root), or an error naming the image.
func FindRoot(img string) (DiskRoot, error) {
	fss, err := diskimage.Probe(img)
	if err != nil {
		return DiskRoot{}, err
	}
	for _, f := range fss {
		if !strings.HasPrefix(f.Type, "ext") {
			continue
		}
		if ok, _ := diskimage.Exists(img, f, "/etc/os-release"); ok {
			return DiskRoot{Image: img, FS: f}, nil
		}
	}
	return DiskRoot{}, errors.New("firstboot: no filesystem on " + img + " holds etc/os-release: nothing installed to boot")
}

func (d DiskRoot) clean(op, name string) (string, error) {
	if !fs.ValidPath(name) {
		return "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	return "/" + name, nil
}

// ReadFile implements fs.ReadFileFS.
func (d DiskRoot) ReadFile(name string) ([]byte, error) {
	p, err := d.clean("readfile", name)
	if err != nil {
		return nil, err
	}
	b, err := diskimage.ReadFile(d.Image, d.FS, p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: fs.ErrNotExist}
	}
	return b, err
}

// ReadDir implements fs.ReadDirFS.
func (d DiskRoot) ReadDir(name string) ([]fs.DirEntry, error) {
	p, err := d.clean("readdir", name)
	if err != nil {
		return nil, err
	}
	if name == "." {
		p = "/"
	}
	ents, err := diskimage.ReadDir(d.Image, d.FS, p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	if err != nil {
		return nil, err
	}
	out := make([]fs.DirEntry, 0, len(ents))
	for _, e := range ents {
		out = append(out, dirEntry{e})
	}
	return out, nil
}

// Open implements fs.FS (files are read whole; directories list their entries).
func (d DiskRoot) Open(name string) (fs.File, error) {
	if ents, err := d.ReadDir(name); err == nil {
		return &memFile{name: path.Base(name), dir: true, ents: ents}, nil
	}
	b, err := d.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return &memFile{name: path.Base(name), r: bytes.NewReader(b), size: int64(len(b))}, nil
}

type dirEntry struct{ e diskimage.DirEntry }

func (e dirEntry) Name() string               { return e.e.Name }
func (e dirEntry) IsDir() bool                { return e.e.Mode.IsDir() }
func (e dirEntry) Type() fs.FileMode          { return e.e.Mode.Type() }
func (e dirEntry) Info() (fs.FileInfo, error) { return info{name: e.e.Name, mode: e.e.Mode}, nil }

type info struct {
	name string
	mode fs.FileMode
	size int64
}

func (i info) Name() string       { return i.name }
func (i info) Size() int64        { return i.size }
func (i info) Mode() fs.FileMode  { return i.mode }
func (i info) ModTime() time.Time { return time.Time{} }
func (i info) IsDir() bool        { return i.mode.IsDir() }
func (i info) Sys() any           { return nil }

type memFile struct {
	name string
	dir  bool
	ents []fs.DirEntry
	r    *bytes.Reader
	size int64
	off  int
}

func (f *memFile) Stat() (fs.FileInfo, error) {
	if f.dir {
		return info{name: f.name, mode: fs.ModeDir | 0o755}, nil
	}
	return info{name: f.name, mode: 0o644, size: f.size}, nil
}

func (f *memFile) Read(p []byte) (int, error) {
	if f.dir {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: errors.New("is a directory")}
	}
	return f.r.Read(p)
}

func (f *memFile) Close() error { return nil }

func (f *memFile) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := f.ents[f.off:]
	if n <= 0 {
		f.off = len(f.ents)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	if n > len(rest) {
		n = len(rest)
	}
	f.off += n
	return rest[:n], nil
}
