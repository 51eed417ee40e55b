package blobstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func digest(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestPut(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("hello blob")
	cases := []struct {
		name    string
		content []byte
		size    int64
		sha     string
		want    error
	}{
		{"short content", data[:4], int64(len(data)), digest(data), ErrSizeMismatch},
		{"long content", append(data, 'x'), int64(len(data)), digest(data), ErrSizeMismatch},
		{"wrong sha256", data, int64(len(data)), digest([]byte("other")), ErrChecksum},
		{"not a digest", data, int64(len(data)), "../../etc/passwd", ErrBadDigest},
		{"ok", data, int64(len(data)), digest(data), nil},
		{"again", data, int64(len(data)), digest(data), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := s.Put(context.Background(), bytes.NewReader(c.content), c.size, c.sha)
			if !errors.Is(err, c.want) {
				t.Fatalf("Put = %v, want %v", err, c.want)
			}
			tmp, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp"))
			if len(tmp) != 0 {
				t.Errorf("temporary files left: %v", tmp)
			}
		})
	}
	f, err := s.Open(digest(data))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, data) {
		t.Errorf("content = %q", got)
	}
	if _, err := s.Open(digest([]byte("other"))); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open(missing) = %v, want ErrNotFound", err)
	}
}

func TestPartial(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789"), 100) // 1000 bytes
	sha := digest(data)
	p, err := s.OpenPartial("f1", 0, 1000, sha)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name     string
		r        io.Reader
		n        int64
		wantErr  error
		wantSize int64
		complete bool
	}{
		{"first chunk", bytes.NewReader(data[:400]), 400, nil, 400, false},
		{"too much", bytes.NewReader(make([]byte, 601)), 601, ErrTooMuchData, 400, false},
		{"truncated body", bytes.NewReader(data[400:450]), 100, ErrSizeMismatch, 400, false},
		{"wrong last chunk", bytes.NewReader(bytes.Repeat([]byte("x"), 600)), 600, ErrChecksum, 400, false},
		{"right last chunk", bytes.NewReader(data[400:]), 600, nil, 1000, true},
	}
	for _, st := range steps {
		complete, err := p.Append(st.r, st.n)
		if !errors.Is(err, st.wantErr) {
			t.Fatalf("%s: Append = %v, want %v", st.name, err, st.wantErr)
		}
		fi, _ := os.Stat(filepath.Join(dir, "partial", "f1"))
		if complete != st.complete || p.Size() != st.wantSize || fi.Size() != st.wantSize {
			t.Fatalf("%s: complete %v size %d file %d, want %v %d", st.name, complete, p.Size(), fi.Size(), st.complete, st.wantSize)
		}
	}
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	if !s.Has(sha, 1000) {
		t.Error("blob not in the store after Commit")
	}
	if _, err := os.Stat(filepath.Join(dir, "partial", "f1")); !os.IsNotExist(err) {
		t.Errorf("partial left behind: %v", err)
	}
}

// TestPartialAfterCrash: bytes written after the last acknowledged chunk (a crash before
// the acknowledgement) are dropped when the partial is reopened, and the upload continues.
func TestPartialAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	data := []byte(strings.Repeat("abcdefgh", 64))
	p, _ := s.OpenPartial("f2", 0, int64(len(data)), digest(data))
	if _, err := p.Append(bytes.NewReader(data[:100]), 100); err != nil {
		t.Fatal(err)
	}
	p.Close()
	// Unacknowledged garbage after the acknowledged 100 bytes.
	f, _ := os.OpenFile(filepath.Join(dir, "partial", "f2"), os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte("garbage not acknowledged"))
	f.Close()
	p, err := s.OpenPartial("f2", 100, int64(len(data)), digest(data))
	if err != nil {
		t.Fatal(err)
	}
	if p.Size() != 100 {
		t.Fatalf("size after reopen = %d, want 100", p.Size())
	}
	complete, err := p.Append(bytes.NewReader(data[100:]), int64(len(data)-100))
	if err != nil || !complete {
		t.Fatalf("Append = %v, %v", complete, err)
	}
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpenPartial("f3", 10, 5, digest(data)); err == nil {
		t.Error("OpenPartial with acked > total succeeded")
	}
	if _, err := s.OpenPartial("../x", 0, 5, digest(data)); err == nil {
		t.Error("OpenPartial with a traversal id succeeded")
	}
	if _, err := s.OpenPartial("f4", 50, 100, digest(data)); err == nil {
		t.Error("OpenPartial acknowledging more than the file holds succeeded")
	}
	if diff := cmp.Diff(true, s.Has(digest(data), int64(len(data)))); diff != "" {
		t.Error(diff)
	}
}
