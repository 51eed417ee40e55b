package vnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/maasemu/maasemu/harness/machine"
)

// UDPPortConfig configures a UDP port: QEMU's socket netdev in UDP form
// (-netdev socket,udp=LISTEN,localaddr=PEER; libvirt <interface type='udp'>).
type UDPPortConfig struct {
	// Name of the port; "" picks one.
	Name string
	// Listen is where the switch receives frames (QEMU's udp= address). The zero value
	// picks a free port on 127.0.0.1.
	Listen netip.AddrPort
	// Peer is where the switch sends frames (QEMU's localaddr=). The zero value picks a
	// free port on 127.0.0.1: the port is free when AttachUDP returns, and QEMU binds it.
	Peer netip.AddrPort
	// MTU of the port; 0 means the switch's default.
	MTU int
	// MAC, when known, names the machine behind the port in trace events.
	MAC net.HardwareAddr
	// AnyPeer accepts frames from any source address instead of only from Peer.
	AnyPeer bool
}

// UDPPort is a switch port that exchanges one Ethernet frame per UDP datagram with a
// QEMU NIC (or another switch's UDP port).
type UDPPort struct {
	*Port
	conn    *net.UDPConn
	listen  netip.AddrPort
	peer    netip.AddrPort
	anyPeer bool
	wg      sync.WaitGroup
}

// AttachUDP opens the port's socket and starts receiving.
func (sw *Switch) AttachUDP(cfg UDPPortConfig) (*UDPPort, error) {
	loopback := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	listen := cfg.Listen
	if !listen.IsValid() {
		listen = netip.AddrPortFrom(loopback, 0)
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(listen))
	if err != nil {
		return nil, fmt.Errorf("vnet: udp port %q: listen on %v: %w", cfg.Name, listen, err)
	}
	_ = conn.SetReadBuffer(4 << 20)
	_ = conn.SetWriteBuffer(4 << 20)
	listen = conn.LocalAddr().(*net.UDPAddr).AddrPort()
	listen = netip.AddrPortFrom(listen.Addr().Unmap(), listen.Port())
	peer := cfg.Peer
	if !peer.IsValid() {
		peer, err = freeUDPPort(listen.Addr())
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("vnet: udp port %q: %w", cfg.Name, err)
		}
	}
	if peer.Port() == 0 {
		conn.Close()
		return nil, fmt.Errorf("vnet: udp port %q: peer %v: port 0 is not an address QEMU can listen on", cfg.Name, peer)
	}
	u := &UDPPort{conn: conn, listen: listen, peer: peer, anyPeer: cfg.AnyPeer}
	p, err := sw.attach(cfg.Name, "udp", cfg.MTU, cfg.MAC, u.deliver, u.close)
	if err != nil {
		conn.Close()
		return nil, err
	}
	u.Port = p
	u.wg.Add(1)
	go u.readLoop()
	return u, nil
}

// freeUDPPort finds a UDP port on addr that is free now.
func freeUDPPort(addr netip.Addr) (netip.AddrPort, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("finding a free UDP port on %v: %w", addr, err)
	}
	defer c.Close()
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// ListenAddr is where the switch receives: QEMU's udp= address, libvirt's <source>.
func (u *UDPPort) ListenAddr() netip.AddrPort { return u.listen }

// PeerAddr is where the switch sends: QEMU's localaddr=, libvirt's <local>.
func (u *UDPPort) PeerAddr() netip.AddrPort { return u.peer }

// Attachment returns the machine NIC attachment for this port.
func (u *UDPPort) Attachment() *machine.UDPAttachment {
	return &machine.UDPAttachment{Remote: u.listen, Local: u.peer}
}

// QEMUNetdev returns the QEMU -netdev option value for this port, with the given id.
func (u *UDPPort) QEMUNetdev(id string) string {
	return fmt.Sprintf("socket,id=%s,udp=%s,localaddr=%s", id, u.listen, u.peer)
}

func (u *UDPPort) deliver(p *Port, frame []byte) {
	if _, err := u.conn.WriteToUDPAddrPort(frame, u.peer); err != nil {
		p.c.txErrors.Add(1)
	}
}

func (u *UDPPort) readLoop() {
	defer u.wg.Done()
	buf := make([]byte, maxFrame+1)
	for {
		n, from, err := u.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			u.sw.log.Debug("udp port read", "port", u.name, "err", err)
			continue
		}
		if !u.anyPeer && (from.Port() != u.peer.Port() || from.Addr().Unmap() != u.peer.Addr()) {
			u.c.foreign.Add(1)
			continue
		}
		if n > maxFrame {
			u.c.rxOversize.Add(1)
			continue
		}
		u.sw.input(u.Port, buf[:n])
	}
}

func (u *UDPPort) close() error {
	err := u.conn.Close()
	u.wg.Wait()
	if err != nil {
		return fmt.Errorf("vnet: udp port %s: %w", u.name, err)
	}
	return nil
}
