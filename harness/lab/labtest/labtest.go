// Package labtest prepares what lab tests and scenarios need: the maasemu-agent binary,
// the test images, and a boot stream, built once into the cache and reused.
package labtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/maasemu/maasemu/harness/images"
	"github.com/maasemu/maasemu/harness/lab"
)

// ModuleRoot is the repository root (where go.mod is), found from this file.
func ModuleRoot() string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(here), "..", "..", ".."))
}

var (
	agentOnce sync.Once
	agentPath string
	agentErr  error

	testOnce sync.Once
	testMan  *images.TestManifest
	testDir  string
	testErr  error
)

// Agent builds cmd/maasemu-agent once per process into the cache and returns its path.
func Agent(t testing.TB) string {
	t.Helper()
	agentOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		// go build writes its output through a temporary file and a rename, so test
		// binaries building at once into one directory do not collide.
		agentPath, agentErr = images.BuildAgent(ctx, ModuleRoot(), filepath.Join(images.DefaultCache(), "test-agent"))
	})
	if agentErr != nil {
		t.Fatalf("building maasemu-agent: %v", agentErr)
	}
	return agentPath
}

// TestImages builds the test images once per process (from the cache when warm) and
// returns their manifest and directory.
func TestImages(t testing.TB) (*images.TestManifest, string) {
	t.Helper()
	agent := Agent(t)
	testOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		// The builder's cache lock makes publishing into one shared directory safe for
		// concurrent test binaries; `maasemu demo` publishes there too.
		testDir = filepath.Join(images.DefaultCache(), "published", "test")
		if testErr = os.MkdirAll(testDir, 0o755); testErr != nil {
			return
		}
		b := &images.Builder{Agent: agent}
		testMan, testErr = b.TestImages(ctx, testDir)
	})
	if testErr != nil {
		t.Fatalf("building the test images: %v", testErr)
	}
	return testMan, testDir
}

var (
	ephOnce sync.Once
	ephDir  string
	ephErr  error
)

// EphemeralStreams builds the real test ephemeral once per process (from the cache when
// warm) and returns its SimpleStreams tree, for VM tests.
func EphemeralStreams(t testing.TB) string {
	t.Helper()
	agent := Agent(t)
	ephOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		b := &images.Builder{Agent: agent}
		ephDir, ephErr = b.PublishedEphemeral(ctx)
	})
	if ephErr != nil {
		t.Fatalf("building the test ephemeral: %v", ephErr)
	}
	return ephDir
}

// SimStream writes a small boot stream (ubuntu jammy and noble ephemerals: a few KiB of
// kernel and initrd and a real, tiny squashfs) that simulated machines can boot: they
// fetch the kernel and initrd and check the squashfs's header. It has no bootloader
// products, so the rack serves the host's bootloaders.
func SimStream(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := lab.WriteSimStream(context.Background(), dir); err != nil {
		if _, lerr := exec.LookPath("mksquashfs"); lerr != nil {
			t.Skipf("%v", err)
		}
		t.Fatal(err)
	}
	return dir
}
