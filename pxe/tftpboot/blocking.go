package tftpboot

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// blockingConn reads and writes a host UDP socket with blocking system calls on a
// duplicate of its descriptor, bypassing Go's network poller.
//
// TFTP is lock-step: every block waits for the client's ACK. Through the poller each ACK
// costs a failed read, an epoll wait and a goroutine wake-up before the next block goes
// out; a thread blocked in recvfrom is woken by the kernel directly, as tftpd-hpa's is.
// Together with the yield before each read (see plainConn) the transfer goroutine sends
// the next block on the same thread, and a 64 MiB transfer runs about twice as fast.
//
// The descriptor polls every pollInterval (SO_RCVTIMEO) so read deadlines and Close are
// noticed; Close also shuts the socket down, which wakes a blocked read at once.
type blockingConn struct {
	conn *net.UDPConn // owns the socket; closed last
	fd   int          // the duplicate, in blocking mode
	ip6  bool         // an AF_INET6 socket: IPv4 peers are written as mapped addresses

	closed   atomic.Bool
	deadline atomic.Int64 // read deadline, Unix nanoseconds; 0 for none
	io       sync.RWMutex // held shared by calls in the descriptor, exclusively by Close
	once     sync.Once
}

const pollInterval = 50 * time.Millisecond

// newBlockingConn wraps conn; conn stays usable for its address and must not be read or
// written by anyone else.
func newBlockingConn(conn *net.UDPConn) (*blockingConn, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var serr error
	if err := raw.Control(func(s uintptr) { fd, serr = syscall.Dup(int(s)) }); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, fmt.Errorf("dup: %w", serr)
	}
	syscall.CloseOnExec(fd)
	tv := syscall.NsecToTimeval(int64(pollInterval))
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("SO_RCVTIMEO: %w", err)
	}
	// The flag belongs to the open socket, which the duplicate shares with conn: conn is
	// not read or written from here on, so the poller never sees it block.
	if err := syscall.SetNonblock(fd, false); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("set blocking: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("getsockname: %w", err)
	}
	_, ip6 := sa.(*syscall.SockaddrInet6)
	return &blockingConn{conn: conn, fd: fd, ip6: ip6}, nil
}

// ReadFrom implements net.PacketConn.
func (c *blockingConn) ReadFrom(b []byte) (int, net.Addr, error) {
	runtime.Gosched() // see plainConn
	c.io.RLock()
	defer c.io.RUnlock()
	for {
		if c.closed.Load() {
			return 0, nil, c.opError("read", net.ErrClosed)
		}
		if d := c.deadline.Load(); d != 0 && time.Now().UnixNano() >= d {
			return 0, nil, c.opError("read", os.ErrDeadlineExceeded)
		}
		n, sa, err := syscall.Recvfrom(c.fd, b, 0)
		switch {
		case err == nil && sa != nil:
			return n, sockaddrToUDP(sa), nil
		case err == nil, err == syscall.EAGAIN, err == syscall.EINTR, err == syscall.ENOTCONN:
			// A poll timeout, a signal, or the wake-up of Close's shutdown: check again.
		default:
			return 0, nil, c.opError("read", os.NewSyscallError("recvfrom", err))
		}
	}
}

// WriteTo implements net.PacketConn.
func (c *blockingConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, c.opError("write", fmt.Errorf("address %v is a %T, not a UDP address", addr, addr))
	}
	sa, err := udpToSockaddr(ua, c.ip6)
	if err != nil {
		return 0, c.opError("write", err)
	}
	c.io.RLock()
	defer c.io.RUnlock()
	if c.closed.Load() {
		return 0, c.opError("write", net.ErrClosed)
	}
	for {
		err := syscall.Sendto(c.fd, b, 0, sa)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, c.opError("write", os.NewSyscallError("sendto", err))
		}
		return len(b), nil
	}
}

// Close implements net.PacketConn: it wakes a blocked read, waits for calls in the
// descriptor to return, and closes both descriptors.
func (c *blockingConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		c.closed.Store(true)
		_ = syscall.Shutdown(c.fd, syscall.SHUT_RDWR) // UDP: wakes the reader, ENOTCONN is expected
		c.io.Lock()
		syscall.Close(c.fd)
		c.io.Unlock()
		err = c.conn.Close()
	})
	return err
}

// LocalAddr implements net.PacketConn.
func (c *blockingConn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// SetDeadline implements net.PacketConn; only reads have deadlines (writes do not block).
func (c *blockingConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline implements net.PacketConn, to within pollInterval.
func (c *blockingConn) SetReadDeadline(t time.Time) error {
	if t.IsZero() {
		c.deadline.Store(0)
	} else {
		c.deadline.Store(t.UnixNano())
	}
	return nil
}

// SetWriteDeadline implements net.PacketConn; UDP writes do not wait.
func (c *blockingConn) SetWriteDeadline(time.Time) error { return nil }

func (c *blockingConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "udp", Source: c.conn.LocalAddr(), Err: err}
}

func sockaddrToUDP(sa syscall.Sockaddr) *net.UDPAddr {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.UDPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *syscall.SockaddrInet6:
		ua := &net.UDPAddr{IP: append(net.IP(nil), a.Addr[:]...), Port: a.Port}
		if a.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(a.ZoneId)); err == nil {
				ua.Zone = ifi.Name
			}
		}
		return ua
	}
	return &net.UDPAddr{}
}

func udpToSockaddr(a *net.UDPAddr, ip6 bool) (syscall.Sockaddr, error) {
	if ip4 := a.IP.To4(); ip4 != nil && !ip6 {
		sa := &syscall.SockaddrInet4{Port: a.Port}
		copy(sa.Addr[:], ip4)
		return sa, nil
	}
	if ip6 := a.IP.To16(); ip6 != nil {
		sa := &syscall.SockaddrInet6{Port: a.Port}
		copy(sa.Addr[:], ip6)
		if a.Zone != "" {
			ifi, err := net.InterfaceByName(a.Zone)
			if err != nil {
				return nil, fmt.Errorf("address %v: zone: %w", a, err)
			}
			sa.ZoneId = uint32(ifi.Index)
		}
		return sa, nil
	}
	return nil, errors.New("address " + a.String() + ": not an IP address")
}
