package installer_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/maasemu/maasemu/harness/installer"
	fixture "github.com/maasemu/maasemu/harness/installer/installertest"
	"github.com/maasemu/maasemu/harness/installer/storage"
)

// captureBackend records the bytes a dd source streams, and stands for a disk that has
// a root partition when found is set.
type captureBackend struct {
	sum   [32]byte
	n     int64
	found bool
}

func (c *captureBackend) ClearHolders(context.Context, *storage.Config, io.Writer) error { return nil }
func (c *captureBackend) Apply(context.Context, *storage.Config, storage.Item, string, io.Writer) (storage.Applied, error) {
	return storage.Applied{}, nil
}
func (c *captureBackend) WriteImage(_ context.Context, _ *storage.Config, r io.Reader, _ string, _ io.Writer) error {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return err
	}
	c.n = n
	copy(c.sum[:], h.Sum(nil))
	if !c.found {
		return storage.DDNotFoundError([]string{"/dev/vda"})
	}
	return nil
}
func (c *captureBackend) DevicePath(context.Context, *storage.Config, string) (string, error) {
	return "/dev/vda", nil
}
func (c *captureBackend) TargetDisks(context.Context, string) ([]string, error) { return nil, nil }
func (c *captureBackend) Unmount(context.Context, string, io.Writer) error      { return nil }

func tarOf(t *testing.T, name string, data []byte) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := fixture.Tar(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDDSourceTypes streams every dd type from HTTP and checks the bytes reaching the
// disk, and the failure curtin shows for a lying filetype.
func TestDDSourceTypes(t *testing.T) {
	raw := bytes.Repeat([]byte("disk-image-bytes "), 300000) // ~5 MiB
	want := sha256.Sum256(raw)
	tb := tarOf(t, "disk.img", raw)
	xzRaw, _ := fixture.XZ(raw)
	xzTar, _ := fixture.XZ(tb)
	bzRaw, err := fixture.Bzip2(raw)
	if err != nil {
		t.Skipf("dd sources: needs bzip2: %v", err)
	}
	bzTar, _ := fixture.Bzip2(tb)
	files := map[string][]byte{
		"/raw": raw, "/gz": fixture.Gzip(raw), "/xz": xzRaw, "/bz2": bzRaw,
		"/tar": tb, "/tgz": fixture.Gzip(tb), "/txz": xzTar, "/tbz": bzTar,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	defer srv.Close()
	cases := []struct {
		typ, path string
		ok        bool
		log       string
	}{
		{"dd-raw", "/raw", true, ""},
		{"dd-gz", "/gz", true, ""},
		{"dd-xz", "/xz", true, ""},
		{"dd-bz2", "/bz2", true, ""},
		{"dd-tar", "/tar", true, ""},
		{"dd-tar", "/tgz", true, ""}, // smtar sniffs the compression
		{"dd-tgz", "/tgz", true, ""},
		{"dd-txz", "/txz", true, ""},
		{"dd-tbz", "/tbz", true, ""},
		{"dd-tgz", "/gz", false, "tar: This does not look like a tar archive"},
		{"dd-gz", "/xz", false, "gzip: stdin: not in gzip format"},
		{"dd-xz", "/gz", false, "xzcat: (stdin): File format not recognized"},
		{"dd-gz", "/missing", false, "ERROR 404: Not Found."},
	}
	for _, c := range cases {
		t.Run(c.typ+c.path, func(t *testing.T) {
			be := &captureBackend{found: c.ok}
			var log bytes.Buffer
			tmp := t.TempDir()
			_, err := installer.Run(context.Background(), installer.Options{
				Configs: []string{"stages: [partitioning]\ninstall: {log_file: /tmp/install.log}\n"},
				Args:    []string{c.typ + ":" + srv.URL + c.path}, Backend: be, HTTPClient: srv.Client(),
				Log: &log, WorkDir: filepath.Join(tmp, "w"), HostRoot: filepath.Join(tmp, "h"),
			})
			if c.ok {
				if err != nil {
					t.Fatalf("%v\n%s", err, log.String())
				}
				if be.sum != want {
					t.Errorf("disk got %d bytes with a different sha256 than the %d-byte image", be.n, len(raw))
				}
				return
			}
			var ie *installer.InstallError
			if !errors.As(err, &ie) || !strings.Contains(log.String(), c.log) || !strings.Contains(log.String(), "Did not find any filesystem on ['/dev/vda']") {
				t.Errorf("err %v; log lacks %q or the root-not-found error:\n%s", err, c.log, log.String())
			}
			if be.n != 0 && c.typ == "dd-tgz" {
				t.Errorf("%d bytes written from a source that is not a tar", be.n)
			}
		})
	}
}

// TestTreeSources extracts tbz, txz, plain tar, cp:// and fsimage (squashfs) sources into
// a target kept after the install, and refuses a zstd tarball clearly.
func TestTreeSources(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("tree sources: needs root (tar keeps numeric owners)")
	}
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "etc/marker"), []byte("tree"), 0o640)
	os.Chown(filepath.Join(src, "etc/marker"), 1234, 5678)
	os.Symlink("marker", filepath.Join(src, "etc/link"))
	tb, err := fixture.Tar(src)
	if err != nil {
		t.Fatal(err)
	}
	xzb, _ := fixture.XZ(tb)
	bzb, _ := fixture.Bzip2(tb)
	sq := filepath.Join(t.TempDir(), "root.squashfs")
	if out, err := exec.Command("mksquashfs", src, sq, "-quiet", "-noappend").CombinedOutput(); err != nil {
		t.Skipf("tree sources: mksquashfs: %v %s", err, out)
	}
	sqb, _ := os.ReadFile(sq)
	files := map[string][]byte{"/root.tbz": bzb, "/root.txz": xzb, "/root.tar": tb, "/squashfs": sqb, "/root.tzst": append([]byte{0x28, 0xb5, 0x2f, 0xfd}, tb...)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(files[r.URL.Path]) }))
	defer srv.Close()
	cases := []struct{ source, err string }{
		{"tbz:" + srv.URL + "/root.tbz", ""},
		{srv.URL + "/root.txz", ""},
		{srv.URL + "/root.tar", ""},
		{"cp://" + src, ""},
		{srv.URL + "/squashfs", ""},
		{srv.URL + "/root.tzst", "zstd-compressed sources are not supported by maasemu"},
	}
	for _, c := range cases {
		t.Run(c.source, func(t *testing.T) {
			tmp := t.TempDir()
			target := filepath.Join(tmp, "target")
			var log bytes.Buffer
			_, err := installer.Run(context.Background(), installer.Options{
				Configs: []string{fmt.Sprintf("stages: [extract]\ninstall: {log_file: /tmp/install.log, target: %s, unmount: disabled, save_install_config: false}\n", target)},
				Args:    []string{c.source}, Backend: &captureBackend{}, HTTPClient: srv.Client(), Log: &log,
				WorkDir: filepath.Join(tmp, "w"), HostRoot: filepath.Join(tmp, "h"),
			})
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, log.String())
			}
			st, err := os.Lstat(filepath.Join(target, "etc/marker"))
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o640 {
				t.Errorf("mode %v", st.Mode())
			}
			if sys, ok := st.Sys().(*syscall.Stat_t); !ok || sys.Uid != 1234 || sys.Gid != 5678 {
				t.Errorf("owner not kept: %+v", st.Sys())
			}
			if l, err := os.Readlink(filepath.Join(target, "etc/link")); err != nil || l != "marker" {
				t.Errorf("symlink: %q %v", l, err)
			}
		})
	}
}
