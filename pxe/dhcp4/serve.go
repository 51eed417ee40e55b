package dhcp4

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"time"

	"github.com/maasemu/maasemu/trace"
)

// maxPacket bounds a received datagram. DHCP messages fit an Ethernet frame; a larger one is
// cut and then rejected as malformed.
const maxPacket = 4096

// maxInFlight bounds concurrent handlers (a slow Hosts lookup must not pile up goroutines).
const maxInFlight = 64

// ExpireEvery is how often Serve ends expired leases.
var ExpireEvery = 5 * time.Second

// Serve answers DHCPv4 on conn until ctx is done, then closes conn. conn is usually
// 0.0.0.0:67 bound to one interface (a host socket with SO_BROADCAST and SO_BINDTODEVICE),
// or a gVisor UDP endpoint on port 67 with broadcast enabled. Replies go where RFC 2131 says
// (see replyAddr), broadcast ones to 255.255.255.255:68.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var local netip.Addr
	if ap, err := netip.ParseAddrPort(conn.LocalAddr().String()); err == nil && !ap.Addr().IsUnspecified() {
		local = ap.Addr().Unmap()
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	defer conn.Close()

	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(ExpireEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.Expire()
			}
		}
	}()

	sem := make(chan struct{}, maxInFlight)
	buf := make([]byte, maxPacket)
	for {
		n, addr, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("dhcp4 serve: %w", err)
			}
			s.cfg.Logger.Warn("dhcp4: read", "error", err)
			continue
		}
		p := Packet{Data: append([]byte(nil), buf[:n]...), Peer: udpAddr(addr), Local: local}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			defer func() {
				if r := recover(); r != nil {
					// Handle is fuzzed not to panic; this keeps a long-running server up anyway.
					s.bad(p, fmt.Sprintf("internal error handling packet: %v", r))
					s.cfg.Logger.Error("dhcp4: panic", "panic", r, "stack", string(debug.Stack()))
				}
			}()
			reply, err := s.Handle(ctx, p)
			if err != nil {
				s.cfg.Logger.Error("dhcp4: handle", "error", err)
			}
			if reply == nil {
				return
			}
			if _, err := conn.WriteTo(reply.Msg.ToBytes(), reply.Dest); err != nil && ctx.Err() == nil {
				s.cfg.Logger.Error("dhcp4: send", "dest", reply.Dest.String(), "error", err)
				s.cfg.Sink.Emit(trace.Event{Source: trace.SourceDHCP, Kind: trace.KindDHCPIgnored, Level: trace.LevelError,
					MAC: reply.Msg.ClientHWAddr.String(), Message: fmt.Sprintf("cannot send %s to %s: %v", reply.Msg.MessageType(), reply.Dest, err),
					Attrs: map[string]any{"reason": "send failed: " + err.Error(), "dest": reply.Dest.String()}})
			}
		}()
	}
}

func udpAddr(a net.Addr) *net.UDPAddr {
	if u, ok := a.(*net.UDPAddr); ok {
		return u
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return net.UDPAddrFromAddrPort(ap)
	}
	return nil
}
