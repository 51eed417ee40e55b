package blockdev

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWipeFillsTheWholeDevice(t *testing.T) {
	for _, mode := range []string{"zero", "random"} {
		t.Run(mode, func(t *testing.T) {
			dev := filepath.Join(t.TempDir(), "dev")
			const size = 9<<20 + 512 // not a multiple of the 4 MiB buffer
			if err := os.WriteFile(dev, bytes.Repeat([]byte{0xa5}, size), 0o644); err != nil {
				t.Fatal(err)
			}
			var log bytes.Buffer
			if err := wipeVolume(context.Background(), dev, mode, &log); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(dev)
			if len(got) != size {
				t.Fatalf("size %d after the wipe, want %d", len(got), size)
			}
			if n := bytes.Count(got, []byte{0xa5}); n > size/100 {
				t.Errorf("%d bytes still hold the old pattern", n)
			}
			if zeros := bytes.Count(got, []byte{0}); (mode == "zero") != (zeros == size) {
				t.Errorf("%s wipe left %d of %d bytes zero", mode, zeros, size)
			}
			if log.Len() != 0 {
				t.Errorf("the wipe logged %q", log.String())
			}
		})
	}
}

func TestWipeCancelled(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "dev")
	os.WriteFile(dev, make([]byte, 1<<20), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := wipeVolume(ctx, dev, "zero", io.Discard); err != context.Canceled {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}
