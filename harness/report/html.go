package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/maasemu/maasemu/harness/diagnose"
	"github.com/maasemu/maasemu/harness/timeline"
	"github.com/maasemu/maasemu/trace"
)

// Artifact file names inside a result's directory.
const (
	FileReport     = "report.json"
	FileJUnit      = "junit.xml"
	FileHTML       = "report.html"
	FileConsole    = "console.log"
	FileEvents     = "events.jsonl"
	FilePcap       = "network.pcap"
	FileInstallLog = "curtin-install.log"
)

// maxEvents and maxConsole bound what one page shows; the files have everything.
const (
	maxEvents  = 3000
	maxConsole = 4000
)

type htmlResult struct {
	Result
	Anchor    string
	Primary   diagnose.Finding
	Others    []diagnose.Finding
	Bars      []bar
	ChartW    int
	Console   []consoleLine
	Truncated int
	Events    []trace.Event
	EventsCut int
	Links     []link
}

type bar struct {
	Phase  timeline.Phase
	Title  string
	State  string
	X, W   float64
	Y      int
	Label  string
	Failed bool
}

type consoleLine struct {
	N    int
	Text string
	Hit  bool // an evidence line of the diagnosis
}

type link struct{ Name, Href string }

// HTML writes a self-contained page for run, reading each result's artifacts below dir.
func HTML(w io.Writer, dir string, run Run) error {
	type page struct {
		Run     Run
		Results []htmlResult
		Verdict string
		Seconds float64
	}
	p := page{Run: run, Verdict: "FAIL", Seconds: run.Finished.Sub(run.Started).Seconds()}
	if run.Passed {
		p.Verdict = "PASS"
	}
	for i, r := range run.Results {
		hr := htmlResult{Result: r, Anchor: fmt.Sprintf("result-%d", i), Primary: diagnose.Primary(r.Diagnosis)}
		for _, f := range r.Diagnosis {
			if f.Summary != hr.Primary.Summary {
				hr.Others = append(hr.Others, f)
			}
		}
		hr.Bars, hr.ChartW = bars(r)
		rdir := filepath.Join(dir, r.Dir)
		hr.Console, hr.Truncated = console(filepath.Join(rdir, FileConsole), hr.Primary.Evidence)
		hr.Events, hr.EventsCut = events(filepath.Join(rdir, FileEvents))
		for _, name := range []string{FileConsole, FileEvents, FilePcap, FileInstallLog} {
			if _, err := os.Stat(filepath.Join(rdir, name)); err == nil {
				hr.Links = append(hr.Links, link{Name: name, Href: filepath.ToSlash(filepath.Join(r.Dir, name))})
			}
		}
		p.Results = append(p.Results, hr)
	}
	return pageTemplate.Execute(w, p)
}

// bars lays the reached phases out on a time axis, in pixels.
func bars(r Result) ([]bar, int) {
	const width, row = 900.0, 22
	var start, end time.Time
	for _, p := range r.Phases {
		if p.Start.IsZero() {
			continue
		}
		if start.IsZero() || p.Start.Before(start) {
			start = p.Start
		}
		e := p.End
		if e.IsZero() {
			e = p.Start
		}
		if e.After(end) {
			end = e
		}
	}
	total := end.Sub(start).Seconds()
	if total <= 0 {
		total = 1
	}
	var out []bar
	for _, p := range r.Phases {
		if p.Start.IsZero() {
			continue
		}
		x := p.Start.Sub(start).Seconds() / total * width
		wd := p.Seconds / total * width
		if wd < 2 {
			wd = 2
		}
		out = append(out, bar{Phase: p.Phase, Title: p.Title, State: p.State, X: x, W: wd, Y: len(out) * row,
			Label: fmt.Sprintf("%s %.1fs", p.Title, p.Seconds), Failed: p.State == timeline.StateFailed || p.State == timeline.StateStalled})
	}
	return out, int(width)
}

func console(path string, evidence []string) ([]consoleLine, int) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0
	}
	defer f.Close()
	var all []consoleLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		text := strings.ToValidUTF8(sc.Text(), "?")
		hit := false
		for _, e := range evidence {
			if e = strings.TrimSpace(e); e != "" && strings.Contains(text, e) {
				hit = true
			}
		}
		all = append(all, consoleLine{N: n, Text: text, Hit: hit})
	}
	if len(all) <= maxConsole {
		return all, 0
	}
	return all[len(all)-maxConsole:], len(all) - maxConsole
}

func events(path string) ([]trace.Event, int) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0
	}
	defer f.Close()
	var out []trace.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	cut := 0
	for sc.Scan() {
		var e trace.Event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if e.Kind == trace.KindConsoleLine {
			continue // the console has its own section
		}
		if len(out) >= maxEvents {
			cut++
			continue
		}
		out = append(out, e)
	}
	return out, cut
}

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"clock": func(t time.Time) string { return t.Format("15:04:05.000") },
	"secs":  func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"add":   func(a, b int) int { return a + b },
	"rows":  func(bs []bar) int { return len(bs)*22 + 4 },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>maasemu {{.Run.Command}}: {{.Verdict}}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 2rem 3rem; color: #222; }
header { border-bottom: 1px solid #ccc; padding: 1rem 0; }
.verdict { display: inline-block; padding: .2rem .7rem; border-radius: 4px; color: #fff; font-weight: bold; }
.PASS { background: #2e7d32; } .FAIL { background: #c62828; }
.result { margin-top: 2rem; border-top: 3px solid #ddd; }
.result.passed { border-top-color: #2e7d32; } .result.failed { border-top-color: #c62828; }
.diagnosis { background: #fff3f3; border-left: 4px solid #c62828; padding: .5rem 1rem; margin: 1rem 0; }
.diagnosis pre, .console pre { white-space: pre-wrap; }
table { border-collapse: collapse; margin: .5rem 0; }
td, th { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: left; font-variant-numeric: tabular-nums; }
tr.state-failed, tr.state-stalled { background: #ffd6d6; font-weight: bold; }
tr.state-skipped, tr.state-pending { color: #999; }
svg text { font-size: 11px; }
rect.done { fill: #90caf9; } rect.running { fill: #ffe082; } rect.failed, rect.stalled { fill: #e53935; }
.console { max-height: 40rem; overflow: auto; background: #111; color: #ddd; padding: .5rem; font: 12px/1.3 monospace; }
.console mark { background: #e53935; color: #fff; }
.console .n { color: #777; user-select: none; }
.events td { font: 12px monospace; }
.lvl-error, .lvl-warn { color: #c62828; }
</style>
</head>
<body>
<header>
<h1>maasemu {{.Run.Command}} <span class="verdict {{.Verdict}}" id="verdict">{{.Verdict}}</span></h1>
<div>image <code>{{.Run.Image}}</code>{{if .Run.Filetype}} (filetype {{.Run.Filetype}}){{end}}
 · started {{.Run.Started.Format "2006-01-02 15:04:05 MST"}} · {{secs .Seconds}} s · maasemu {{.Run.Version}}</div>
</header>
{{if .Run.Lint}}<section id="lint"><h2>Lint</h2><ul>
{{range .Run.Lint}}<li class="lvl-{{.Severity}}"><b>{{.Severity}}</b> {{.ID}}: {{.Message}}</li>{{end}}
</ul></section>{{end}}
{{range .Results}}
<section class="result {{if .Passed}}passed{{else}}failed{{end}}" id="{{.Anchor}}" data-failed-phase="{{.FailedPhase}}">
<h2>{{.Name}}: {{.Status}}{{if .Error}} (error){{end}}</h2>
<div>{{.Driver}} · {{.Firmware}}{{if .Layout}} · layout {{.Layout}}{{end}}{{if .SystemID}} · system_id {{.SystemID}}{{end}} · {{secs .Seconds}} s</div>
{{if .Error}}<div class="diagnosis"><b>harness error:</b> {{.Error}}</div>{{end}}
{{if .Primary.Summary}}<div class="diagnosis" id="{{.Anchor}}-diagnosis">
<b>{{.Primary.Summary}}</b>{{if .Primary.Phase}} <i>(phase: {{.Primary.Phase}})</i>{{end}}
{{if .Primary.Hint}}<div>hint: {{.Primary.Hint}}</div>{{end}}
{{if .Primary.Issue}}<div>reported as {{.Primary.Issue}}</div>{{end}}
{{if .Primary.Evidence}}<pre>{{range .Primary.Evidence}}{{.}}
{{end}}</pre>{{end}}
{{range .Others}}<div>also: {{.Summary}}</div>{{end}}
</div>{{end}}
{{if .Bars}}<h3>Timeline</h3>
<svg class="timeline" width="{{add .ChartW 260}}" height="{{rows .Bars}}" role="img" aria-label="deployment timeline">
{{range .Bars}}<g class="bar" data-phase="{{.Phase}}"><rect class="{{.State}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="18"><title>{{.Label}}</title></rect>
<text x="{{.X}}" dx="{{.W}}" dy="13" y="{{.Y}}" transform="translate(4,0)">{{.Label}}{{if .Failed}} ✗{{end}}</text></g>
{{end}}</svg>{{end}}
{{if .Phases}}<h3>Phases</h3>
<table class="phases"><tr><th>phase</th><th>state</th><th>start</th><th>seconds</th><th>budget</th><th>last event</th></tr>
{{range .Phases}}<tr class="phase state-{{.State}}" data-phase="{{.Phase}}"><td>{{.Title}}</td><td>{{.State}}</td>
<td>{{if not .Start.IsZero}}{{clock .Start}}{{end}}</td><td>{{secs .Seconds}}</td><td>{{if .Budget}}{{secs .Budget}}{{end}}</td><td>{{.LastEvent}}</td></tr>
{{end}}</table>{{end}}
{{if .Links}}<h3>Artifacts</h3><ul>{{range .Links}}<li><a href="{{.Href}}">{{.Name}}</a></li>{{end}}</ul>{{end}}
{{if .Console}}<h3>Console</h3>{{if .Truncated}}<div>{{.Truncated}} earlier lines are in console.log</div>{{end}}
<div class="console"><pre>{{range .Console}}<span class="n">{{printf "%5d" .N}} </span>{{if .Hit}}<mark class="failure-line">{{.Text}}</mark>{{else}}{{.Text}}{{end}}
{{end}}</pre></div>{{end}}
{{if .Events}}<h3>Events</h3>{{if .EventsCut}}<div>{{.EventsCut}} more events are in events.jsonl</div>{{end}}
<table class="events"><tr><th>time</th><th>source</th><th>kind</th><th>message</th></tr>
{{range .Events}}<tr class="lvl-{{.Level}}"><td>{{clock .Time}}</td><td>{{.Source}}</td><td>{{.Kind}}</td><td>{{.Message}}</td></tr>
{{end}}</table>{{end}}
</section>
{{end}}
</body>
</html>
`))
