// Package trace carries structured events from every maasemu component to whoever records them.
//
// Protocol servers (DHCP, TFTP, HTTP), the region (API, metadata, webhook), machine drivers
// (power, console) and the network emit Events into a Sink. The harness turns the stream
// into a timeline, a diagnosis and events.jsonl. trace imports nothing of the project so
// that every package may depend on it.
package trace

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Well-known event sources.
const (
	SourceDHCP      = "dhcp"
	SourceTFTP      = "tftp"
	SourceHTTP      = "http"      // rack HTTP boot (port 5248)
	SourceRegion    = "region"    // API 2.0, lifecycle, status changes
	SourceMetadata  = "metadata"  // metadata service reads and signals
	SourceWebhook   = "webhook"   // curtin / cloud-init status events
	SourcePower     = "power"     // power driver actions
	SourceConsole   = "console"   // serial console lines
	SourceNetwork   = "vnet"      // virtual network (links, faults)
	SourceMachine   = "machine"   // machine driver lifecycle (domain defined, sim step)
	SourceInstaller = "installer" // the in-process installer of sim machines
	SourceLab       = "lab"       // harness orchestration
)

// Levels.
const (
	LevelDebug = "debug"
	LevelInfo  = "info"
	LevelWarn  = "warn"
	LevelError = "error"
)

// Event is one thing that happened, with enough context to place it on a machine's timeline.
type Event struct {
	Time    time.Time      `json:"time"`
	Source  string         `json:"source"`
	Kind    string         `json:"kind"` // dotted, e.g. "dhcp.ack", "tftp.read", "status.change"
	Level   string         `json:"level,omitempty"`
	Machine string         `json:"machine,omitempty"` // system_id when known
	MAC     string         `json:"mac,omitempty"`     // aa:bb:cc:dd:ee:ff when known
	Message string         `json:"message"`
	Attrs   map[string]any `json:"attrs,omitempty"`
}

// Sink receives events. Emit must be safe for concurrent use and must not block for long.
type Sink interface {
	Emit(Event)
}

// Nop is a Sink that drops everything.
type Nop struct{}

// Emit drops e.
func (Nop) Emit(Event) {}

// Func adapts a function to a Sink.
type Func func(Event)

// Emit calls f(e).
func (f Func) Emit(e Event) { f(e) }

// OrNop returns s, or Nop when s is nil.
func OrNop(s Sink) Sink {
	if s == nil {
		return Nop{}
	}
	return s
}

// Recorder keeps every event in memory, optionally appends each as a JSON line to a
// writer, and fans events out to subscribers.
type Recorder struct {
	mu     sync.Mutex
	events []Event
	w      io.Writer
	enc    *json.Encoder
	subs   map[int]chan struct{} // subscribers' wake-ups
	nextID int
	now    func() time.Time
}

// NewRecorder returns a Recorder that also writes JSON lines to w when w is not nil.
func NewRecorder(w io.Writer) *Recorder {
	r := &Recorder{w: w, subs: map[int]chan struct{}{}, now: time.Now}
	if w != nil {
		r.enc = json.NewEncoder(w)
	}
	return r
}

// Emit records e, stamping its time when unset.
func (r *Recorder) Emit(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Time.IsZero() {
		e.Time = r.now()
	}
	if e.Level == "" {
		e.Level = LevelInfo
	}
	r.events = append(r.events, e)
	if r.enc != nil {
		_ = r.enc.Encode(e)
	}
	for _, wake := range r.subs {
		select {
		case wake <- struct{}{}:
		default: // already woken: it reads everything up to the end of the log
		}
	}
}

// Events returns a copy of everything recorded so far.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// Subscribe returns a channel of every event emitted from now on and a function that
// ends the subscription and closes the channel. Events wait in the recorder's log, not
// in a buffer per subscriber: a subscriber that reads slowly loses nothing and never
// stalls an emitter.
func (r *Recorder) Subscribe() (<-chan Event, func()) {
	_, ch, stop := r.subscribe(false)
	return ch, stop
}

// SubscribeWithHistory is Subscribe that also returns every event recorded before the
// subscription began, with none lost or repeated between the two.
func (r *Recorder) SubscribeWithHistory() ([]Event, <-chan Event, func()) {
	return r.subscribe(true)
}

func (r *Recorder) subscribe(history bool) ([]Event, <-chan Event, func()) {
	r.mu.Lock()
	var hist []Event
	if history {
		hist = append([]Event(nil), r.events...)
	}
	next := len(r.events)
	id := r.nextID
	r.nextID++
	wake := make(chan struct{}, 1)
	r.subs[id] = wake
	r.mu.Unlock()

	ch := make(chan Event)
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		defer close(ch)
		for {
			// Appends never change recorded events, so the slice stays valid
			// after the lock is released.
			r.mu.Lock()
			batch := r.events[next:len(r.events):len(r.events)]
			next = len(r.events)
			r.mu.Unlock()
			for _, e := range batch {
				select {
				case ch <- e:
				case <-done:
					return
				}
			}
			select {
			case <-wake:
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return hist, ch, func() {
		once.Do(func() {
			r.mu.Lock()
			delete(r.subs, id)
			r.mu.Unlock()
			close(done)
			<-finished
		})
	}
}

// Tee returns a Sink that emits to every non-nil sink in order.
func Tee(sinks ...Sink) Sink {
	var out []Sink
	for _, s := range sinks {
		if s != nil {
			out = append(out, s)
		}
	}
	return Func(func(e Event) {
		for _, s := range out {
			s.Emit(e)
		}
	})
}
