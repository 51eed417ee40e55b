// Package initramfs writes Linux initramfs images: newc cpio archives, gzip-compressed.
package initramfs

import (
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Writer writes a newc ("070701") cpio archive. Entries get increasing inode numbers and
// a fixed modification time so that equal inputs give equal archives.
type Writer struct {
	w     io.Writer
	ino   uint32
	seen  map[string]bool
	err   error
	MTime int64
}

// NewWriter returns a Writer writing an uncompressed archive to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, ino: 1, seen: map[string]bool{}}
}

// Mode bits of cpio entries.
const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeLink = 0o120000
	modeChr  = 0o020000
)

func pad4(n int) int { return (4 - n%4) % 4 }

func (w *Writer) header(name string, mode uint32, size int, major, minor uint32) error {
	if w.err != nil {
		return w.err
	}
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	if name == "" {
		name = "."
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		w.ino, mode, 0, 0, 1, uint32(w.MTime), size, 0, 0, major, minor, len(name)+1, 0)
	w.ino++
	b := append([]byte(hdr), name...)
	b = append(b, 0)
	b = append(b, make([]byte, pad4(len(b)))...)
	_, w.err = w.w.Write(b)
	return w.err
}

func (w *Writer) data(b []byte) error {
	if w.err != nil {
		return w.err
	}
	if _, w.err = w.w.Write(b); w.err != nil {
		return w.err
	}
	_, w.err = w.w.Write(make([]byte, pad4(len(b))))
	return w.err
}

// mkparents adds the missing parent directories of name.
func (w *Writer) mkparents(name string) error {
	dir := path.Dir(strings.TrimPrefix(path.Clean("/"+name), "/"))
	if dir == "." || dir == "/" || w.seen[dir] {
		return nil
	}
	if err := w.mkparents(dir); err != nil {
		return err
	}
	return w.Dir(dir, 0o755)
}

func (w *Writer) claim(name string) error {
	c := strings.TrimPrefix(path.Clean("/"+name), "/")
	if w.seen[c] {
		return fmt.Errorf("initramfs: %s added twice", c)
	}
	w.seen[c] = true
	return nil
}

// Dir adds a directory.
func (w *Writer) Dir(name string, perm os.FileMode) error {
	if w.seen[strings.TrimPrefix(path.Clean("/"+name), "/")] {
		return nil
	}
	if err := w.mkparents(name); err != nil {
		return err
	}
	if err := w.claim(name); err != nil {
		return err
	}
	return w.header(name, modeDir|uint32(perm.Perm()), 0, 0, 0)
}

// File adds a regular file with contents b.
func (w *Writer) File(name string, perm os.FileMode, b []byte) error {
	if err := w.mkparents(name); err != nil {
		return err
	}
	if err := w.claim(name); err != nil {
		return err
	}
	if err := w.header(name, modeFile|uint32(perm&0o7777), len(b), 0, 0); err != nil {
		return err
	}
	return w.data(b)
}

// Symlink adds a symbolic link name -> target.
func (w *Writer) Symlink(name, target string) error {
	if err := w.mkparents(name); err != nil {
		return err
	}
	if err := w.claim(name); err != nil {
		return err
	}
	if err := w.header(name, modeLink|0o777, len(target), 0, 0); err != nil {
		return err
	}
	return w.data([]byte(target))
}

// CharDev adds a character device node.
func (w *Writer) CharDev(name string, perm os.FileMode, major, minor uint32) error {
	if err := w.mkparents(name); err != nil {
		return err
	}
	if err := w.claim(name); err != nil {
		return err
	}
	return w.header(name, modeChr|uint32(perm.Perm()), 0, major, minor)
}

// AddTree adds the files, directories and symlinks below the host directory src, placed
// under prefix in the archive. Other file types are refused.
func (w *Writer) AddTree(src, prefix string) error {
	var paths []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		rel, _ := filepath.Rel(src, p)
		name := path.Join(prefix, filepath.ToSlash(rel))
		if rel == "." && (prefix == "" || prefix == "/") {
			continue
		}
		st, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		switch {
		case st.IsDir():
			err = w.Dir(name, st.Mode())
		case st.Mode()&os.ModeSymlink != 0:
			t, lerr := os.Readlink(p)
			if lerr != nil {
				return fmt.Errorf("initramfs: %w", lerr)
			}
			err = w.Symlink(name, t)
		case st.Mode().IsRegular():
			b, rerr := os.ReadFile(p)
			if rerr != nil {
				return fmt.Errorf("initramfs: %w", rerr)
			}
			err = w.File(name, st.Mode(), b)
		default:
			return fmt.Errorf("initramfs: %s: unsupported file type %v", p, st.Mode().Type())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Close writes the trailer. It does not close the underlying writer.
func (w *Writer) Close() error {
	if err := w.header("TRAILER!!!", 0, 0, 0, 0); err != nil {
		return err
	}
	return w.err
}

// WriteGzip runs fill on a Writer whose archive is gzip-compressed into out.
func WriteGzip(out io.Writer, fill func(*Writer) error) error {
	zw, err := gzip.NewWriterLevel(out, gzip.BestCompression)
	if err != nil {
		return err
	}
	w := NewWriter(zw)
	if err := fill(w); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return zw.Close()
}
