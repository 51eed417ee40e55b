package tcp

// maasemu's regression test for the fix described in PATCHES.md (not an upstream file).

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// pipeStack is a stack on one end of an in-memory IP wire.
func pipeStack(t *testing.T, last byte) (*stack.Stack, *channel.Endpoint, tcpip.Address) {
	t.Helper()
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{NewProtocol},
	})
	t.Cleanup(func() { s.Close(); s.Wait() })
	ep := channel.New(1024, 1500, "")
	if err := s.CreateNIC(1, ep); err != nil {
		t.Fatal(err)
	}
	addr := tcpip.AddrFrom4([4]byte{10, 0, 0, last})
	if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: addr.WithPrefix()}, stack.AddressProperties{}); err != nil {
		t.Fatal(err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}})
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.SetTransportProtocolOption(ProtocolNumber, &sack); err != nil {
		t.Fatal(err)
	}
	return s, ep, addr
}

// wire carries frames from one endpoint to the other after delay, dropping them while
// drop is set.
func wire(ctx context.Context, from, to *channel.Endpoint, delay time.Duration, drop *atomic.Bool) {
	type frame struct {
		at   time.Time
		data []byte
	}
	q := make(chan frame, 1024)
	go func() {
		for {
			pkt := from.ReadContext(ctx)
			if pkt == nil {
				close(q)
				return
			}
			var b []byte
			for _, v := range pkt.AsSlices() {
				b = append(b, v...)
			}
			pkt.DecRef()
			if !drop.Load() {
				q <- frame{time.Now().Add(delay), b}
			}
		}
	}()
	go func() {
		for f := range q {
			time.Sleep(time.Until(f.at))
			to.InjectInbound(ipv4.ProtocolNumber, stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(f.data)}))
		}
	}()
}

// TestTailResentWhenOutstandingDrifted is the hang PATCHES.md fixes: the sender's
// Outstanding count reads 0 while data is unacknowledged (as after SACK recovery), the
// tail and its loss probe are lost, and the sender must still retransmit on its
// retransmission timer. Unpatched, nothing arms that timer and the reader waits forever.
func TestTailResentWhenOutstandingDrifted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs, cep, _ := pipeStack(t, 1)
	ss, sep, saddr := pipeStack(t, 2)
	var drop, never atomic.Bool
	wire(ctx, cep, sep, 10*time.Millisecond, &drop)
	wire(ctx, sep, cep, 10*time.Millisecond, &never)

	ln, err := gonet.ListenTCP(ss, tcpip.FullAddress{NIC: 1, Addr: saddr, Port: 80}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *gonet.TCPConn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c.(*gonet.TCPConn)
		}
	}()
	conn, err := gonet.DialContextTCP(ctx, cs, tcpip.FullAddress{NIC: 1, Addr: saddr, Port: 80}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	srv := <-accepted
	defer srv.Close()
	// Round trips, so the sender has an RTT estimate and schedules loss probes.
	buf := make([]byte, 3000)
	for range 5 {
		if _, err := conn.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(srv, buf[:4]); err != nil {
			t.Fatal(err)
		}
	}
	var ep *Endpoint
	for _, te := range cs.RegisteredEndpoints() {
		if e, ok := te.(*Endpoint); ok && e.EndpointState() == StateEstablished {
			ep = e
		}
	}
	if ep == nil {
		t.Fatal("no established endpoint on the client stack")
	}

	drop.Store(true)
	if _, err := conn.Write(make([]byte, 3000)); err != nil {
		t.Fatal(err)
	}
	ep.LockUser()
	if ep.snd.SndUna == ep.snd.SndNxt {
		ep.UnlockUser()
		t.Fatal("the write was not sent at once")
	}
	ep.snd.Outstanding = 0 // the drift
	ep.UnlockUser()
	time.Sleep(300 * time.Millisecond) // the loss probe (2 x SRTT, ~40 ms) is lost too
	drop.Store(false)

	if err := srv.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(srv, buf); err != nil {
		t.Fatalf("the tail was never resent: %v", err)
	}
}
