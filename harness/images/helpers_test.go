package images

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The images tests share one Builder on the real cache ($MAASEMU_CACHE): the first run
// downloads and builds, later runs reuse everything whose inputs did not change.
var (
	testBuilderOnce sync.Once
	testBuilderV    *Builder
	testBuilderErr  error
)

// needBuildTools skips when the host cannot build images.
func needBuildTools(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"apt-get", "dpkg", "mksquashfs", "mkfs.ext4", "mkfs.fat", "mcopy", "grub-mkimage", "depmod", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (see mk/images.mk)", tool)
		}
	}
}

func moduleRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	t.Fatal("no go.mod above " + wd)
	return ""
}

// testBuilder returns a Builder whose agent is the test agent (harness/images/testagent),
// built static into the cache.
func testBuilder(t testing.TB) *Builder {
	t.Helper()
	needBuildTools(t)
	testBuilderOnce.Do(func() {
		cache := DefaultCache()
		root := moduleRoot(t)
		out := filepath.Join(cache, "testagent")
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(out, "maasemu-agent"), "./harness/images/testagent")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			testBuilderErr = err
			t.Logf("%s", b)
			return
		}
		testBuilderV = &Builder{Cache: cache, Agent: filepath.Join(out, "maasemu-agent"), Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	})
	if testBuilderErr != nil {
		t.Fatalf("building the test agent: %v", testBuilderErr)
	}
	return testBuilderV
}

var (
	testEphOnce sync.Once
	testEph     *Ephemeral
	testEphErr  error
)

func testEphemeral(t testing.TB) *Ephemeral {
	t.Helper()
	b := testBuilder(t)
	testEphOnce.Do(func() { testEph, testEphErr = b.Ephemeral(context.Background()) })
	if testEphErr != nil {
		t.Fatal(testEphErr)
	}
	return testEph
}
