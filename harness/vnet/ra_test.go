package vnet

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"

	"github.com/maasemu/maasemu/pxe/ra"
)

// routerSolicitation is the frame iPXE sends, marshalled by golang.org/x/net/icmp.
func routerSolicitation(t *testing.T, from net.HardwareAddr) []byte {
	t.Helper()
	src, dst := ra.LinkLocal(from), netip.MustParseAddr("ff02::2")
	m := icmp.Message{Type: ipv6.ICMPTypeRouterSolicitation, Body: &icmp.RawBody{Data: append([]byte{0, 0, 0, 0, 1, 1}, from...)}}
	msg, err := m.Marshal(icmp.IPv6PseudoHeader(src.AsSlice(), dst.AsSlice()))
	if err != nil {
		t.Fatal(err)
	}
	f := append([]byte{0x33, 0x33, 0, 0, 0, 2}, from...)
	f = binary.BigEndian.AppendUint16(f, 0x86dd)
	f = append(f, 0x60, 0, 0, 0)
	f = binary.BigEndian.AppendUint16(f, uint16(len(msg)))
	f = append(f, 58, 255)
	s, d := src.As16(), dst.As16()
	f = append(f, s[:]...)
	f = append(f, d[:]...)
	return append(f, msg...)
}

// TestSwitchAnswersRouterSolicitations: the switch answers a router solicitation, to the
// soliciting port only, with pxe/ra's advertisement from its own router MAC, and still
// floods the solicitation; with NoRouterAdvertisements it only floods it.
func TestSwitchAnswersRouterSolicitations(t *testing.T) {
	for _, off := range []bool{false, true} {
		sw, _ := newTestSwitch(t, Config{Name: "ra-test", NoRouterAdvertisements: off})
		host, other := attachRaw(t, sw, "host"), attachRaw(t, sw, "other")
		hostMAC := mustMAC("52:54:00:12:34:56")
		rs := routerSolicitation(t, hostMAC)
		if err := host.Send(rs); err != nil {
			t.Fatal(err)
		}
		if got, err := other.Recv(testCtx(t)); err != nil || !bytes.Equal(got, rs) {
			t.Errorf("off=%v: the solicitation was not flooded: %x %v", off, got, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		got, err := host.Recv(ctx)
		cancel()
		if off {
			if err == nil {
				t.Errorf("with NoRouterAdvertisements the switch answered %x", got)
			}
			continue
		}
		if err != nil {
			t.Fatalf("no advertisement: %v", err)
		}
		want := ra.Advertisement(newRAResponder("ra-test").mac, hostMAC, ra.LinkLocal(hostMAC))
		if !bytes.Equal(got, want) {
			t.Errorf("advertisement\n got %x\nwant %x", got, want)
		}
		if msg, err := icmp.ParseMessage(58, got[54:]); err != nil || msg.Type != ipv6.ICMPTypeRouterAdvertisement {
			t.Errorf("not an ICMPv6 router advertisement: %v %v", msg, err)
		}
		// Nothing goes to the other port but the solicitation.
		ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
		if f, err := other.Recv(ctx); err == nil {
			t.Errorf("the other port also got %x", f)
		}
		cancel()
	}
}
