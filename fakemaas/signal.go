package fakemaas

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/maasemu/maasemu/fakemaas/commissioning"
	"github.com/maasemu/maasemu/fakemaas/nodestatus"
	"github.com/maasemu/maasemu/trace"
)

// op=signal on <metadata_url>/<version>/ (VersionIndexHandler.signal): a node in its
// ephemeral environment reports progress and script results.

// signalableStates are the statuses in which a signal is accepted without effect.
var signalableStates = []nodestatus.Status{nodestatus.Broken, nodestatus.FailedCommissioning, nodestatus.FailedDeployment,
	nodestatus.Ready, nodestatus.FailedEnteringRescueMode, nodestatus.FailedTesting}

// testingResetReady are NODE_TESTING_RESET_READY_TRANSITIONS: a machine tested from one of
// these goes Ready when testing passes.
var testingResetReady = []nodestatus.Status{nodestatus.Commissioning, nodestatus.FailedCommissioning, nodestatus.FailedTesting}

// optionalInt is get_optional_param with formencode's Int: absent is nil, a bad value
// is MAAS's 400.
func (q *request) optionalInt(k string) (*int, error) {
	v, ok := q.get(k)
	if !ok || v == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return nil, badRequest(fmt.Sprintf("Invalid %s: Please enter an integer value", k))
	}
	return &n, nil
}

func (r *Region) mdSignal(c *mdCall) error {
	m, anon, err := r.nodeAuth(c)
	if err != nil {
		return err
	}
	if anon {
		return badRequest("Unrecognised signature: method=POST op=signal")
	}
	status, ok := c.get("status")
	if !ok {
		return badRequest("No provided status!")
	}
	if !slices.Contains(commissioning.Statuses, status) {
		return badRequest(fmt.Sprintf("Unknown status: '%s'", status))
	}
	scriptResultID, err := c.optionalInt("script_result_id")
	if err != nil {
		return err
	}
	var exit *int
	for _, k := range []string{"exit_status", "script_result", "result"} {
		if exit, err = c.optionalInt(k); err != nil {
			return err
		}
		if exit != nil {
			break
		}
	}
	var runtime float64
	if v := c.str("runtime"); v != "" {
		if runtime, err = strconv.ParseFloat(v, 64); err != nil {
			return badRequest("Invalid runtime: Please enter a number")
		}
	}
	powerType, hasPower := c.get("power_type")
	var powerParams map[string]string
	if hasPower {
		if _, known := r.powerDriver(powerType); !known && powerType != "" {
			return badRequest(fmt.Sprintf("Bad power_type '%s'", powerType))
		}
		if raw := c.str("power_parameters"); raw != "" {
			var pp map[string]any
			if err := json.Unmarshal([]byte(raw), &pp); err != nil {
				return badRequest("Failed to parse JSON power_parameters")
			}
			powerParams = map[string]string{}
			for k, v := range pp {
				powerParams[k] = fmt.Sprint(v)
			}
		}
	}
	var files []resultFile
	for _, name := range sortedKeys(c.files) {
		files = append(files, resultFile{name: name, content: c.files[name]})
	}
	sid := m.SystemID
	sri := 0
	if scriptResultID != nil {
		sri = *scriptResultID
	}
	var from, to nodestatus.Status
	err = r.updateMachine(sid, func(w *writer, m *machine) error {
		from = m.Status
		target, err := w.processSignal(m, status, files, sri, exit, runtime, c.str("name"), powerType, hasPower, powerParams)
		if err != nil {
			return err
		}
		switch target {
		case nodestatus.Ready:
			w.nodeEvent(m, "READY", "", "")
		case nodestatus.FailedCommissioning:
			w.nodeEvent(m, "FAILED_COMMISSIONING", "", "")
		case nodestatus.RescueMode:
			w.nodeEvent(m, "RESCUE_MODE", "", "")
		case nodestatus.New:
			w.nodeEvent(m, "NEW", "", "")
		case nodestatus.FailedTesting:
			w.nodeEvent(m, "FAILED_TESTING", "", "")
		}
		if target >= 0 && target != m.Status {
			if nodestatus.IsFailed(target) {
				w.finishScripts(m, scriptAborted)
			}
			if err := w.setStatus(m, target); err != nil {
				return err
			}
		}
		to = m.Status
		return nil
	})
	attrs := map[string]any{"status": status, "error": c.str("error"), "files": len(files)}
	if err != nil {
		attrs["refused"] = err.Error()
	} else {
		attrs["from"], attrs["to"] = from.String(), to.String()
	}
	r.sink.Emit(trace.Event{Source: trace.SourceMetadata, Kind: trace.KindSignal, Machine: sid,
		Message: fmt.Sprintf("signal %s from %s", status, sid), Attrs: attrs})
	if err != nil {
		return err
	}
	writePlain(c.w, http.StatusOK, []byte("OK"))
	return nil
}

// processSignal applies a signal to m by its status (the _process_* handlers) and returns
// the status it asks for, -1 for none.
func (w *writer) processSignal(m *machine, status string, files []resultFile, scriptResultID int, exit *int,
	runtime float64, name, powerType string, hasPower bool, powerParams map[string]string) (nodestatus.Status, error) {
	none := nodestatus.Status(-1)
	timedOut := status == commissioning.StatusTimedOut
	switch m.Status {
	case nodestatus.New:
		if status != commissioning.StatusCommissioning {
			return none, errNothingToDo
		}
		s := w.r.scriptSets[m.CommissioningScriptSet]
		if s == nil || !runningOrPending(s.status()) {
			ns := w.newScriptSet(m, resultCommissioning, nil)
			w.replaceScriptSet(m, ns)
		}
		return nodestatus.Commissioning, nil
	case nodestatus.Testing:
		m.StatusExpires = time.Time{}
		switch status {
		case commissioning.StatusOK:
			if slices.Contains(testingResetReady, m.PreviousStatus) {
				return nodestatus.Ready, nil
			}
			if m.PreviousStatus == nodestatus.FailedCommissioning {
				return nodestatus.New, nil
			}
			return m.PreviousStatus, nil
		case commissioning.StatusFailed:
			return nodestatus.FailedTesting, nil
		}
		return none, nil
	case nodestatus.Commissioning, nodestatus.Deployed:
		m.StatusExpires = time.Time{}
		w.storeSignalResults(m, m.CommissioningScriptSet, status, files, scriptResultID, exit, runtime, name, timedOut)
		if hasPower {
			m.PowerType = powerType
			if powerParams != nil {
				m.PowerParams = powerParams
			}
		}
		target := map[string]nodestatus.Status{commissioning.StatusOK: nodestatus.Ready,
			commissioning.StatusFailed: nodestatus.FailedCommissioning, commissioning.StatusTesting: nodestatus.Testing}
		t, ok := target[status]
		if !ok {
			return none, nil
		}
		if t == nodestatus.Ready || t == nodestatus.Testing {
			if s := w.r.scriptSets[m.CommissioningScriptSet]; s != nil {
				// Results stored by this signal are in the writer's copy.
				if c := w.pendingScriptSet(m.CommissioningScriptSet); c != nil {
					s = c
				}
				for _, res := range s.Results {
					if res.Status == scriptFailed {
						t = nodestatus.FailedCommissioning
					}
				}
			}
		}
		return t, nil
	case nodestatus.Deploying:
		w.storeSignalResults(m, m.InstallationScriptSet, status, files, scriptResultID, exit, runtime, name, timedOut)
		if status == commissioning.StatusFailed {
			if err := w.markFailed(m, "", "Installation failed (refer to the installation log for more information)."); err != nil {
				return none, err
			}
		}
		return none, nil
	case nodestatus.DiskErasing:
		switch status {
		case commissioning.StatusOK:
			w.nodeEvent(m, "NODE_DISKS_ERASED", "", "")
		case commissioning.StatusFailed:
			return none, w.markFailed(m, "", "Failed to erase disks.")
		}
		return none, nil
	case nodestatus.EnteringRescueMode:
		switch status {
		case commissioning.StatusOK, commissioning.StatusWorking:
			return nodestatus.RescueMode, nil
		case commissioning.StatusFailed:
			return none, w.markFailed(m, "", "Failed to enter rescue mode.")
		}
		return none, nil
	case nodestatus.RescueMode:
		w.storeSignalResults(m, m.CommissioningScriptSet, status, files, scriptResultID, exit, runtime, name, timedOut)
		return none, nil
	case nodestatus.Releasing:
		switch status {
		case commissioning.StatusOK:
			w.nodeEvent(m, "NODE_RELEASE_SCRIPTS_OK", "", "")
		case commissioning.StatusFailed:
			return none, w.markFailed(m, "", "Failed to release machine.")
		}
		return none, nil
	}
	if slices.Contains(signalableStates, m.Status) {
		return none, errNothingToDo
	}
	return none, conflict(fmt.Sprintf("Machine status isn't valid (status is %s)", m.Status))
}

// pendingScriptSet is the writer's copy of script set id, when this writer changed it.
func (w *writer) pendingScriptSet(id int) *scriptSet {
	for i := len(w.sets) - 1; i >= 0; i-- {
		if w.sets[i].ID == id {
			return w.sets[i]
		}
	}
	return nil
}

// storeSignalResults is _store_results: the signal's files into the node's script set
// (running the commissioning hooks), the ping time, and the status of the result named by
// script_result_id (or name) for INSTALLING, APPLYING_NETCONF and WORKING.
func (w *writer) storeSignalResults(m *machine, setID int, status string, files []resultFile, scriptResultID int,
	exit *int, runtime float64, name string, timedOut bool) {
	if w.r.scriptSets[setID] == nil && w.pendingScriptSet(setID) == nil {
		return
	}
	s := w.pendingScriptSet(setID)
	if s == nil {
		s = w.editScriptSet(setID)
	}
	if len(files) > 0 {
		for _, t := range w.storeFiles(s, files, scriptResultID, exit, 0, runtime, timedOut) {
			if t.hadStdout && s.ResultType == resultCommissioning {
				w.commissioningHook(m, t.res)
			}
		}
	}
	now := w.r.now().UTC()
	s.LastPing = &now
	find := func() *scriptResult {
		for _, res := range s.Results {
			if scriptResultID != 0 && res.ID == scriptResultID {
				return res
			}
		}
		if name != "" {
			return s.result(name)
		}
		return nil
	}
	switch status {
	case commissioning.StatusApplyingNetconf:
		if res := find(); res != nil && scriptResultID != 0 && res.Status == scriptPending {
			res.Status = scriptApplyingNetconf
		}
	case commissioning.StatusInstalling:
		if res := find(); res != nil && scriptResultID != 0 && (res.Status == scriptPending || res.Status == scriptApplyingNetconf) {
			res.Status = scriptInstalling
		}
	case commissioning.StatusWorking:
		if res := find(); res != nil && (res.Status == scriptPending || res.Status == scriptApplyingNetconf || res.Status == scriptInstalling) {
			res.Status = scriptRunning
			if res.Started == nil {
				res.Started = &now
			}
		}
	}
}
