package junit_test

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/maasemu/maasemu/harness/junit"
	"github.com/maasemu/maasemu/harness/junit/junittest"
)

func TestWrite(t *testing.T) {
	a := junit.NewSuite("deploys", time.Unix(0, 0), 2500*time.Millisecond)
	a.Properties = &junit.Properties{Props: []junit.Property{{Name: "image", Value: "x.tgz"}}}
	a.Add(junit.Case{Name: "ok", Classname: "c", Time: junit.Seconds(1), SystemOut: "console \x01 bell\x07"})
	a.Add(junit.Case{Name: "bad", Classname: "c", Time: junit.Seconds(1), Failure: &junit.Problem{Message: "<MAAS> & co", Type: "deploy.x", Body: "why"}})
	a.Add(junit.Case{Name: "harness", Classname: "c", Time: "0", Error: &junit.Problem{Message: "libvirtd", Type: "harness"}})
	b := junit.NewSuite("scenarios", time.Unix(0, 0), time.Second)
	b.Add(junit.Case{Name: "later", Classname: "s", Time: junit.Seconds(-1), Skipped: &junit.Skipped{Message: "needs libvirt"}})
	var buf bytes.Buffer
	if err := junit.Write(&buf, "all", a, b); err != nil {
		t.Fatal(err)
	}
	var doc junit.Document
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("not XML: %v\n%s", err, buf.String())
	}
	type counts struct{ Tests, Failures, Errors, Skipped int }
	got := []counts{{doc.Tests, doc.Failures, doc.Errors, 0}}
	for _, s := range doc.Suites {
		got = append(got, counts{s.Tests, s.Failures, s.Errors, s.Skipped})
	}
	if diff := cmp.Diff([]counts{{4, 1, 1, 0}, {3, 1, 1, 0}, {1, 0, 0, 1}}, got); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	if doc.Time != "3.500" || doc.Suites[1].Cases[0].Time != "0.000" {
		t.Errorf("times: total %s, a negative case %s", doc.Time, doc.Suites[1].Cases[0].Time)
	}
	if out := doc.Suites[0].Cases[0].SystemOut; strings.ContainsAny(out, "\x01\x07") || !strings.Contains(out, "console \uFFFD bell") {
		t.Errorf("control characters not replaced: %q", out)
	}

	if err := junittest.Validate(t, buf.Bytes()); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
}
