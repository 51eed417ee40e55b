package initramfs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestArchiveReadByCpio writes an archive and lists and extracts it with GNU cpio.
func TestArchiveReadByCpio(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("needs cpio")
	}
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "lib", "modules"), 0o755)
	os.WriteFile(filepath.Join(src, "lib", "modules", "a.ko"), []byte("module"), 0o644)
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, err := range []error{
		w.File("init", 0o755, []byte("#!/bin/sh\necho hi\n")),
		w.Symlink("bin/sh", "busybox"),
		w.File("bin/busybox", 0o755, []byte("ELF")),
		w.CharDev("dev/console", 0o600, 5, 1),
		w.AddTree(src, "/"),
		w.Close(),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.File("init", 0o755, nil); err == nil {
		t.Error("adding init twice succeeded")
	}
	cmd := exec.Command("cpio", "-it", "--quiet")
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(out))
	want := []string{"init", "bin", "bin/sh", "bin/busybox", "dev", "dev/console", "lib", "lib/modules", "lib/modules/a.ko"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("cpio -it (-want +got):\n%s", diff)
	}
	dst := t.TempDir()
	cmd = exec.Command("cpio", "-idm", "--quiet", "--no-absolute-filenames")
	cmd.Dir = dst
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	if out, err := cmd.CombinedOutput(); err != nil && os.Geteuid() == 0 {
		t.Fatalf("cpio -id: %v %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dst, "init"))
	if err != nil || string(b) != "#!/bin/sh\necho hi\n" {
		t.Errorf("extracted init = %q, %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "bin", "sh")); err != nil || l != "busybox" {
		t.Errorf("bin/sh -> %q, %v", l, err)
	}
}
