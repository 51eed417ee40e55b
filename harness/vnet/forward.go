package vnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Forwarder relays connections from a host socket to an address on the virtual
// network, through a Stack: host tools (curl, tftp, a browser) reach the rack, and
// benchmarks drive real clients through the switch.
type Forwarder struct {
	addr   netip.AddrPort
	closer func() error
	once   sync.Once
	err    error
}

// Addr is the host address the forwarder listens on.
func (f *Forwarder) Addr() netip.AddrPort { return f.addr }

// Close stops listening, ends every relayed connection and waits for them. It is safe
// to call more than once.
func (f *Forwarder) Close() error {
	f.once.Do(func() { f.err = f.closer() })
	return f.err
}

// ForwardTCP listens on the host at listen (port 0 picks one) and connects every
// accepted connection to `to` through the stack.
func (st *Stack) ForwardTCP(listen, to netip.AddrPort) (*Forwarder, error) {
	ln, err := net.Listen("tcp", listen.String())
	if err != nil {
		return nil, fmt.Errorf("vnet: forward tcp %v -> %v: %w", listen, to, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	track := func(c net.Conn, add bool) bool {
		mu.Lock()
		defer mu.Unlock()
		if add {
			if ctx.Err() != nil {
				return false
			}
			conns[c] = struct{}{}
		} else {
			delete(conns, c)
		}
		return true
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			hc, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer hc.Close()
				if !track(hc, true) {
					return
				}
				defer track(hc, false)
				vc, err := st.DialContext(ctx, "tcp", to.String())
				if err != nil {
					st.port.sw.log.Debug("forward tcp dial", "to", to, "err", err)
					return
				}
				defer vc.Close()
				if !track(vc, true) {
					return
				}
				defer track(vc, false)
				splice(hc, vc)
			}()
		}
	}()
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	f := &Forwarder{addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
	f.closer = func() error {
		cancel()
		err := ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
		return err
	}
	return f, nil
}

// splice copies both ways until both directions end.
func splice(a, b net.Conn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(b, a)
		closeWrite(b)
	}()
	_, _ = io.Copy(a, b)
	closeWrite(a)
	<-done
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}

// UDPIdleTimeout ends a relayed UDP session with no traffic either way for this long.
const UDPIdleTimeout = 2 * time.Minute

// ForwardUDP listens on the host at listen (port 0 picks one) and relays datagrams to
// `to` through the stack. Each host client gets its own socket on the stack, and replies
// from any address and port (a TFTP server's transfer port) are relayed back to it.
func (st *Stack) ForwardUDP(listen, to netip.AddrPort) (*Forwarder, error) {
	hc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(listen))
	if err != nil {
		return nil, fmt.Errorf("vnet: forward udp %v -> %v: %w", listen, to, err)
	}
	_ = hc.SetReadBuffer(4 << 20)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		sessions = map[netip.AddrPort]net.PacketConn{}
		closed   bool
	)
	toAddr := net.UDPAddrFromAddrPort(to)
	session := func(client netip.AddrPort) (net.PacketConn, error) {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		if vc, ok := sessions[client]; ok {
			return vc, nil
		}
		vc, err := st.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 0), UDPOptions{ReceiveBuffer: 4 << 20})
		if err != nil {
			return nil, err
		}
		sessions[client] = vc
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(sessions, client)
				mu.Unlock()
				vc.Close()
			}()
			buf := make([]byte, 65536)
			for {
				_ = vc.SetReadDeadline(time.Now().Add(UDPIdleTimeout))
				n, _, err := vc.ReadFrom(buf)
				if err != nil {
					return
				}
				if _, err := hc.WriteToUDPAddrPort(buf[:n], client); err != nil && errors.Is(err, net.ErrClosed) {
					return
				}
			}
		}()
		return vc, nil
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			n, client, err := hc.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			vc, err := session(netip.AddrPortFrom(client.Addr().Unmap(), client.Port()))
			if err != nil {
				continue
			}
			_, _ = vc.WriteTo(buf[:n], toAddr)
		}
	}()
	ap := hc.LocalAddr().(*net.UDPAddr).AddrPort()
	f := &Forwarder{addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
	f.closer = func() error {
		err := hc.Close()
		mu.Lock()
		closed = true
		for _, vc := range sessions {
			vc.Close()
		}
		mu.Unlock()
		wg.Wait()
		return err
	}
	return f, nil
}
