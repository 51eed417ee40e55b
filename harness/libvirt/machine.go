package libvirt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/trace"
)

// VM is one libvirt domain and the files it owns (machine.Machine).
type VM struct {
	d      *Driver
	name   string
	domain string
	spec   machine.Spec // normalized
	sink   trace.Sink
	mac    string // the boot NIC's MAC, for trace events
	accel  Accel

	dir        string
	dirCreated bool
	disks      []string
	nvram      string
	console    string
	xml        string
	tail       *consoleTail
	ready      bool // guarded by d.mu: fully created

	destroyMu sync.Mutex
	destroyed bool
}

var _ machine.Machine = (*VM)(nil)

// Name is the machine's name in its lab.
func (v *VM) Name() string { return v.name }

// Domain is the libvirt domain name ("maasemu-<lab>-<name>"), MAAS's power_id.
func (v *VM) Domain() string { return v.domain }

// Spec is the machine's spec with the driver's defaults filled in (MACs, models, buses,
// the boot NIC).
func (v *VM) Spec() machine.Spec { return v.spec }

// Accel is how the VM's CPU runs.
func (v *VM) Accel() Accel { return v.accel }

// Dir is the machine's work directory.
func (v *VM) Dir() string { return v.dir }

// XML is the domain XML the machine was defined with.
func (v *VM) XML() string { return v.xml }

// NVRAMPath is the host path of the UEFI variable store copy, or "" for BIOS.
func (v *VM) NVRAMPath() string { return v.nvram }

// DiskPaths are the host paths of the raw disk images, in Spec order.
func (v *VM) DiskPaths() []string { return slices.Clone(v.disks) }

// ConsolePath is the host path of the serial console log.
func (v *VM) ConsolePath() string { return v.console }

func (v *VM) lookup(ctx context.Context) (golibvirt.Domain, error) {
	dom, err := call(ctx, func() (golibvirt.Domain, error) { return v.d.api.DomainLookupByName(v.domain) })
	if err != nil {
		return dom, fmt.Errorf("libvirt: machine %q: looking up domain %s: %w", v.name, v.domain, err)
	}
	return dom, nil
}

// PowerOn starts the domain; a running domain is left as it is.
func (v *VM) PowerOn(ctx context.Context) error {
	dom, err := v.lookup(ctx)
	if err != nil {
		return err
	}
	state, _, err := call3(ctx, func() (int32, int32, error) { return v.d.api.DomainGetState(dom, 0) })
	if err != nil {
		return fmt.Errorf("libvirt: machine %q: state of %s: %w", v.name, v.domain, err)
	}
	if golibvirt.DomainState(state) == golibvirt.DomainRunning {
		return nil
	}
	if err := call0(ctx, func() error { return v.d.api.DomainCreate(dom) }); err != nil {
		return fmt.Errorf("libvirt: machine %q: starting domain %s: %w", v.name, v.domain, err)
	}
	if !v.d.hasEvents() {
		v.emit(trace.KindMachineStarted, trace.LevelInfo, "started domain "+v.domain, map[string]any{"detail": "booted"})
	}
	return nil
}

// PowerOff stops the domain at once (virsh destroy: QEMU is killed, as pulling the
// plug); a stopped domain is left as it is.
func (v *VM) PowerOff(ctx context.Context) error {
	dom, err := v.lookup(ctx)
	if err != nil {
		return err
	}
	err = call0(ctx, func() error { return v.d.api.DomainDestroyFlags(dom, golibvirt.DomainDestroyDefault) })
	if err != nil && !isOperationInvalid(err) {
		return fmt.Errorf("libvirt: machine %q: stopping domain %s: %w", v.name, v.domain, err)
	}
	if err == nil && !v.d.hasEvents() {
		v.emit(trace.KindMachineStopped, trace.LevelInfo, "stopped domain "+v.domain, map[string]any{"detail": "destroyed"})
	}
	return nil
}

// PowerState maps the domain's state as MAAS's virsh driver does: running and in
// shutdown are on; shut off, no state, idle, paused, crashed and pmsuspended are off.
func (v *VM) PowerState(ctx context.Context) (machine.PowerState, error) {
	dom, err := v.lookup(ctx)
	if err != nil {
		return machine.PowerError, err
	}
	state, _, err := call3(ctx, func() (int32, int32, error) { return v.d.api.DomainGetState(dom, 0) })
	if err != nil {
		return machine.PowerError, fmt.Errorf("libvirt: machine %q: state of %s: %w", v.name, v.domain, err)
	}
	p, ok := virshPower[virshState(golibvirt.DomainState(state))]
	if !ok {
		return machine.PowerUnknown, fmt.Errorf("libvirt: machine %q: unknown domain state %d", v.name, state)
	}
	return machine.PowerState(p), nil
}

// Destroy stops and undefines the domain (with its NVRAM) and removes the machine's
// directory (disks, NVRAM copy, console). It is idempotent, and it cleans up even when
// ctx is already cancelled (Ctrl-C), bounded by its own timeout.
func (v *VM) Destroy(ctx context.Context) error {
	v.destroyMu.Lock()
	defer v.destroyMu.Unlock()
	if v.destroyed {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	var errs []error
	if err := v.removeDomain(ctx); err != nil {
		errs = append(errs, err)
	}
	if v.tail != nil {
		v.tail.Stop()
	}
	if err := os.RemoveAll(v.dir); err != nil {
		errs = append(errs, fmt.Errorf("libvirt: machine %q: removing %s: %w", v.name, v.dir, err))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	v.destroyed = true
	v.d.forget(v)
	v.emit(trace.KindMachineDestroyed, trace.LevelInfo, "removed domain "+v.domain+" and its files", nil)
	return nil
}

// removeDomain destroys and undefines the domain when it exists.
func (v *VM) removeDomain(ctx context.Context) error {
	dom, err := call(ctx, func() (golibvirt.Domain, error) { return v.d.api.DomainLookupByName(v.domain) })
	if isNoDomain(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("libvirt: machine %q: looking up domain %s: %w", v.name, v.domain, err)
	}
	return removeDomain(ctx, v.d.api, dom)
}

// removeDomain stops dom if it runs and undefines it with its NVRAM.
func removeDomain(ctx context.Context, api API, dom golibvirt.Domain) error {
	err := call0(ctx, func() error { return api.DomainDestroyFlags(dom, golibvirt.DomainDestroyDefault) })
	if err != nil && !isOperationInvalid(err) && !isNoDomain(err) {
		return fmt.Errorf("libvirt: destroying domain %s: %w", dom.Name, err)
	}
	err = call0(ctx, func() error { return api.DomainUndefineFlags(dom, golibvirt.DomainUndefineNvram) })
	if err != nil && !isNoDomain(err) {
		return fmt.Errorf("libvirt: undefining domain %s: %w", dom.Name, err)
	}
	return nil
}

// rollback removes what a failed Create made.
func (v *VM) rollback(ctx context.Context, defined bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if defined {
		if err := v.removeDomain(ctx); err != nil {
			v.d.log.Warn("rolling back a failed create", "domain", v.domain, "err", err)
		}
	}
	if v.tail != nil {
		v.tail.Stop()
	}
	if v.dirCreated {
		if err := os.RemoveAll(v.dir); err != nil {
			v.d.log.Warn("rolling back a failed create", "dir", v.dir, "err", err)
		}
	}
	v.d.forget(v)
}

func (v *VM) emit(kind, level, msg string, attrs map[string]any) {
	a := map[string]any{"driver": "libvirt", "machine": v.name, "domain": v.domain}
	for k, val := range attrs {
		a[k] = val
	}
	v.sink.Emit(trace.Event{Source: trace.SourceMachine, Kind: kind, Level: level, MAC: v.mac, Message: msg, Attrs: a})
}

func (v *VM) consoleLine(line string) {
	v.sink.Emit(trace.Event{
		Source: trace.SourceConsole, Kind: trace.KindConsoleLine, MAC: v.mac, Message: line,
		Attrs: map[string]any{"driver": "libvirt", "machine": v.name},
	})
}
