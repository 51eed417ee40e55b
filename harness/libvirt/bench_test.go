package libvirt

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/trace"
)

// newBenchDriver is newVMDriver for benchmarks.
func newBenchDriver(b *testing.B, sink trace.Sink) *Driver {
	b.Helper()
	requireLibvirt(b)
	d, err := New(b.Context(), Options{Lab: randomLab(b), WorkDir: b.TempDir(), Sink: sink, Logger: quietLog})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := d.Close(); err != nil {
			b.Error(err)
		}
	})
	// Probe (or read the cached verdict) outside the timings.
	if _, err := d.Accel(b.Context()); err != nil {
		b.Fatal(err)
	}
	return d
}

func benchSpec(fw machine.Firmware, i int) machine.Spec {
	return machine.Spec{
		Name: fmt.Sprintf("bench-%s-%d", fw, i), Firmware: fw, MemoryMiB: 512,
		NICs:  []machine.NIC{udpNIC(DeriveMAC("bench", i).String(), "", 40900, 40901)},
		Disks: []machine.Disk{{SizeBytes: 8 * gib, Serial: "bench0"}},
	}
}

// BenchmarkDefineStart measures Create (work dir, sparse disk, NVRAM copy, define with
// validation) plus PowerOn (QEMU started) of one machine.
func BenchmarkDefineStart(b *testing.B) {
	for _, fw := range []machine.Firmware{machine.BIOS, machine.UEFI} {
		b.Run(string(fw), func(b *testing.B) {
			d := newBenchDriver(b, nil)
			ctx := b.Context()
			i := 0
			for b.Loop() {
				i++
				m, err := d.Create(ctx, benchSpec(fw, i))
				if err != nil {
					b.Fatal(err)
				}
				if err := m.PowerOn(ctx); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := m.Destroy(ctx); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkFirstConsoleLine measures, from PowerOn, the first console line in the trace
// (firmware alive) and the firmware's network-boot line (SeaBIOS's iPXE banner, OVMF's
// "Start PXE over IPv4"), reported as ms-first-line and ms-pxe-line.
func BenchmarkFirstConsoleLine(b *testing.B) {
	for _, c := range []struct {
		fw     machine.Firmware
		marker string
	}{{machine.BIOS, "iPXE"}, {machine.UEFI, "Start PXE"}} {
		b.Run(string(c.fw), func(b *testing.B) {
			rec := trace.NewRecorder(nil)
			d := newBenchDriver(b, rec)
			ctx := b.Context()
			var first, pxe time.Duration
			i := 0
			for b.Loop() {
				i++
				b.StopTimer()
				m, err := d.Create(ctx, benchSpec(c.fw, i))
				if err != nil {
					b.Fatal(err)
				}
				ch, stop := rec.Subscribe()
				b.StartTimer()
				start := time.Now()
				if err := m.PowerOn(ctx); err != nil {
					b.Fatal(err)
				}
				var gotFirst bool
				wait, cancel := context.WithTimeout(ctx, 3*time.Minute)
			loop:
				for {
					select {
					case e := <-ch:
						if e.Kind != trace.KindConsoleLine || e.Attrs["machine"] != m.Name() {
							continue
						}
						if !gotFirst {
							first += time.Since(start)
							gotFirst = true
						}
						if strings.Contains(e.Message, c.marker) {
							pxe += time.Since(start)
							break loop
						}
					case <-wait.Done():
						b.Fatalf("no %q on the console", c.marker)
					}
				}
				b.StopTimer()
				cancel()
				stop()
				if err := m.Destroy(ctx); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(first.Milliseconds())/float64(i), "ms-first-line")
			b.ReportMetric(float64(pxe.Milliseconds())/float64(i), "ms-pxe-line")
		})
	}
}
