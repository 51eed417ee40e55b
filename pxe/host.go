package pxe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// ListenDHCP opens the host socket a DHCPv4 server needs: UDP 0.0.0.0:67 (a socket bound to
// an address does not receive 255.255.255.255 broadcasts), SO_BINDTODEVICE to iface so only
// that interface's clients are seen and broadcast replies leave by it, and SO_BROADCAST.
// Needs CAP_NET_BIND_SERVICE for port 67 (and CAP_NET_RAW for SO_BINDTODEVICE before Linux
// 5.7). port 0 means 67.
func ListenDHCP(ctx context.Context, iface string, port int) (net.PacketConn, error) {
	if port == 0 {
		port = 67
	}
	return listenUDP(ctx, "udp4", fmt.Sprintf("0.0.0.0:%d", port), iface, true)
}

// ListenDHCPv6 opens UDP [::]:547 (port 0 means 547) bound to iface and joined to the
// All_DHCP_Relay_Agents_and_Servers group ff02::1:2 on it.
func ListenDHCPv6(ctx context.Context, iface string, port int) (net.PacketConn, error) {
	if port == 0 {
		port = 547
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("listen dhcpv6 on %q: %w", iface, err)
	}
	c, err := listenUDP(ctx, "udp6", fmt.Sprintf("[::]:%d", port), iface, false)
	if err != nil {
		return nil, err
	}
	if err := ipv6.NewPacketConn(c).JoinGroup(ifi, &net.UDPAddr{IP: net.ParseIP("ff02::1:2")}); err != nil {
		c.Close()
		return nil, fmt.Errorf("listen dhcpv6 on %q: join ff02::1:2: %w", iface, err)
	}
	return c, nil
}

// ListenTFTP opens a UDP socket for TFTP on addr (e.g. "198.18.0.2:69" or ":69"); iface,
// when set, binds it to that interface.
func ListenTFTP(ctx context.Context, addr, iface string) (net.PacketConn, error) {
	return listenUDP(ctx, "udp", addr, iface, false)
}

func listenUDP(ctx context.Context, network, addr, iface string, broadcast bool) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				return
			}
			if broadcast {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
					serr = fmt.Errorf("SO_BROADCAST: %w", serr)
					return
				}
			}
			if iface != "" {
				if serr = unix.BindToDevice(int(fd), iface); serr != nil {
					serr = fmt.Errorf("SO_BINDTODEVICE %s: %w", iface, serr)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := lc.ListenPacket(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s %s (interface %q): %w", network, addr, iface, err)
	}
	return c, nil
}

// HostOptions says which host sockets ServeHost opens (what `maasemu serve --tftp ADDR
// --http ADDR --dhcp-interface IFACE` asks for). Empty fields turn a service off.
type HostOptions struct {
	DHCPInterface  string // DHCPv4 on 0.0.0.0:67 bound to this interface
	DHCPv6         bool   // also DHCPv6 on [::]:547 on DHCPInterface
	TFTPAddr       string // e.g. ":69" or "198.18.0.2:69"
	HTTPAddr       string // e.g. ":5248"
	DHCPPort       int    // 0: 67 (tests use a high port)
	DHCPv6Port     int    // 0: 547
	ShutdownPeriod time.Duration
}

// HostSockets are the host sockets HostOptions ask for, opened by OpenHost.
type HostSockets struct {
	DHCP, DHCPv6, TFTP net.PacketConn // nil when not requested
	HTTP               net.Listener   // nil when not requested
	opts               HostOptions
}

// OpenHost opens the sockets o asks for, all or none. Sockets belong to the network
// namespace of the calling thread.
func OpenHost(ctx context.Context, o HostOptions) (*HostSockets, error) {
	h := &HostSockets{opts: o}
	var err error
	if o.DHCPInterface != "" {
		if h.DHCP, err = ListenDHCP(ctx, o.DHCPInterface, o.DHCPPort); err != nil {
			h.Close()
			return nil, err
		}
		if o.DHCPv6 {
			if h.DHCPv6, err = ListenDHCPv6(ctx, o.DHCPInterface, o.DHCPv6Port); err != nil {
				h.Close()
				return nil, err
			}
		}
	}
	if o.TFTPAddr != "" {
		if h.TFTP, err = ListenTFTP(ctx, o.TFTPAddr, ""); err != nil {
			h.Close()
			return nil, err
		}
	}
	if o.HTTPAddr != "" {
		var lc net.ListenConfig
		if h.HTTP, err = lc.Listen(ctx, "tcp", o.HTTPAddr); err != nil {
			h.Close()
			return nil, fmt.Errorf("listen http %s: %w", o.HTTPAddr, err)
		}
	}
	if h.DHCP == nil && h.TFTP == nil && h.HTTP == nil {
		return nil, errors.New("pxe: no host service requested (DHCP interface, TFTP or HTTP address)")
	}
	return h, nil
}

// Close closes every socket.
func (h *HostSockets) Close() {
	for _, c := range []io.Closer{h.DHCP, h.DHCPv6, h.TFTP, h.HTTP} {
		if c != nil {
			c.Close()
		}
	}
}

// ServeHost opens the requested host sockets and serves on them (see ServeSockets).
func (r *Rack) ServeHost(ctx context.Context, o HostOptions) error {
	h, err := OpenHost(ctx, o)
	if err != nil {
		return err
	}
	return r.ServeSockets(ctx, h)
}

// ServeSockets serves on h until ctx is done or one server fails; it then stops the others,
// closes every socket and returns the first error.
func (r *Rack) ServeSockets(ctx context.Context, h *HostSockets) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer h.Close()
	var runs []func() error
	if h.DHCP != nil {
		runs = append(runs, func() error { return r.ServeDHCP(ctx, h.DHCP) })
	}
	if h.DHCPv6 != nil {
		runs = append(runs, func() error { return r.ServeDHCPv6(ctx, h.DHCPv6) })
	}
	if h.TFTP != nil {
		runs = append(runs, func() error { return r.ServeTFTP(ctx, h.TFTP) })
	}
	if h.HTTP != nil {
		srv := &http.Server{Handler: r.HTTPHandler(), ReadHeaderTimeout: 20 * time.Second}
		grace := h.opts.ShutdownPeriod
		if grace == 0 {
			grace = 5 * time.Second
		}
		runs = append(runs, func() error {
			stop := context.AfterFunc(ctx, func() {
				sctx, c := context.WithTimeout(context.Background(), grace)
				defer c()
				if srv.Shutdown(sctx) != nil {
					srv.Close()
				}
			})
			defer stop()
			if err := srv.Serve(h.HTTP); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("http serve %s: %w", h.HTTP.Addr(), err)
			}
			return nil
		})
	}
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, run := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(); err != nil {
				once.Do(func() { first = err })
			}
			cancel() // one server ending ends them all
		}()
	}
	wg.Wait()
	return first
}
