package installer_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/maasemu/maasemu/harness/diskimage"
	"github.com/maasemu/maasemu/harness/installer"
	"github.com/maasemu/maasemu/harness/installer/imagedisk"
	fixture "github.com/maasemu/maasemu/harness/installer/installertest"
)

// BenchmarkImageInstallDDGZ64MiB measures a whole image-backend install of a 64 MiB
// dd.gz image (16 MiB of incompressible data in its root) served over loopback HTTP:
// stream and decompress onto a sparse 256 MiB disk, find the root, run the image's
// curtin-hooks, write back. `make bench-installer` reports the median.
func BenchmarkImageInstallDDGZ64MiB(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("image-backend install: needs root")
	}
	tmp := b.TempDir()
	root := filepath.Join(tmp, "root")
	if err := fixture.Root(root, fixture.RootOptions{ExtraBytes: 16 << 20, Hooks: map[string]string{"curtin-hooks": "#!/bin/sh\necho ok > \"$TARGET_MOUNT_POINT/hook-mark\"\n"}}); err != nil {
		b.Fatal(err)
	}
	img := filepath.Join(tmp, "image.raw")
	if _, err := fixture.DDImage(context.Background(), img, 64<<20, root); err != nil {
		b.Fatal(err)
	}
	raw, err := os.ReadFile(img)
	if err != nil {
		b.Fatal(err)
	}
	gz := fixture.Gzip(raw)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(gz) }))
	defer srv.Close()
	var secs []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := filepath.Join(tmp, fmt.Sprint(i))
		os.MkdirAll(dir, 0o755)
		disk := filepath.Join(dir, "disk.img")
		if err := diskimage.CreateSparse(disk, 256<<20); err != nil {
			b.Fatal(err)
		}
		be, err := imagedisk.New(imagedisk.Disk{Path: disk, Name: "/dev/vda"})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		_, err = installer.Run(context.Background(), installer.Options{
			Configs: []string{"install: {log_file: /tmp/install.log}\n"}, Args: []string{"dd-gz:" + srv.URL + "/root-dd.gz"},
			Backend: be, HTTPClient: srv.Client(), Log: io.Discard, WorkDir: filepath.Join(dir, "w"), HostRoot: filepath.Join(dir, "host"),
		})
		secs = append(secs, time.Since(start).Seconds())
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		os.RemoveAll(dir)
		b.StartTimer()
	}
	sort.Float64s(secs)
	b.ReportMetric(secs[len(secs)/2], "median-s/install")
	b.ReportMetric(float64(len(gz))/(1<<20), "MiB-gz")
}
