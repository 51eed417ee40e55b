// Package compression recognises the compressions MAAS images come in by their magic
// numbers and decompresses them.
package compression

import (
	"bytes"
	"compress/bzip2"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// The compressions Sniff recognises.
const (
	None  = ""
	Gzip  = "gzip"
	Bzip2 = "bzip2"
	XZ    = "xz"
	Zstd  = "zstd"
)

// Sniff names the compression b (the first bytes of a stream, 6 are enough) starts with.
func Sniff(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		return Gzip
	case bytes.HasPrefix(b, []byte("BZh")):
		return Bzip2
	case bytes.HasPrefix(b, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return XZ
	case bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return Zstd
	}
	return None
}

// NewReader decompresses r as kind (None: r as it is); gzip members are read one after
// another, as zcat does.
func NewReader(kind string, r io.Reader) (io.Reader, error) {
	switch kind {
	case None:
		return r, nil
	case Gzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		zr.Multistream(true)
		return zr, nil
	case Bzip2:
		return bzip2.NewReader(r), nil
	case XZ:
		return xz.NewReader(r)
	case Zstd:
		d, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return nil, fmt.Errorf("compression %q is not one of gzip, bzip2, xz, zstd", kind)
}
