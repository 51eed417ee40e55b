package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/maasemu/maasemu/harness/diagnose"
	"github.com/maasemu/maasemu/harness/report"
	"github.com/maasemu/maasemu/harness/timeline"
	"github.com/maasemu/maasemu/trace"
)

// Terminal MAAS statuses of a deployment.
const (
	StatusDeployed = "Deployed"
	StatusFailed   = "Failed deployment"
)

// FollowOptions tune Follow.
type FollowOptions struct {
	// OnPhase is called when a phase starts or ends (for live progress on a terminal).
	OnPhase func(timeline.Span)
	// Poll is how often stalls are checked; 0 means 1 s.
	Poll time.Duration
}

// Follow watches a deploying machine until MAAS says Deployed or Failed deployment, or a
// phase overruns its budget (then the region marks it failed with the reason), and returns
// the result with its timeline and diagnosis. Start it right after Deploy; earlier events
// are replayed.
func (l *Lab) Follow(ctx context.Context, m *Machine, o FollowOptions) (report.Result, error) {
	started := time.Now()
	res := report.Result{Name: m.Spec.Name, Driver: l.cfg.Driver, Firmware: string(m.Spec.Firmware),
		SystemID: m.SystemID, Hostname: m.Spec.Name, Started: started}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	var macs []string
	for _, mac := range m.MACs {
		macs = append(macs, mac.String())
	}
	tl := timeline.New(m.SystemID, macs, l.cfg.Budgets)
	hist, ch, stop := l.Recorder.SubscribeWithHistory()
	defer stop()
	var mine []trace.Event
	status, message := "", ""
	var stall *timeline.Stall
	last := map[timeline.Phase]string{}
	powerLost := ""
	observe := func(e trace.Event) {
		if !tl.Mine(e) {
			return
		}
		mine = append(mine, e)
		tl.Observe(e)
		switch e.Kind {
		case trace.KindMachineStopped, trace.KindMachineCrashed, trace.KindMachineDestroyed:
			// A deploying machine never stops (its reboots are resets): it lost power.
			if status == "" && powerLost == "" {
				powerLost = e.Message
			}
		}
		if e.Kind == trace.KindStatusChange && e.Machine == m.SystemID {
			to, _ := e.Attrs["to"].(string)
			if to == StatusDeployed || to == StatusFailed {
				status = to
				message, _ = e.Attrs["message"].(string)
			}
		}
		if o.OnPhase != nil {
			for _, s := range tl.Spans() {
				if s.State != timeline.StatePending && last[s.Phase] != s.State {
					last[s.Phase] = s.State
					o.OnPhase(s)
				}
			}
		}
	}
	for _, e := range hist {
		observe(e)
	}
	tick := time.NewTicker(o.Poll)
	defer tick.Stop()
	var ferr error
loop:
	for status == "" {
		select {
		case e, ok := <-ch:
			if !ok {
				ferr = errors.New("lab: event stream closed")
				break loop
			}
			observe(e)
		case now := <-tick.C:
			if powerLost != "" && status == "" {
				message = fmt.Sprintf("maasemu: the machine stopped during %s (%s)", timeline.Titles[tl.Current()], powerLost)
				tl.Fail(now)
				if err := l.Region.MarkFailed(ctx, m.SystemID, message); err != nil {
					l.log.Warn("lab: marking the machine failed", "err", err)
				}
				status = StatusFailed
				continue
			}
			if stall = tl.Check(now); stall != nil {
				message = "maasemu: " + stall.Error()
				if err := l.Region.MarkFailed(ctx, m.SystemID, message); err != nil {
					l.log.Warn("lab: marking the machine failed", "err", err)
				}
				status = StatusFailed
			}
		case <-ctx.Done():
			ferr = ctx.Err()
			tl.Fail(time.Now())
			status = "cancelled"
			break loop
		}
	}
	if o.OnPhase != nil {
		for _, s := range tl.Spans() {
			if s.State != timeline.StatePending && last[s.Phase] != s.State {
				o.OnPhase(s)
			}
		}
	}
	res.Finished = time.Now()
	res.Seconds = res.Finished.Sub(started).Seconds()
	res.Status, res.StatusMessage = status, message
	res.Passed = status == StatusDeployed
	res.Phases = report.Phases(tl.Spans())
	res.FailedPhase = tl.FailedPhase()
	if ferr != nil {
		res.Error = ferr.Error()
	}
	console := readLines(m.m.ConsolePath())
	installLog, _ := l.InstallLog(context.WithoutCancel(ctx), m)
	res.Diagnosis = diagnose.Diagnose(diagnose.Input{Events: mine, Console: console, InstallLog: installLog,
		Status: status, StatusMessage: message, FailedPhase: res.FailedPhase, Stall: stall})
	return res, ferr
}

// InstallLog returns curtin's install log as the machine posted it to the webhook.
func (l *Lab) InstallLog(ctx context.Context, m *Machine) (string, error) {
	var b []byte
	err := apiGet(ctx, l.Client, "nodes/"+m.SystemID+"/results/current-installation/", "download",
		url.Values{"filetype": {"txt"}}, &b)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// WriteArtifacts writes a machine's console, events and install log into dir.
func (l *Lab) WriteArtifacts(ctx context.Context, m *Machine, dir string) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	out := map[string]string{}
	var errs []error
	if p := m.m.ConsolePath(); p != "" {
		if err := copyFile(p, filepath.Join(dir, report.FileConsole)); err == nil {
			out["console"] = report.FileConsole
		} else {
			errs = append(errs, err)
		}
	}
	f, err := os.Create(filepath.Join(dir, report.FileEvents))
	if err != nil {
		return out, err
	}
	enc := json.NewEncoder(f)
	macs := map[string]bool{}
	for _, mac := range m.MACs {
		macs[mac.String()] = true
	}
	for _, e := range l.Recorder.Events() {
		if e.Machine == m.SystemID || macs[strings.ToLower(e.MAC)] {
			_ = enc.Encode(e)
		}
	}
	if err := f.Close(); err != nil {
		errs = append(errs, err)
	}
	out["events"] = report.FileEvents
	if log, err := l.InstallLog(ctx, m); err == nil && log != "" {
		if err := os.WriteFile(filepath.Join(dir, report.FileInstallLog), []byte(log), 0o644); err != nil {
			errs = append(errs, err)
		} else {
			out["install_log"] = report.FileInstallLog
		}
	}
	return out, errors.Join(errs...)
}

func readLines(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		out = append(out, strings.ToValidUTF8(sc.Text(), "?"))
	}
	return out
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return out.Close()
}
