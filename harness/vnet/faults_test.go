package vnet

import (
	"bytes"
	"context"
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/maasemu/maasemu/trace"
)

func TestParseFaults(t *testing.T) {
	tests := []struct {
		in   string
		want Faults
	}{
		{"", Faults{}},
		{"none", Faults{}},
		{"loss=10%", Faults{Loss: 0.1}},
		{"loss=0.1 delay=50ms", Faults{Loss: 0.1, Delay: 50 * time.Millisecond}},
		{"loss=10%,delay=50ms,jitter=10ms", Faults{Loss: 0.1, Delay: 50 * time.Millisecond, Jitter: 10 * time.Millisecond}},
		{"dup=1% corrupt=0.5% reorder=5% reorder-hold=20ms seed=42 dir=out", Faults{Duplicate: 0.01, Corrupt: 0.005, Reorder: 0.05, ReorderHold: 20 * time.Millisecond, Seed: 42, Direction: ToDevice}},
		{"duplicate=100% dir=in", Faults{Duplicate: 1, Direction: FromDevice}},
	}
	for _, tt := range tests {
		got, err := ParseFaults(tt.in)
		if err != nil {
			t.Errorf("ParseFaults(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseFaults(%q) (-want +got):\n%s", tt.in, diff)
		}
		// String round-trips.
		again, err := ParseFaults(got.String())
		if err != nil || !cmp.Equal(again, got) {
			t.Errorf("ParseFaults(%q.String() = %q) = %+v, %v", tt.in, got.String(), again, err)
		}
	}
}

func TestParseFaultsErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"loss", `fault "loss": want key=value`},
		{"loss=", `fault "loss=": want key=value`},
		{"loss=abc", `fault loss="abc": want a percentage`},
		{"loss=110%", `fault loss="110%": a probability must be between 0% and 100%`},
		{"loss=-1", `a probability must be between`},
		{"loss=NaN", `a probability must be between`},
		{"delay=fast", `fault delay="fast": want a duration`},
		{"delay=-5ms", `fault delay=-5ms: must be between 0 and 1m`},
		{"delay=2h", `must be between 0 and 1m`},
		{"jitter=20ms delay=10ms", `jitter=20ms exceeds delay=10ms`},
		{"dir=sideways", `fault dir="sideways": want both, in or out`},
		{"seed=-3", `fault seed="-3": want an unsigned integer`},
		{"speed=9", `unknown key "speed"`},
	}
	for _, tt := range tests {
		_, err := ParseFaults(tt.in)
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
			t.Errorf("ParseFaults(%q) = %v, want an error containing %q", tt.in, err, tt.want)
		}
	}
}

func TestSetFaultsRefusesBadValuesAndChangesNothing(t *testing.T) {
	checkLeaks(t)
	sw, rec := newTestSwitch(t, Config{})
	a := attachRaw(t, sw, "a")
	good := Faults{Loss: 0.1}
	must(t, a.SetFaults(good))
	must(t, sw.SetFaults(good))
	before := len(eventsOf(rec, trace.KindFault))
	for _, bad := range []Faults{{Loss: 2}, {Corrupt: -0.1}, {Delay: -time.Second}, {Delay: time.Millisecond, Jitter: time.Second}, {Direction: 7}} {
		if err := a.SetFaults(bad); err == nil {
			t.Errorf("port SetFaults(%+v) accepted", bad)
		}
		if err := sw.SetFaults(bad); err == nil {
			t.Errorf("switch SetFaults(%+v) accepted", bad)
		}
	}
	if !cmp.Equal(a.Faults(), good) || !cmp.Equal(sw.Faults(), good) {
		t.Errorf("faults changed by refused calls: port %+v switch %+v", a.Faults(), sw.Faults())
	}
	if got := len(eventsOf(rec, trace.KindFault)); got != before {
		t.Errorf("refused calls emitted %d fault events", got-before)
	}
}

func TestFaultEvents(t *testing.T) {
	checkLeaks(t)
	sw, rec := newTestSwitch(t, Config{Name: "lab1"})
	a := attachRaw(t, sw, "a")
	f, err := ParseFaults("loss=10% delay=50ms")
	must(t, err)
	must(t, a.SetFaults(f))
	must(t, sw.SetFaults(Faults{Duplicate: 0.01}))
	evs := eventsOf(rec, trace.KindFault)
	if len(evs) != 2 {
		t.Fatalf("%d fault events, want 2: %+v", len(evs), evs)
	}
	if evs[0].Attrs["port"] != "a" || evs[0].Attrs["fault"] != "loss=10% delay=50ms" || evs[0].Attrs["network"] != "lab1" || evs[0].Source != trace.SourceNetwork {
		t.Errorf("port fault event %+v", evs[0])
	}
	if _, ok := evs[1].Attrs["port"]; ok || evs[1].Attrs["fault"] != "duplicate=1%" {
		t.Errorf("switch fault event %+v", evs[1])
	}
}

// The same seed gives the same decisions for the same frames, every fault type included;
// another seed gives others.
func TestFaultDecisionsReproducible(t *testing.T) {
	f := Faults{Loss: 0.1, Duplicate: 0.1, Corrupt: 0.1, Reorder: 0.1, Delay: 50 * time.Millisecond, Jitter: 20 * time.Millisecond}
	run := func(seed uint64, name string) []decision {
		s := &stage{name: name}
		s.set(f, seed)
		var out []decision
		for i := range 2000 {
			out = append(out, s.decide(64+i%1400))
		}
		return out
	}
	a1, a2 := run(7, "port1/out"), run(7, "port1/out")
	if diff := cmp.Diff(a1, a2, cmp.AllowUnexported(decision{})); diff != "" {
		t.Errorf("same seed, different decisions:\n%s", diff)
	}
	if cmp.Equal(a1, run(8, "port1/out"), cmp.AllowUnexported(decision{})) {
		t.Error("another switch seed made the same decisions")
	}
	if cmp.Equal(a1, run(7, "port2/out"), cmp.AllowUnexported(decision{})) {
		t.Error("another port made the same decisions")
	}
	// Each fault shows up at about its rate.
	var drops, dups, corrupt, holds int
	minD, maxD := time.Hour, time.Duration(0)
	for _, d := range a1 {
		if d.drop {
			drops++
			continue
		}
		if d.copies == 2 {
			dups++
		}
		if d.corruptBit >= 0 {
			corrupt++
		}
		if d.hold {
			holds++
		}
		minD, maxD = min(minD, d.delays[0]), max(maxD, d.delays[0])
	}
	for name, n := range map[string]int{"drops": drops, "dups": dups, "corruptions": corrupt, "holds": holds} {
		if n < 120 || n > 280 {
			t.Errorf("%d %s in 2000 frames at 10%%", n, name)
		}
	}
	if minD < 30*time.Millisecond || maxD > 70*time.Millisecond || maxD-minD < 30*time.Millisecond {
		t.Errorf("delays from %v to %v, want spread over 30ms..70ms", minD, maxD)
	}
}

// sendAll sends n numbered frames from a to b and returns what b received, in order,
// once the switch is idle (frames counted through the port counters).
func sendAll(t *testing.T, a, b *RawPort, n int, size int) [][]byte {
	t.Helper()
	ctx := testCtx(t)
	for i := range n {
		must(t, a.Send(testFrame(macB, macA, uint32(i), size)))
	}
	// Everything sent is accounted for once dropped + delivered (+ duplicated) add up.
	var got [][]byte
	for {
		c, bc := a.Counters(), b.Counters()
		drops := c.DropLoss + bc.DropLoss + c.DropCut + bc.DropCut
		if uint64(len(got))+drops >= uint64(n)+c.Duplicated+bc.Duplicated && b.Pending() == 0 {
			return got
		}
		f, err := b.Recv(ctx)
		if err != nil {
			t.Fatalf("received %d of %d frames: %v", len(got), n, err)
		}
		got = append(got, f)
	}
}

func faultRun(t *testing.T, seed uint64, f Faults, n int) ([]uint32, Counters) {
	t.Helper()
	sw, _ := newTestSwitch(t, Config{Seed: seed})
	a, b := attachRaw(t, sw, "a"), attachRaw(t, sw, "b")
	// Teach the switch where B is, so frames are unicast.
	must(t, b.Send(testFrame(macA, macB, 0, 64)))
	recvN(t, testCtx(t), a, 1)
	f.Direction = ToDevice
	must(t, b.SetFaults(f))
	var seqs []uint32
	for _, fr := range sendAll(t, a, b, n, 100) {
		seqs = append(seqs, frameSeq(fr))
	}
	c := b.Counters()
	must(t, sw.Close())
	return seqs, c
}

func TestLossObservableAndReproducible(t *testing.T) {
	checkLeaks(t)
	f := Faults{Loss: 0.3}
	s1, c1 := faultRun(t, 1, f, 1000)
	s2, _ := faultRun(t, 1, f, 1000)
	if !slices.Equal(s1, s2) {
		t.Error("same seed, different frames lost")
	}
	s3, _ := faultRun(t, 2, f, 1000)
	if slices.Equal(s1, s3) {
		t.Error("another seed lost the same frames")
	}
	if lost := 1000 - len(s1); lost < 250 || lost > 350 || uint64(lost) != c1.DropLoss {
		t.Errorf("lost %d of 1000 at 30%% (counter %d)", lost, c1.DropLoss)
	}
	if !slices.IsSorted(s1) {
		t.Error("loss alone reordered frames")
	}
}

func TestDuplicateObservableAndReproducible(t *testing.T) {
	checkLeaks(t)
	f := Faults{Duplicate: 0.2}
	s1, c1 := faultRun(t, 3, f, 500)
	s2, _ := faultRun(t, 3, f, 500)
	if !slices.Equal(s1, s2) {
		t.Error("same seed, different frames duplicated")
	}
	dups := len(s1) - 500
	if dups < 70 || dups > 130 || uint64(dups) != c1.Duplicated {
		t.Errorf("%d duplicates of 500 at 20%% (counter %d)", dups, c1.Duplicated)
	}
	if got := slices.Compact(slices.Clone(s1)); len(got) != 500 {
		t.Errorf("%d distinct frames, want 500", len(got))
	}
}

func TestReorderObservableAndReproducible(t *testing.T) {
	checkLeaks(t)
	f := Faults{Reorder: 0.2, ReorderHold: time.Minute}
	s1, c1 := faultRun(t, 4, f, 300)
	s2, _ := faultRun(t, 4, f, 300)
	if !slices.Equal(s1, s2) {
		t.Errorf("same seed, different order:\n%v\n%v", s1, s2)
	}
	inversions := 0
	for i := 1; i < len(s1); i++ {
		if s1[i] < s1[i-1] {
			inversions++
		}
	}
	if inversions < 30 || uint64(inversions) != c1.Reordered {
		t.Errorf("%d frames out of order of 300 at 20%% (counter %d)", inversions, c1.Reordered)
	}
	sorted := slices.Sorted(slices.Values(s1))
	for i, s := range sorted {
		if s != uint32(i) {
			t.Fatalf("frames lost or duplicated by reordering: %v", sorted)
		}
	}
}

func TestCorruptionFlipsOneBit(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{Seed: 5})
	a, b := attachRaw(t, sw, "a"), attachRaw(t, sw, "b")
	must(t, b.SetFaults(Faults{Corrupt: 1, Direction: ToDevice}))
	ctx := testCtx(t)
	for i := range 100 {
		sent := testFrame(bcastMAC, macA, uint32(i), 200)
		must(t, a.Send(sent))
		got, err := b.Recv(ctx)
		must(t, err)
		if !bytes.Equal(got[:ethHeaderLen], sent[:ethHeaderLen]) {
			t.Fatalf("frame %d: Ethernet header corrupted", i)
		}
		diff := 0
		for j := range sent {
			diff += bits.OnesCount8(sent[j] ^ got[j])
		}
		if diff != 1 {
			t.Fatalf("frame %d: %d bits differ, want 1", i, diff)
		}
	}
	if b.Counters().Corrupted != 100 {
		t.Errorf("Corrupted = %d", b.Counters().Corrupted)
	}
}

// Corrupted frames reach the stack, whose IPv4 and UDP checksums reject them: nothing
// corrupt reaches the socket.
func TestCorruptionCaughtByChecksums(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{Seed: 6})
	rack := newRack(t, sw)
	srv, err := rack.ListenUDP(netip.MustParseAddrPort("0.0.0.0:4000"), UDPOptions{})
	must(t, err)
	defer srv.Close()
	cl := attachRaw(t, sw, "client")
	must(t, rack.AddNeighbor(clientIP, macA))
	must(t, cl.SetFaults(Faults{Corrupt: 1, Direction: FromDevice}))
	const n = 200
	for i := range n {
		payload := bytes.Repeat([]byte{byte(i)}, 100)
		must(t, cl.Send(udpFrame(rack.MAC(), macA, netip.AddrPortFrom(clientIP, 5000), netip.AddrPortFrom(rackIP, 4000), payload)))
	}
	// A clean frame after them is the only one that arrives.
	must(t, cl.SetFaults(Faults{}))
	must(t, cl.Send(udpFrame(rack.MAC(), macA, netip.AddrPortFrom(clientIP, 5000), netip.AddrPortFrom(rackIP, 4000), []byte("clean"))))
	must(t, srv.SetReadDeadline(time.Now().Add(30*time.Second)))
	buf := make([]byte, 2000)
	nr, _, err := srv.ReadFrom(buf)
	must(t, err)
	if string(buf[:nr]) != "clean" {
		t.Errorf("a corrupted datagram reached the socket: %q", buf[:nr])
	}
	// Most flips land in the UDP part (its checksum) or the IPv4 header (its checksum);
	// the rest change a field the stack rejects first (version, protocol, length).
	st := rack.Stats()
	if st.UDPReceived != 1 || st.UDPChecksumErrors == 0 || st.IPMalformed == 0 || st.IPReceived != n+1 {
		t.Errorf("stack counters %+v: want %d IPv4 packets, 1 good datagram, the rest rejected by checksums", st, n+1)
	}
}

func TestDelayAndJitter(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{})
	a, b := attachRaw(t, sw, "a"), attachRaw(t, sw, "b")
	const delay, jitter = 40 * time.Millisecond, 10 * time.Millisecond
	must(t, b.SetFaults(Faults{Delay: delay, Jitter: jitter, Direction: ToDevice}))
	ctx := testCtx(t)
	sent := map[uint32]time.Time{}
	for i := range 20 {
		sent[uint32(i)] = time.Now()
		must(t, a.Send(testFrame(bcastMAC, macA, uint32(i), 64)))
	}
	for range 20 {
		f, err := b.Recv(ctx)
		must(t, err)
		// A lower bound only: the frame cannot arrive before its delay.
		if waited := time.Since(sent[frameSeq(f)]); waited < delay-jitter {
			t.Errorf("frame %d arrived after %v, before the minimum delay %v", frameSeq(f), waited, delay-jitter)
		}
	}
	if got := b.Counters().Delayed; got != 20 {
		t.Errorf("Delayed = %d, want 20", got)
	}
	// Switch-wide delay applies once per frame, both ways.
	must(t, b.SetFaults(Faults{}))
	must(t, sw.SetFaults(Faults{Delay: delay}))
	t0 := time.Now()
	must(t, b.Send(testFrame(macA, macB, 99, 64)))
	if _, err := a.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(t0); waited < delay {
		t.Errorf("switch delay: arrived after %v, want at least %v", waited, delay)
	}
	if sw.Counters().Delayed != 1 {
		t.Errorf("switch Delayed = %d, want 1", sw.Counters().Delayed)
	}
}

// Closing the switch with frames still in a delay line drops them and stops the line.
func TestCloseWithDelayedFrames(t *testing.T) {
	checkLeaks(t)
	sw, err := NewSwitch(Config{})
	must(t, err)
	a, _ := sw.AttachRaw("a", RawOptions{})
	b, _ := sw.AttachRaw("b", RawOptions{})
	must(t, b.SetFaults(Faults{Delay: time.Minute}))
	for i := range 10 {
		must(t, a.Send(testFrame(bcastMAC, macA, uint32(i), 64)))
	}
	must(t, sw.Close())
	if b.Pending() != 0 {
		t.Errorf("%d delayed frames delivered after close", b.Pending())
	}
}

// Faults on a stack's port, seen by TCP and UDP: concurrent senders stay safe.
func TestFaultsConcurrentTraffic(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{Seed: 9})
	rack := newRack(t, sw)
	m := newStack(t, sw, StackConfig{Name: "m", Addrs: []netip.Prefix{netip.PrefixFrom(clientIP, 24)}})
	must(t, m.Port().SetFaults(Faults{Loss: 0.05, Duplicate: 0.05, Reorder: 0.05, Delay: 2 * time.Millisecond, Jitter: time.Millisecond}))
	l, err := rack.ListenTCP(netip.AddrPortFrom(rackIP, 9000))
	must(t, err)
	defer l.Close()
	data := blob(1<<20, 3)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.Write(data)
			}()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cwg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			c, err := m.DialContext(ctx, "tcp", "198.18.0.1:9000")
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			got, err := readAll(ctx, c)
			if err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, data) {
				errs <- errBadData
			}
		}()
	}
	cwg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	l.Close()
	wg.Wait()
}

var errBadData = &net.AddrError{Err: "data differs"}

func readAll(ctx context.Context, c net.Conn) ([]byte, error) {
	if dl, ok := ctx.Deadline(); ok {
		c.SetReadDeadline(dl)
	}
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			if err.Error() == "EOF" {
				return out, nil
			}
			return out, err
		}
	}
}

// A port's delay lines stop when the port closes, not only with the switch.
func TestPortCloseStopsDelayLines(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{})
	a := attachRaw(t, sw, "a")
	base := runtime.NumGoroutine()
	var ports []*RawPort
	for i := range 5 {
		b, err := sw.AttachRaw(fmt.Sprintf("b%d", i), RawOptions{})
		must(t, err)
		must(t, b.SetFaults(Faults{Delay: time.Minute}))
		ports = append(ports, b)
	}
	must(t, a.Send(testFrame(bcastMAC, macA, 1, 64)))
	if runtime.NumGoroutine() < base+5 {
		t.Fatalf("%d goroutines, want a delay line per port (%d)", runtime.NumGoroutine(), base+5)
	}
	for _, b := range ports {
		must(t, b.Close())
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after closing the ports, %d before: delay lines outlive their ports", runtime.NumGoroutine(), base)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
