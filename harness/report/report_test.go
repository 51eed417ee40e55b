package report

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/maasemu/maasemu/harness/diagnose"
	"github.com/maasemu/maasemu/harness/junit"
	"github.com/maasemu/maasemu/harness/junit/junittest"
	"github.com/maasemu/maasemu/harness/timeline"
)

func sampleRun() Run {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	return Run{Tool: "maasemu", Version: "test", Command: "validate", Image: "/tmp/broken & <odd>.tgz", Filetype: "tgz",
		Started: t0, Finished: t0.Add(3 * time.Minute),
		Lint: []Lint{{ID: "no-cloud-init", Severity: "error", Message: "no cloud-init in the image"}, {ID: "x", Severity: "warning", Message: "w"}},
		Results: []Result{
			{Name: "bios-flat", Status: "Deployed", Passed: true, Seconds: 92.5,
				Phases: []Phase{{Phase: timeline.Power, Title: "power on", State: "done", Seconds: 1}}},
			{Name: "uefi-flat", Status: "Failed deployment", Seconds: 61,
				Diagnosis: []diagnose.Finding{{ID: "no-cloud-init", Severity: "error", Phase: timeline.CurtinLate,
					Summary: "the image has no cloud-init", Hint: "install it", Evidence: []string{"cloud-init not detected, <MAAS> & co"}}}},
			{Name: "bios-lvm", Error: "libvirtd is not running"},
		}}
}

func TestJUnit(t *testing.T) {
	var buf bytes.Buffer
	if err := JUnit(&buf, sampleRun()); err != nil {
		t.Fatal(err)
	}
	var doc junit.Document
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("output is not XML: %v\n%s", err, buf.String())
	}
	s := doc.Suites[0]
	got := []int{doc.Tests, doc.Failures, doc.Errors, len(s.Cases)}
	if diff := cmp.Diff([]int{4, 2, 1, 4}, got); diff != "" {
		t.Errorf("tests/failures/errors/cases (-want +got):\n%s", diff)
	}
	if f := s.Cases[2].Failure; f == nil || f.Type != "deploy.no-cloud-init" || !strings.Contains(f.Body, "<MAAS> & co") {
		t.Errorf("failure of uefi-flat = %+v", f)
	}
	if e := s.Cases[3].Error; e == nil || e.Message != "libvirtd is not running" {
		t.Errorf("error of bios-lvm = %+v", e)
	}

	// The output validates against the JUnit schema.
	if err := junittest.Validate(t, buf.Bytes()); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	// And a document that breaks the schema is refused, so the check means something.
	bad := strings.Replace(buf.String(), ` classname=`, ` class=`, 1)
	if junittest.Validate(t, []byte(bad)) == nil {
		t.Error("xmllint accepted a testcase without classname")
	}
}

func TestJSONRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "report.json")
	run := sampleRun()
	if err := WriteJSON(p, run); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRun(p)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(run, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if err := os.WriteFile(p, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRun(p); err == nil || !strings.Contains(err.Error(), "not a maasemu report") {
		t.Errorf("ReadRun of garbage = %v", err)
	}
}
