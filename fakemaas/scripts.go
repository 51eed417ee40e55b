package fakemaas

import (
	"bytes"
	"compress/bzip2"
	"encoding/base64"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/maasemu/maasemu/fakemaas/commissioning"
)

// Script sets: what a node runs (commissioning) or uploads (installation logs), and the
// results MAAS keeps of them (ScriptSet / ScriptResult).

// curtinInstallLog is CURTIN_INSTALL_LOG, the installation result curtin's log is stored
// in (its path in the ephemeral, as the reporter posts it).
const curtinInstallLog = "/tmp/install.log"

// builtinCommissioning are the builtin commissioning scripts the fake runs: the one whose
// output MAAS needs to know a machine's hardware.
var builtinCommissioning = []string{commissioning.ScriptName}

// newScriptSet creates a script set for m with a pending result per name.
func (w *writer) newScriptSet(m *machine, resultType int, names []string) *scriptSet {
	now := w.r.now().UTC()
	s := &scriptSet{ID: int(w.next("scriptset")), SystemID: m.SystemID, ResultType: resultType, Created: now}
	for _, n := range names {
		s.Results = append(s.Results, &scriptResult{ID: int(w.next("scriptresult")), Name: n, Status: scriptPending,
			Created: now, Updated: now})
	}
	w.storeScriptSet(s)
	return s
}

// storeScriptSet makes s part of w: it is written (as it is at commit time) and
// installed in memory on commit.
func (w *writer) storeScriptSet(s *scriptSet) {
	for i, c := range w.sets {
		if c.ID == s.ID {
			w.sets[i] = s
			return
		}
	}
	w.sets = append(w.sets, s)
}

// replaceScriptSet makes s the node's current set of its type, deleting the previous one
// (MAAS keeps history; the fake keeps the current set of each type).
func (w *writer) replaceScriptSet(m *machine, s *scriptSet) {
	var old *int
	switch s.ResultType {
	case resultCommissioning:
		old = &m.CommissioningScriptSet
	case resultInstallation:
		old = &m.InstallationScriptSet
	default:
		return
	}
	if *old != 0 && *old != s.ID {
		id := *old
		w.delScriptSet(id)
		w.apply(func() { delete(w.r.scriptSets, id) })
	}
	*old = s.ID
}

// editScriptSet returns w's copy of script set id for changing, or nil.
func (w *writer) editScriptSet(id int) *scriptSet {
	if c := w.pendingScriptSet(id); c != nil {
		return c
	}
	if s := w.r.scriptSets[id]; s != nil {
		c := s.clone()
		w.storeScriptSet(c)
		return c
	}
	return nil
}

// finishScripts gives the running or pending results of m's current commissioning and
// installation sets status (mark_failed, abort).
func (w *writer) finishScripts(m *machine, status int) {
	now := w.r.now().UTC()
	for _, id := range []int{m.CommissioningScriptSet, m.InstallationScriptSet} {
		s := w.r.scriptSets[id]
		if s == nil {
			continue
		}
		if c := w.pendingScriptSet(id); c != nil {
			s = c
		}
		changed := false
		for _, r := range s.Results {
			if runningOrPending(r.Status) {
				changed = true
			}
		}
		if !changed {
			continue
		}
		c := w.editScriptSet(id)
		for _, r := range c.Results {
			if runningOrPending(r.Status) {
				r.Status, r.Updated = status, now
				if r.Ended == nil {
					r.Ended = &now
				}
			}
		}
	}
}

// storeResult is ScriptResult.store_result: exit status, outputs by kind, and the status
// that follows from them.
func (w *writer) storeResult(r *scriptResult, exitStatus *int, output, stdout, stderr, result []byte, runtime float64, timedOut bool) {
	now := w.r.now().UTC()
	switch {
	case timedOut:
		r.Status = scriptTimedOut
	case exitStatus != nil:
		e := *exitStatus
		r.ExitStatus = &e
		switch {
		case e == 0:
			r.Status = scriptPassed
		case r.Status == scriptInstalling:
			r.Status = scriptFailedInstalling
		case r.Status == scriptApplyingNetconf:
			r.Status = scriptFailedApplyingNetconf
		default:
			r.Status = scriptFailed
		}
	}
	if output != nil {
		r.Output = output
	}
	if stdout != nil {
		r.Stdout = stdout
	}
	if stderr != nil {
		r.Stderr = stderr
	}
	if result != nil {
		r.Result = result
		// status: in the result YAML overrides (passed, failed, degraded, timedout, skipped).
		for _, line := range strings.Split(string(result), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "status:"); ok {
				switch strings.Trim(strings.TrimSpace(v), `"'`) {
				case "passed":
					r.Status = scriptPassed
				case "failed":
					r.Status = scriptFailed
				case "degraded":
					r.Status = scriptDegraded
				case "timedout":
					r.Status = scriptTimedOut
				case "skipped":
					r.Status = scriptSkipped
				}
			}
		}
	}
	if runtime > 0 {
		r.Runtime = runtime
	}
	if r.Started == nil {
		r.Started = &now
	}
	r.Ended = &now
	r.Updated = now
}

// resultFile is one file sent to the metadata service for a script set: by op=signal
// (form files) or in a status webhook event (files[]).
type resultFile struct {
	name    string
	content []byte
}

// fileKind splits a sent file name into the script name and the output it holds
// (process_file: .out stdout, .err stderr, .yaml result, anything else combined).
func fileKind(name string) (script, kind string) {
	ext := strings.ToLower(path.Ext(name))
	switch ext {
	case ".out":
		return strings.TrimSuffix(name, name[len(name)-len(ext):]), "stdout"
	case ".err":
		return strings.TrimSuffix(name, name[len(name)-len(ext):]), "stderr"
	case ".yaml":
		return strings.TrimSuffix(name, name[len(name)-len(ext):]), "result"
	}
	return name, "output"
}

// touchedResult is a result a batch of files was stored in, and whether the batch
// carried its stdout (which is when MAAS runs a builtin script's hook).
type touchedResult struct {
	res       *scriptResult
	hadStdout bool
}

// storeFiles is process_file + store_result for a batch of files: each file goes to the
// result named after it (created, running, when the set has none); exitStatus applies to
// every result touched, defaulting to defaultExit. It returns the results touched.
func (w *writer) storeFiles(s *scriptSet, files []resultFile, scriptResultID int, exitStatus *int, defaultExit int, runtime float64, timedOut bool) []touchedResult {
	type outputs struct {
		output, stdout, stderr, result []byte
	}
	now := w.r.now().UTC()
	var order []*scriptResult
	outs := map[*scriptResult]*outputs{}
	for _, f := range files {
		name, kind := fileKind(f.name)
		var r *scriptResult
		if scriptResultID != 0 {
			for _, c := range s.Results {
				if c.ID == scriptResultID {
					r = c
				}
			}
		}
		if r == nil {
			r = s.result(name)
		}
		if r == nil {
			r = &scriptResult{ID: int(w.next("scriptresult")), Name: name, Status: scriptRunning, Created: now, Updated: now}
			s.Results = append(s.Results, r)
		}
		o := outs[r]
		if o == nil {
			o = &outputs{}
			outs[r] = o
			order = append(order, r)
		}
		c := f.content
		if c == nil {
			c = []byte{}
		}
		switch kind {
		case "stdout":
			o.stdout = c
		case "stderr":
			o.stderr = c
		case "result":
			o.result = c
		default:
			o.output = c
		}
	}
	var touched []touchedResult
	for _, r := range order {
		e := defaultExit
		if exitStatus != nil {
			e = *exitStatus
		}
		o := outs[r]
		w.storeResult(r, &e, o.output, o.stdout, o.stderr, o.result, runtime, timedOut)
		touched = append(touched, touchedResult{res: r, hadStdout: o.stdout != nil})
	}
	return touched
}

// decodeSentFile is _retrieve_content: base64, optionally bzip2-compressed.
func decodeSentFile(name, encoding, compression, content string) ([]byte, error) {
	if encoding != "base64" {
		return nil, fmt.Errorf("file %q: Invalid encoding: %s (only base64 is accepted)", name, encoding)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, content))
	if err != nil {
		return nil, fmt.Errorf("file %q: content is not valid base64: %v", name, err)
	}
	switch compression {
	case "":
		return raw, nil
	case "bzip2":
		b, err := io.ReadAll(io.LimitReader(bzip2.NewReader(bytes.NewReader(raw)), maxForm+1))
		if err != nil {
			return nil, fmt.Errorf("file %q: content is not valid bzip2: %v", name, err)
		}
		if len(b) > maxForm {
			return nil, fmt.Errorf("file %q: decompressed content is larger than 64 MiB", name)
		}
		return b, nil
	}
	return nil, fmt.Errorf("file %q: Invalid compression: %s (only bzip2 is accepted)", name, compression)
}
