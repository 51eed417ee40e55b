package libvirt

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/trace"
)

// MAASWaitingPolicy is MAAS's DEFAULT_WAITING_POLICY (provisioningserver/drivers/power):
// after a power action succeeds, the driver waits each of these in turn, queries, and
// repeats the action until the machine reaches the desired state.
var MAASWaitingPolicy = []time.Duration{1 * time.Second, 2 * time.Second, 2 * time.Second, 4 * time.Second, 6 * time.Second, 8 * time.Second, 12 * time.Second}

// VirshError is a failure of the virsh power driver, with MAAS's message.
type VirshError struct {
	Msg string // MAAS's wording, e.g. "vm-1: Failed to power on VM"
	Err error  // the cause, when there is one
}

func (e *VirshError) Error() string {
	if e.Err != nil {
		return e.Msg + " (" + e.Err.Error() + ")"
	}
	return e.Msg
}

func (e *VirshError) Unwrap() error { return e.Err }

// VirshPower is MAAS's virsh power type (fakemaas.PowerDriver): power_address is a
// libvirt URI, power_id a domain name, power_pass an optional SSH password. Like MAAS's
// driver it reads the domain's state first, then starts a shut-off domain (virsh start)
// or destroys a running one (virsh destroy), and after each action it waits and queries
// until the state is the one asked for, repeating the action (MAASWaitingPolicy).
type VirshPower struct {
	// Sink receives a trace.KindPower event per action and query; nil drops them.
	Sink trace.Sink
	// Waits are the pauses before each state check; nil means MAASWaitingPolicy.
	Waits []time.Duration
	// Dial connects with an optional SSH password; nil means the real connection.
	Dial func(ctx context.Context, uri, password string) (API, error)
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

var _ fakemaas.PowerDriver = (*VirshPower)(nil)

// NewVirshPower returns the virsh power driver with MAAS's waiting policy.
func NewVirshPower(sink trace.Sink) *VirshPower { return &VirshPower{Sink: sink} }

// virshParams are the checked power parameters.
type virshParams struct {
	address, id, pass, systemID string
}

func (p *VirshPower) params(params fakemaas.PowerParams) (virshParams, error) {
	v := virshParams{address: params["power_address"], id: params["power_id"], pass: params["power_pass"], systemID: params["system_id"]}
	if v.address == "" {
		return v, &VirshError{Msg: "Missing or invalid power setting: power_address is required (a libvirt URI such as qemu:///system)"}
	}
	if v.id == "" {
		return v, &VirshError{Msg: "Missing or invalid power setting: power_id is required (the libvirt domain name)"}
	}
	u, err := url.Parse(v.address)
	if err != nil {
		return v, &VirshError{Msg: "Missing or invalid power setting: power_address " + v.address, Err: err}
	}
	// MAAS refuses a query string: it would let a user pass options (such as a command)
	// to the SSH transport.
	if u.RawQuery != "" {
		return v, &VirshError{Msg: "Supplying extra parameters to the Virsh address is not supported."}
	}
	if _, err := ParseURI(v.address); err != nil {
		return v, &VirshError{Msg: "Missing or invalid power setting: power_address", Err: err}
	}
	if v.systemID == "" {
		v.systemID = v.id
	}
	return v, nil
}

// session is one login: a connection to the power address.
type session struct {
	api API
	p   virshParams
}

func (p *VirshPower) login(ctx context.Context, vp virshParams) (*session, error) {
	api, err := p.dialFunc()(ctx, vp.address, vp.pass)
	if err != nil {
		return nil, &VirshError{Msg: "Failed to login to virsh console.", Err: err}
	}
	return &session{api: api, p: vp}, nil
}

func (p *VirshPower) dialFunc() func(ctx context.Context, uri, password string) (API, error) {
	if p.Dial != nil {
		return p.Dial
	}
	return dial
}

func (s *session) close() { _ = s.api.Disconnect() }

// domstate is `virsh domstate <id>`: the state word, or an error.
func (s *session) domstate(ctx context.Context) (string, error) {
	dom, err := call(ctx, func() (golibvirt.Domain, error) { return s.api.DomainLookupByName(s.p.id) })
	if err != nil {
		return "", virshCommandError("domstate", s.p.id, err)
	}
	state, _, err := call3(ctx, func() (int32, int32, error) { return s.api.DomainGetState(dom, 0) })
	if err != nil {
		return "", virshCommandError("domstate", s.p.id, err)
	}
	return virshState(golibvirt.DomainState(state)), nil
}

// run is `virsh start <id>` or `virsh destroy <id>`.
func (s *session) run(ctx context.Context, cmd string) error {
	dom, err := call(ctx, func() (golibvirt.Domain, error) { return s.api.DomainLookupByName(s.p.id) })
	if err == nil {
		switch cmd {
		case "start":
			err = call0(ctx, func() error { return s.api.DomainCreate(dom) })
		case "destroy":
			err = call0(ctx, func() error { return s.api.DomainDestroyFlags(dom, golibvirt.DomainDestroyDefault) })
		}
	}
	if err != nil {
		return virshCommandError(cmd, s.p.id, err)
	}
	return nil
}

// virshCommandError is MAAS's log line for a failed virsh command.
func virshCommandError(cmd, id string, err error) error {
	//lint:ignore ST1005 MAAS's wording, which logs and scenarios match
	return fmt.Errorf("Virsh command ['%s', '%s'] failed: %w", cmd, id, err)
}

// control is MAAS's power_control_virsh: read the state, then start a shut-off domain
// or destroy a running one.
func (p *VirshPower) control(ctx context.Context, vp virshParams, change string) error {
	s, err := p.login(ctx, vp)
	if err != nil {
		return err
	}
	defer s.close()
	state, err := s.domstate(ctx)
	if err != nil {
		return &VirshError{Msg: vp.id + ": Failed to get power state", Err: err}
	}
	switch {
	case state == "shut off" && change == "on":
		if err := s.run(ctx, "start"); err != nil {
			return &VirshError{Msg: vp.id + ": Failed to power on VM", Err: err}
		}
	case state == "running" && change == "off":
		if err := s.run(ctx, "destroy"); err != nil {
			return &VirshError{Msg: vp.id + ": Failed to power off VM", Err: err}
		}
	}
	return nil
}

// query is MAAS's power_state_virsh.
func (p *VirshPower) query(ctx context.Context, vp virshParams) (string, error) {
	s, err := p.login(ctx, vp)
	if err != nil {
		return "", err
	}
	defer s.close()
	state, err := s.domstate(ctx)
	if err != nil {
		return "", &VirshError{Msg: "Failed to get domain: " + vp.id, Err: err}
	}
	power, ok := virshPower[state]
	if !ok {
		return "", &VirshError{Msg: "Unknown state: " + state}
	}
	return power, nil
}

// perform is MAAS's PowerDriver.perform_power for the virsh driver, whose errors are
// not PowerErrors and so end it at once.
func (p *VirshPower) perform(ctx context.Context, params fakemaas.PowerParams, change string) (err error) {
	vp, err := p.params(params)
	if err != nil {
		p.emit(params, change, "", err)
		return err
	}
	state := "unknown"
	defer func() { p.emit(params, change, state, err) }()
	waits := p.Waits
	if waits == nil {
		waits = MAASWaitingPolicy
	}
	for _, wait := range waits {
		if err := p.control(ctx, vp, change); err != nil {
			return err
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		if state, err = p.query(ctx, vp); err != nil {
			return err
		}
		if state == change {
			return nil
		}
		p.logger().Info(fmt.Sprintf("Machine is %s and not %s as expected.", state, change), "power_id", vp.id)
	}
	return &VirshError{Msg: fmt.Sprintf("Failed to power %s. BMC never transitioned from %s to %s.", vp.systemID, state, change)}
}

// PowerOn starts the domain power_id at power_address and waits until it runs.
func (p *VirshPower) PowerOn(ctx context.Context, params fakemaas.PowerParams) error {
	return p.perform(ctx, params, "on")
}

// PowerOff destroys (hard stops) the domain and waits until it is off.
func (p *VirshPower) PowerOff(ctx context.Context, params fakemaas.PowerParams) error {
	return p.perform(ctx, params, "off")
}

// PowerQuery returns "on" or "off" from the domain's state, as MAAS maps it.
func (p *VirshPower) PowerQuery(ctx context.Context, params fakemaas.PowerParams) (state string, err error) {
	defer func() { p.emit(params, "query", state, err) }()
	vp, err := p.params(params)
	if err != nil {
		return "", err
	}
	return p.query(ctx, vp)
}

func (p *VirshPower) emit(params fakemaas.PowerParams, action, state string, err error) {
	attrs := map[string]any{
		"power_type": "virsh", "action": action, "power_id": params["power_id"],
		"power_address": params["power_address"],
	}
	ev := trace.Event{Source: trace.SourcePower, Kind: trace.KindPower, Level: trace.LevelInfo, Attrs: attrs}
	if sid := params["system_id"]; sid != "" {
		ev.Machine = sid
	}
	if state != "" {
		attrs["state"] = state
	}
	if err != nil {
		ev.Level = trace.LevelError
		attrs["error"] = err.Error()
		ev.Message = fmt.Sprintf("virsh power %s of %s failed: %v", action, params["power_id"], err)
	} else if action == "query" {
		ev.Message = fmt.Sprintf("virsh power query of %s: %s", params["power_id"], state)
	} else {
		ev.Message = fmt.Sprintf("virsh power %s of %s: %s", action, params["power_id"], state)
	}
	trace.OrNop(p.Sink).Emit(ev)
}

func (p *VirshPower) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
