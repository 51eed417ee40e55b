package fakemaas

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/maasemu/maasemu/fakemaas/nodestatus"
	"github.com/maasemu/maasemu/trace"
)

// This file is the node lifecycle in one place: the event catalogue, status transitions
// (guarded by nodestatus's table) and the lifecycle actions the API and the rack trigger.
// The next issue adds commissioning, the Deploying -> Deployed / Failed rules fed by the
// metadata service and the status webhook, and netboot changes, as more actions here.

// Python logging levels MAAS stores on event types.
const (
	levelAudit    = 0
	levelDebug    = 10
	levelInfo     = 20
	levelWarning  = 30
	levelError    = 40
	levelCritical = 50
)

var levelNames = map[int]string{levelAudit: "AUDIT", levelDebug: "DEBUG", levelInfo: "INFO",
	levelWarning: "WARNING", levelError: "ERROR", levelCritical: "CRITICAL"}

type eventType struct {
	desc  string
	level int
}

// eventTypes is MAAS's event catalogue (src/maascommon/events.py), the part the region
// emits.
var eventTypes = map[string]eventType{
	"NODE_POWERED_ON":                 {"Node powered on", levelDebug},
	"NODE_POWERED_OFF":                {"Node powered off", levelDebug},
	"NODE_POWER_ON_FAILED":            {"Failed to power on node", levelError},
	"NODE_POWER_OFF_FAILED":           {"Failed to power off node", levelError},
	"NODE_POWER_QUERY_FAILED":         {"Failed to query node's BMC", levelWarning},
	"NODE_PXE_REQUEST":                {"PXE Request", levelDebug},
	"NODE_TFTP_REQUEST":               {"TFTP Request", levelDebug},
	"NODE_HTTP_REQUEST":               {"HTTP Request", levelDebug},
	"NODE_INSTALLATION_FINISHED":      {"Installation complete", levelDebug},
	"NODE_CHANGED_STATUS":             {"Node changed status", levelDebug},
	"NODE_STATUS_EVENT":               {"Node status event", levelDebug},
	"NODE_COMMISSIONING_EVENT":        {"Node commissioning", levelDebug},
	"NODE_INSTALL_EVENT":              {"Node installation", levelDebug},
	"NODE_INSTALL_EVENT_FAILED":       {"Node installation failure", levelError},
	"NODE_POST_INSTALL_EVENT_FAILED":  {"Node post-installation failure", levelError},
	"REQUEST_NODE_ABORT_DEPLOYMENT":   {"User aborting deployment", levelDebug},
	"REQUEST_NODE_ACQUIRE":            {"User acquiring node", levelDebug},
	"REQUEST_NODE_RELEASE":            {"User releasing node", levelDebug},
	"REQUEST_NODE_MARK_FAILED":        {"User marking node failed", levelDebug},
	"REQUEST_NODE_MARK_FAILED_SYSTEM": {"Marking node failed", levelError},
	"REQUEST_NODE_MARK_BROKEN":        {"User marking node broken", levelDebug},
	"REQUEST_NODE_MARK_FIXED":         {"User marking node fixed", levelDebug},
	"REQUEST_NODE_START_DEPLOYMENT":   {"User starting deployment", levelDebug},
	"REQUEST_NODE_START":              {"User powering up node", levelDebug},
	"REQUEST_NODE_STOP":               {"User powering down node", levelDebug},
	"READY":                           {"Ready", levelInfo},
	"DEPLOYING":                       {"Deploying", levelInfo},
	"DEPLOYED":                        {"Deployed", levelInfo},
	"IMAGE_DEPLOYED":                  {"Image Deployed", levelInfo},
	"RELEASING":                       {"Releasing", levelInfo},
	"RELEASED":                        {"Released", levelInfo},
	"ABORTED_DEPLOYMENT":              {"Aborted deployment", levelInfo},
	"PERFORMING_PXE_BOOT":             {"Performing PXE boot", levelInfo},
	"REQUEST_MACHINE_CREATE":          {"Machine created", levelInfo},
}

// nodeEvent records an event in m's log (in w). user and comment make MAAS's request-event
// description: "(user)" or "(user) - comment".
func (w *writer) nodeEvent(m *machine, typeName, description, action string) *event {
	et, ok := eventTypes[typeName]
	if !ok {
		panic("fakemaas: unknown event type " + typeName)
	}
	e := &event{ID: w.next("event"), SystemID: m.SystemID, Hostname: m.Hostname, Type: typeName,
		TypeDesc: et.desc, Level: et.level, Description: description, Action: action, Created: w.r.now().UTC()}
	w.evs = append(w.evs, e)
	if et.level >= levelInfo {
		m.StatusEventType, m.StatusEventDesc, m.StatusEventAction = typeName, description, action
	}
	return e
}

func requestDescription(user, comment string) string {
	switch {
	case user != "" && comment != "":
		return fmt.Sprintf("(%s) - %s", user, comment)
	case user != "":
		return "(" + user + ")"
	}
	return comment
}

// setStatus moves m to status to, enforcing MAAS's transition table, and records the
// NODE_CHANGED_STATUS event and the trace event.
func (w *writer) setStatus(m *machine, to nodestatus.Status) error {
	from := m.Status
	if err := nodestatus.Check(from, to); err != nil {
		return conflict(err.Error())
	}
	if from == to {
		return nil
	}
	m.PreviousStatus, m.Status = from, to
	desc := fmt.Sprintf("From '%s' to '%s'", from, to)
	if to == nodestatus.Allocated && m.Owner != "" {
		desc += " (to " + m.Owner + ")"
	}
	w.nodeEvent(m, "NODE_CHANGED_STATUS", desc, "")
	if to == nodestatus.Deploying {
		m.StatusExpires = w.r.now().Add(30 * time.Minute)
	} else {
		m.StatusExpires = time.Time{}
	}
	sid, host, fromName, toName := m.SystemID, m.Hostname, from.String(), to.String()
	w.after(func() {
		w.r.sink.Emit(trace.Event{Source: trace.SourceRegion, Kind: trace.KindStatusChange, Machine: sid,
			Message: fmt.Sprintf("%s: %s -> %s", host, fromName, toName),
			Attrs:   map[string]any{"from": fromName, "to": toName, "message": desc}})
	})
	w.r.log.Info("status change", "machine", sid, "hostname", host, "from", fromName, "to", toName)
	return nil
}

func (r *Region) emitNodeEvent(e *event) {
	level := trace.LevelDebug
	switch {
	case e.Level >= levelError:
		level = trace.LevelError
	case e.Level >= levelWarning:
		level = trace.LevelWarn
	case e.Level >= levelInfo:
		level = trace.LevelInfo
	}
	msg := e.TypeDesc
	if e.Description != "" {
		msg += " - " + e.Description
	}
	r.sink.Emit(trace.Event{Time: e.Created, Source: trace.SourceRegion, Kind: trace.KindNodeEvent, Level: level,
		Machine: e.SystemID, Message: msg, Attrs: map[string]any{"type": e.TypeDesc, "description": e.Description, "id": e.ID}})
}

// statusMessage is MAAS's status_message: the latest INFO-or-higher event.
func (m *machine) statusMessage() any {
	if m.StatusEventType == "" {
		return nil
	}
	d := eventTypes[m.StatusEventType].desc
	if m.StatusEventDesc != "" {
		return d + " - " + m.StatusEventDesc
	}
	return d
}

// acquire allocates a Ready machine to user (Machine.acquire).
func (w *writer) acquire(m *machine, user, agentName, comment string) error {
	w.nodeEvent(m, "REQUEST_NODE_ACQUIRE", requestDescription(user, comment), "acquire")
	m.Owner = user
	m.AgentName = agentName
	return w.setStatus(m, nodestatus.Allocated)
}

// startDeployment moves an Allocated machine to Deploying (Node.start for ALLOCATED ->
// _start_deployment) and turns netboot on.
func (w *writer) startDeployment(m *machine, user, comment string) error {
	w.nodeEvent(m, "REQUEST_NODE_START_DEPLOYMENT", requestDescription(user, comment), "start deployment")
	m.Netboot = true
	if err := w.setStatus(m, nodestatus.Deploying); err != nil {
		return err
	}
	w.nodeEvent(m, "DEPLOYING", "", "")
	return nil
}

// release returns a machine to Ready (start_releasing + _release, without disk erasing).
func (w *writer) release(m *machine, user, comment string) error {
	w.nodeEvent(m, "REQUEST_NODE_RELEASE", requestDescription(user, comment), "release")
	if err := w.setStatus(m, nodestatus.Releasing); err != nil {
		return err
	}
	w.nodeEvent(m, "RELEASING", "", "")
	w.clearDeployment(m)
	if err := w.setStatus(m, nodestatus.Ready); err != nil {
		return err
	}
	w.nodeEvent(m, "RELEASED", "", "")
	return nil
}

func (w *writer) clearDeployment(m *machine) {
	m.Owner, m.AgentName = "", ""
	m.OSystem, m.DistroSeries, m.HWEKernel = "", "", ""
	m.UserData = nil
	m.EphemeralDeploy = false
	m.Netboot = true
	m.ErrorDescription = ""
}

// markFailed moves an in-progress machine to its failed status (Node.mark_failed). user
// empty means the system (rack, timeout) failed it.
func (w *writer) markFailed(m *machine, user, comment string) error {
	typ := "REQUEST_NODE_MARK_FAILED"
	if user == "" {
		typ = "REQUEST_NODE_MARK_FAILED_SYSTEM"
	}
	w.nodeEvent(m, typ, requestDescription(user, comment), "mark_failed")
	if to, ok := nodestatus.FailedStatus(m.Status); ok {
		if err := w.setStatus(m, to); err != nil {
			return err
		}
		m.ErrorDescription = comment
		return nil
	}
	if m.Status == nodestatus.New || nodestatus.IsFailed(m.Status) {
		return nil
	}
	return conflict(fmt.Sprintf("The status of the node is %d; this status cannot be transitioned to a corresponding failed status.", m.Status))
}

// markBroken (Node.mark_broken).
func (w *writer) markBroken(m *machine, user, comment string) error {
	w.nodeEvent(m, "REQUEST_NODE_MARK_BROKEN", requestDescription(user, comment), "mark broken")
	if nodestatus.Releasable(m.Status) {
		w.clearDeployment(m)
	}
	m.PreviousStatus = m.Status
	if err := w.setStatusFrom(m, nodestatus.Broken); err != nil {
		return err
	}
	m.ErrorDescription = comment
	return nil
}

// setStatusFrom is setStatus that keeps PreviousStatus as already set by the caller.
func (w *writer) setStatusFrom(m *machine, to nodestatus.Status) error {
	prev := m.PreviousStatus
	if err := w.setStatus(m, to); err != nil {
		return err
	}
	m.PreviousStatus = prev
	return nil
}

// markFixed (Node.mark_fixed).
func (w *writer) markFixed(m *machine, user, comment string) error {
	w.nodeEvent(m, "REQUEST_NODE_MARK_FIXED", requestDescription(user, comment), "mark fixed")
	if m.Status != nodestatus.Broken {
		return conflict("Can't mark a non-broken node as 'Ready'.")
	}
	to := nodestatus.Ready
	if m.PreviousStatus == nodestatus.Deployed {
		to = nodestatus.Deployed
	}
	if err := w.setStatus(m, to); err != nil {
		return err
	}
	m.ErrorDescription = ""
	return nil
}

// abort (Node.abort_operation): only deploying is abortable until commissioning, testing
// and disk erasing exist.
func (w *writer) abort(m *machine, user, comment string) error {
	switch m.Status {
	case nodestatus.Deploying:
		w.nodeEvent(m, "REQUEST_NODE_ABORT_DEPLOYMENT", requestDescription(user, comment), "abort deploying")
		if err := w.setStatus(m, nodestatus.Allocated); err != nil {
			return err
		}
		w.nodeEvent(m, "ABORTED_DEPLOYMENT", "", "")
		return nil
	case nodestatus.Commissioning, nodestatus.Testing:
		prev := m.PreviousStatus
		if prev == m.Status {
			prev = nodestatus.New
		}
		return w.setStatus(m, prev)
	case nodestatus.DiskErasing:
		return w.setStatus(m, nodestatus.FailedDiskErasing)
	}
	return conflict(fmt.Sprintf("Cannot abort in current state: node %s is in state %s.", m.SystemID, m.Status))
}

// after registers f to run once the writer's changes are committed and r.mu is released.
func (w *writer) after(f func()) { w.afters = append(w.afters, f) }

// power actions ----------------------------------------------------------------------

// powerAction runs a power action through the machine's driver, outside r.mu, and then
// records the result. failStatus marks the machine failed when the action fails (used by
// deploy: a machine that cannot be powered on fails its deployment).
func (r *Region) powerAction(ctx context.Context, sid, action string, failDeploy bool) {
	r.mu.RLock()
	m := r.machines[sid]
	if m == nil {
		r.mu.RUnlock()
		return
	}
	ptype, params := m.PowerType, copyParams(m.PowerParams)
	r.mu.RUnlock()
	d, ok := r.powerDriver(ptype)
	var err error
	switch {
	case !ok:
		err = fmt.Errorf("no power driver for power type %q", ptype)
	case action == "on":
		err = d.PowerOn(ctx, params)
	default:
		err = d.PowerOff(ctx, params)
	}
	attrs := map[string]any{"power_type": ptype, "action": "power_" + action}
	if err != nil {
		attrs["error"] = err.Error()
	}
	r.sink.Emit(trace.Event{Source: trace.SourcePower, Kind: trace.KindPower, Machine: sid,
		Message: fmt.Sprintf("power %s (%s)", action, ptype), Attrs: attrs})
	_ = r.updateMachine(sid, func(w *writer, m *machine) error {
		if err != nil {
			typ := "NODE_POWER_ON_FAILED"
			if action == "off" {
				typ = "NODE_POWER_OFF_FAILED"
			}
			w.nodeEvent(m, typ, fmt.Sprintf("Power %s for the node failed: %v", action, err), "")
			if failDeploy && m.Status == nodestatus.Deploying {
				return w.markFailed(m, "", fmt.Sprintf("Failed to power on node - Power on for the node failed: %v", err))
			}
			return nil
		}
		if ptype == "manual" {
			return nil
		}
		m.PowerState = action
		typ := "NODE_POWERED_ON"
		if action == "off" {
			typ = "NODE_POWERED_OFF"
		}
		w.nodeEvent(m, typ, "", "")
		return nil
	})
}

func copyParams(p map[string]string) PowerParams {
	out := PowerParams{}
	for k, v := range p {
		out[k] = v
	}
	return out
}

// manualPower is MAAS's "manual" power type: it does nothing and knows nothing.
type manualPower struct{}

func (manualPower) PowerOn(context.Context, PowerParams) error  { return nil }
func (manualPower) PowerOff(context.Context, PowerParams) error { return nil }
func (manualPower) PowerQuery(context.Context, PowerParams) (string, error) {
	return "unknown", nil
}

// updateMachine applies f to a copy of machine sid and commits it with the events f
// records; on any error nothing changes.
func (r *Region) updateMachine(sid string, f func(w *writer, m *machine) error) error {
	return r.locked(func() error {
		old := r.machines[sid]
		if old == nil {
			return notFound("No Machine matches the given query.")
		}
		m := old.clone()
		err := r.commit(func(w *writer) error {
			if err := f(w, m); err != nil {
				return err
			}
			m.Updated = r.now().UTC()
			w.putMachine(m)
			return nil
		})
		if err == nil {
			r.machines[sid] = m
		}
		return err
	})
}

// locked runs f holding r.mu for writing, then runs the after-commit functions (trace
// events) once the lock is released.
func (r *Region) locked(f func() error) error {
	r.mu.Lock()
	r.afterCommit = nil
	err := f()
	after := r.afterCommit
	r.afterCommit = nil
	r.mu.Unlock()
	for _, a := range after {
		a()
	}
	return err
}

func normMAC(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
