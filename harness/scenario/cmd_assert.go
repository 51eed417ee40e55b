package scenario

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"go.yaml.in/yaml/v3"

	"github.com/maasemu/maasemu/harness/report"
	"github.com/maasemu/maasemu/harness/timeline"
	"github.com/maasemu/maasemu/trace"
)

// compile compiles a script's regular expression or fails naming the command.
func compile(ts *testscript.TestScript, cmd, expr string) *regexp.Regexp {
	re, err := regexp.Compile(expr)
	if err != nil {
		ts.Fatalf("%s: regular expression %q: %v", cmd, expr, err)
	}
	return re
}

// result is the machine's finished deployment, failing when it has not ended.
func (ms *machineState) resultOrFail(ts *testscript.TestScript, cmd string) report.Result {
	res, ok := ms.finished()
	if !ok {
		ts.Fatalf("%s: %s has no finished deployment yet: run `await %s Deployed` (or Failed deployment) first", cmd, ms.m.Spec.Name, ms.m.Spec.Name)
	}
	return res
}

// curtin-config MACHINE
func cmdCurtinConfig(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	wantArgs(ts, "curtin-config", "curtin-config MACHINE", args, 1, 1)
	ms := sc.machine(ts, "curtin-config", args[0])
	spec, err := sc.lab.InstallerSpec(sc.ctx, ms.m)
	if err != nil {
		ts.Fatalf("curtin-config: %v", err)
	}
	merged, err := MergeCurtinConfigs(spec.Configs)
	if err != nil {
		ts.Fatalf("curtin-config %s: %v", args[0], err)
	}
	out, err := yaml.Marshal(merged)
	if err != nil {
		ts.Fatalf("curtin-config %s: %v", args[0], err)
	}
	w := ts.Stdout()
	fmt.Fprintf(w, "%s", out)
	fmt.Fprintf(w, "# install source: %s\n", strings.Join(spec.Args, " "))
}

// MergeCurtinConfigs merges curtin configuration documents in order as curtin's
// config.merge_config does: a mapping merges into a mapping key by key, recursively; any
// other value replaces the earlier one. A document that is not a YAML mapping is an error
// naming it.
func MergeCurtinConfigs(docs []string) (map[string]any, error) {
	out := map[string]any{}
	for i, d := range docs {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(d), &m); err != nil {
			return nil, fmt.Errorf("curtin config document %d is not a YAML mapping: %w", i, err)
		}
		mergeInto(out, m)
	}
	return out, nil
}

func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		if sv, ok := v.(map[string]any); ok {
			if dv, ok := dst[k].(map[string]any); ok {
				mergeInto(dv, sv)
				continue
			}
		}
		dst[k] = v
	}
}

// phase MACHINE PHASE STATE
func cmdPhase(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	const usage = "phase MACHINE PHASE done|failed|stalled|skipped|running|pending"
	wantArgs(ts, "phase", usage, args, 3, 3)
	ms := sc.machine(ts, "phase", args[0])
	p, err := parsePhase(args[1])
	if err != nil {
		ts.Fatalf("phase: %v", err)
	}
	want := args[2]
	switch want {
	case timeline.StateDone, timeline.StateFailed, timeline.StateStalled, timeline.StateSkipped, timeline.StateRunning, timeline.StatePending:
	default:
		ts.Fatalf("phase: state %q: want done, failed, stalled, skipped, running or pending", want)
	}
	res := ms.resultOrFail(ts, "phase")
	got := ""
	for _, s := range res.Phases {
		if s.Phase == p {
			got = s.State
		}
	}
	if (got == want) == neg {
		var b strings.Builder
		for _, s := range res.Phases {
			fmt.Fprintf(&b, "  %s %s\n", s.Phase, s.State)
		}
		if neg {
			ts.Fatalf("phase %s %s: is %s, want any other state\n%s", args[0], p, got, b.String())
		}
		ts.Fatalf("phase %s %s: want %s, got %s\n%s", args[0], p, want, got, b.String())
	}
	fmt.Fprintf(ts.Stdout(), "%s %s\n", p, got)
}

// diagnosis MACHINE ID [REGEX]
func cmdDiagnosis(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	const usage = "diagnosis MACHINE ID [REGEX]"
	wantArgs(ts, "diagnosis", usage, args, 2, 3)
	ms := sc.machine(ts, "diagnosis", args[0])
	var re *regexp.Regexp
	if len(args) == 3 {
		re = compile(ts, "diagnosis", args[2])
	}
	res := ms.resultOrFail(ts, "diagnosis")
	found := false
	for _, f := range res.Diagnosis {
		if f.ID != args[1] {
			continue
		}
		text := strings.Join(append([]string{f.Summary, f.Hint, string(f.Phase)}, f.Evidence...), "\n")
		if re == nil || re.MatchString(text) {
			found = true
			fmt.Fprintf(ts.Stdout(), "%s (%s, phase %s): %s\n", f.ID, f.Severity, f.Phase, f.Summary)
			for _, e := range f.Evidence {
				fmt.Fprintf(ts.Stdout(), "  | %s\n", e)
			}
		}
	}
	if found == neg {
		var b strings.Builder
		for _, f := range res.Diagnosis {
			fmt.Fprintf(&b, "  %s (%s): %s\n", f.ID, f.Severity, f.Summary)
		}
		if len(res.Diagnosis) == 0 {
			b.WriteString("  (no findings)\n")
		}
		what := args[1]
		if re != nil {
			what += " matching " + re.String()
		}
		if neg {
			ts.Fatalf("diagnosis %s: found %s, want none\n%s", args[0], what, b.String())
		}
		ts.Fatalf("diagnosis %s: no finding %s; the findings are (status %s):\n%s", args[0], what, res.Status, b.String())
	}
}

// events [-count N | -min N] MACHINE KIND [REGEX]
func cmdEvents(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	const usage = "events [-count N | -min N] MACHINE KIND [REGEX]"
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	count := fs.Int("count", -1, "exactly this many events")
	min := fs.Int("min", 1, "at least this many events")
	pos := parseArgs(ts, fs, usage, args)
	wantArgs(ts, "events", usage, pos, 2, 3)
	ms := sc.machine(ts, "events", pos[0])
	kind := pos[1]
	if _, err := path.Match(kind, ""); err != nil {
		ts.Fatalf("events: kind pattern %q: %v", kind, err)
	}
	var re *regexp.Regexp
	if len(pos) == 3 {
		re = compile(ts, "events", pos[2])
	}
	var matched []trace.Event
	for _, e := range sc.lab.Events(ms.m) {
		if ok, _ := path.Match(kind, e.Kind); !ok {
			continue
		}
		if re != nil && !re.MatchString(eventText(e)) {
			continue
		}
		matched = append(matched, e)
	}
	for _, e := range matched {
		fmt.Fprintf(ts.Stdout(), "%s %s\n", e.Kind, eventText(e))
	}
	n := len(matched)
	var ok bool
	var want string
	if *count >= 0 {
		ok, want = n == *count, fmt.Sprintf("exactly %d", *count)
	} else {
		ok, want = n >= *min, fmt.Sprintf("at least %d", *min)
	}
	if neg {
		if n > 0 {
			ts.Fatalf("events %s %s: %d event(s) match, want none", pos[0], kind, n)
		}
		return
	}
	if !ok {
		ts.Fatalf("events %s %s: %d event(s) match, want %s", pos[0], kind, n, want)
	}
}

// eventText is what an events REGEX is matched against: the message and the attributes
// as sorted k=v pairs.
func eventText(e trace.Event) string {
	keys := make([]string, 0, len(e.Attrs))
	for k := range e.Attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(e.Message)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%v", k, e.Attrs[k])
	}
	return b.String()
}

// await-event MACHINE KIND [REGEX] [-timeout DUR]
func cmdAwaitEvent(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	const usage = "await-event MACHINE KIND [REGEX] [-timeout DUR]"
	fs := flag.NewFlagSet("await-event", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	pos := parseArgs(ts, fs, usage, args)
	wantArgs(ts, "await-event", usage, pos, 2, 3)
	ms := sc.machine(ts, "await-event", pos[0])
	kind := pos[1]
	if _, err := path.Match(kind, ""); err != nil {
		ts.Fatalf("await-event: kind pattern %q: %v", kind, err)
	}
	var re *regexp.Regexp
	if len(pos) == 3 {
		re = compile(ts, "await-event", pos[2])
	}
	macs := map[string]bool{}
	for _, m := range ms.m.MACs {
		macs[strings.ToLower(m.String())] = true
	}
	match := func(e trace.Event) bool {
		if e.Machine != ms.m.SystemID && !macs[strings.ToLower(e.MAC)] {
			return false
		}
		if ok, _ := path.Match(kind, e.Kind); !ok {
			return false
		}
		return re == nil || re.MatchString(eventText(e))
	}
	hist, ch, stop := sc.lab.Recorder.SubscribeWithHistory()
	defer stop()
	for _, e := range hist {
		if match(e) {
			fmt.Fprintf(ts.Stdout(), "%s %s\n", e.Kind, eventText(e))
			return
		}
	}
	ctx, cancel := context.WithTimeout(sc.ctx, *timeout)
	defer cancel()
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				ts.Fatalf("await-event %s %s: the lab's event stream ended", pos[0], kind)
			}
			if match(e) {
				fmt.Fprintf(ts.Stdout(), "%s %s\n", e.Kind, eventText(e))
				return
			}
		case <-ctx.Done():
			ts.Fatalf("await-event %s %s: no such event after %s", pos[0], kind, *timeout)
		}
	}
}

// console MACHINE REGEX
func cmdConsole(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	wantArgs(ts, "console", "console MACHINE REGEX", args, 2, 2)
	ms := sc.machine(ts, "console", args[0])
	re := compile(ts, "console", args[1])
	p := ms.m.Driver().ConsolePath()
	if p == "" {
		ts.Fatalf("console: %s has no serial console log", args[0])
	}
	lines, err := readLines(p)
	ts.Check(err)
	matchLines(ts, "console", args[0], re, lines, neg)
}

// install-log MACHINE REGEX
func cmdInstallLog(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	wantArgs(ts, "install-log", "install-log MACHINE REGEX", args, 2, 2)
	ms := sc.machine(ts, "install-log", args[0])
	re := compile(ts, "install-log", args[1])
	log, err := sc.lab.InstallLog(sc.ctx, ms.m)
	if err != nil {
		if neg {
			return // no install log matches nothing
		}
		ts.Fatalf("install-log %s: the region has no install log: %v", args[0], err)
	}
	matchLines(ts, "install-log", args[0], re, strings.Split(log, "\n"), neg)
}

// matchLines passes when a line matches re (or, negated, when none does); matches go to
// stdout, and a failure shows the last lines.
func matchLines(ts *testscript.TestScript, cmd, name string, re *regexp.Regexp, lines []string, neg bool) {
	var hits []string
	for _, l := range lines {
		if re.MatchString(l) {
			hits = append(hits, l)
		}
	}
	for _, h := range hits {
		fmt.Fprintln(ts.Stdout(), h)
	}
	if len(hits) > 0 && neg {
		ts.Fatalf("%s %s: %d line(s) match %q, want none:\n  %s", cmd, name, len(hits), re, strings.Join(first(hits, 5), "\n  "))
	}
	if len(hits) == 0 && !neg {
		ts.Fatalf("%s %s: no line matches %q; the last lines:\n  %s", cmd, name, re, strings.Join(last(lines, 15), "\n  "))
	}
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func last(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func readLines(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out, sc.Err()
}
