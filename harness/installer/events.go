package installer

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/maasemu/maasemu/harness/installer/oauth"
	"github.com/maasemu/maasemu/trace"
)

// Event results and types, as curtin's reporter/events.py spells them.
const (
	ResultSuccess = "SUCCESS"
	ResultWarn    = "WARN"
	ResultFail    = "FAIL"

	EventStart  = "start"
	EventFinish = "finish"
)

// File is one post_files entry of the top-level finish event. Content is base64, or nil
// when the file does not exist.
type File struct {
	Path     string  `json:"path"`
	Content  *string `json:"content"`
	Encoding string  `json:"encoding"`
}

// Event is a curtin (or cloud-init) reporting event, JSON-encoded exactly as the webhook
// posts it.
type Event struct {
	Name        string  `json:"name"`
	Description string  `json:"description"`
	EventType   string  `json:"event_type"`
	Origin      string  `json:"origin"`
	Timestamp   float64 `json:"timestamp"`
	Level       string  `json:"level,omitempty"`
	Result      string  `json:"result,omitempty"`
	Files       []File  `json:"files,omitempty"`
	// Duration is set on cloud-init finish events only.
	Duration *float64 `json:"duration,omitempty"`
}

// Reporter receives events in order. Report must not block for long; failures are the
// reporter's own business (curtin logs failed posts and goes on).
type Reporter interface {
	Report(ctx context.Context, e Event)
}

// ReporterFunc adapts a function to a Reporter.
type ReporterFunc func(ctx context.Context, e Event)

// Report calls f.
func (f ReporterFunc) Report(ctx context.Context, e Event) { f(ctx, e) }

// Reporters fans events out to every non-nil reporter.
func Reporters(rs ...Reporter) Reporter {
	var out []Reporter
	for _, r := range rs {
		if r != nil {
			out = append(out, r)
		}
	}
	return ReporterFunc(func(ctx context.Context, e Event) {
		for _, r := range out {
			r.Report(ctx, e)
		}
	})
}

// EventRecorder keeps events in memory (for tests and sims).
type EventRecorder struct {
	mu     sync.Mutex
	events []Event
}

// Report records e.
func (r *EventRecorder) Report(_ context.Context, e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// Events returns a copy of what was recorded.
func (r *EventRecorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// TraceReporter turns events into trace events (kind webhook.event, source installer).
func TraceReporter(sink trace.Sink, machine string) Reporter {
	sink = trace.OrNop(sink)
	return ReporterFunc(func(_ context.Context, e Event) {
		lvl := trace.LevelDebug
		if e.Result == ResultFail {
			lvl = trace.LevelError
		} else if e.Result == ResultWarn {
			lvl = trace.LevelWarn
		} else if e.Level == "INFO" || e.Level == "" {
			lvl = trace.LevelInfo
		}
		attrs := map[string]any{"origin": e.Origin, "name": e.Name, "event_type": e.EventType, "description": e.Description}
		if e.Result != "" {
			attrs["result"] = e.Result
		}
		msg := e.EventType + ": " + e.Name + ": " + e.Description
		if e.Result != "" {
			msg = e.EventType + ": " + e.Name + ": " + e.Result + ": " + e.Description
		}
		sink.Emit(trace.Event{Source: trace.SourceInstaller, Kind: trace.KindWebhookEvent, Level: lvl, Machine: machine, Message: msg, Attrs: attrs})
	})
}

// WebhookReporter posts events as curtin's WebHookHandler does: POST JSON with OAuth
// PLAINTEXT, every level (curtin does not filter by level), a failed post logged and not
// fatal.
type WebhookReporter struct {
	Endpoint  string
	UserAgent string // "Curtin/<version>" or "Cloud-Init/<version>"
	Client    *oauth.Client
	Log       *slog.Logger
	// Failures counts posts that failed (after the skew retry).
	mu       sync.Mutex
	failures int
}

// NewWebhookReporter returns a reporter posting to endpoint with creds through hc.
func NewWebhookReporter(endpoint string, creds oauth.Credentials, hc *http.Client, userAgent string, log *slog.Logger) *WebhookReporter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &WebhookReporter{Endpoint: endpoint, UserAgent: userAgent, Client: oauth.NewClient(hc, creds), Log: log}
}

// Failures returns the number of events that could not be posted.
func (w *WebhookReporter) Failures() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failures
}

// Report posts e.
func (w *WebhookReporter) Report(ctx context.Context, e Event) {
	body, err := json.Marshal(e)
	if err != nil {
		w.fail(e, err)
		return
	}
	// The event must go out even when the install's context was cancelled: the finish
	// event of a failed install is what tells MAAS.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	resp, err := w.Client.Do(pctx, func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.Endpoint, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		if w.UserAgent != "" {
			req.Header.Set("User-Agent", w.UserAgent)
		}
		return req, nil
	})
	if err != nil {
		w.fail(e, err)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		w.fail(e, fmt.Errorf("HTTP %d", resp.StatusCode))
	}
}

func (w *WebhookReporter) fail(e Event, err error) {
	w.mu.Lock()
	w.failures++
	w.mu.Unlock()
	w.Log.Warn(fmt.Sprintf("failed posting event: %s: %s: %s [%v]", e.EventType, e.Name, e.Description, err))
}

// reportStack is curtin's ReportEventStack: start on enter, finish on exit with the worst
// child result (FAIL, then WARN) unless the body failed.
type reportStack struct {
	r         Reporter
	origin    string
	fullname  string
	desc      string
	level     string
	postFiles []postFile
	now       func() time.Time

	mu       sync.Mutex
	children map[string]string
	parent   *reportStack
	name     string
}

func newStack(r Reporter, now func() time.Time, parent *reportStack, name, desc, level string) *reportStack {
	s := &reportStack{r: r, origin: "curtin", name: name, desc: desc, level: level, parent: parent, now: now, children: map[string]string{}}
	if parent != nil {
		s.fullname = parent.fullname + "/" + name
	} else {
		s.fullname = name
	}
	return s
}

func (s *reportStack) ts() float64 {
	t := s.now()
	return float64(t.UnixNano()) / 1e9
}

// enter sends the start event.
func (s *reportStack) enter(ctx context.Context) {
	s.r.Report(ctx, Event{Name: s.fullname, Description: s.desc, EventType: EventStart, Origin: s.origin, Timestamp: s.ts(), Level: s.level})
	if s.parent != nil {
		s.parent.mu.Lock()
		s.parent.children[s.name] = ""
		s.parent.mu.Unlock()
	}
}

// exit sends the finish event; failed says the body raised. It returns the result.
func (s *reportStack) exit(ctx context.Context, failed bool) string {
	result := ResultSuccess
	if failed {
		result = ResultFail
	} else {
		s.mu.Lock()
		for _, cand := range []string{ResultFail, ResultWarn} {
			for _, v := range s.children {
				if v == cand && result == ResultSuccess {
					result = cand
				}
			}
		}
		s.mu.Unlock()
	}
	if s.parent != nil {
		s.parent.mu.Lock()
		s.parent.children[s.name] = result
		s.parent.mu.Unlock()
	}
	level := s.level
	switch result {
	case ResultWarn:
		level = "WARN"
	case ResultFail:
		level = "ERROR"
	}
	e := Event{Name: s.fullname, Description: s.desc, EventType: EventFinish, Origin: s.origin, Timestamp: s.ts(), Level: level, Result: result}
	if len(s.postFiles) > 0 {
		e.Files = collectFiles(s.postFiles)
	}
	s.r.Report(ctx, e)
	return result
}

// postFile is a post_files entry: the path reported and where it is on this host.
type postFile struct{ path, host string }

func collectFiles(files []postFile) []File {
	var out []File
	for _, p := range files {
		f := File{Path: p.path, Encoding: "base64"}
		if st, err := os.Stat(p.host); err == nil && st.Mode().IsRegular() {
			if b, err := os.ReadFile(p.host); err == nil {
				s := base64.StdEncoding.EncodeToString(b)
				f.Content = &s
			}
		}
		out = append(out, f)
	}
	return out
}
