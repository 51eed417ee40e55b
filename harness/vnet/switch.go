package vnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maasemu/maasemu/trace"
)

// Frame and MTU limits.
const (
	ethHeaderLen = 14
	vlanTagLen   = 4
	// DefaultMTU is the MTU of a port when none is configured.
	DefaultMTU = 1500
	// MinMTU and MaxMTU bound a port's MTU (IPv4's minimum and the largest IP packet).
	MinMTU = 68
	MaxMTU = 65535
	// DefaultAgeingTime is how long a learned MAC address stays in the table unseen
	// (Linux bridge's default).
	DefaultAgeingTime = 300 * time.Second
	// maxFrame is QEMU's NET_BUFSIZE, the largest frame its socket netdev handles.
	maxFrame = 4096 + 65536
)

// ErrClosed is returned by operations on a closed switch or port.
var ErrClosed = errors.New("vnet: closed")

// PacketWriter receives a copy of every frame the switch forwards; *pcap.Writer is one.
// WritePacket must not keep frame.
type PacketWriter interface {
	WritePacket(t time.Time, frame []byte) error
}

// Config configures a Switch. The zero value is usable.
type Config struct {
	// Name names the lab's network in trace events and logs.
	Name string
	// MTU is the default MTU of new ports: the largest payload after the Ethernet header.
	// 0 means DefaultMTU.
	MTU int
	// AgeingTime is how long an unseen MAC address stays learned; 0 means
	// DefaultAgeingTime.
	AgeingTime time.Duration
	// Seed is the base of every fault decision; ports derive their own from it.
	Seed uint64
	// Capture, when set, receives every frame the switch forwards.
	Capture PacketWriter
	// Trace receives link and fault events; nil drops them.
	Trace trace.Sink
	// Logger logs port errors; nil means slog.Default().
	Logger *slog.Logger
	// NoRouterAdvertisements stops the switch from answering IPv6 router solicitations.
	// By default it answers each with a router advertisement that configures nothing
	// (router lifetime 0, no prefix, no DHCPv6): iPXE waits for IPv6 autoconfiguration
	// to end before it boots, and without an answer that costs about 13 s per boot.
	NoRouterAdvertisements bool
	// Now is the clock for MAC ageing and capture timestamps; nil means time.Now.
	Now func() time.Time
}

// Switch is a learning Ethernet switch. It is safe for concurrent use.
type Switch struct {
	cfg    Config
	name   string
	sink   trace.Sink
	log    *slog.Logger
	now    func() time.Time
	fdb    *fdb
	faults stage
	link   linkState
	c      counters

	capture atomic.Pointer[captureBox]
	ports   atomic.Pointer[[]*Port] // copy-on-write snapshot for flooding
	ra      *raResponder
	stacks  sync.Map // *Stack -> struct{}: the gVisor stacks whose TCP follows the faults

	mu     sync.Mutex
	nextID int
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

type captureBox struct{ w PacketWriter }

// NewSwitch returns a running switch with no ports.
func NewSwitch(cfg Config) (*Switch, error) {
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if err := checkMTU(cfg.MTU); err != nil {
		return nil, err
	}
	if cfg.AgeingTime == 0 {
		cfg.AgeingTime = DefaultAgeingTime
	}
	if cfg.AgeingTime < 0 {
		return nil, fmt.Errorf("vnet: ageing time %v: must be positive", cfg.AgeingTime)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Name == "" {
		cfg.Name = "vnet"
	}
	sw := &Switch{
		cfg:  cfg,
		name: cfg.Name,
		sink: trace.OrNop(cfg.Trace),
		log:  cfg.Logger,
		now:  cfg.Now,
		fdb:  newFDB(cfg.AgeingTime, cfg.Now),
		done: make(chan struct{}),
	}
	if sw.log == nil {
		sw.log = slog.Default()
	}
	sw.log = sw.log.With("vnet", cfg.Name)
	sw.faults = stage{name: cfg.Name, next: sw.forward, c: &sw.c, done: sw.done, wg: &sw.wg}
	sw.faults.set(Faults{}, cfg.Seed)
	sw.link.init(sw, nil)
	empty := []*Port{}
	sw.ports.Store(&empty)
	if cfg.Capture != nil {
		sw.capture.Store(&captureBox{cfg.Capture})
	}
	if !cfg.NoRouterAdvertisements {
		sw.ra = newRAResponder(cfg.Name)
	}
	return sw, nil
}

func checkMTU(mtu int) error {
	if mtu < MinMTU || mtu > MaxMTU {
		return fmt.Errorf("vnet: MTU %d: must be between %d and %d", mtu, MinMTU, MaxMTU)
	}
	return nil
}

// Name returns the switch's name.
func (sw *Switch) Name() string { return sw.name }

// SetCapture starts sending every forwarded frame to w, or stops when w is nil. The
// switch never closes w.
func (sw *Switch) SetCapture(w PacketWriter) {
	if w == nil {
		sw.capture.Store(nil)
		return
	}
	sw.capture.Store(&captureBox{w})
}

// SetFaults sets faults applied once to every frame the switch forwards (Direction is
// ignored). It emits a trace.KindFault event.
func (sw *Switch) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	sw.faults.set(f, sw.cfg.Seed)
	sw.retuneTCP()
	sw.emit(trace.KindFault, nil, "switch faults: "+f.String(), map[string]any{"fault": f.String()})
	return nil
}

// Faults returns the switch-wide faults.
func (sw *Switch) Faults() Faults { return sw.faults.faults() }

// Cut stops all forwarding for d (0: until Heal), as if the switch lost power.
func (sw *Switch) Cut(d time.Duration) { sw.link.cut(d) }

// Heal ends a Cut now.
func (sw *Switch) Heal() { sw.link.heal() }

// Down reports whether the switch is cut.
func (sw *Switch) Down() bool { return sw.link.down() }

// Counters returns the switch-wide counters: forwarding decisions and switch faults.
func (sw *Switch) Counters() Counters { return sw.c.snapshot() }

// Ports returns the attached ports.
func (sw *Switch) Ports() []*Port { return slices.Clone(*sw.ports.Load()) }

// Port returns the attached port with the given name.
func (sw *Switch) Port(name string) (*Port, bool) {
	for _, p := range *sw.ports.Load() {
		if p.name == name {
			return p, true
		}
	}
	return nil, false
}

// Learned returns the MAC table: address -> port, without aged-out entries.
func (sw *Switch) Learned() map[string]*Port {
	out := map[string]*Port{}
	for k, p := range sw.fdb.snapshot(sw.now().UnixNano()) {
		out[net.HardwareAddr(k[:]).String()] = p
	}
	return out
}

// FlushLearned forgets every learned MAC address.
func (sw *Switch) FlushLearned() { sw.fdb.flush() }

// Close detaches every port, stops delayed deliveries and waits for the switch's
// goroutines. It does not close the capture writer. It is safe to call more than once.
func (sw *Switch) Close() error {
	sw.mu.Lock()
	if sw.closed {
		sw.mu.Unlock()
		return nil
	}
	sw.closed = true
	sw.mu.Unlock()
	var errs []error
	for _, p := range sw.Ports() {
		if err := p.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	sw.link.stop()
	close(sw.done)
	sw.wg.Wait()
	return errors.Join(errs...)
}

// attach registers a new port. deliver sends a frame to the device; it must not keep
// the frame and must not block for long.
func (sw *Switch) attach(name, kind string, mtu int, hw net.HardwareAddr, deliver func(*Port, []byte), onClose func() error) (*Port, error) {
	if mtu == 0 {
		mtu = sw.cfg.MTU
	}
	if err := checkMTU(mtu); err != nil {
		return nil, err
	}
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.closed {
		return nil, ErrClosed
	}
	sw.nextID++
	if name == "" {
		name = fmt.Sprintf("%s%d", kind, sw.nextID)
	}
	for _, q := range *sw.ports.Load() {
		if q.name == name {
			return nil, fmt.Errorf("vnet: port name %q: already attached to switch %s", name, sw.name)
		}
	}
	p := &Port{sw: sw, id: sw.nextID, name: name, kind: kind, hw: hw, deliver: deliver, onClose: onClose, done: make(chan struct{})}
	p.mtu.Store(int64(mtu))
	// The port's delay lines end with the port.
	p.in = stage{name: name + "/in", next: sw.afterPortIngress, c: &p.c, done: p.done, wg: &sw.wg}
	p.out = stage{name: name + "/out", next: p.emit, c: &p.c, done: p.done, wg: &sw.wg}
	p.in.set(Faults{}, sw.cfg.Seed)
	p.out.set(Faults{}, sw.cfg.Seed)
	p.link.init(sw, p)
	ports := append(slices.Clone(*sw.ports.Load()), p)
	sw.ports.Store(&ports)
	sw.emit(trace.KindLink, p, "port "+name+" attached ("+kind+")", map[string]any{"state": "up", "kind": kind})
	return p, nil
}

func (sw *Switch) detach(p *Port) {
	sw.mu.Lock()
	ports := slices.DeleteFunc(slices.Clone(*sw.ports.Load()), func(q *Port) bool { return q == p })
	sw.ports.Store(&ports)
	sw.mu.Unlock()
	sw.fdb.forget(p)
	p.link.stop()
	sw.emit(trace.KindLink, p, "port "+p.name+" detached", map[string]any{"state": "detached"})
}

func (sw *Switch) emit(kind string, p *Port, msg string, attrs map[string]any) {
	if attrs == nil {
		attrs = map[string]any{}
	}
	attrs["network"] = sw.name
	ev := trace.Event{Source: trace.SourceNetwork, Kind: kind, Message: msg, Attrs: attrs}
	if p != nil {
		attrs["port"] = p.name
		if p.hw != nil {
			ev.MAC = p.hw.String()
		}
	}
	sw.sink.Emit(ev)
}

// frameTooBig reports whether frame exceeds mtu plus its Ethernet (and 802.1Q) header.
func frameTooBig(frame []byte, mtu int) bool {
	limit := ethHeaderLen + mtu
	if len(frame) >= ethHeaderLen && binary.BigEndian.Uint16(frame[12:]) == 0x8100 {
		limit += vlanTagLen
	}
	return len(frame) > limit
}

// input is where every frame from a device enters the switch.
func (sw *Switch) input(p *Port, frame []byte) {
	if len(frame) < ethHeaderLen {
		p.c.malformed.Add(1)
		return
	}
	if frameTooBig(frame, p.MTU()) {
		p.c.rxOversize.Add(1)
		return
	}
	p.c.rxFrames.Add(1)
	p.c.rxBytes.Add(uint64(len(frame)))
	if p.closed.Load() {
		return
	}
	if p.link.down() {
		p.c.dropCut.Add(1)
		return
	}
	p.in.process(p, frame)
}

func (sw *Switch) afterPortIngress(src *Port, frame []byte) {
	if sw.link.down() {
		sw.c.dropCut.Add(1)
		return
	}
	sw.faults.process(src, frame)
}

// forward makes the switching decision for one frame.
func (sw *Switch) forward(src *Port, frame []byte) {
	if src.closed.Load() {
		return // delayed past its port's detach: the cable is gone, and so is the frame
	}
	now := sw.now()
	if cb := sw.capture.Load(); cb != nil {
		if err := cb.w.WritePacket(now, frame); err != nil {
			sw.c.captureErrors.Add(1)
		}
	}
	var dst, from mac
	copy(dst[:], frame[0:6])
	copy(from[:], frame[6:12])
	t := now.UnixNano()
	if !from.isMulticast() {
		sw.fdb.learn(from, src, t)
	}
	if sw.ra != nil {
		sw.ra.handle(sw, src, frame, now)
	}
	if !dst.isMulticast() {
		if q := sw.fdb.lookup(dst, t); q != nil {
			if q == src {
				sw.c.filtered.Add(1) // the destination is on the port it came from
				return
			}
			sw.c.unicast.Add(1)
			q.send(src, frame)
			return
		}
	}
	sw.c.flooded.Add(1)
	for _, q := range *sw.ports.Load() {
		if q != src {
			q.send(src, frame)
		}
	}
}

// Port is one attachment point on a switch. Its methods are safe for concurrent use.
type Port struct {
	sw      *Switch
	id      int
	name    string
	kind    string
	hw      net.HardwareAddr
	mtu     atomic.Int64
	in, out stage
	link    linkState
	c       counters
	deliver func(*Port, []byte)
	onClose func() error

	closed    atomic.Bool
	done      chan struct{} // closed by Close
	closeOnce sync.Once
	closeErr  error
}

// Name returns the port's name, unique on its switch.
func (p *Port) Name() string { return p.name }

// Kind returns "udp", "stream", "stack" or "raw".
func (p *Port) Kind() string { return p.kind }

// MTU returns the port's MTU.
func (p *Port) MTU() int { return int(p.mtu.Load()) }

// SetMTU changes the port's MTU. Frames larger than MTU plus the Ethernet header are
// dropped, in either direction, and counted.
func (p *Port) SetMTU(mtu int) error {
	if err := checkMTU(mtu); err != nil {
		return fmt.Errorf("port %s: %w", p.name, err)
	}
	p.mtu.Store(int64(mtu))
	return nil
}

// SetFaults sets the port's faults. It emits a trace.KindFault event.
func (p *Port) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("port %s: %w", p.name, err)
	}
	in, out := f, f
	switch f.Direction {
	case ToDevice:
		in = Faults{}
	case FromDevice:
		out = Faults{}
	}
	if f.Seed != 0 && f.Direction == Both {
		out.Seed = f.Seed ^ 0x5bd1e995 // independent decisions in each direction
	}
	p.in.set(in, p.sw.cfg.Seed)
	p.out.set(out, p.sw.cfg.Seed)
	p.sw.retuneTCP()
	p.sw.emit(trace.KindFault, p, "port "+p.name+" faults: "+f.String(), map[string]any{"fault": f.String()})
	return nil
}

// Faults returns the port's faults.
func (p *Port) Faults() Faults {
	in, out := p.in.faults(), p.out.faults()
	switch {
	case in.IsZero() && out.IsZero():
		return Faults{}
	case in.IsZero():
		out.Direction = ToDevice
		return out
	case out.IsZero():
		in.Direction = FromDevice
		return in
	}
	return in
}

// Cut takes the link down for d (0: until Heal): nothing passes either way.
func (p *Port) Cut(d time.Duration) { p.link.cut(d) }

// Heal brings a cut link up now.
func (p *Port) Heal() { p.link.heal() }

// Down reports whether the link is cut.
func (p *Port) Down() bool { return p.link.down() }

// Counters returns the port's counters.
func (p *Port) Counters() Counters { return p.c.snapshot() }

// Close detaches the port and releases what it owns (sockets, goroutines). It is safe
// to call more than once.
func (p *Port) Close() error {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		close(p.done)
		p.sw.detach(p)
		if p.onClose != nil {
			p.closeErr = p.onClose()
		}
	})
	return p.closeErr
}

// send passes a frame from the switch towards this port's device.
func (p *Port) send(src *Port, frame []byte) {
	if p.closed.Load() {
		return
	}
	if p.link.down() {
		p.c.dropCut.Add(1)
		return
	}
	p.out.process(src, frame)
}

// emit hands a frame to the device after the port's egress faults.
func (p *Port) emit(_ *Port, frame []byte) {
	if p.closed.Load() {
		return
	}
	if frameTooBig(frame, p.MTU()) {
		p.c.txOversize.Add(1)
		return
	}
	p.c.txFrames.Add(1)
	p.c.txBytes.Add(uint64(len(frame)))
	p.deliver(p, frame)
}

// Counters count frames. Port counters: Rx is from the device into the switch, Tx from
// the switch to the device. Switch counters use Unicast, Flooded, Filtered and the
// switch-fault fields.
type Counters struct {
	RxFrames, RxBytes uint64
	TxFrames, TxBytes uint64

	Unicast  uint64 // frames sent to the one port their destination was learned on
	Flooded  uint64 // broadcast, multicast and unknown-unicast frames sent to every other port
	Filtered uint64 // frames whose destination is on the port they came from

	RxOversize uint64 // dropped: larger than the port's MTU, from the device
	TxOversize uint64 // dropped: larger than the port's MTU, towards the device
	Malformed  uint64 // dropped: shorter than an Ethernet header, or bad stream framing
	Foreign    uint64 // dropped: a UDP datagram from an address other than the peer's
	TxErrors   uint64 // dropped: the device could not take the frame (queue full, socket error)

	DropLoss   uint64 // dropped by the loss fault
	DropCut    uint64 // dropped while the link (or switch) was cut
	Duplicated uint64
	Corrupted  uint64
	Reordered  uint64
	Delayed    uint64

	CaptureErrors uint64
}

type counters struct {
	rxFrames, rxBytes, txFrames, txBytes       atomic.Uint64
	unicast, flooded, filtered                 atomic.Uint64
	rxOversize, txOversize, malformed, foreign atomic.Uint64
	txErrors                                   atomic.Uint64
	dropLoss, dropCut                          atomic.Uint64
	duplicated, corrupted, reordered, delayed  atomic.Uint64
	captureErrors                              atomic.Uint64
}

func (c *counters) snapshot() Counters {
	return Counters{
		RxFrames: c.rxFrames.Load(), RxBytes: c.rxBytes.Load(),
		TxFrames: c.txFrames.Load(), TxBytes: c.txBytes.Load(),
		Unicast: c.unicast.Load(), Flooded: c.flooded.Load(), Filtered: c.filtered.Load(),
		RxOversize: c.rxOversize.Load(), TxOversize: c.txOversize.Load(),
		Malformed: c.malformed.Load(), Foreign: c.foreign.Load(), TxErrors: c.txErrors.Load(),
		DropLoss: c.dropLoss.Load(), DropCut: c.dropCut.Load(),
		Duplicated: c.duplicated.Load(), Corrupted: c.corrupted.Load(),
		Reordered: c.reordered.Load(), Delayed: c.delayed.Load(),
		CaptureErrors: c.captureErrors.Load(),
	}
}

// linkState is a link (or the whole switch) that can be cut for a while.
type linkState struct {
	sw     *Switch
	port   *Port // nil for the switch
	isDown atomic.Bool

	mu    sync.Mutex
	gen   uint64
	timer *time.Timer
}

func (l *linkState) init(sw *Switch, p *Port) { l.sw, l.port = sw, p }

func (l *linkState) down() bool { return l.isDown.Load() }

func (l *linkState) what() string {
	if l.port == nil {
		return "switch " + l.sw.name
	}
	return "port " + l.port.name
}

func (l *linkState) cut(d time.Duration) {
	l.mu.Lock()
	l.gen++
	gen := l.gen
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	if d > 0 {
		l.timer = time.AfterFunc(d, func() { l.healGen(gen) })
	}
	l.isDown.Store(true)
	l.mu.Unlock()
	attrs := map[string]any{"state": "down"}
	msg := l.what() + " link cut"
	if d > 0 {
		attrs["duration_ms"] = d.Milliseconds()
		msg += " for " + d.String()
	}
	l.sw.emit(trace.KindLink, l.port, msg, attrs)
}

func (l *linkState) heal() {
	l.mu.Lock()
	gen := l.gen
	l.mu.Unlock()
	l.healGen(gen)
}

func (l *linkState) healGen(gen uint64) {
	l.mu.Lock()
	if gen != l.gen || !l.isDown.Load() {
		l.mu.Unlock()
		return
	}
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.isDown.Store(false)
	l.mu.Unlock()
	l.sw.emit(trace.KindLink, l.port, l.what()+" link healed", map[string]any{"state": "up"})
}

// stop cancels a pending automatic heal.
func (l *linkState) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gen++
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
}

// TeeCapture returns a PacketWriter that writes every frame to each writer in turn: a
// pcap file and a live analyser, say. Every writer is called; the errors are joined.
func TeeCapture(ws ...PacketWriter) PacketWriter { return teeCapture(ws) }

type teeCapture []PacketWriter

func (t teeCapture) WritePacket(ts time.Time, frame []byte) error {
	var errs []error
	for _, w := range t {
		if w == nil {
			continue
		}
		if err := w.WritePacket(ts, frame); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// CaptureFunc adapts a function to a PacketWriter.
type CaptureFunc func(t time.Time, frame []byte) error

// WritePacket calls f.
func (f CaptureFunc) WritePacket(t time.Time, frame []byte) error { return f(t, frame) }
