package vnet

import (
	"container/heap"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Direction says which way a port's faults apply.
type Direction int

// Directions. The zero value applies faults to both directions, each independently, like
// a bad cable.
const (
	Both       Direction = iota
	ToDevice             // frames the switch sends to the attached machine or stack
	FromDevice           // frames the attached machine or stack sends into the switch
)

func (d Direction) String() string {
	switch d {
	case Both:
		return "both"
	case ToDevice:
		return "out"
	case FromDevice:
		return "in"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

// Faults are impairments applied to frames, per port or to the whole switch. Decisions
// come from a random source seeded from Seed, so a run with the same seed and the same
// frames makes the same decisions.
//
// Port faults apply to the link between the switch and the attached device (Direction
// picks which way). Switch faults apply once to every frame the switch forwards.
type Faults struct {
	Loss      float64       // probability a frame is dropped
	Duplicate float64       // probability a frame is delivered twice
	Corrupt   float64       // probability one bit after the Ethernet header is flipped
	Reorder   float64       // probability a frame is held back and delivered after the next one
	Delay     time.Duration // added to every frame
	Jitter    time.Duration // the delay varies uniformly in [Delay-Jitter, Delay+Jitter]
	// ReorderHold bounds how long a reordered frame waits for a successor before it is
	// delivered anyway; 0 means 10 ms.
	ReorderHold time.Duration
	// Seed seeds the fault decisions; 0 derives a seed from the switch seed and the port
	// name, so every port gets its own reproducible sequence.
	Seed      uint64
	Direction Direction // port faults only
}

// IsZero reports whether f impairs nothing.
func (f Faults) IsZero() bool {
	return f.Loss == 0 && f.Duplicate == 0 && f.Corrupt == 0 && f.Reorder == 0 && f.Delay == 0 && f.Jitter == 0
}

// Validate checks the ranges: probabilities in [0,1], durations not negative and at most
// a minute, Jitter not above Delay.
func (f Faults) Validate() error {
	probs := []struct {
		name string
		v    float64
	}{{"loss", f.Loss}, {"duplicate", f.Duplicate}, {"corrupt", f.Corrupt}, {"reorder", f.Reorder}}
	for _, p := range probs {
		if math.IsNaN(p.v) || p.v < 0 || p.v > 1 {
			return fmt.Errorf("vnet: fault %s=%v: a probability must be between 0 and 1", p.name, p.v)
		}
	}
	durs := []struct {
		name string
		v    time.Duration
	}{{"delay", f.Delay}, {"jitter", f.Jitter}, {"reorder-hold", f.ReorderHold}}
	for _, d := range durs {
		if d.v < 0 || d.v > time.Minute {
			return fmt.Errorf("vnet: fault %s=%v: must be between 0 and 1m", d.name, d.v)
		}
	}
	if f.Jitter > f.Delay {
		return fmt.Errorf("vnet: fault jitter=%v exceeds delay=%v: jitter varies the delay around its value and cannot make it negative", f.Jitter, f.Delay)
	}
	if f.Direction < Both || f.Direction > FromDevice {
		return fmt.Errorf("vnet: fault direction %d: must be both, in or out", int(f.Direction))
	}
	return nil
}

// String renders f in the syntax ParseFaults reads, e.g. "loss=10% delay=50ms".
func (f Faults) String() string {
	var parts []string
	pct := func(name string, v float64) {
		if v != 0 {
			parts = append(parts, name+"="+strconv.FormatFloat(v*100, 'g', -1, 64)+"%")
		}
	}
	pct("loss", f.Loss)
	pct("duplicate", f.Duplicate)
	pct("corrupt", f.Corrupt)
	pct("reorder", f.Reorder)
	if f.Delay != 0 {
		parts = append(parts, "delay="+f.Delay.String())
	}
	if f.Jitter != 0 {
		parts = append(parts, "jitter="+f.Jitter.String())
	}
	if f.ReorderHold != 0 {
		parts = append(parts, "reorder-hold="+f.ReorderHold.String())
	}
	if f.Seed != 0 {
		parts = append(parts, "seed="+strconv.FormatUint(f.Seed, 10))
	}
	if f.Direction != Both {
		parts = append(parts, "dir="+f.Direction.String())
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// ParseFaults reads faults written as space- or comma-separated key=value pairs:
// loss, duplicate (dup), corrupt, reorder as a percentage ("10%") or a fraction ("0.1");
// delay, jitter, reorder-hold as Go durations ("50ms"); seed as an unsigned integer;
// dir as both, in or out. "none" or "" is no faults.
func ParseFaults(s string) (Faults, error) {
	var f Faults
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' })
	if len(fields) == 1 && fields[0] == "none" {
		return f, nil
	}
	for _, field := range fields {
		k, v, ok := strings.Cut(field, "=")
		if !ok || v == "" {
			return Faults{}, fmt.Errorf("vnet: fault %q: want key=value", field)
		}
		var err error
		switch strings.ToLower(k) {
		case "loss":
			f.Loss, err = parseProb(k, v)
		case "duplicate", "dup":
			f.Duplicate, err = parseProb(k, v)
		case "corrupt":
			f.Corrupt, err = parseProb(k, v)
		case "reorder":
			f.Reorder, err = parseProb(k, v)
		case "delay":
			f.Delay, err = parseDur(k, v)
		case "jitter":
			f.Jitter, err = parseDur(k, v)
		case "reorder-hold":
			f.ReorderHold, err = parseDur(k, v)
		case "seed":
			f.Seed, err = strconv.ParseUint(v, 10, 64)
			if err != nil {
				err = fmt.Errorf("vnet: fault seed=%q: want an unsigned integer", v)
			}
		case "dir", "direction":
			switch v {
			case "both":
				f.Direction = Both
			case "in":
				f.Direction = FromDevice
			case "out":
				f.Direction = ToDevice
			default:
				err = fmt.Errorf("vnet: fault dir=%q: want both, in or out", v)
			}
		default:
			err = fmt.Errorf("vnet: fault %q: unknown key %q (want loss, duplicate, corrupt, reorder, delay, jitter, reorder-hold, seed, dir)", field, k)
		}
		if err != nil {
			return Faults{}, err
		}
	}
	if err := f.Validate(); err != nil {
		return Faults{}, err
	}
	return f, nil
}

func parseProb(k, v string) (float64, error) {
	pct := strings.HasSuffix(v, "%")
	x, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
	if err != nil {
		return 0, fmt.Errorf("vnet: fault %s=%q: want a percentage like 10%% or a fraction like 0.1", k, v)
	}
	if pct {
		x /= 100
	}
	if math.IsNaN(x) || x < 0 || x > 1 {
		return 0, fmt.Errorf("vnet: fault %s=%q: a probability must be between 0%% and 100%%", k, v)
	}
	return x, nil
}

func parseDur(k, v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("vnet: fault %s=%q: want a duration like 50ms", k, v)
	}
	return d, nil
}

// seedFor derives a per-stage seed from a base seed and a name.
func seedFor(base uint64, name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return base ^ h.Sum64()
}

// nextFunc receives a frame leaving a stage; src is the port the frame entered by.
type nextFunc func(src *Port, frame []byte)

// stage applies one Faults to a stream of frames.
type stage struct {
	name string
	next nextFunc
	c    *counters
	done <-chan struct{}
	wg   *sync.WaitGroup

	mu    sync.Mutex
	f     Faults
	on    atomic.Bool // f is not zero; checked without mu on the fast path
	rng   *rand.Rand
	held  *heldFrame
	delay *delayLine
}

type heldFrame struct {
	src   *Port
	frame []byte
	timer *time.Timer
}

// set replaces the faults; a held frame is released.
func (s *stage) set(f Faults, baseSeed uint64) {
	s.mu.Lock()
	seed := f.Seed
	if seed == 0 {
		seed = seedFor(baseSeed, s.name)
	}
	s.f = f
	s.on.Store(!f.IsZero())
	s.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	held := s.held
	s.held = nil
	s.mu.Unlock()
	if held != nil {
		held.timer.Stop()
		s.emit(held.src, held.frame, 0)
	}
}

func (s *stage) faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f
}

// decision is what the faults do to one frame.
type decision struct {
	drop       bool
	corruptBit int // bit index in the frame to flip, or -1
	copies     int // 1, or 2 when duplicated
	delays     [2]time.Duration
	hold       bool // reorder: wait for the next frame
}

// decide draws the fate of one frame of n bytes. The caller holds s.mu. Draws happen in
// a fixed order, so the same seed and the same frames give the same decisions.
func (s *stage) decide(n int) decision {
	f := &s.f
	d := decision{corruptBit: -1, copies: 1}
	if f.Loss > 0 && s.rng.Float64() < f.Loss {
		d.drop = true
		return d
	}
	if f.Corrupt > 0 && s.rng.Float64() < f.Corrupt && n > ethHeaderLen {
		d.corruptBit = ethHeaderLen*8 + s.rng.IntN((n-ethHeaderLen)*8)
	}
	if f.Duplicate > 0 && s.rng.Float64() < f.Duplicate {
		d.copies = 2
	}
	for i := range d.copies {
		d.delays[i] = f.Delay
		if f.Jitter > 0 {
			d.delays[i] += time.Duration(s.rng.Int64N(int64(2*f.Jitter)+1)) - f.Jitter
		}
	}
	if f.Reorder > 0 && s.rng.Float64() < f.Reorder {
		d.hold = true
	}
	return d
}

// process runs one frame through the stage. The frame is only read; anything kept past
// the call is copied.
func (s *stage) process(src *Port, frame []byte) {
	if !s.on.Load() {
		s.next(src, frame)
		return
	}
	s.mu.Lock()
	if !s.on.Load() {
		s.mu.Unlock()
		s.next(src, frame)
		return
	}
	d := s.decide(len(frame))
	if d.drop {
		s.mu.Unlock()
		s.c.dropLoss.Add(1)
		return
	}
	if d.corruptBit >= 0 {
		frame = append([]byte(nil), frame...)
		frame[d.corruptBit/8] ^= 1 << (d.corruptBit % 8)
		s.c.corrupted.Add(1)
	}
	if d.copies == 2 {
		s.c.duplicated.Add(1)
	}
	// Reordering: a held frame goes right after this one; a frame chosen for
	// reordering waits for the next one (or ReorderHold).
	var release *heldFrame
	if s.held != nil {
		release = s.held
		s.held = nil
	} else if d.hold {
		hold := s.f.ReorderHold
		if hold == 0 {
			hold = 10 * time.Millisecond
		}
		h := &heldFrame{src: src, frame: append([]byte(nil), frame...)}
		delay := d.delays[0]
		h.timer = time.AfterFunc(hold, func() { s.releaseHeld(h, delay) })
		s.held = h
		s.c.reordered.Add(1)
		if d.copies == 1 {
			s.mu.Unlock()
			return
		}
		d.copies, d.delays[0] = 1, d.delays[1] // the duplicate goes now
	}
	s.mu.Unlock()
	for i := range d.copies {
		s.emit(src, frame, d.delays[i])
	}
	if release != nil {
		release.timer.Stop()
		s.emit(release.src, release.frame, d.delays[0])
	}
}

// releaseHeld delivers a held frame whose successor did not come in time.
func (s *stage) releaseHeld(h *heldFrame, d time.Duration) {
	s.mu.Lock()
	if s.held != h {
		s.mu.Unlock()
		return
	}
	s.held = nil
	s.mu.Unlock()
	s.emit(h.src, h.frame, d)
}

// emit passes the frame on now or after d.
func (s *stage) emit(src *Port, frame []byte, d time.Duration) {
	if d <= 0 {
		s.next(src, frame)
		return
	}
	s.c.delayed.Add(1)
	s.mu.Lock()
	if s.delay == nil {
		s.delay = newDelayLine(s.next, s.done, s.wg)
	}
	dl := s.delay
	s.mu.Unlock()
	dl.push(src, append([]byte(nil), frame...), d)
}

// delayLine delivers frames at their due time, in due-time order.
type delayLine struct {
	next nextFunc
	mu   sync.Mutex
	q    delayHeap
	seq  uint64
	wake chan struct{}
}

type delayed struct {
	due   time.Time
	seq   uint64
	src   *Port
	frame []byte
}

type delayHeap []delayed

func (h delayHeap) Len() int { return len(h) }
func (h delayHeap) Less(i, j int) bool {
	if h[i].due.Equal(h[j].due) {
		return h[i].seq < h[j].seq
	}
	return h[i].due.Before(h[j].due)
}
func (h delayHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)   { *h = append(*h, x.(delayed)) }
func (h *delayHeap) Pop() any {
	old := *h
	n := len(old)
	x := old[n-1]
	old[n-1] = delayed{}
	*h = old[:n-1]
	return x
}

func newDelayLine(next nextFunc, done <-chan struct{}, wg *sync.WaitGroup) *delayLine {
	dl := &delayLine{next: next, wake: make(chan struct{}, 1)}
	wg.Add(1)
	go func() {
		defer wg.Done()
		dl.run(done)
	}()
	return dl
}

func (dl *delayLine) push(src *Port, frame []byte, d time.Duration) {
	dl.mu.Lock()
	dl.seq++
	heap.Push(&dl.q, delayed{due: time.Now().Add(d), seq: dl.seq, src: src, frame: frame})
	first := dl.q[0].seq == dl.seq
	dl.mu.Unlock()
	if first {
		select {
		case dl.wake <- struct{}{}:
		default:
		}
	}
}

func (dl *delayLine) run(done <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		dl.mu.Lock()
		var wait time.Duration = time.Hour
		var ready []delayed
		now := time.Now()
		for dl.q.Len() > 0 {
			if w := dl.q[0].due.Sub(now); w > 0 {
				wait = w
				break
			}
			ready = append(ready, heap.Pop(&dl.q).(delayed))
		}
		dl.mu.Unlock()
		for _, d := range ready {
			dl.next(d.src, d.frame)
		}
		if len(ready) > 0 {
			continue
		}
		timer.Reset(wait)
		select {
		case <-done:
			return
		case <-dl.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		}
	}
}
