package scenario

import (
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/maasemu/maasemu/harness/junit"
)

// Script results.
const (
	Pass = "PASS"
	Fail = "FAIL"
	Skip = "SKIP"
)

// ScriptResult is how one scenario script ended.
type ScriptResult struct {
	Name   string
	File   string
	Status string // Pass, Fail or Skip
	// Reason is why a script was skipped (its skip message), or its FAIL: line.
	Reason  string
	Seconds float64
	// Log is the script's log as testscript wrote it (the failing command and its output
	// on failure; everything in verbose mode).
	Log string
}

// RunOptions configure Run.
type RunOptions struct {
	// Verbose logs every script's commands, as go test -v does.
	Verbose bool
	// Match selects scripts by name (the file's base name without .txtar/.txt).
	Match *regexp.Regexp
	// Parallel is how many scripts run at once (default GOMAXPROCS).
	Parallel int
	// Progress receives a line per finished script ("PASS name (1.2s)") and the logs of
	// failing ones (all logs when Verbose); nil discards.
	Progress io.Writer
}

// Run runs the script files with p outside go test (testscript.RunT with this package's
// T) and returns one result per script, in file order. It returns when every script has
// ended and its lab is down.
func Run(p testscript.Params, files []string, o RunOptions) []ScriptResult {
	if o.Parallel <= 0 {
		o.Parallel = runtime.GOMAXPROCS(0)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	var selected []string
	for _, f := range files {
		if o.Match == nil || o.Match.MatchString(scriptName(f)) {
			selected = append(selected, f)
		}
	}
	r := &runner{o: o, slots: make(chan struct{}, o.Parallel), release: make(chan struct{})}
	if len(selected) == 0 {
		return nil
	}
	p.Dir, p.Files = "", selected
	root := &runT{r: r, name: "", verbose: o.Verbose}
	done := make(chan struct{})
	go func() {
		defer close(done)
		testscript.RunT(root, p)
	}()
	<-done
	close(r.release)
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]ScriptResult(nil), r.results...)
	order := map[string]int{}
	for i, f := range selected {
		order[scriptName(f)] = i
	}
	sort.SliceStable(out, func(i, j int) bool { return order[out[i].Name] < order[out[j].Name] })
	for i := range out {
		if k, ok := order[out[i].Name]; ok {
			out[i].File = selected[k]
		}
	}
	if root.failed && len(out) == 0 {
		out = append(out, ScriptResult{Name: "(setup)", Status: Fail, Log: root.log.String()})
	}
	return out
}

func scriptName(file string) string {
	n := filepath.Base(file)
	n = strings.TrimSuffix(n, ".txtar")
	return strings.TrimSuffix(n, ".txt")
}

type runner struct {
	o       RunOptions
	slots   chan struct{}
	release chan struct{} // closed when the top-level RunT has returned
	wg      sync.WaitGroup

	mu      sync.Mutex
	results []ScriptResult
}

// runT is testscript.T for Run: one per script (and one at the top). FailNow and Skip
// end the calling goroutine with runtime.Goexit, as testing.T's do, so deferred
// cleanups (the script's labs) still run.
type runT struct {
	r       *runner
	name    string
	verbose bool
	start   time.Time

	mu      sync.Mutex
	log     strings.Builder
	failed  bool
	skipped bool
	skipMsg string

	parallel chan struct{} // closed when the script asks to run in parallel
	holding  bool          // holds a runner slot
}

var _ testscript.T = (*runT)(nil)

func (t *runT) Log(args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := fmt.Sprintln(args...)
	t.log.WriteString(s)
}

func (t *runT) Skip(args ...any) {
	t.Log(args...)
	t.mu.Lock()
	t.skipped = true
	t.skipMsg = strings.TrimSpace(fmt.Sprint(args...))
	t.mu.Unlock()
	runtime.Goexit()
}

func (t *runT) Fatal(args ...any) {
	t.Log(args...)
	t.FailNow()
}

func (t *runT) FailNow() {
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
	runtime.Goexit()
}

func (t *runT) Verbose() bool { return t.verbose }

// Parallel lets Run go on to the next script; this one waits until every script has been
// started, then for a free slot.
func (t *runT) Parallel() {
	if t.parallel == nil {
		return // the top-level T
	}
	close(t.parallel)
	<-t.r.release
	t.r.slots <- struct{}{}
	t.mu.Lock()
	t.holding = true
	t.start = time.Now() // its time is its own run, not its wait for a slot
	t.mu.Unlock()
}

// Run runs f as a script; it returns when f ends or calls Parallel.
func (t *runT) Run(name string, f func(testscript.T)) {
	c := &runT{r: t.r, name: name, verbose: t.verbose, parallel: make(chan struct{})}
	done := make(chan struct{})
	t.r.wg.Add(1)
	go func() {
		defer t.r.wg.Done()
		defer close(done)
		defer c.finish()
		c.mu.Lock()
		c.start = time.Now()
		c.mu.Unlock()
		f(c)
	}()
	select {
	case <-done:
	case <-c.parallel:
	}
}

// finish records the script's result and frees its slot.
func (t *runT) finish() {
	t.mu.Lock()
	res := ScriptResult{Name: t.name, Status: Pass, Seconds: time.Since(t.start).Seconds(), Log: t.log.String()}
	switch {
	case t.failed:
		res.Status, res.Reason = Fail, failLine(res.Log)
	case t.skipped:
		res.Status, res.Reason = Skip, t.skipMsg
		if res.Reason == "" {
			res.Reason = "skipped"
		}
	}
	holding := t.holding
	t.holding = false
	t.mu.Unlock()
	if holding {
		<-t.r.slots
	}
	r := t.r
	r.mu.Lock()
	r.results = append(r.results, res)
	w := r.o.Progress
	switch {
	case res.Status == Fail || r.o.Verbose:
		fmt.Fprintf(w, "%s %s (%.1fs)\n%s", res.Status, res.Name, res.Seconds, indent(res.Log))
	case res.Status == Skip:
		fmt.Fprintf(w, "%s %s (%s)\n", res.Status, res.Name, res.Reason)
	default:
		fmt.Fprintf(w, "%s %s (%.1fs)\n", res.Status, res.Name, res.Seconds)
	}
	r.mu.Unlock()
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ") + "\n"
}

// JUnit writes results as JUnit XML: one test suite, one test case per script; a failing
// script is a failure carrying its log, a skipped one is skipped with its reason.
func JUnit(w io.Writer, suite string, results []ScriptResult, started time.Time, elapsed time.Duration) error {
	ts := junit.NewSuite(suite, started, elapsed)
	for _, r := range results {
		tc := junit.Case{Name: r.Name, Classname: "maasemu.scenario." + suite, Time: junit.Seconds(r.Seconds)}
		switch r.Status {
		case Fail:
			msg := r.Reason
			if msg == "" {
				msg = failLine(r.Log)
			}
			tc.Failure = &junit.Problem{Message: msg, Type: "scenario", Body: r.Log}
		case Skip:
			msg := r.Reason
			if msg == "" {
				msg = "skipped"
			}
			tc.Skipped = &junit.Skipped{Message: msg}
		default:
			tc.SystemOut = r.Log
		}
		ts.Add(tc)
	}
	return junit.Write(w, suite, ts)
}

// failLine is the FAIL: line testscript writes for the failing command.
func failLine(log string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "FAIL:") {
			return strings.TrimSpace(l)
		}
	}
	return "script failed"
}
