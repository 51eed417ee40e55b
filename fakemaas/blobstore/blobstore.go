// Package blobstore is a crash-safe content-addressed file store: complete files live under
// sha256/<hex>, written to a temporary file, checked against their size and sha256, fsynced
// and renamed into place; partial uploads grow chunk by chunk with an fsync per chunk.
package blobstore

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sync"
)

// Errors callers match with errors.Is.
var (
	ErrSizeMismatch = errors.New("size mismatch")
	ErrTooMuchData  = errors.New("too much data")
	ErrChecksum     = errors.New("sha256 mismatch")
	ErrNotFound     = errors.New("blob not found")
	ErrBadDigest    = errors.New("not a sha256 hex digest")
)

var hexDigest = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ValidDigest reports whether s is a lowercase sha256 hex digest.
func ValidDigest(s string) bool { return hexDigest.MatchString(s) }

// Store is a blob store rooted at a directory.
type Store struct {
	dir string
}

// Open opens (creating when needed) the store in dir and removes leftovers of interrupted
// writes of complete files (tmp/). Partial uploads are kept.
func Open(dir string) (*Store, error) {
	for _, d := range []string{"sha256", "partial", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("blobstore: %w", err)
		}
	}
	tmp := filepath.Join(dir, "tmp")
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return nil, fmt.Errorf("blobstore: %w", err)
	}
	for _, e := range entries {
		_ = os.Remove(filepath.Join(tmp, e.Name()))
	}
	return &Store{dir: dir}, nil
}

// Dir is the store's root directory.
func (s *Store) Dir() string { return s.dir }

// Path returns where the complete blob with digest sha lives (whether or not it exists).
func (s *Store) Path(sha string) string { return filepath.Join(s.dir, "sha256", sha) }

// Stat returns the size of the complete blob sha.
func (s *Store) Stat(sha string) (int64, error) {
	if !ValidDigest(sha) {
		return 0, fmt.Errorf("blobstore: %q: %w", sha, ErrBadDigest)
	}
	fi, err := os.Stat(s.Path(sha))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("blobstore: %s: %w", sha, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("blobstore: %w", err)
	}
	return fi.Size(), nil
}

// Has reports whether a complete blob sha of the given size exists.
func (s *Store) Has(sha string, size int64) bool {
	n, err := s.Stat(sha)
	return err == nil && n == size
}

// Open opens the complete blob sha for reading.
func (s *Store) Open(sha string) (*os.File, error) {
	if !ValidDigest(sha) {
		return nil, fmt.Errorf("blobstore: %q: %w", sha, ErrBadDigest)
	}
	f, err := os.Open(s.Path(sha))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blobstore: %s: %w", sha, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blobstore: %w", err)
	}
	return f, nil
}

// Remove deletes the complete blob sha; a missing blob is not an error.
func (s *Store) Remove(sha string) error {
	if !ValidDigest(sha) {
		return fmt.Errorf("blobstore: %q: %w", sha, ErrBadDigest)
	}
	if err := os.Remove(s.Path(sha)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blobstore: %w", err)
	}
	return syncDir(filepath.Join(s.dir, "sha256"))
}

// Put stores exactly size bytes from r as the blob sha: it writes a temporary file,
// checks size and sha256, fsyncs and renames it into place. A blob already present
// returns nil without reading r.
func (s *Store) Put(ctx context.Context, r io.Reader, size int64, sha string) error {
	if !ValidDigest(sha) {
		return fmt.Errorf("blobstore: %q: %w", sha, ErrBadDigest)
	}
	if s.Has(sha, size) {
		return nil
	}
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), sha[:12]+"-*")
	if err != nil {
		return fmt.Errorf("blobstore: %w", err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(ctxReader{ctx, r}, size+1))
	if err != nil {
		return fmt.Errorf("blobstore: writing %s: %w", sha, err)
	}
	if n != size {
		return fmt.Errorf("blobstore: %s: got %d bytes, want %d: %w", sha, n, size, ErrSizeMismatch)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		return fmt.Errorf("blobstore: content has sha256 %s, want %s: %w", got, sha, ErrChecksum)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("blobstore: %w", err)
	}
	if err := os.Rename(f.Name(), s.Path(sha)); err != nil {
		return fmt.Errorf("blobstore: %w", err)
	}
	return syncDir(filepath.Join(s.dir, "sha256"))
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("blobstore: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("blobstore: fsync %s: %w", dir, err)
	}
	return nil
}

// Partial is an upload in progress: a file that grows by appended chunks until it holds
// Total bytes with the expected sha256. It is safe for concurrent use.
type Partial struct {
	mu     sync.Mutex
	store  *Store
	id     string
	f      *os.File
	size   int64
	total  int64
	sha    string
	h      hash.Hash
	closed bool
}

var partialID = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// OpenPartial opens (creating when needed) the partial upload id for a blob of total
// bytes with digest sha. acked is the number of bytes that were acknowledged to the
// client: anything after it (a chunk written but not acknowledged before a crash) is
// truncated away. The hash state is rebuilt by reading the acknowledged bytes.
func (s *Store) OpenPartial(id string, acked, total int64, sha string) (*Partial, error) {
	if !partialID.MatchString(id) {
		return nil, fmt.Errorf("blobstore: partial id %q: only letters, digits, '.', '_', '-' allowed", id)
	}
	if !ValidDigest(sha) {
		return nil, fmt.Errorf("blobstore: %q: %w", sha, ErrBadDigest)
	}
	if acked < 0 || acked > total {
		return nil, fmt.Errorf("blobstore: partial %s: acknowledged size %d outside 0..%d", id, acked, total)
	}
	f, err := os.OpenFile(filepath.Join(s.dir, "partial", id), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("blobstore: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blobstore: %w", err)
	}
	if fi.Size() < acked {
		f.Close()
		return nil, fmt.Errorf("blobstore: partial %s holds %d bytes but %d were acknowledged: %w", id, fi.Size(), acked, ErrSizeMismatch)
	}
	if fi.Size() > acked {
		if err := f.Truncate(acked); err != nil {
			f.Close()
			return nil, fmt.Errorf("blobstore: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("blobstore: %w", err)
		}
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, acked)); err != nil {
		f.Close()
		return nil, fmt.Errorf("blobstore: rehashing partial %s: %w", id, err)
	}
	return &Partial{store: s, id: id, f: f, size: acked, total: total, sha: sha, h: h}, nil
}

// Size is the number of bytes held (all of them synced).
func (p *Partial) Size() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.size
}

// Append writes exactly n bytes from r after the current end and fsyncs them. On any
// error, including r yielding more or fewer than n bytes, the partial is rolled back to
// its previous size: nothing changes. When the append makes the file complete, the
// content's sha256 is checked; a mismatch rolls the chunk back and returns ErrChecksum.
// complete reports that the file now holds Total bytes with the right digest; call
// Commit to move it into the store.
func (p *Partial) Append(r io.Reader, n int64) (complete bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false, fmt.Errorf("blobstore: partial %s is closed", p.id)
	}
	if p.size+n > p.total {
		return false, fmt.Errorf("blobstore: partial %s: %d + %d bytes exceeds %d: %w", p.id, p.size, n, p.total, ErrTooMuchData)
	}
	state, err := p.h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return false, fmt.Errorf("blobstore: %w", err)
	}
	rollback := func(cause error) (bool, error) {
		_ = p.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state)
		if terr := p.f.Truncate(p.size); terr != nil {
			return false, errors.Join(cause, fmt.Errorf("blobstore: rollback: %w", terr))
		}
		return false, cause
	}
	w := io.NewOffsetWriter(p.f, p.size)
	got, err := io.CopyBuffer(io.MultiWriter(w, p.h), io.LimitReader(r, n+1), make([]byte, 1<<20))
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return rollback(fmt.Errorf("blobstore: partial %s: %w", p.id, err))
	}
	if got != n {
		return rollback(fmt.Errorf("blobstore: partial %s: got %d bytes, want %d: %w", p.id, got, n, ErrSizeMismatch))
	}
	if p.size+n == p.total {
		if sum := hex.EncodeToString(p.h.Sum(nil)); sum != p.sha {
			return rollback(fmt.Errorf("blobstore: partial %s: content has sha256 %s, want %s: %w", p.id, sum, p.sha, ErrChecksum))
		}
	}
	if err := p.f.Sync(); err != nil {
		return rollback(fmt.Errorf("blobstore: fsync partial %s: %w", p.id, err))
	}
	p.size += n
	return p.size == p.total, nil
}

// Commit moves a complete, verified partial into the store as its blob and closes it.
func (p *Partial) Commit() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.size != p.total {
		return fmt.Errorf("blobstore: partial %s holds %d of %d bytes: %w", p.id, p.size, p.total, ErrSizeMismatch)
	}
	if sum := hex.EncodeToString(p.h.Sum(nil)); sum != p.sha {
		return fmt.Errorf("blobstore: partial %s: %w", p.id, ErrChecksum)
	}
	if err := p.f.Close(); err != nil {
		return fmt.Errorf("blobstore: %w", err)
	}
	p.closed = true
	if err := os.Rename(p.f.Name(), p.store.Path(p.sha)); err != nil {
		return fmt.Errorf("blobstore: %w", err)
	}
	if err := syncDir(filepath.Join(p.store.dir, "sha256")); err != nil {
		return err
	}
	return syncDir(filepath.Join(p.store.dir, "partial"))
}

// Close closes the partial's file, keeping its content for a later OpenPartial.
func (p *Partial) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	return p.f.Close()
}

// RemovePartial deletes the partial upload id.
func (s *Store) RemovePartial(id string) error {
	if !partialID.MatchString(id) {
		return fmt.Errorf("blobstore: partial id %q: only letters, digits, '.', '_', '-' allowed", id)
	}
	if err := os.Remove(filepath.Join(s.dir, "partial", id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blobstore: %w", err)
	}
	return nil
}
