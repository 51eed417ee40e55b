package libvirt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/trace"
)

// probeTimeout bounds the KVM probe: OVMF reaches its boot manager in a few seconds
// under working KVM (and in well under a minute under TCG on this project's machines).
const probeTimeout = 30 * time.Second

// probeMarkers are console output of OVMF's boot manager: seeing one proves the guest
// ran 64-bit firmware code to the end.
var probeMarkers = [][]byte{[]byte("BdsDxe"), []byte("Shell>"), []byte("UEFI Interactive Shell")}

// accelVerdict is what the probe found, as cached.
type accelVerdict struct {
	Accel  Accel     `json:"accel"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}

// accelCacheFile holds the verdicts, by libvirt URI.
func (d *Driver) accelCacheFile() string {
	return filepath.Join(d.opts.CacheDir, "libvirt", "accel.json")
}

// Accel returns the accelerator machines get: Options.Accel when set; else the cached
// verdict for this URI; else it tries KVM once (a UEFI guest must reach OVMF's boot
// manager) and caches what it found. Delete $MAASEMU_CACHE/libvirt/accel.json to
// probe again.
func (d *Driver) Accel(ctx context.Context) (Accel, error) {
	d.accelMu.Lock()
	defer d.accelMu.Unlock()
	if d.accel != "" {
		return d.accel, nil
	}
	if d.opts.Accel != "" {
		d.accel, d.accelReason = d.opts.Accel, "set by option"
		return d.accel, nil
	}
	cache := readAccelCache(d.accelCacheFile())
	if v, ok := cache[d.opts.URI]; ok && (v.Accel == AccelKVM || v.Accel == AccelTCG) {
		d.accel, d.accelReason = v.Accel, v.Reason+" (cached in "+d.accelCacheFile()+")"
		return d.accel, nil
	}
	accel, reason, keep, err := d.probeKVM(ctx)
	if err != nil {
		return "", err
	}
	d.accel, d.accelReason = accel, reason
	d.log.Info("accelerator chosen", "accel", accel, "reason", reason)
	if keep {
		cache[d.opts.URI] = accelVerdict{Accel: accel, Reason: reason, Time: time.Now().UTC()}
		if err := writeAccelCache(d.accelCacheFile(), cache); err != nil {
			d.log.Warn("caching the KVM verdict", "err", err)
		}
	}
	return accel, nil
}

// AccelReason says why Accel chose what it did ("" before the first Accel).
func (d *Driver) AccelReason() string {
	d.accelMu.Lock()
	defer d.accelMu.Unlock()
	return d.accelReason
}

// probeKVM tries a KVM guest. The error is for cancellation only: every other failure
// is a verdict of TCG with its reason. keep is false for verdicts not to cache: a probe
// that ran out of time on a loaded host says nothing for sure.
func (d *Driver) probeKVM(ctx context.Context) (_ Accel, _ string, keep bool, _ error) {
	a, reason, err := d.probeKVMOnce(ctx)
	return a, reason, !errors.Is(err, errProbeTimeout), ignoreTimeout(err)
}

var errProbeTimeout = errors.New("KVM probe timed out")

func ignoreTimeout(err error) error {
	if errors.Is(err, errProbeTimeout) {
		return nil
	}
	return err
}

func (d *Driver) probeKVMOnce(ctx context.Context) (Accel, string, error) {
	if !d.local {
		return AccelTCG, "remote libvirt host: KVM not probed", nil
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return AccelTCG, fmt.Sprintf("/dev/kvm unusable: %v", err), nil
	}
	f.Close()
	if d.opts.UEFI == (UEFIFirmware{}) {
		if _, err := FindUEFIFirmware(); err != nil {
			return AccelTCG, "KVM not probed: " + err.Error(), nil
		}
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	v, err := d.create(pctx, machine.Spec{Name: fmt.Sprintf("kvm-probe-%d", os.Getpid()), Firmware: machine.UEFI, MemoryMiB: 128}, AccelKVM, trace.Nop{})
	if err != nil {
		if ctx.Err() != nil {
			return "", "", ctx.Err()
		}
		if pctx.Err() != nil {
			return AccelTCG, fmt.Sprintf("the KVM probe could not define its domain in %v: %v", probeTimeout, err), errProbeTimeout
		}
		return AccelTCG, fmt.Sprintf("libvirt refused a KVM domain: %v", err), nil
	}
	defer func() {
		if err := v.Destroy(context.WithoutCancel(ctx)); err != nil {
			d.log.Warn("removing the KVM probe", "err", err)
		}
	}()
	if err := v.PowerOn(pctx); err != nil {
		if ctx.Err() != nil {
			return "", "", ctx.Err()
		}
		if pctx.Err() != nil {
			return AccelTCG, fmt.Sprintf("the KVM probe could not start its domain in %v: %v", probeTimeout, err), errProbeTimeout
		}
		return AccelTCG, fmt.Sprintf("QEMU failed to start with KVM: %v", err), nil
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(v.console); err == nil {
			for _, m := range probeMarkers {
				if bytes.Contains(b, m) {
					return AccelKVM, fmt.Sprintf("a KVM guest reached OVMF's boot manager (%q on the console)", m), nil
				}
			}
		}
		dom, err := v.lookup(pctx)
		if err == nil {
			var state int32
			state, _, err = call3(pctx, func() (int32, int32, error) { return d.api.DomainGetState(dom, 0) })
			if err == nil && golibvirt.DomainState(state) != golibvirt.DomainRunning {
				return AccelTCG, fmt.Sprintf("the KVM guest stopped running (domain state %q): KVM cannot run it", virshState(golibvirt.DomainState(state))), nil
			}
		}
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-pctx.Done():
			return AccelTCG, fmt.Sprintf("a KVM guest did not reach OVMF's boot manager in %v", probeTimeout), errProbeTimeout
		case <-tick.C:
		}
	}
}

func readAccelCache(path string) map[string]accelVerdict {
	m := map[string]accelVerdict{}
	b, err := os.ReadFile(path)
	if err != nil {
		return m
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return map[string]accelVerdict{} // a broken cache is probed again and rewritten
	}
	return m
}

func writeAccelCache(path string, m map[string]accelVerdict) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".accel-*.json")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := errors.Join(tmp.Sync(), tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
