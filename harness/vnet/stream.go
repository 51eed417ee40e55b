package vnet

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// StreamPortConfig configures a stream port: QEMU's socket netdev in TCP form
// (-netdev socket,connect=... or listen=...; libvirt <interface type='client'> or
// 'server'). Each frame on the stream is preceded by its length as a 4-byte big-endian
// number (QEMU net/socket.c, net_socket_receive).
type StreamPortConfig struct {
	Name string
	// MTU of the port; 0 means the switch's default.
	MTU int
	// MAC, when known, names the machine behind the port in trace events.
	MAC net.HardwareAddr
	// Queue is how many frames may wait to be written to the stream; 0 means 1024.
	Queue int
}

// StreamPort is a switch port carrying frames over a TCP stream.
type StreamPort struct {
	*Port
	ln    net.Listener // nil when the port dialled
	addr  netip.AddrPort
	queue int

	mu   sync.Mutex
	cur  *streamConn
	wg   sync.WaitGroup
	done chan struct{}
}

type streamConn struct {
	conn net.Conn
	q    chan []byte
	dead atomic.Bool
}

// ListenStream listens on addr (port 0 picks one) for QEMU to connect
// (-netdev socket,connect=ADDR; libvirt <interface type='client'>). One connection is
// served at a time; a new one replaces the old (QEMU reconnecting).
func (sw *Switch) ListenStream(cfg StreamPortConfig, addr netip.AddrPort) (*StreamPort, error) {
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("vnet: stream port %q: listen on %v: %w", cfg.Name, addr, err)
	}
	sp, err := sw.newStreamPort(cfg, ln)
	if err != nil {
		ln.Close()
		return nil, err
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	sp.addr = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	sp.wg.Add(1)
	go sp.acceptLoop()
	return sp, nil
}

// DialStream connects to QEMU listening on addr (-netdev socket,listen=ADDR; libvirt
// <interface type='server'>), retrying until ctx ends because QEMU may not be listening
// yet. When the connection ends the port stays attached, disconnected.
func (sw *Switch) DialStream(ctx context.Context, cfg StreamPortConfig, addr netip.AddrPort) (*StreamPort, error) {
	var d net.Dialer
	var conn net.Conn
	for {
		var err error
		conn, err = d.DialContext(ctx, "tcp", addr.String())
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("vnet: stream port %q: connect to %v: %w", cfg.Name, addr, errors.Join(ctx.Err(), err))
		case <-time.After(50 * time.Millisecond):
		}
	}
	sp, err := sw.newStreamPort(cfg, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	sp.addr = addr
	sp.wg.Add(1)
	go func() {
		defer sp.wg.Done()
		sp.serve(conn)
	}()
	return sp, nil
}

func (sw *Switch) newStreamPort(cfg StreamPortConfig, ln net.Listener) (*StreamPort, error) {
	if cfg.Queue < 0 {
		return nil, fmt.Errorf("vnet: stream port %q: queue %d must not be negative", cfg.Name, cfg.Queue)
	}
	if cfg.Queue == 0 {
		cfg.Queue = 1024
	}
	sp := &StreamPort{ln: ln, queue: cfg.Queue, done: make(chan struct{})}
	p, err := sw.attach(cfg.Name, "stream", cfg.MTU, cfg.MAC, sp.deliver, sp.close)
	if err != nil {
		return nil, err
	}
	sp.Port = p
	return sp, nil
}

// Addr is the address the port listens on (QEMU's connect=) or dialled (QEMU's listen=).
func (sp *StreamPort) Addr() netip.AddrPort { return sp.addr }

// QEMUNetdev returns the QEMU -netdev option value that pairs with this port.
func (sp *StreamPort) QEMUNetdev(id string) string {
	if sp.ln != nil {
		return fmt.Sprintf("socket,id=%s,connect=%s", id, sp.addr)
	}
	return fmt.Sprintf("socket,id=%s,listen=%s", id, sp.addr)
}

// Connected reports whether a stream is attached now.
func (sp *StreamPort) Connected() bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.cur != nil && !sp.cur.dead.Load()
}

func (sp *StreamPort) acceptLoop() {
	defer sp.wg.Done()
	for {
		conn, err := sp.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			sp.sw.log.Debug("stream port accept", "port", sp.name, "err", err)
			select {
			case <-sp.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		sp.wg.Add(1)
		go func() {
			defer sp.wg.Done()
			sp.serve(conn)
		}()
	}
}

// serve runs one connection until it ends or the port closes.
func (sp *StreamPort) serve(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	sc := &streamConn{conn: conn, q: make(chan []byte, sp.queue)}
	sp.mu.Lock()
	select {
	case <-sp.done:
		sp.mu.Unlock()
		conn.Close()
		return
	default:
	}
	old := sp.cur
	sp.cur = sc
	sp.mu.Unlock()
	if old != nil {
		old.conn.Close() // a reconnect replaces the previous stream
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		sp.writeLoop(sc)
	}()
	if err := sp.readLoop(conn); !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		sp.sw.log.Warn("stream port closed", "port", sp.name, "err", err)
	}
	conn.Close()
	sp.mu.Lock() // deliver sends on sc.q only under sp.mu, after checking dead
	sc.dead.Store(true)
	close(sc.q)
	if sp.cur == sc {
		sp.cur = nil
	}
	sp.mu.Unlock()
	<-writerDone
}

// readLoop reads length-prefixed frames until an error. A bad length loses the
// framing, so it ends the connection.
func (sp *StreamPort) readLoop(conn net.Conn) error {
	br := bufio.NewReaderSize(conn, 256<<10)
	buf := make([]byte, maxFrame)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n < ethHeaderLen || n > maxFrame {
			sp.c.malformed.Add(1)
			return fmt.Errorf("vnet: stream port %s: frame length %d: must be between %d and %d", sp.name, n, ethHeaderLen, maxFrame)
		}
		if _, err := io.ReadFull(br, buf[:n]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("vnet: stream port %s: frame of %d bytes cut short: %w", sp.name, n, err)
		}
		sp.sw.input(sp.Port, buf[:n])
	}
}

func (sp *StreamPort) writeLoop(sc *streamConn) {
	bw := bufio.NewWriterSize(sc.conn, 256<<10)
	var hdr [4]byte
	for f := range sc.q {
		if sc.dead.Load() {
			continue
		}
		binary.BigEndian.PutUint32(hdr[:], uint32(len(f)))
		_, err := bw.Write(hdr[:])
		if err == nil {
			_, err = bw.Write(f)
		}
		if err == nil && len(sc.q) == 0 {
			err = bw.Flush()
		}
		if err != nil {
			sc.dead.Store(true)
			sc.conn.Close()
		}
	}
}

func (sp *StreamPort) deliver(p *Port, frame []byte) {
	sp.mu.Lock()
	sc := sp.cur
	if sc == nil || sc.dead.Load() {
		sp.mu.Unlock()
		p.c.txErrors.Add(1)
		return
	}
	select {
	case sc.q <- append([]byte(nil), frame...):
	default:
		p.c.txErrors.Add(1)
	}
	sp.mu.Unlock()
}

func (sp *StreamPort) close() error {
	sp.mu.Lock()
	close(sp.done)
	cur := sp.cur
	sp.mu.Unlock()
	var err error
	if sp.ln != nil {
		err = sp.ln.Close()
	}
	if cur != nil {
		cur.conn.Close()
	}
	sp.wg.Wait()
	if err != nil {
		return fmt.Errorf("vnet: stream port %s: %w", sp.name, err)
	}
	return nil
}
