package libvirt

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/go-cmp/cmp"
	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/trace"
)

// newFakePower returns a virsh power driver on a fake daemon with one shut-off domain
// "vm1", waiting not at all between action and check.
func newFakePower(t *testing.T) (*VirshPower, *fakeDaemon, *trace.Recorder) {
	t.Helper()
	d := newFakeDaemon()
	c, _ := d.dial(t.Context(), "")
	if _, err := c.DomainDefineXMLFlags("<domain type='qemu'><name>vm1</name></domain>", 0); err != nil {
		t.Fatal(err)
	}
	c.Disconnect()
	rec := trace.NewRecorder(nil)
	p := &VirshPower{Sink: rec, Dial: d.dialPass, Waits: []time.Duration{0, 0, 0}, Logger: quietLog}
	return p, d, rec
}

var quietLog = slog.New(slog.DiscardHandler)

var vm1 = fakemaas.PowerParams{"power_address": "qemu:///system", "power_id": "vm1"}

func TestVirshPowerOnOffQuery(t *testing.T) {
	p, d, rec := newFakePower(t)
	ctx := t.Context()
	var got []string
	query := func() {
		t.Helper()
		s, err := p.PowerQuery(ctx, vm1)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	query()
	if err := p.PowerOn(ctx, vm1); err != nil {
		t.Fatal(err)
	}
	query()
	if err := p.PowerOn(ctx, vm1); err != nil { // already on: MAAS does nothing and succeeds
		t.Fatal(err)
	}
	if err := p.PowerOff(ctx, vm1); err != nil {
		t.Fatal(err)
	}
	query()
	if err := p.PowerOff(ctx, vm1); err != nil {
		t.Fatal(err)
	}
	query()
	if diff := cmp.Diff([]string{"off", "on", "off", "off"}, got); diff != "" {
		t.Errorf("queries (-want +got):\n%s", diff)
	}
	if n := d.openConns(); n != 0 {
		t.Errorf("%d connections left open", n)
	}
	type ev struct{ Action, State, Level string }
	var evs []ev
	for _, e := range rec.Events() {
		if e.Kind != trace.KindPower || e.Source != trace.SourcePower || e.Attrs["power_type"] != "virsh" {
			t.Errorf("event %+v: want kind power, source power, power_type virsh", e)
		}
		evs = append(evs, ev{e.Attrs["action"].(string), e.Attrs["state"].(string), e.Level})
	}
	want := []ev{
		{"query", "off", "info"}, {"on", "on", "info"}, {"query", "on", "info"}, {"on", "on", "info"},
		{"off", "off", "info"}, {"query", "off", "info"}, {"off", "off", "info"}, {"query", "off", "info"},
	}
	if diff := cmp.Diff(want, evs); diff != "" {
		t.Errorf("power events (-want +got):\n%s", diff)
	}
}

func TestVirshPowerStateMap(t *testing.T) {
	p, d, _ := newFakePower(t)
	for _, tt := range []struct {
		state golibvirt.DomainState
		want  string
	}{
		{golibvirt.DomainRunning, "on"}, {golibvirt.DomainShutdown, "on"},
		{golibvirt.DomainShutoff, "off"}, {golibvirt.DomainNostate, "off"}, {golibvirt.DomainBlocked, "off"},
		{golibvirt.DomainPaused, "off"}, {golibvirt.DomainCrashed, "off"}, {golibvirt.DomainPmsuspended, "off"},
	} {
		d.setState("vm1", tt.state)
		got, err := p.PowerQuery(t.Context(), vm1)
		if err != nil || got != tt.want {
			t.Errorf("state %s: %q, %v; want %q", virshState(tt.state), got, err, tt.want)
		}
	}
	d.setState("vm1", golibvirt.DomainState(42))
	if _, err := p.PowerQuery(t.Context(), vm1); err == nil || err.Error() != "Unknown state: state 42" {
		t.Errorf("unknown state: %v", err)
	}
}

func TestVirshPowerErrors(t *testing.T) {
	tests := []struct {
		name   string
		params fakemaas.PowerParams
		setup  func(*fakeDaemon)
		do     string // on, off, query
		want   string
	}{
		{"no address", fakemaas.PowerParams{"power_id": "vm1"}, nil, "on",
			"Missing or invalid power setting: power_address is required"},
		{"no id", fakemaas.PowerParams{"power_address": "qemu:///system"}, nil, "query",
			"Missing or invalid power setting: power_id is required"},
		{"query string", fakemaas.PowerParams{"power_address": "qemu+ssh://h/system?command=/bin/sh", "power_id": "vm1"}, nil, "on",
			"Supplying extra parameters to the Virsh address is not supported."},
		{"bad uri", fakemaas.PowerParams{"power_address": "qemu:///nowhere", "power_id": "vm1"}, nil, "query",
			"Missing or invalid power setting: power_address"},
		{"login", vm1, func(d *fakeDaemon) { d.fail("Dial", errors.New("connection refused")) }, "on",
			"Failed to login to virsh console. (connection refused)"},
		{"unknown domain on", fakemaas.PowerParams{"power_address": "qemu:///system", "power_id": "nope"}, nil, "on",
			"nope: Failed to get power state (Virsh command ['domstate', 'nope'] failed: Domain not found"},
		{"unknown domain query", fakemaas.PowerParams{"power_address": "qemu:///system", "power_id": "nope"}, nil, "query",
			"Failed to get domain: nope (Virsh command ['domstate', 'nope'] failed: Domain not found"},
		{"start fails", vm1, func(d *fakeDaemon) { d.fail("DomainCreate", errors.New("unsupported configuration")) }, "on",
			"vm1: Failed to power on VM (Virsh command ['start', 'vm1'] failed: unsupported configuration)"},
		{"destroy fails", vm1, func(d *fakeDaemon) {
			d.setState("vm1", golibvirt.DomainRunning)
			d.fail("DomainDestroyFlags", errors.New("permission denied"))
		}, "off", "vm1: Failed to power off VM (Virsh command ['destroy', 'vm1'] failed: permission denied)"},
		// A paused domain is neither started nor destroyed by MAAS's driver: it never
		// becomes "on", and the waiting policy runs out.
		{"paused never transitions", vm1, func(d *fakeDaemon) { d.setState("vm1", golibvirt.DomainPaused) }, "on",
			"Failed to power vm1. BMC never transitioned from off to on."},
		{"starts but stays off", vm1, func(d *fakeDaemon) { d.onStart = golibvirt.DomainCrashed }, "on",
			"Failed to power vm1. BMC never transitioned from off to on."},
		{"system id in message", fakemaas.PowerParams{"power_address": "qemu:///system", "power_id": "vm1", "system_id": "abc123"},
			func(d *fakeDaemon) { d.setState("vm1", golibvirt.DomainPaused) }, "on",
			"Failed to power abc123. BMC never transitioned from off to on."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, d, rec := newFakePower(t)
			if tt.setup != nil {
				tt.setup(d)
			}
			var err error
			switch tt.do {
			case "on":
				err = p.PowerOn(t.Context(), tt.params)
			case "off":
				err = p.PowerOff(t.Context(), tt.params)
			case "query":
				_, err = p.PowerQuery(t.Context(), tt.params)
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("error %v\nwant one starting %q", err, tt.want)
			}
			var ve *VirshError
			if !errors.As(err, &ve) {
				t.Errorf("error %T is not a *VirshError", err)
			}
			evs := rec.Events()
			if len(evs) == 0 || evs[len(evs)-1].Level != trace.LevelError || evs[len(evs)-1].Attrs["error"] == nil {
				t.Errorf("no error power event; events: %v", kinds(evs))
			}
			if n := d.openConns(); n != 0 {
				t.Errorf("%d connections left open", n)
			}
		})
	}
}

// MAAS's perform_power repeats the action while the queried state is not the one asked.
func TestVirshPowerRepeatsTheAction(t *testing.T) {
	p, d, _ := newFakePower(t)
	// The first start "succeeds" but the domain is found shut off again (a guest that
	// powers off at once); the second start sticks.
	starts := 0
	orig := p.Dial
	p.Dial = func(ctx context.Context, uri, pass string) (API, error) {
		api, err := orig(ctx, uri, pass)
		if err != nil {
			return nil, err
		}
		return &flakyStart{API: api, d: d, starts: &starts}, nil
	}
	if err := p.PowerOn(t.Context(), vm1); err != nil {
		t.Fatal(err)
	}
	if starts != 2 {
		t.Errorf("%d starts, want 2 (MAAS repeats the action while the state is wrong)", starts)
	}
}

type flakyStart struct {
	API
	d      *fakeDaemon
	starts *int
}

func (f *flakyStart) DomainCreate(dom golibvirt.Domain) error {
	*f.starts++
	if err := f.API.DomainCreate(dom); err != nil {
		return err
	}
	if *f.starts == 1 {
		f.d.setState(dom.Name, golibvirt.DomainShutoff)
	}
	return nil
}

func TestVirshPowerCancelled(t *testing.T) {
	p, _, _ := newFakePower(t)
	p.Waits = []time.Duration{time.Hour}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := p.PowerOn(ctx, vm1); !errors.Is(err, context.Canceled) {
		t.Errorf("PowerOn with a cancelled context: %v", err)
	}
}
