// Package junit writes JUnit XML reports as Ant's junit task writes them (the schema in
// testdata/junit/junit.xsd), the format CI systems read.
package junit

import (
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"time"
)

// Suite is a <testsuite>; Add counts its cases.
type Suite struct {
	XMLName    xml.Name    `xml:"testsuite"`
	Name       string      `xml:"name,attr"`
	Tests      int         `xml:"tests,attr"`
	Failures   int         `xml:"failures,attr"`
	Errors     int         `xml:"errors,attr"`
	Skipped    int         `xml:"skipped,attr"`
	Time       string      `xml:"time,attr"`
	Timestamp  string      `xml:"timestamp,attr"`
	Hostname   string      `xml:"hostname,attr"`
	Properties *Properties `xml:"properties,omitempty"`
	Cases      []Case      `xml:"testcase"`
}

// Properties are a suite's <properties>.
type Properties struct {
	Props []Property `xml:"property"`
}

// Property is one <property>.
type Property struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

// Case is a <testcase>: passed, or with one of Failure, Error or Skipped.
type Case struct {
	Name      string   `xml:"name,attr"`
	Classname string   `xml:"classname,attr"`
	Time      string   `xml:"time,attr"`
	Failure   *Problem `xml:"failure,omitempty"`
	Error     *Problem `xml:"error,omitempty"`
	Skipped   *Skipped `xml:"skipped,omitempty"`
	SystemOut string   `xml:"system-out,omitempty"`
}

// Problem is a <failure> or an <error>.
type Problem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Body    string `xml:",chardata"`
}

// Skipped is a <skipped>.
type Skipped struct {
	Message string `xml:"message,attr"`
}

// NewSuite starts a suite named name that ran from started for elapsed on this host.
func NewSuite(name string, started time.Time, elapsed time.Duration) Suite {
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	return Suite{Name: name, Time: Seconds(elapsed.Seconds()), Timestamp: started.UTC().Format("2006-01-02T15:04:05"), Hostname: host}
}

// Add appends c and counts it.
func (s *Suite) Add(c Case) {
	switch {
	case c.Failure != nil:
		s.Failures++
	case c.Error != nil:
		s.Errors++
	case c.Skipped != nil:
		s.Skipped++
	}
	s.Cases = append(s.Cases, c)
	s.Tests = len(s.Cases)
}

// Seconds formats a duration in seconds as the schema's time attributes want it (never
// negative).
func Seconds(s float64) string { return fmt.Sprintf("%.3f", max(s, 0)) }

// Document is a <testsuites> document: the suites and their totals.
type Document struct {
	XMLName  xml.Name `xml:"testsuites"`
	Name     string   `xml:"name,attr"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	Time     string   `xml:"time,attr"`
	Suites   []Suite  `xml:"testsuite"`
}

// Write writes the suites as one <testsuites> document named name. Characters XML cannot
// carry (control characters from a console) come out as U+FFFD.
func Write(w io.Writer, name string, suites ...Suite) error {
	doc := Document{Name: name, Suites: suites}
	var total float64
	for _, s := range suites {
		doc.Tests += s.Tests
		doc.Failures += s.Failures
		doc.Errors += s.Errors
		var t float64
		fmt.Sscan(s.Time, &t)
		total += t
	}
	doc.Time = Seconds(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
