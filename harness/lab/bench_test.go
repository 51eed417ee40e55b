package lab_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maasemu/maasemu/harness/lab"
	"github.com/maasemu/maasemu/harness/lab/labtest"
	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/harness/timeline"
)

// benchLab is a sim lab with the boot stream imported and good-ddgz uploaded.
func benchLab(b *testing.B, budgets timeline.Budgets) (*lab.Lab, string, int64) {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("simulated machines sandbox their ephemeral in a mount namespace: needs root")
	}
	man, dir := labtest.TestImages(b)
	im, _ := man.Image("good-ddgz")
	ctx := context.Background()
	l, err := lab.Start(ctx, lab.Config{Dir: b.TempDir(), Driver: lab.DriverSim, AgentPath: labtest.Agent(b), Budgets: budgets})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	if err := l.ImportStreams(ctx, labtest.SimStream(b)); err != nil {
		b.Fatal(err)
	}
	if _, err := l.UploadImage(ctx, "good-ddgz", filepath.Join(dir, im.File), im.Filetype, "ubuntu/jammy"); err != nil {
		b.Fatal(err)
	}
	return l, "good-ddgz", im.Size
}

func deployOne(ctx context.Context, l *lab.Lab, name, image string) error {
	m, err := l.NewMachine(ctx, lab.MachineSpec{Name: name, Disks: []machine.Disk{{SizeBytes: 1 << 30}}})
	if err != nil {
		return err
	}
	if err := l.Deploy(ctx, m, lab.DeployOptions{DistroSeries: image}); err != nil {
		return err
	}
	res, err := l.Follow(ctx, m, lab.FollowOptions{Poll: 200 * time.Millisecond})
	if err != nil {
		return err
	}
	if !res.Passed {
		return fmt.Errorf("%s: %s", name, res.Summary())
	}
	return m.Driver().Destroy(ctx)
}

// BenchmarkSimDeploy is one simulated machine deploying a dd.gz image (the good-ddgz test
// image: a 100 MiB GPT disk, 32 MiB compressed) from power-on to Deployed, the lab already
// up. It reports the median.
func BenchmarkSimDeploy(b *testing.B) {
	l, image, size := benchLab(b, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	var times []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := deployOne(ctx, l, fmt.Sprintf("bench-%d", i), image); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start).Seconds())
	}
	b.StopTimer()
	sort.Float64s(times)
	b.ReportMetric(times[len(times)/2], "median-s")
	b.ReportMetric(float64(size)/(1<<20), "image-MiB")
}

// BenchmarkSimDeploy100 is 100 simulated machines deploying at once in one lab: the wall
// time until all are Deployed and the peak memory of this process and its children (the
// machines' ephemeral agents and what they run, and the tmpfs their installs stage in).
func BenchmarkSimDeploy100(b *testing.B) {
	const n = 100
	// A hundred machines share two cores: each phase takes far longer than alone.
	budgets := timeline.Budgets{}
	for p := range timeline.SimBudgets() {
		budgets[p] = 20 * time.Minute
	}
	l, image, _ := benchLab(b, budgets)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	for i := 0; i < b.N; i++ {
		stop := sampleRSS()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for j := 0; j < n; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- deployOne(ctx, l, fmt.Sprintf("m%d-%03d", i, j), image)
			}()
		}
		wg.Wait()
		wall := time.Since(start)
		peak := stop()
		close(errs)
		for err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(wall.Seconds(), "wall-s")
		b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
	}
}

// sampleRSS samples, every 100 ms, the resident memory of this process and all its
// descendants plus the growth of shared memory (the tmpfs the simulated ephemerals stage
// their installs in, which no process's RSS counts), and returns a function that stops and
// returns the peak in bytes.
func sampleRSS() func() int64 {
	done := make(chan struct{})
	out := make(chan int64, 1)
	base := shmem()
	go func() {
		var peak int64
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if v := treeRSS(os.Getpid()) + max(0, shmem()-base); v > peak {
				peak = v
			}
			select {
			case <-done:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 { close(done); return <-out }
}

// shmem is the machine's shared memory (Shmem in /proc/meminfo: tmpfs pages included).
func shmem() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Shmem:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func treeRSS(root int) int64 {
	ents, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	rss := map[int]int64{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := os.Open(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ":")
			fs := strings.Fields(v)
			if len(fs) == 0 {
				continue
			}
			switch k {
			case "PPid":
				parent[pid], _ = strconv.Atoi(fs[0])
			case "VmRSS":
				kb, _ := strconv.ParseInt(fs[0], 10, 64)
				rss[pid] = kb << 10
			}
		}
		f.Close()
	}
	var total int64
	for pid, r := range rss {
		for p := pid; p > 1; p = parent[p] {
			if p == root {
				total += r
				break
			}
		}
	}
	return total
}
