package fakemaas

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/maasemu/maasemu/fakemaas/nodestatus"
	"github.com/maasemu/maasemu/trace"
)

// This file is the node lifecycle in one place: the event catalogue, status transitions
// (guarded by nodestatus's table) and the lifecycle actions the API, the rack, the
// metadata service and the status webhook trigger.

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
	"NODE_POWERED_ON":                        {"Node powered on", levelDebug},
	"NODE_POWERED_OFF":                       {"Node powered off", levelDebug},
	"NODE_POWER_ON_FAILED":                   {"Failed to power on node", levelError},
	"NODE_POWER_OFF_FAILED":                  {"Failed to power off node", levelError},
	"NODE_POWER_QUERY_FAILED":                {"Failed to query node's BMC", levelWarning},
	"NODE_PXE_REQUEST":                       {"PXE Request", levelDebug},
	"NODE_TFTP_REQUEST":                      {"TFTP Request", levelDebug},
	"NODE_HTTP_REQUEST":                      {"HTTP Request", levelDebug},
	"NODE_INSTALLATION_FINISHED":             {"Installation complete", levelDebug},
	"NODE_CHANGED_STATUS":                    {"Node changed status", levelDebug},
	"NODE_STATUS_EVENT":                      {"Node status event", levelDebug},
	"NODE_COMMISSIONING_EVENT":               {"Node commissioning", levelDebug},
	"NODE_INSTALL_EVENT":                     {"Node installation", levelDebug},
	"NODE_INSTALL_EVENT_FAILED":              {"Node installation failure", levelError},
	"NODE_POST_INSTALL_EVENT_FAILED":         {"Node post-installation failure", levelError},
	"REQUEST_NODE_ABORT_DEPLOYMENT":          {"User aborting deployment", levelDebug},
	"REQUEST_NODE_ACQUIRE":                   {"User acquiring node", levelDebug},
	"REQUEST_NODE_RELEASE":                   {"User releasing node", levelDebug},
	"REQUEST_NODE_MARK_FAILED":               {"User marking node failed", levelDebug},
	"REQUEST_NODE_MARK_FAILED_SYSTEM":        {"Marking node failed", levelError},
	"REQUEST_NODE_MARK_BROKEN":               {"User marking node broken", levelDebug},
	"REQUEST_NODE_MARK_FIXED":                {"User marking node fixed", levelDebug},
	"REQUEST_NODE_START_DEPLOYMENT":          {"User starting deployment", levelDebug},
	"REQUEST_NODE_START":                     {"User powering up node", levelDebug},
	"REQUEST_NODE_STOP":                      {"User powering down node", levelDebug},
	"READY":                                  {"Ready", levelInfo},
	"DEPLOYING":                              {"Deploying", levelInfo},
	"DEPLOYED":                               {"Deployed", levelInfo},
	"IMAGE_DEPLOYED":                         {"Image Deployed", levelInfo},
	"RELEASING":                              {"Releasing", levelInfo},
	"RELEASED":                               {"Released", levelInfo},
	"ABORTED_DEPLOYMENT":                     {"Aborted deployment", levelInfo},
	"PERFORMING_PXE_BOOT":                    {"Performing PXE boot", levelInfo},
	"REQUEST_MACHINE_CREATE":                 {"Machine created", levelInfo},
	"NODE_COMMISSIONING_EVENT_FAILED":        {"Node commissioning failure", levelError},
	"NODE_ENTERING_RESCUE_MODE_EVENT":        {"Node entering rescue mode", levelDebug},
	"NODE_ENTERING_RESCUE_MODE_EVENT_FAILED": {"Node entering rescue mode failure", levelError},
	"NODE_DISKS_ERASED":                      {"Disks erased", levelInfo},
	"NODE_RELEASE_SCRIPTS_OK":                {"Release scripts executed successfully.", levelInfo},
	"SCRIPT_RESULT_ERROR":                    {"Script result lookup or storage error", levelError},
	"REQUEST_NODE_START_COMMISSIONING":       {"User starting node commissioning", levelDebug},
	"REQUEST_NODE_ABORT_COMMISSIONING":       {"User aborting node commissioning", levelDebug},
	"REQUEST_NODE_MARK_BROKEN_SYSTEM":        {"Marking node broken", levelError},
	"REQUEST_NODE_MARK_FIXED_SYSTEM":         {"Marking node fixed", levelDebug},
	"CONFIGURING_STORAGE":                    {"Configuring storage", levelInfo},
	"INSTALLING_OS":                          {"Installing OS", levelInfo},
	"CONFIGURING_OS":                         {"Configuring OS", levelInfo},
	"NEW":                                    {"New", levelInfo},
	"COMMISSIONING":                          {"Commissioning", levelInfo},
	"FAILED_COMMISSIONING":                   {"Failed commissioning", levelInfo},
	"TESTING":                                {"Testing", levelInfo},
	"FAILED_TESTING":                         {"Failed testing", levelInfo},
	"RESCUE_MODE":                            {"Rescue mode", levelInfo},
	"GATHERING_INFO":                         {"Gathering information", levelInfo},
	"ABORTED_COMMISSIONING":                  {"Aborted commissioning", levelInfo},
}

// eventStatusMessages is EVENT_STATUS_MESSAGES: curtin stage starts that get a status
// message event of their own.
var eventStatusMessages = map[string]string{
	"cmd-install/stage-partitioning": "CONFIGURING_STORAGE",
	"cmd-install/stage-extract":      "INSTALLING_OS",
	"cmd-install/stage-curthooks":    "CONFIGURING_OS",
}

// nodeEvent records an event in m's log (in w). user and comment make MAAS's request-event
// description: "(user)" or "(user) - comment".
func (w *writer) nodeEvent(m *machine, typeName, description, action string) *event {
	return w.nodeEventAt(m, typeName, description, action, w.r.now().UTC())
}

// nodeEventAt is nodeEvent with the event's time given (the webhook's timestamp).
func (w *writer) nodeEventAt(m *machine, typeName, description, action string, at time.Time) *event {
	et, ok := eventTypes[typeName]
	if !ok {
		panic("fakemaas: unknown event type " + typeName)
	}
	e := &event{ID: w.next("event"), SystemID: m.SystemID, Hostname: m.Hostname, Type: typeName,
		TypeDesc: et.desc, Level: et.level, Description: description, Action: action, Created: at.UTC()}
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
	// Node.save clears status_expires outside the monitored statuses; entering one starts
	// its clock (_set_status_expires once the machine is started).
	w.setStatusExpires(m)
	if to == nodestatus.New || to == nodestatus.Ready {
		// clear_owner_when_status_changes_to_new_or_ready
		m.Owner = ""
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
// _start_deployment): the storage layout is checked, netboot turned on, and a new
// installation script set made for curtin's log (not for ephemeral deployments).
func (w *writer) startDeployment(m *machine, user, comment string) error {
	w.nodeEvent(m, "REQUEST_NODE_START_DEPLOYMENT", requestDescription(user, comment), "start deployment")
	if issues := m.storageLayoutIssues(); len(issues) > 0 {
		return validation(fieldErrors{"storage": issues})
	}
	// claim_auto_ips: MAAS claims after the commit and fails the deployment later; the
	// fake claims here, so running out of addresses refuses the deployment.
	if err := w.linker(m).claimAutoIPs(); err != nil {
		return err
	}
	m.Netboot = true
	m.NetbootFinished = false
	if err := w.setStatus(m, nodestatus.Deploying); err != nil {
		return err
	}
	if !m.EphemeralDeploy {
		s := w.newScriptSet(m, resultInstallation, []string{curtinInstallLog})
		w.replaceScriptSet(m, s)
	}
	if res, _, _ := w.r.installImage(m); res != nil {
		m.DeployedImage = res.ID
	}
	w.nodeEvent(m, "DEPLOYING", "", "")
	return nil
}

// storageLayoutIssues is Node.storage_layout_issues for the fake's model: a disk must
// exist, and Ubuntu, CentOS and RHEL need a layout that mounts / (the flat, lvm and
// custom layouts do; blank does not).
func (m *machine) storageLayoutIssues() []string {
	if m.EphemeralDeploy {
		return nil
	}
	if len(m.BlockDevices) == 0 {
		return []string{"There are currently no storage devices.  Please add a storage device to be able to deploy this node."}
	}
	switch m.OSystem {
	case "ubuntu", "centos", "rhel":
		if m.Storage.Layout == "" || m.Storage.Layout == "blank" {
			return []string{"Mount the root '/' filesystem to be able to deploy this node."}
		}
	}
	return nil
}

// endDeployment is Node.end_deployment, what the installed OS's first user-data read
// does: Deployed, the image's deployment recorded (IMAGE_DEPLOYED, last_deployed and the
// deployment count), the DEPLOYED event. A machine no longer Deploying is left alone.
func (r *Region) endDeployment(sid string) error {
	return r.updateMachine(sid, func(w *writer, m *machine) error {
		if m.Status != nodestatus.Deploying {
			return errNothingToDo
		}
		if err := w.setStatus(m, nodestatus.Deployed); err != nil {
			return err
		}
		w.nodeEvent(m, "IMAGE_DEPLOYED", fmt.Sprintf("deployed %s/%s/%s", m.OSystem, m.DistroSeries, m.Architecture), "")
		w.imageDeployed(m)
		w.nodeEvent(m, "DEPLOYED", "", "")
		return nil
	})
}

// imageDeployed is update_deployment_time: the boot resources of the deployed
// os/series on the machine's architecture get last_deployed = now, and the fake counts
// the deployment. MAAS matches the resource named "<osystem>/<distro_series>", which an
// uploaded custom image stored under its bare name (osystem custom) never is; the fake
// also matches the image the machine installed, so custom images get their date.
func (w *writer) imageDeployed(m *machine) {
	now := w.r.now().UTC()
	arch, _ := m.archParts()
	ids := map[int]bool{}
	if res, _, _ := w.r.installImage(m); res != nil {
		ids[res.ID] = true
	}
	for id, res := range w.r.resources {
		if res.Name == m.OSystem+"/"+m.DistroSeries && strings.HasPrefix(res.Architecture, arch) {
			ids[id] = true
		}
	}
	for _, id := range sortedIntKeys(map[int]bool(ids)) {
		c := w.r.resources[id].clone()
		c.LastDeployed = &now
		c.Deployments++
		w.putResource(c)
		w.apply(func() { w.r.resources[c.ID] = c })
	}
}

// release returns a machine to Ready (start_releasing + _release, without disk erasing).
func (w *writer) release(m *machine, user, comment string) error {
	w.nodeEvent(m, "REQUEST_NODE_RELEASE", requestDescription(user, comment), "release")
	if err := w.setStatus(m, nodestatus.Releasing); err != nil {
		return err
	}
	w.nodeEvent(m, "RELEASING", "", "")
	w.clearDeployment(m)
	w.linker(m).releaseInterfaceConfig()
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
	m.NetbootFinished = false
	m.DeployedImage = 0
	m.ErrorDescription = ""
}

// markFailed moves an in-progress machine to its failed status (Node.mark_failed). user
// empty means the system (rack, timeout) failed it. Running and pending script results
// become Failed.
func (w *writer) markFailed(m *machine, user, comment string) error {
	return w.markFailedScripts(m, user, comment, scriptFailed)
}

// markFailedScripts is markFailed with the status the running or pending script results
// of the current commissioning and installation sets get (MAAS's script_result_status).
func (w *writer) markFailedScripts(m *machine, user, comment string, scriptStatus int) error {
	typ := "REQUEST_NODE_MARK_FAILED"
	if user == "" {
		typ = "REQUEST_NODE_MARK_FAILED_SYSTEM"
	}
	w.nodeEvent(m, typ, requestDescription(user, comment), "mark_failed")
	w.finishScripts(m, scriptStatus)
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

// abort (Node.abort_operation): deploying returns to Allocated, commissioning to New
// (owner cleared), testing to its previous status, disk erasing fails. Running and
// pending script results are aborted.
func (w *writer) abort(m *machine, user, comment string) error {
	switch m.Status {
	case nodestatus.Deploying:
		w.nodeEvent(m, "REQUEST_NODE_ABORT_DEPLOYMENT", requestDescription(user, comment), "abort deploying")
		w.finishScripts(m, scriptAborted)
		if err := w.setStatus(m, nodestatus.Allocated); err != nil {
			return err
		}
		w.nodeEvent(m, "ABORTED_DEPLOYMENT", "", "")
		return nil
	case nodestatus.Commissioning:
		w.nodeEvent(m, "REQUEST_NODE_ABORT_COMMISSIONING", requestDescription(user, comment), "abort commissioning")
		w.finishScripts(m, scriptAborted)
		if err := w.setStatus(m, nodestatus.New); err != nil {
			return err
		}
		w.nodeEvent(m, "ABORTED_COMMISSIONING", "", "")
		return nil
	case nodestatus.Testing:
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
			if failDeploy && (m.Status == nodestatus.Deploying || m.Status == nodestatus.Commissioning) {
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
		if errors.Is(err, errNothingToDo) {
			return nil
		}
		if err == nil {
			for _, i := range old.Interfaces {
				if r.macIndex[i.MAC] == sid {
					delete(r.macIndex, i.MAC)
				}
			}
			for _, i := range m.Interfaces {
				r.macIndex[i.MAC] = sid
			}
			r.machines[sid] = m
		}
		return err
	})
}

// sameAs reports whether m and o are the same record (ignoring Updated).
func (m *machine) sameAs(o *machine) bool {
	a, b := *m, *o
	a.Updated, b.Updated = time.Time{}, time.Time{}
	ja, _ := json.Marshal(&a)
	jb, _ := json.Marshal(&b)
	return string(ja) == string(jb)
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
