// Package hostnet opens host sockets bound to one network interface, so the rack's
// servers run on a real or bridged network (maasemu's bridge mode) exactly as they run
// on the userspace switch.
//
// Interface has the same ListenUDP and ListenTCP methods as vnet.Stack: the DHCP server
// gets 0.0.0.0:67 bound to the interface with SO_BINDTODEVICE and SO_BROADCAST, TFTP and
// HTTP get the interface's address. Binding to a device and to ports below 1024 needs
// root (CAP_NET_RAW before Linux 5.7, CAP_NET_BIND_SERVICE).
package hostnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/maasemu/maasemu/harness/vnet"
	"golang.org/x/sys/unix"
)

// Interface is a host network interface.
type Interface struct {
	Name  string
	Index int
	MAC   net.HardwareAddr
	MTU   int
	Addrs []netip.Prefix // its IPv4 addresses
}

// Lookup finds the interface called name. It must be up and have an IPv4 address.
func Lookup(name string) (*Interface, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("hostnet: interface %q: %w", name, err)
	}
	if ifi.Flags&net.FlagUp == 0 {
		return nil, fmt.Errorf("hostnet: interface %q is down", name)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("hostnet: interface %q addresses: %w", name, err)
	}
	it := &Interface{Name: ifi.Name, Index: ifi.Index, MAC: ifi.HardwareAddr, MTU: ifi.MTU}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok || !ip.Unmap().Is4() {
			continue
		}
		ones, _ := ipn.Mask.Size()
		it.Addrs = append(it.Addrs, netip.PrefixFrom(ip.Unmap(), ones))
	}
	if len(it.Addrs) == 0 {
		return nil, fmt.Errorf("hostnet: interface %q has no IPv4 address: the rack needs one to serve from", name)
	}
	return it, nil
}

// Addr returns the interface's first IPv4 address: the rack's address in bridge mode.
func (it *Interface) Addr() netip.Addr { return it.Addrs[0].Addr() }

// ListenUDP opens a UDP socket bound to addr and to the interface. An unspecified
// address (0.0.0.0:67, the DHCP server) receives broadcasts arriving on the interface;
// with Broadcast set it may send them, and they leave by the interface. A specified
// address must be one of the interface's.
func (it *Interface) ListenUDP(addr netip.AddrPort, opts vnet.UDPOptions) (net.PacketConn, error) {
	if err := it.checkAddr(addr); err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: it.control(opts.Broadcast, opts.ReceiveBuffer)}
	c, err := lc.ListenPacket(context.Background(), "udp4", addr.String())
	if err != nil {
		return nil, fmt.Errorf("hostnet: listen udp %v on %s: %w", addr, it.Name, err)
	}
	return c, nil
}

// ListenTCP listens for TCP connections on addr, bound to the interface.
func (it *Interface) ListenTCP(addr netip.AddrPort) (net.Listener, error) {
	if err := it.checkAddr(addr); err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: it.control(false, 0)}
	l, err := lc.Listen(context.Background(), "tcp4", addr.String())
	if err != nil {
		return nil, fmt.Errorf("hostnet: listen tcp %v on %s: %w", addr, it.Name, err)
	}
	return l, nil
}

// ListenDHCP is ListenUDP(0.0.0.0:67) with broadcast on: the DHCP server's socket.
func (it *Interface) ListenDHCP() (net.PacketConn, error) {
	return it.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 67), vnet.UDPOptions{Broadcast: true})
}

func (it *Interface) checkAddr(addr netip.AddrPort) error {
	a := addr.Addr()
	if !a.IsValid() || a.IsUnspecified() {
		return nil
	}
	if !a.Is4() {
		return fmt.Errorf("hostnet: address %v: want IPv4", addr)
	}
	for _, p := range it.Addrs {
		if p.Addr() == a {
			return nil
		}
	}
	return fmt.Errorf("hostnet: address %v is not on interface %s (it has %v)", a, it.Name, it.Addrs)
}

// control sets SO_BINDTODEVICE, SO_REUSEADDR and, when asked, SO_BROADCAST and the
// receive buffer.
func (it *Interface) control(broadcast bool, rcvbuf int) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if e := unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, it.Name); e != nil {
				serr = fmt.Errorf("SO_BINDTODEVICE %s: %w", it.Name, e)
				return
			}
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); e != nil {
				serr = fmt.Errorf("SO_REUSEADDR: %w", e)
				return
			}
			if broadcast {
				if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); e != nil {
					serr = fmt.Errorf("SO_BROADCAST: %w", e)
					return
				}
			}
			if rcvbuf > 0 {
				if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf); e != nil {
					serr = fmt.Errorf("SO_RCVBUF: %w", e)
				}
			}
		})
		return errors.Join(err, serr)
	}
}
