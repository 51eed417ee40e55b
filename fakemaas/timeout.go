package fakemaas

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/maasemu/maasemu/fakemaas/nodestatus"
)

// monitoredTimeout is get_node_timeout: the statuses MAAS watches for a stalled
// operation, and how long each may last (r.mu held). ok is false for the others.
func (r *Region) monitoredTimeout(s nodestatus.Status) (time.Duration, bool) {
	switch s {
	case nodestatus.Releasing, nodestatus.ExitingRescueMode:
		return 5 * time.Minute, true
	case nodestatus.Commissioning, nodestatus.Deploying, nodestatus.EnteringRescueMode, nodestatus.Testing:
		if r.opts.DeployTimeout > 0 {
			return r.opts.DeployTimeout, true
		}
		n := r.configInt("node_timeout")
		if n <= 0 {
			n = 30
		}
		return time.Duration(n) * time.Minute, true
	}
	return 0, false
}

// setStatusExpires is Node._set_status_expires: the operation in m's status must end
// within its timeout from now.
func (w *writer) setStatusExpires(m *machine) {
	if d, ok := w.r.monitoredTimeout(m.Status); ok {
		m.StatusExpires = w.r.now().UTC().Add(d)
	} else {
		m.StatusExpires = time.Time{}
	}
}

// resetStatusExpires is Node.reset_status_expires: a set deadline restarts.
func (w *writer) resetStatusExpires(m *machine) {
	if m.StatusExpires.IsZero() {
		return
	}
	w.setStatusExpires(m)
}

// minutes renders a timeout the way MAAS's message does ("30"), with a fraction when the
// configured timeout is not a whole number of minutes.
func minutes(d time.Duration) string {
	if d%time.Minute == 0 {
		return strconv.FormatInt(int64(d/time.Minute), 10)
	}
	return strconv.FormatFloat(d.Minutes(), 'f', -1, 64)
}

func (r *Region) monitor() {
	defer r.bg.Done()
	every := r.opts.MonitorInterval
	if every <= 0 {
		every = time.Second
		if r.opts.DeployTimeout > 0 && r.opts.DeployTimeout/10 < every {
			every = max(r.opts.DeployTimeout/10, 10*time.Millisecond)
		}
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			r.expireOperations(r.ctx)
		}
	}
}

// expireOperations is MAAS's status monitor: machines whose operation passed its
// deadline are marked failed ("Node operation 'Deploying' timed out after 30 minutes."),
// and commissioning machines whose script runner went silent for the timeout are marked
// failed ("Node has not been heard from for the last 30 minutes") and stopped.
func (r *Region) expireOperations(ctx context.Context) {
	now := r.now().UTC()
	type expiry struct {
		sid, msg string
		stop     bool
	}
	var due []expiry
	r.mu.RLock()
	for sid, m := range r.machines {
		d, ok := r.monitoredTimeout(m.Status)
		if !ok {
			continue
		}
		switch {
		case !m.StatusExpires.IsZero() && !now.Before(m.StatusExpires):
			due = append(due, expiry{sid: sid, msg: fmt.Sprintf("Node operation '%s' timed out after %s minutes.", m.Status, minutes(d))})
		case m.StatusExpires.IsZero() && m.Status == nodestatus.Commissioning:
			if s := r.scriptSets[m.CommissioningScriptSet]; s != nil && s.LastPing != nil && !now.Before(s.LastPing.Add(d)) {
				due = append(due, expiry{sid: sid, msg: fmt.Sprintf("Node has not been heard from for the last %s minutes", minutes(d)), stop: !m.EnableSSH})
			}
		}
	}
	r.mu.RUnlock()
	sort.Slice(due, func(i, j int) bool { return due[i].sid < due[j].sid })
	for _, e := range due {
		failed := false
		err := r.updateMachine(e.sid, func(w *writer, m *machine) error {
			if _, ok := r.monitoredTimeout(m.Status); !ok {
				return errNothingToDo
			}
			// Check again under the lock: progress may have moved the deadline.
			if !m.StatusExpires.IsZero() && now.Before(m.StatusExpires) {
				return errNothingToDo
			}
			failed = true
			return w.markFailedScripts(m, "", e.msg, scriptAborted)
		})
		if err != nil || !failed {
			continue
		}
		r.log.Warn("operation timed out", "machine", e.sid, "reason", e.msg)
		if e.stop {
			r.powerAction(ctx, e.sid, "off", false)
		}
	}
}

// CheckTimeouts runs the status monitor's check now: machines whose operation is past
// its deadline are marked failed. The region runs it every Options.MonitorInterval; tests
// with a settable clock call it to decide when it runs.
func (r *Region) CheckTimeouts(ctx context.Context) {
	r.expireOperations(ctx)
}

// errNothingToDo makes updateMachine change nothing without reporting an error.
var errNothingToDo = fmt.Errorf("nothing to do")

// MarkFailed marks machine systemID failed with message as the reason, as MAAS's
// mark_failed does for the system (the event "Marking node failed - <message>", the
// status the current one fails to — Deploying becomes Failed deployment — and
// error_description). The harness's stall detector calls it so the region shows its
// reason. A machine in a status that has no failed counterpart is refused (409); one that
// is New or already failed is left as it is.
func (r *Region) MarkFailed(ctx context.Context, systemID, message string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return r.updateMachine(systemID, func(w *writer, m *machine) error {
		return w.markFailedScripts(m, "", message, scriptFailed)
	})
}
