package vnet

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/maasemu/maasemu/trace"
)

// checkLeaks fails the test when goroutines started during it are still running after
// its cleanups. Register it first, so its cleanup runs last.
func checkLeaks(t *testing.T) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= base {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutines leaked: %d running, %d before the test\n%s", n, base, buf)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func newTestSwitch(t *testing.T, cfg Config) (*Switch, *trace.Recorder) {
	t.Helper()
	rec := trace.NewRecorder(nil)
	if cfg.Trace == nil {
		cfg.Trace = rec
	}
	sw, err := NewSwitch(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sw.Close(); err != nil {
			t.Errorf("closing switch: %v", err)
		}
	})
	return sw, rec
}

func attachRaw(t *testing.T, sw *Switch, name string) *RawPort {
	t.Helper()
	p, err := sw.AttachRaw(name, RawOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustMAC(s string) net.HardwareAddr {
	hw, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return hw
}

var bcastMAC = mustMAC("ff:ff:ff:ff:ff:ff")

// ethFrame builds an Ethernet frame.
func ethFrame(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
	f := make([]byte, ethHeaderLen+len(payload))
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:], etherType)
	copy(f[14:], payload)
	return f
}

// testFrame is a frame carrying a sequence number, for counting and ordering.
func testFrame(dst, src net.HardwareAddr, seq uint32, size int) []byte {
	if size < ethHeaderLen+4 {
		size = ethHeaderLen + 4
	}
	payload := make([]byte, size-ethHeaderLen)
	binary.BigEndian.PutUint32(payload, seq)
	return ethFrame(dst, src, 0x88b5, payload) // IEEE local experimental ethertype
}

func frameSeq(f []byte) uint32 { return binary.BigEndian.Uint32(f[14:]) }

// arpRequest builds a who-has request.
func arpRequest(srcMAC net.HardwareAddr, srcIP, target netip.Addr) []byte {
	p := make([]byte, 28)
	binary.BigEndian.PutUint16(p[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(p[2:], 0x0800) // IPv4
	p[4], p[5] = 6, 4
	binary.BigEndian.PutUint16(p[6:], 1) // request
	copy(p[8:14], srcMAC)
	s4, t4 := srcIP.As4(), target.As4()
	copy(p[14:18], s4[:])
	copy(p[24:28], t4[:])
	return ethFrame(bcastMAC, srcMAC, 0x0806, p)
}

// recvN receives n frames from p.
func recvN(t *testing.T, ctx context.Context, p *RawPort, n int) [][]byte {
	t.Helper()
	var out [][]byte
	for range n {
		f, err := p.Recv(ctx)
		if err != nil {
			t.Fatalf("port %s: received %d of %d frames: %v", p.Name(), len(out), n, err)
		}
		out = append(out, f)
	}
	return out
}

// quiet asserts that p has nothing queued, after the switch finished forwarding (raw
// sends are synchronous, so anything forwarded is queued already).
func quiet(t *testing.T, p *RawPort) {
	t.Helper()
	if n := p.Pending(); n != 0 {
		t.Errorf("port %s: %d unexpected frames queued", p.Name(), n)
	}
}

func eventsOf(rec *trace.Recorder, kind string) []trace.Event {
	var out []trace.Event
	for _, e := range rec.Events() {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func hasEvent(rec *trace.Recorder, kind, substr string) bool {
	for _, e := range eventsOf(rec, kind) {
		if strings.Contains(e.Message, substr) {
			return true
		}
	}
	return false
}
