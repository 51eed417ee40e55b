package scenario_test

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/maasemu/maasemu/harness/scenario"
)

// writeScripts writes name -> content as name.txtar files in a new directory.
func writeScripts(t *testing.T, scripts map[string]string) []string {
	t.Helper()
	dir := t.TempDir()
	var files []string
	for name, content := range scripts {
		p := filepath.Join(dir, name+".txtar")
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	return files
}

func statuses(rs []scenario.ScriptResult) map[string]string {
	out := map[string]string{}
	for _, r := range rs {
		out[r.Name] = r.Status
	}
	return out
}

// The runner's T: passing, failing and skipped scripts are told apart, a failing script's
// log names the failing line, deferred cleanups run after a failure, and -run selects.
func TestRunnerOutcomes(t *testing.T) {
	var cleaned atomic.Int32
	p := testscript.Params{Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"cleanup-later": func(ts *testscript.TestScript, neg bool, args []string) {
			ts.Defer(func() { cleaned.Add(1) })
		},
	}}
	files := writeScripts(t, map[string]string{
		"pass":      "exists a.txt\ncmp a.txt b.txt\n-- a.txt --\nhello\n-- b.txt --\nhello\n",
		"fail":      "cleanup-later\nexists a.txt\nexists missing.txt\n-- a.txt --\nx\n",
		"skip":      "skip 'not today'\nexists nothing\n",
		"other":     "exists a.txt\n-- a.txt --\n",
		"bad-usage": "no-such-command\n",
	})
	var progress bytes.Buffer
	rs := scenario.Run(p, files, scenario.RunOptions{Match: regexp.MustCompile("^(pass|fail|skip|bad-usage)$"), Progress: &progress})
	want := map[string]string{"pass": scenario.Pass, "fail": scenario.Fail, "skip": scenario.Skip, "bad-usage": scenario.Fail}
	if diff := cmp.Diff(want, statuses(rs)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s\nprogress:\n%s", diff, progress.String())
	}
	if cleaned.Load() != 1 {
		t.Errorf("the failing script's deferred cleanup ran %d times, want 1", cleaned.Load())
	}
	for _, r := range rs {
		switch r.Name {
		case "skip":
			if r.Reason != "not today" {
				t.Errorf("skip reason %q, want %q", r.Reason, "not today")
			}
		case "fail":
			if !strings.HasPrefix(r.Reason, "FAIL: ") || !strings.Contains(r.Reason, "fail.txtar:3:") {
				t.Errorf("fail reason %q, want the FAIL: line", r.Reason)
			}
			if !strings.Contains(r.Log, "fail.txtar:3:") {
				t.Errorf("the failing script's log does not name line 3:\n%s", r.Log)
			}
			if r.File == "" || filepath.Base(r.File) != "fail.txtar" {
				t.Errorf("result file %q, want .../fail.txtar", r.File)
			}
		case "bad-usage":
			if !strings.Contains(r.Log, `unknown command "no-such-command"`) {
				t.Errorf("log of an unknown command:\n%s", r.Log)
			}
		}
	}
	out := progress.String()
	for _, line := range []string{"PASS pass", "FAIL fail", "SKIP skip (not today)"} {
		if !strings.Contains(out, line) {
			t.Errorf("progress has no %q line:\n%s", line, out)
		}
	}
	if strings.Contains(out, "other") {
		t.Errorf("-run did not leave out the script 'other':\n%s", out)
	}
}

// Scripts run in parallel, never more at once than asked.
func TestRunnerParallelLimit(t *testing.T) {
	var mu sync.Mutex
	active, peak, ran := 0, 0, 0
	p := testscript.Params{Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"work": func(ts *testscript.TestScript, neg bool, args []string) {
			mu.Lock()
			active++
			ran++
			if active > peak {
				peak = active
			}
			mu.Unlock()
			// Give the other scripts a chance to start while this one is active.
			for i := 0; i < 1000; i++ {
				runtime.Gosched()
			}
			mu.Lock()
			active--
			mu.Unlock()
		},
	}}
	scripts := map[string]string{}
	for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
		scripts[n] = "work\n"
	}
	rs := scenario.Run(p, writeScripts(t, scripts), scenario.RunOptions{Parallel: 2})
	if len(rs) != 6 {
		t.Fatalf("%d results, want 6", len(rs))
	}
	for _, r := range rs {
		if r.Status != scenario.Pass {
			t.Errorf("%s: %s\n%s", r.Name, r.Status, r.Log)
		}
	}
	if ran != 6 || peak > 2 || peak < 1 {
		t.Errorf("ran %d scripts with at most %d at once, want 6 with at most 2", ran, peak)
	}
}

func TestRunnerNoScripts(t *testing.T) {
	rs := scenario.Run(testscript.Params{}, writeScripts(t, map[string]string{"x": "exists nothing\n"}),
		scenario.RunOptions{Match: regexp.MustCompile("^nomatch$")})
	if len(rs) != 0 {
		t.Errorf("got %d results for a -run that matches nothing", len(rs))
	}
}

func TestJUnit(t *testing.T) {
	rs := []scenario.ScriptResult{
		{Name: "ok", Status: scenario.Pass, Seconds: 1.5, Log: "> lab\nPASS\n"},
		{Name: "broken", Status: scenario.Fail, Seconds: 2, Log: "> await m1 Deployed\nFAIL: broken.txtar:9: await m1: want \"Deployed\"\x01\n"},
		{Name: "later", Status: scenario.Skip, Reason: "known bug: x", Log: "known bug: x\n> skip 'known bug: x'\n"},
	}
	var b bytes.Buffer
	if err := scenario.JUnit(&b, "scenarios", rs, time.Unix(0, 0), 3500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Skipped int `xml:"skipped,attr"`
			Cases   []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Body    string `xml:",chardata"`
				} `xml:"failure"`
				Skipped *struct {
					Message string `xml:"message,attr"`
				} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("the JUnit XML does not parse: %v\n%s", err, b.String())
	}
	if doc.Tests != 3 || doc.Failures != 1 || len(doc.Suites) != 1 || doc.Suites[0].Skipped != 1 || len(doc.Suites[0].Cases) != 3 {
		t.Fatalf("counts: tests %d failures %d suites %d\n%s", doc.Tests, doc.Failures, len(doc.Suites), b.String())
	}
	c := doc.Suites[0].Cases
	if c[1].Failure == nil || !strings.HasPrefix(c[1].Failure.Message, "FAIL: broken.txtar:9:") || strings.Contains(c[1].Failure.Body, "\x01") {
		t.Errorf("failure of %s: %+v", c[1].Name, c[1].Failure)
	}
	if c[2].Skipped == nil || !strings.Contains(c[2].Skipped.Message, "known bug: x") {
		t.Errorf("skip of %s: %+v", c[2].Name, c[2].Skipped)
	}
}
