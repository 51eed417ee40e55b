package vnet

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/maasemu/maasemu/trace"
)

var (
	macA = mustMAC("52:54:00:00:00:0a")
	macB = mustMAC("52:54:00:00:00:0b")
	macC = mustMAC("52:54:00:00:00:0c")
)

func TestFloodingAndLearning(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{})
	ctx := testCtx(t)
	a, b, c := attachRaw(t, sw, "a"), attachRaw(t, sw, "b"), attachRaw(t, sw, "c")

	// Unknown unicast floods to every other port, never back to the sender.
	if err := a.Send(testFrame(macB, macA, 1, 64)); err != nil {
		t.Fatal(err)
	}
	recvN(t, ctx, b, 1)
	recvN(t, ctx, c, 1)
	quiet(t, a)

	// B answers A: A is learned, so only A gets it.
	if err := b.Send(testFrame(macA, macB, 2, 64)); err != nil {
		t.Fatal(err)
	}
	recvN(t, ctx, a, 1)
	quiet(t, c)

	// Now both are learned: A -> B is unicast, C sees nothing.
	if err := a.Send(testFrame(macB, macA, 3, 64)); err != nil {
		t.Fatal(err)
	}
	got := recvN(t, ctx, b, 1)
	if frameSeq(got[0]) != 3 {
		t.Errorf("b got frame %d, want 3", frameSeq(got[0]))
	}
	quiet(t, c)

	// Broadcast and multicast always flood.
	for _, dst := range [][]byte{bcastMAC, mustMAC("01:00:5e:00:00:01"), mustMAC("33:33:00:00:00:01")} {
		if err := a.Send(testFrame(dst, macA, 4, 64)); err != nil {
			t.Fatal(err)
		}
		recvN(t, ctx, b, 1)
		recvN(t, ctx, c, 1)
	}
	quiet(t, a)

	learned := map[string]string{}
	for m, p := range sw.Learned() {
		learned[m] = p.Name()
	}
	if diff := cmp.Diff(map[string]string{macA.String(): "a", macB.String(): "b"}, learned); diff != "" {
		t.Errorf("MAC table (-want +got):\n%s", diff)
	}
	sc := sw.Counters()
	if sc.Unicast != 2 || sc.Flooded != 4 {
		t.Errorf("switch counters: unicast %d flooded %d, want 2 and 4", sc.Unicast, sc.Flooded)
	}
	ac := a.Counters()
	if ac.RxFrames != 5 || ac.TxFrames != 1 || ac.RxBytes != 5*64 {
		t.Errorf("port a counters %+v: want 5 frames (320 bytes) in, 1 out", ac)
	}
}

func TestMACMoveAndFilter(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{})
	ctx := testCtx(t)
	a, b, c := attachRaw(t, sw, "a"), attachRaw(t, sw, "b"), attachRaw(t, sw, "c")
	must(t, a.Send(testFrame(bcastMAC, macA, 1, 64)))
	recvN(t, ctx, b, 1)
	recvN(t, ctx, c, 1)
	// A frame to A arriving on A's own port is filtered.
	must(t, a.Send(testFrame(macA, macC, 2, 64)))
	quiet(t, b)
	quiet(t, c)
	if sw.Counters().Filtered != 1 {
		t.Errorf("filtered = %d, want 1", sw.Counters().Filtered)
	}
	// The station moves to port c.
	must(t, c.Send(testFrame(bcastMAC, macA, 3, 64)))
	recvN(t, ctx, a, 1)
	recvN(t, ctx, b, 1)
	must(t, b.Send(testFrame(macA, macB, 4, 64)))
	recvN(t, ctx, c, 1)
	quiet(t, a)
}

func TestMACAgeing(t *testing.T) {
	checkLeaks(t)
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	sw, _ := newTestSwitch(t, Config{AgeingTime: 10 * time.Second, Now: clock})
	ctx := testCtx(t)
	a, b, c := attachRaw(t, sw, "a"), attachRaw(t, sw, "b"), attachRaw(t, sw, "c")
	must(t, b.Send(testFrame(bcastMAC, macB, 1, 64)))
	recvN(t, ctx, a, 1)
	recvN(t, ctx, c, 1)

	now = now.Add(9 * time.Second)
	must(t, a.Send(testFrame(macB, macA, 2, 64)))
	recvN(t, ctx, b, 1)
	quiet(t, c) // still learned

	now = now.Add(11 * time.Second)
	must(t, a.Send(testFrame(macB, macA, 3, 64)))
	recvN(t, ctx, b, 1)
	recvN(t, ctx, c, 1) // aged out: flooded again
	if _, ok := sw.Learned()[macB.String()]; ok {
		t.Errorf("%v still learned after the ageing time", macB)
	}
}

func TestPortCloseForgetsMACs(t *testing.T) {
	checkLeaks(t)
	sw, rec := newTestSwitch(t, Config{})
	ctx := testCtx(t)
	a, b, c := attachRaw(t, sw, "a"), attachRaw(t, sw, "b"), attachRaw(t, sw, "c")
	must(t, b.Send(testFrame(bcastMAC, macB, 1, 64)))
	recvN(t, ctx, a, 1)
	recvN(t, ctx, c, 1)
	must(t, b.Close())
	must(t, b.Close()) // twice is fine
	if err := b.Send(testFrame(bcastMAC, macB, 1, 64)); err != ErrClosed {
		t.Errorf("send on closed port: %v, want ErrClosed", err)
	}
	if _, err := b.Recv(ctx); err != ErrClosed {
		t.Errorf("recv on closed port: %v, want ErrClosed", err)
	}
	must(t, a.Send(testFrame(macB, macA, 2, 64)))
	recvN(t, ctx, c, 1) // flooded: B is forgotten
	if len(sw.Ports()) != 2 {
		t.Errorf("%d ports attached, want 2", len(sw.Ports()))
	}
	if !hasEvent(rec, trace.KindLink, "port b detached") {
		t.Errorf("no detach event in %v", eventsOf(rec, trace.KindLink))
	}
}

func TestMTU(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{MTU: 1500})
	ctx := testCtx(t)
	a, b := attachRaw(t, sw, "a"), attachRaw(t, sw, "b")
	big, err := sw.AttachRaw("big", RawOptions{MTU: 9000})
	must(t, err)

	// Exactly MTU plus header passes; one byte more is refused at the sender.
	must(t, a.Send(testFrame(bcastMAC, macA, 1, 1514)))
	recvN(t, ctx, b, 1)
	recvN(t, ctx, big, 1)
	if err := a.Send(testFrame(bcastMAC, macA, 2, 1515)); err == nil {
		t.Error("a 1515-byte frame on a 1500-MTU port was accepted")
	}
	// An 802.1Q tag adds 4 bytes.
	tagged := testFrame(bcastMAC, macA, 3, 1518)
	tagged[12], tagged[13] = 0x81, 0x00
	must(t, a.Send(tagged))
	recvN(t, ctx, b, 1)
	recvN(t, ctx, big, 1)

	// A jumbo frame from the 9000-MTU port is dropped on the way out of 1500-MTU ports.
	must(t, big.Send(testFrame(bcastMAC, macC, 4, 9014)))
	quiet(t, a)
	quiet(t, b)
	if got := a.Counters().TxOversize; got != 1 {
		t.Errorf("a TxOversize = %d, want 1", got)
	}
	if got := a.Counters().RxOversize; got != 1 {
		t.Errorf("a RxOversize = %d, want 1", got)
	}
	// Raising the MTU lets it through.
	must(t, b.SetMTU(9000))
	must(t, big.Send(testFrame(bcastMAC, macC, 5, 9014)))
	recvN(t, ctx, b, 1)

	for _, bad := range []int{0, 67, 65536} {
		if err := b.SetMTU(bad); err == nil {
			t.Errorf("SetMTU(%d) accepted", bad)
		}
	}
	if b.MTU() != 9000 {
		t.Errorf("MTU changed to %d by refused calls", b.MTU())
	}
}

func TestMalformedFrames(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{})
	a, b := attachRaw(t, sw, "a"), attachRaw(t, sw, "b")
	for _, n := range []int{0, 1, 13} {
		if err := a.Send(make([]byte, n)); err == nil {
			t.Errorf("a %d-byte frame was accepted", n)
		}
	}
	quiet(t, b)
	if got := a.Counters().Malformed; got != 3 {
		t.Errorf("malformed = %d, want 3", got)
	}
}

func TestCutAndHeal(t *testing.T) {
	checkLeaks(t)
	sw, rec := newTestSwitch(t, Config{})
	ctx := testCtx(t)
	a, b := attachRaw(t, sw, "a"), attachRaw(t, sw, "b")
	must(t, a.Send(testFrame(bcastMAC, macA, 1, 64)))
	recvN(t, ctx, b, 1)

	b.Cut(0)
	if !b.Down() {
		t.Fatal("port not down after Cut")
	}
	must(t, a.Send(testFrame(bcastMAC, macA, 2, 64)))
	must(t, b.Send(testFrame(bcastMAC, macB, 3, 64)))
	quiet(t, a)
	quiet(t, b)
	if got := b.Counters().DropCut; got != 2 {
		t.Errorf("DropCut = %d, want 2 (one each way)", got)
	}
	b.Heal()
	must(t, a.Send(testFrame(bcastMAC, macA, 4, 64)))
	if f := recvN(t, ctx, b, 1); frameSeq(f[0]) != 4 {
		t.Errorf("after heal got frame %d, want 4", frameSeq(f[0]))
	}

	// A timed cut heals by itself.
	b.Cut(50 * time.Millisecond)
	must(t, a.Send(testFrame(bcastMAC, macA, 5, 64)))
	quiet(t, b)
	for b.Down() {
		select {
		case <-ctx.Done():
			t.Fatal("timed cut never healed")
		case <-time.After(5 * time.Millisecond):
		}
	}
	must(t, a.Send(testFrame(bcastMAC, macA, 6, 64)))
	if f := recvN(t, ctx, b, 1); frameSeq(f[0]) != 6 {
		t.Errorf("after timed heal got frame %d, want 6", frameSeq(f[0]))
	}

	// The whole switch.
	sw.Cut(0)
	must(t, a.Send(testFrame(bcastMAC, macA, 7, 64)))
	quiet(t, b)
	sw.Heal()
	must(t, a.Send(testFrame(bcastMAC, macA, 8, 64)))
	recvN(t, ctx, b, 1)

	var states []string
	for _, e := range eventsOf(rec, trace.KindLink) {
		if e.Attrs["port"] == "b" || e.Attrs["port"] == nil {
			states = append(states, e.Attrs["state"].(string))
		}
	}
	want := []string{"up", "down", "up", "down", "up", "down", "up"}
	if diff := cmp.Diff(want, states); diff != "" {
		t.Errorf("link events of b and the switch (-want +got):\n%s", diff)
	}
}

func TestCaptureEverythingForwarded(t *testing.T) {
	checkLeaks(t)
	var cw captureRecorder
	sw, _ := newTestSwitch(t, Config{Capture: &cw})
	ctx := testCtx(t)
	a, b := attachRaw(t, sw, "a"), attachRaw(t, sw, "b")
	f1 := testFrame(bcastMAC, macA, 1, 100)
	f2 := testFrame(macA, macB, 2, 200)
	must(t, a.Send(f1))
	must(t, b.Send(f2))
	recvN(t, ctx, b, 1)
	recvN(t, ctx, a, 1)
	if len(cw.frames) != 2 || !bytes.Equal(cw.frames[0], f1) || !bytes.Equal(cw.frames[1], f2) {
		t.Errorf("captured %d frames, want the 2 sent", len(cw.frames))
	}
	sw.SetCapture(nil)
	must(t, a.Send(f1))
	if len(cw.frames) != 2 {
		t.Errorf("captured after SetCapture(nil)")
	}
}

type captureRecorder struct{ frames [][]byte }

func (c *captureRecorder) WritePacket(_ time.Time, f []byte) error {
	c.frames = append(c.frames, append([]byte(nil), f...))
	return nil
}

func TestBadConfig(t *testing.T) {
	for _, cfg := range []Config{{MTU: 10}, {MTU: 70000}, {AgeingTime: -time.Second}} {
		if sw, err := NewSwitch(cfg); err == nil {
			sw.Close()
			t.Errorf("NewSwitch(%+v) accepted", cfg)
		}
	}
	sw, _ := newTestSwitch(t, Config{})
	attachRaw(t, sw, "a")
	if _, err := sw.AttachRaw("a", RawOptions{}); err == nil {
		t.Error("a second port named a was attached")
	}
	if _, err := sw.AttachRaw("q", RawOptions{Queue: -1}); err == nil {
		t.Error("a negative queue was accepted")
	}
	must(t, sw.Close())
	if _, err := sw.AttachRaw("z", RawOptions{}); err != ErrClosed {
		t.Errorf("attach after close: %v, want ErrClosed", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
