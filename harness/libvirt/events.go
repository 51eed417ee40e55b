package libvirt

import (
	"context"
	"fmt"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/maasemu/maasemu/trace"
)

// startEvents opens the driver's event connection and fans its lifecycle events out
// to the machines. Without events (the daemon refused, or a fake has none) machines
// emit their own started/stopped events from PowerOn and PowerOff.
func (d *Driver) startEvents(ctx context.Context) {
	conn, err := d.opts.Dial(ctx, d.opts.URI)
	if err != nil {
		d.log.Warn("no lifecycle events: connecting", "err", err)
		close(d.eventsDone)
		return
	}
	// The stream's context is never cancelled: cancelling it while events arrive can
	// deadlock go-libvirt (#191). Disconnecting at Close ends it.
	ch, err := conn.LifecycleEvents(context.Background())
	if err != nil {
		d.log.Warn("no lifecycle events: subscribing", "err", err)
		_ = conn.Disconnect()
		close(d.eventsDone)
		return
	}
	d.events = conn
	go func() {
		defer close(d.eventsDone)
		for msg := range ch { // drain until the connection ends: go-libvirt blocks otherwise
			d.lifecycle(msg)
		}
	}()
}

func (d *Driver) hasEvents() bool { return d.events != nil }

// lifecycle turns one libvirt lifecycle event of this lab's domains into a trace event.
func (d *Driver) lifecycle(msg golibvirt.DomainEventLifecycleMsg) {
	name := msg.Dom.Name
	if !strings.HasPrefix(name, d.prefix) {
		return
	}
	d.mu.Lock()
	v := d.machines[name]
	d.mu.Unlock()
	if v == nil {
		return
	}
	kind, level, detail := lifecycleKind(golibvirt.DomainEventType(msg.Event), msg.Detail)
	if kind == "" {
		return
	}
	v.emit(kind, level, fmt.Sprintf("domain %s %s (%s)", name, strings.TrimPrefix(kind, "machine."), detail), map[string]any{"detail": detail})
}

// lifecycleKind maps a libvirt lifecycle event to a trace kind, level and detail word;
// "" for the events the driver reports itself (defined, undefined) or ignores.
func lifecycleKind(ev golibvirt.DomainEventType, detail int32) (kind, level, word string) {
	switch ev {
	case golibvirt.DomainEventStarted:
		words := []string{"booted", "migrated", "restored", "from snapshot", "wakeup", "recreated"}
		return trace.KindMachineStarted, trace.LevelInfo, pick(words, detail)
	case golibvirt.DomainEventStopped:
		words := []string{"shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from snapshot", "recreated"}
		w := pick(words, detail)
		switch golibvirt.DomainEventStoppedDetailType(detail) {
		case golibvirt.DomainEventStoppedCrashed:
			return trace.KindMachineCrashed, trace.LevelError, w
		case golibvirt.DomainEventStoppedFailed:
			return trace.KindMachineStopped, trace.LevelError, w
		}
		return trace.KindMachineStopped, trace.LevelInfo, w
	case golibvirt.DomainEventCrashed:
		return trace.KindMachineCrashed, trace.LevelError, pick([]string{"panicked", "crashloaded"}, detail)
	case golibvirt.DomainEventSuspended:
		// QEMU stops the guest on an I/O error or an emulation failure: the machine is
		// as good as crashed, and MAAS reports it off.
		switch golibvirt.DomainEventSuspendedDetailType(detail) {
		case golibvirt.DomainEventSuspendedIoerror:
			return trace.KindMachineCrashed, trace.LevelError, "paused on I/O error"
		case golibvirt.DomainEventSuspendedAPIError:
			return trace.KindMachineCrashed, trace.LevelError, "paused on error"
		}
		return "", "", ""
	}
	return "", "", ""
}

func pick(words []string, i int32) string {
	if i >= 0 && int(i) < len(words) {
		return words[i]
	}
	return fmt.Sprintf("detail %d", i)
}

// virshState is the word `virsh domstate` prints for a state.
func virshState(s golibvirt.DomainState) string {
	switch s {
	case golibvirt.DomainNostate:
		return "no state"
	case golibvirt.DomainRunning:
		return "running"
	case golibvirt.DomainBlocked:
		return "idle"
	case golibvirt.DomainPaused:
		return "paused"
	case golibvirt.DomainShutdown:
		return "in shutdown"
	case golibvirt.DomainShutoff:
		return "shut off"
	case golibvirt.DomainCrashed:
		return "crashed"
	case golibvirt.DomainPmsuspended:
		return "pmsuspended"
	}
	return fmt.Sprintf("state %d", s)
}

// virshPower is MAAS's map from a virsh domain state to a power state
// (provisioningserver/drivers/power/virsh.py, VM_STATE_TO_POWER_STATE).
var virshPower = map[string]string{
	"shut off":    "off",
	"running":     "on",
	"no state":    "off",
	"idle":        "off",
	"paused":      "off",
	"in shutdown": "on",
	"crashed":     "off",
	"pmsuspended": "off",
}
