// Package report writes what a deployment run found: report.json for machines, JUnit XML
// for CI systems, and an HTML page for people.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/maasemu/maasemu/harness/diagnose"
	"github.com/maasemu/maasemu/harness/junit"
	"github.com/maasemu/maasemu/harness/timeline"
)

// Phase is one timeline span as reported.
type Phase struct {
	Phase     timeline.Phase `json:"phase"`
	Title     string         `json:"title"`
	State     string         `json:"state"`
	Start     time.Time      `json:"start,omitzero"`
	End       time.Time      `json:"end,omitzero"`
	Seconds   float64        `json:"seconds"`
	Budget    float64        `json:"budget_seconds,omitempty"`
	LastEvent string         `json:"last_event,omitempty"`
}

// Phases converts timeline spans for a report.
func Phases(spans []timeline.Span) []Phase {
	out := make([]Phase, 0, len(spans))
	for _, s := range spans {
		out = append(out, Phase{Phase: s.Phase, Title: s.Title, State: s.State, Start: s.Start, End: s.End,
			Seconds: round(s.Duration().Seconds()), Budget: s.Budget.Seconds(), LastEvent: s.LastEvent})
	}
	return out
}

// Result is one deployment of one image on one machine configuration.
type Result struct {
	Name          string             `json:"name"` // the matrix cell, e.g. "bios-flat"
	Image         string             `json:"image"`
	Filetype      string             `json:"filetype"`
	Driver        string             `json:"driver"`
	Firmware      string             `json:"firmware"`
	Layout        string             `json:"layout,omitempty"`
	SystemID      string             `json:"system_id,omitempty"`
	Hostname      string             `json:"hostname,omitempty"`
	Status        string             `json:"status"` // MAAS status name at the end
	StatusMessage string             `json:"status_message,omitempty"`
	Passed        bool               `json:"passed"`
	Started       time.Time          `json:"started"`
	Finished      time.Time          `json:"finished"`
	Seconds       float64            `json:"seconds"`
	Phases        []Phase            `json:"phases,omitempty"`
	FailedPhase   timeline.Phase     `json:"failed_phase,omitempty"`
	Diagnosis     []diagnose.Finding `json:"diagnosis,omitempty"`
	Error         string             `json:"error,omitempty"` // the harness could not run the deployment
	Dir           string             `json:"dir,omitempty"`   // artifacts, relative to the run directory
	Artifacts     map[string]string  `json:"artifacts,omitempty"`
}

// Summary is the one line a person reads first.
func (r Result) Summary() string {
	switch {
	case r.Error != "":
		return "error: " + r.Error
	case r.Passed:
		return fmt.Sprintf("%s in %.0fs", r.Status, r.Seconds)
	}
	if p := diagnose.Primary(r.Diagnosis); p.Summary != "" {
		return fmt.Sprintf("%s: %s", r.Status, p.Summary)
	}
	return r.Status
}

// Run is a set of results with one verdict: a deploy, or a validate matrix.
type Run struct {
	Tool     string    `json:"tool"`
	Version  string    `json:"version"`
	Command  string    `json:"command"`
	Image    string    `json:"image,omitempty"`
	Filetype string    `json:"filetype,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Passed   bool      `json:"passed"`
	Lint     []Lint    `json:"lint,omitempty"`
	Results  []Result  `json:"results"`
}

// Lint is one lint finding carried into the report.
type Lint struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

// WriteJSON writes v as indented JSON to path atomically.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(path, append(b, '\n'))
}

// ReadRun reads a report.json.
func ReadRun(path string) (Run, error) {
	var r Run
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: not a maasemu report: %w", path, err)
	}
	return r, nil
}

func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// JUnit writes run as JUnit XML: one test suite, one test case per result; a failed
// deployment is a failure carrying its diagnosis, a harness error is an error.
func JUnit(w io.Writer, run Run) error {
	name := strings.TrimSpace("maasemu " + run.Command + " " + filepath.Base(run.Image))
	suite := junit.NewSuite(name, run.Started, run.Finished.Sub(run.Started))
	suite.Properties = &junit.Properties{Props: []junit.Property{
		{Name: "image", Value: run.Image}, {Name: "filetype", Value: run.Filetype}, {Name: "maasemu.version", Value: run.Version}}}
	class := "maasemu." + sanitizeClass(filepath.Base(run.Image))
	for _, l := range run.Lint {
		if l.Severity != "error" {
			continue
		}
		suite.Add(junit.Case{Name: "lint " + l.ID, Classname: class, Time: "0",
			Failure: &junit.Problem{Message: l.Message, Type: "lint." + l.ID, Body: l.Message}})
	}
	for _, r := range run.Results {
		tc := junit.Case{Name: r.Name, Classname: class, Time: junit.Seconds(r.Seconds), SystemOut: phaseTable(r)}
		switch {
		case r.Error != "":
			tc.Error = &junit.Problem{Message: r.Error, Type: "harness", Body: r.Error}
		case !r.Passed:
			p := diagnose.Primary(r.Diagnosis)
			typ := "deploy." + p.ID
			if p.ID == "" {
				typ = "deploy.failed"
			}
			var body strings.Builder
			fmt.Fprintf(&body, "%s\n", r.Summary())
			if p.Phase != "" {
				fmt.Fprintf(&body, "phase: %s\n", timeline.Titles[p.Phase])
			}
			if p.Hint != "" {
				fmt.Fprintf(&body, "hint: %s\n", p.Hint)
			}
			for _, e := range p.Evidence {
				fmt.Fprintf(&body, "  | %s\n", e)
			}
			tc.Failure = &junit.Problem{Message: r.Summary(), Type: typ, Body: body.String()}
		}
		suite.Add(tc)
	}
	return junit.Write(w, name, suite)
}

// phaseTable renders a result's phases as plain text.
func phaseTable(r Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s\n", r.Name, r.Summary())
	for _, p := range r.Phases {
		if p.State == timeline.StatePending || p.State == timeline.StateSkipped {
			continue
		}
		fmt.Fprintf(&b, "  %-22s %-8s %7.1fs\n", p.Title, p.State, p.Seconds)
	}
	return b.String()
}

func round(s float64) float64 { return float64(int64(s*1000+0.5)) / 1000 }

func sanitizeClass(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '/' {
			return '_'
		}
		return r
	}, s)
}
