package vnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	tcp "github.com/maasemu/maasemu/harness/vnet/internal/gvisortcp"
)

// DefaultSubnet is the lab's default virtual subnet (RFC 2544 benchmarking range) and
// DefaultRackAddr the rack's address on it.
var (
	DefaultSubnet   = netip.MustParsePrefix("198.18.0.0/24")
	DefaultRackAddr = netip.MustParsePrefix("198.18.0.1/24")
)

const nicID tcpip.NICID = 1

// StackConfig configures a Stack.
type StackConfig struct {
	// Name of the stack's switch port; "" picks one.
	Name string
	// MAC of the NIC; nil derives a locally administered address from Name.
	MAC net.HardwareAddr
	// Addrs are the NIC's IPv4 addresses with their prefix lengths. With none the stack
	// is unconfigured: it sends from 0.0.0.0, as a DHCP client does before its lease.
	Addrs []netip.Prefix
	// Gateway, when valid, is the default route.
	Gateway netip.Addr
	// MTU of the NIC and its switch port; 0 means the switch's default.
	MTU int
	// Promiscuous accepts IPv4 packets for any destination address, as a DHCP client
	// must to receive an offer sent to the address it has not taken yet.
	Promiscuous bool
	// Queue is how many outbound frames may wait for the switch; 0 means 1024. A full
	// queue holds the sender back (as a NIC's ring does) rather than dropping.
	Queue int
}

// Stack is a gVisor TCP/IP stack with one NIC on a switch port: the rack's addresses, or
// a simulated machine's NIC. Its sockets are Go net.Conn, net.PacketConn and
// net.Listener values.
type Stack struct {
	port *Port
	s    *stack.Stack
	ep   *linkEndpoint
	mac  net.HardwareAddr

	mu     sync.Mutex
	addrs  []netip.Prefix
	gw     netip.Addr
	anyOn  bool // 0.0.0.0 is assigned (unconfigured)
	closed bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewStack creates a stack and attaches it to the switch.
func (sw *Switch) NewStack(cfg StackConfig) (*Stack, error) {
	if cfg.Queue < 0 {
		return nil, fmt.Errorf("vnet: stack %q: queue %d must not be negative", cfg.Name, cfg.Queue)
	}
	if cfg.Queue == 0 {
		cfg.Queue = 1024
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = sw.cfg.MTU
	}
	if err := checkMTU(mtu); err != nil {
		return nil, fmt.Errorf("vnet: stack %q: %w", cfg.Name, err)
	}
	hw := cfg.MAC
	if hw == nil {
		hw = deriveMAC(sw.name + "/" + cfg.Name)
	}
	if len(hw) != 6 || hw[0]&1 == 1 {
		return nil, fmt.Errorf("vnet: stack %q: MAC %v: must be a 6-byte unicast address", cfg.Name, hw)
	}
	for _, p := range cfg.Addrs {
		if err := checkPrefix(p); err != nil {
			return nil, fmt.Errorf("vnet: stack %q: %w", cfg.Name, err)
		}
	}
	st := &Stack{mac: slices.Clone(hw)}
	st.ctx, st.cancel = context.WithCancel(context.Background())
	st.ep = newLinkEndpoint(cfg.Queue, uint32(mtu), tcpip.LinkAddress(hw))
	st.s = stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	fail := func(err error) (*Stack, error) {
		st.cancel()
		st.s.Destroy()
		st.ep.Close()
		return nil, fmt.Errorf("vnet: stack %q: %w", cfg.Name, err)
	}
	if err := tuneTCP(st.s); err != nil {
		return fail(err)
	}
	if e := st.s.CreateNIC(nicID, ethernet.New(st.ep)); e != nil {
		return fail(errors.New(e.String()))
	}
	if cfg.Promiscuous {
		st.s.SetPromiscuousMode(nicID, true)
	}
	if len(cfg.Addrs) == 0 {
		if err := st.setUnconfigured(true); err != nil {
			return fail(err)
		}
	}
	for _, p := range cfg.Addrs {
		if err := st.addAddress(p); err != nil {
			return fail(err)
		}
	}
	st.gw = cfg.Gateway
	st.updateRoutes()
	port, err := sw.attach(cfg.Name, "stack", mtu, st.mac, st.deliver, st.close)
	if err != nil {
		return fail(err)
	}
	st.port = port
	sw.stacks.Store(st, struct{}{})
	setMaxRTO(st.s, sw.tcpMaxRTO()) // after registering: no fault change is missed
	st.wg.Add(1)
	go st.outbound()
	return st, nil
}

// tcpMaxRTO bounds the retransmission timeout of the switch's stacks: a second, or twice
// the longest round trip the configured delays allow (through two faulted ports and the
// switch, each way), whichever is longer.
func (sw *Switch) tcpMaxRTO() time.Duration {
	var port time.Duration
	for _, p := range *sw.ports.Load() {
		for _, f := range []Faults{p.in.faults(), p.out.faults()} {
			port = max(port, f.Delay+f.Jitter)
		}
	}
	f := sw.faults.faults()
	return max(time.Second, 4*(2*port+f.Delay+f.Jitter))
}

// retuneTCP gives every stack the timeout bound of the faults now set; connections
// opened from then on use it.
func (sw *Switch) retuneTCP() {
	d := sw.tcpMaxRTO()
	sw.stacks.Range(func(k, _ any) bool {
		setMaxRTO(k.(*Stack).s, d)
		return true
	})
}

// tuneTCP sets a stack's TCP for a virtual wire (setMaxRTO does the rest): SACK, and
// buffers sized for many connections. RACK stays on (without it a transfer whose ACKs are
// lost crawls at a few segments per round trip); the stacks' TCP is gVisor's with the fix
// for the tail hang RACK's loss probe met after SACK recovery (internal/gvisortcp,
// PATCHES.md).
func tuneTCP(s *stack.Stack) error {
	sack := tcpip.TCPSACKEnabled(true)
	// 1 MiB buffers: ten times what a local link's round trip needs, and a lab holds one
	// connection or more per machine (4 MiB made 100 simulated deploys peak 0.7 GiB
	// higher); receive buffers grow with the round trip when delay faults lengthen it.
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4096, Default: 1 << 20, Max: 16 << 20}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: 4096, Default: 1 << 20, Max: 16 << 20}
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	for _, opt := range []tcpip.SettableTransportProtocolOption{&sack, &rcv, &snd, &moderate} {
		if e := s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); e != nil {
			return fmt.Errorf("tcp option %T: %s", opt, e)
		}
	}
	return nil
}

// setMaxRTO bounds the stack's retransmission timeout by d (see Switch.tcpMaxRTO) instead
// of two minutes: a lost SYN-ACK makes the first round-trip sample a whole second, and
// exponential backoff from there stalls a transfer for minutes on a link whose round trip
// is well under a millisecond. The retries grow to keep Linux's give-up time, about 15
// minutes, for a cut link or a peer that is gone. Connections opened later use it.
func setMaxRTO(s *stack.Stack, d time.Duration) {
	rto := tcpip.TCPMaxRTOOption(d)
	retries := tcpip.TCPMaxRetriesOption(15 * time.Minute / d)
	_ = s.SetTransportProtocolOption(tcp.ProtocolNumber, &rto)
	_ = s.SetTransportProtocolOption(tcp.ProtocolNumber, &retries)
}

// DeriveMAC makes a stable unicast MAC address from a name, in QEMU's 52:54:00 range
// with the locally administered bit set: the same name gives the same address.
func DeriveMAC(name string) net.HardwareAddr { return deriveMAC(name) }

func deriveMAC(name string) net.HardwareAddr {
	h := fnv.New64a()
	h.Write([]byte(name))
	s := h.Sum64()
	return net.HardwareAddr{0x52, 0x54, 0x00, byte(s >> 16), byte(s >> 8), byte(s)}
}

func checkPrefix(p netip.Prefix) error {
	if !p.IsValid() || !p.Addr().Is4() {
		return fmt.Errorf("address %v: want an IPv4 address with a prefix length, like 198.18.0.1/24", p)
	}
	if p.Addr().IsUnspecified() || p.Addr().IsMulticast() || p.Addr() == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return fmt.Errorf("address %v: must be a unicast address", p)
	}
	return nil
}

// Name returns the stack's switch port name.
func (st *Stack) Name() string { return st.port.name }

// MAC returns the NIC's hardware address.
func (st *Stack) MAC() net.HardwareAddr { return slices.Clone(st.mac) }

// Port returns the stack's switch port (faults, counters, MTU).
func (st *Stack) Port() *Port { return st.port }

// NetStack returns the gVisor stack, for statistics and options this type does not
// cover.
func (st *Stack) NetStack() *stack.Stack { return st.s }

// Addrs returns the configured addresses.
func (st *Stack) Addrs() []netip.Prefix {
	st.mu.Lock()
	defer st.mu.Unlock()
	return slices.Clone(st.addrs)
}

// Addr returns the first configured address, or the zero Addr when unconfigured.
func (st *Stack) Addr() netip.Addr {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.addrs) == 0 {
		return netip.Addr{}
	}
	return st.addrs[0].Addr()
}

// AddAddress assigns an address (a DHCP lease, or one more subnet for the rack) and a
// route to its subnet. The first address ends the unconfigured (0.0.0.0) state.
func (st *Stack) AddAddress(p netip.Prefix) error {
	if err := checkPrefix(p); err != nil {
		return fmt.Errorf("vnet: stack %s: %w", st.port.name, err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return ErrClosed
	}
	if err := st.addAddress(p); err != nil {
		return fmt.Errorf("vnet: stack %s: %w", st.port.name, err)
	}
	if st.anyOn {
		if err := st.setUnconfigured(false); err != nil {
			return fmt.Errorf("vnet: stack %s: %w", st.port.name, err)
		}
	}
	st.updateRoutes()
	return nil
}

func (st *Stack) addAddress(p netip.Prefix) error {
	for _, q := range st.addrs {
		if q.Addr() == p.Addr() {
			return fmt.Errorf("address %v: already assigned", p)
		}
	}
	pa := tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(p.Addr().As4()), PrefixLen: p.Bits()},
	}
	if e := st.s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); e != nil {
		return fmt.Errorf("adding %v: %s", p, e)
	}
	st.addrs = append(st.addrs, p)
	return nil
}

// RemoveAddress unassigns an address (a released lease). With no address left the stack
// is unconfigured again.
func (st *Stack) RemoveAddress(a netip.Addr) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	i := slices.IndexFunc(st.addrs, func(p netip.Prefix) bool { return p.Addr() == a })
	if i < 0 {
		return fmt.Errorf("vnet: stack %s: address %v: not assigned", st.port.name, a)
	}
	if e := st.s.RemoveAddress(nicID, tcpip.AddrFrom4(a.As4())); e != nil {
		return fmt.Errorf("vnet: stack %s: removing %v: %s", st.port.name, a, e)
	}
	st.addrs = slices.Delete(st.addrs, i, i+1)
	if len(st.addrs) == 0 {
		if err := st.setUnconfigured(true); err != nil {
			return fmt.Errorf("vnet: stack %s: %w", st.port.name, err)
		}
	}
	st.updateRoutes()
	return nil
}

var zeroAddr4 = tcpip.AddrFrom4([4]byte{})

// setUnconfigured assigns or removes 0.0.0.0, the source address of a host with no
// address (RFC 2131 §4.1).
func (st *Stack) setUnconfigured(on bool) error {
	if on == st.anyOn {
		return nil
	}
	if on {
		pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: zeroAddr4, PrefixLen: 32}}
		if e := st.s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); e != nil {
			return fmt.Errorf("assigning 0.0.0.0: %s", e)
		}
	} else if e := st.s.RemoveAddress(nicID, zeroAddr4); e != nil {
		return fmt.Errorf("removing 0.0.0.0: %s", e)
	}
	st.anyOn = on
	return nil
}

// SetGateway sets (or, with the zero Addr, removes) the default route.
func (st *Stack) SetGateway(gw netip.Addr) error {
	if gw.IsValid() && !gw.Is4() {
		return fmt.Errorf("vnet: stack %s: gateway %v: want an IPv4 address", st.port.name, gw)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.gw = gw
	st.updateRoutes()
	return nil
}

// updateRoutes installs a route to each address's subnet and the default route.
func (st *Stack) updateRoutes() {
	var routes []tcpip.Route
	seen := map[netip.Prefix]bool{}
	for _, p := range st.addrs {
		sub := p.Masked()
		if seen[sub] {
			continue
		}
		seen[sub] = true
		routes = append(routes, tcpip.Route{Destination: subnetOf(sub), NIC: nicID})
	}
	if st.gw.IsValid() {
		routes = append(routes, tcpip.Route{Destination: subnetOf(netip.PrefixFrom(netip.IPv4Unspecified(), 0)), Gateway: tcpip.AddrFrom4(st.gw.As4()), NIC: nicID})
	}
	st.s.SetRouteTable(routes)
}

func subnetOf(p netip.Prefix) tcpip.Subnet {
	return tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(p.Addr().As4()), PrefixLen: p.Bits()}.Subnet()
}

// SetPromiscuous turns acceptance of IPv4 packets for any destination address on or off.
func (st *Stack) SetPromiscuous(on bool) {
	st.s.SetPromiscuousMode(nicID, on)
}

// AddNeighbor adds a static ARP entry, so the stack can send to ip before ip answers
// ARP: a DHCP server unicasting an offer to the address it offers.
func (st *Stack) AddNeighbor(ip netip.Addr, hw net.HardwareAddr) error {
	if !ip.Is4() || len(hw) != 6 {
		return fmt.Errorf("vnet: stack %s: neighbour %v at %v: want an IPv4 address and a 6-byte MAC", st.port.name, ip, hw)
	}
	if e := st.s.AddStaticNeighbor(nicID, ipv4.ProtocolNumber, tcpip.AddrFrom4(ip.As4()), tcpip.LinkAddress(hw)); e != nil {
		return fmt.Errorf("vnet: stack %s: neighbour %v: %s", st.port.name, ip, e)
	}
	return nil
}

// UDPOptions tune ListenUDP.
type UDPOptions struct {
	// Broadcast allows sending to broadcast addresses (SO_BROADCAST). A DHCP server and
	// client need it: without it every broadcast reply fails.
	Broadcast bool
	// ReceiveBuffer sets the socket's receive buffer in bytes; 0 keeps the default.
	ReceiveBuffer int
}

// ListenUDP opens a UDP socket bound to addr. An unspecified address (0.0.0.0:67)
// receives on every address of the stack, broadcasts included; a DHCP server binds so.
func (st *Stack) ListenUDP(addr netip.AddrPort, opts UDPOptions) (net.PacketConn, error) {
	if addr.Addr().IsValid() && !addr.Addr().Is4() {
		return nil, fmt.Errorf("vnet: stack %s: listen udp %v: want an IPv4 address", st.port.name, addr)
	}
	var wq waiter.Queue
	ep, e := st.s.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if e != nil {
		return nil, fmt.Errorf("vnet: stack %s: udp socket: %s", st.port.name, e)
	}
	if opts.Broadcast {
		ep.SocketOptions().SetBroadcast(true)
	}
	if opts.ReceiveBuffer > 0 {
		ep.SocketOptions().SetReceiveBufferSize(int64(opts.ReceiveBuffer), true)
	}
	// Bound to the NIC, broadcasts route out of it even with no route to 255.255.255.255.
	if e := ep.SocketOptions().SetBindToDevice(int32(nicID)); e != nil {
		ep.Close()
		return nil, fmt.Errorf("vnet: stack %s: udp bind to device: %s", st.port.name, e)
	}
	fa := tcpip.FullAddress{Port: addr.Port()}
	if addr.Addr().IsValid() && !addr.Addr().IsUnspecified() {
		fa.Addr = tcpip.AddrFrom4(addr.Addr().As4())
	}
	if e := ep.Bind(fa); e != nil {
		ep.Close()
		return nil, fmt.Errorf("vnet: stack %s: bind udp %v: %s", st.port.name, addr, e)
	}
	return gonet.NewUDPConn(&wq, ep), nil
}

// ListenTCP listens for TCP connections on addr (an unspecified address listens on
// every address of the stack).
func (st *Stack) ListenTCP(addr netip.AddrPort) (net.Listener, error) {
	if addr.Addr().IsValid() && !addr.Addr().Is4() {
		return nil, fmt.Errorf("vnet: stack %s: listen tcp %v: want an IPv4 address", st.port.name, addr)
	}
	fa := tcpip.FullAddress{NIC: nicID, Port: addr.Port()}
	if addr.Addr().IsValid() && !addr.Addr().IsUnspecified() {
		fa.Addr = tcpip.AddrFrom4(addr.Addr().As4())
	}
	l, err := gonet.ListenTCP(st.s, fa, ipv4.ProtocolNumber)
	if err != nil {
		return nil, fmt.Errorf("vnet: stack %s: listen tcp %v: %w", st.port.name, addr, err)
	}
	return l, nil
}

// DialContext connects to address ("198.18.0.1:80") over "tcp" or "udp" (or "tcp4",
// "udp4"). Its signature fits net/http.Transport.DialContext. Host names are not
// resolved.
func (st *Stack) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	ap, err := parseAddrPort(address)
	if err != nil {
		return nil, fmt.Errorf("vnet: stack %s: dial %s %q: %w", st.port.name, network, address, err)
	}
	fa := tcpip.FullAddress{Addr: tcpip.AddrFrom4(ap.Addr().As4()), Port: ap.Port()}
	switch network {
	case "tcp", "tcp4":
		c, err := gonet.DialContextTCP(ctx, st.s, fa, ipv4.ProtocolNumber)
		if err != nil {
			return nil, fmt.Errorf("vnet: stack %s: dial tcp %v: %w", st.port.name, ap, err)
		}
		return c, nil
	case "udp", "udp4":
		c, err := gonet.DialUDP(st.s, nil, &fa, ipv4.ProtocolNumber)
		if err != nil {
			return nil, fmt.Errorf("vnet: stack %s: dial udp %v: %w", st.port.name, ap, err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("vnet: stack %s: dial %q: network must be tcp or udp", st.port.name, network)
}

func parseAddrPort(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Unmap().Is4() {
		return netip.AddrPort{}, fmt.Errorf("host %q: want an IPv4 address (names are not resolved)", host)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port %q: want a number from 0 to 65535", port)
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(n)), nil
}

// StackStats are a few of the stack's counters, for tests and diagnosis.
type StackStats struct {
	IPReceived          uint64 // IPv4 packets received
	IPMalformed         uint64 // IPv4 packets with a bad header
	UDPReceived         uint64
	UDPChecksumErrors   uint64 // UDP datagrams dropped for a bad checksum
	TCPChecksumErrors   uint64 // TCP segments dropped for a bad checksum
	TCPRetransmits      uint64
	ARPRequestsReceived uint64
}

// Stats returns the stack's counters.
func (st *Stack) Stats() StackStats {
	s := st.s.Stats()
	return StackStats{
		IPReceived:          s.IP.PacketsReceived.Value(),
		IPMalformed:         s.IP.MalformedPacketsReceived.Value(),
		UDPReceived:         s.UDP.PacketsReceived.Value(),
		UDPChecksumErrors:   s.UDP.ChecksumErrors.Value(),
		TCPChecksumErrors:   s.TCP.ChecksumErrors.Value(),
		TCPRetransmits:      s.TCP.Retransmits.Value(),
		ARPRequestsReceived: s.ARP.RequestsReceived.Value(),
	}
}

// deliver hands a frame from the switch to the NIC, which accepts frames for its own
// address, broadcast and multicast, like Ethernet hardware.
func (st *Stack) deliver(p *Port, frame []byte) {
	if frame[0]&1 == 0 && !bytes.Equal(frame[0:6], st.mac) {
		return
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	st.ep.InjectInbound(0, pkt) // the Ethernet endpoint reads the type from the header
	pkt.DecRef()
}

// outbound moves the stack's frames into the switch.
func (st *Stack) outbound() {
	defer st.wg.Done()
	buf := make([]byte, 0, maxFrame)
	for {
		var pkt *stack.PacketBuffer
		select {
		case pkt = <-st.ep.q:
		case <-st.ctx.Done():
			return
		}
		buf = buf[:0]
		for _, v := range pkt.AsSlices() {
			buf = append(buf, v...)
		}
		pkt.DecRef()
		st.port.sw.input(st.port, buf)
	}
}

// linkEndpoint is gVisor's channel endpoint with a different outbound queue: a full
// queue makes WritePackets wait (up to linkFullWait) instead of dropping at once, so a
// fast TCP sender is paced by the switch instead of losing segments and waiting out
// retransmission timeouts. The bound on the wait keeps two stacks that answer each
// other inline (ARP) from waiting on each other forever.
type linkEndpoint struct {
	*channel.Endpoint
	q      chan *stack.PacketBuffer
	closed chan struct{}
	once   sync.Once
}

const linkFullWait = 50 * time.Millisecond

func newLinkEndpoint(queue int, mtu uint32, addr tcpip.LinkAddress) *linkEndpoint {
	return &linkEndpoint{Endpoint: channel.New(1, mtu, addr), q: make(chan *stack.PacketBuffer, queue), closed: make(chan struct{})}
}

// WritePackets implements stack.LinkEndpoint.
func (e *linkEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for _, pkt := range pkts.AsSlice() {
		pkt.IncRef()
		select {
		case e.q <- pkt:
			n++
			continue
		case <-e.closed:
			pkt.DecRef()
			return n, &tcpip.ErrClosedForSend{}
		default:
		}
		if timer == nil {
			timer = time.NewTimer(linkFullWait)
		}
		select {
		case e.q <- pkt:
			n++
			continue
		case <-e.closed:
			pkt.DecRef()
			return n, &tcpip.ErrClosedForSend{}
		case <-timer.C:
			pkt.DecRef()
			if n == 0 {
				return 0, &tcpip.ErrNoBufferSpace{}
			}
			return n, nil
		}
	}
	return n, nil
}

// Close implements stack.LinkEndpoint; queued packets are released.
func (e *linkEndpoint) Close() {
	e.once.Do(func() { close(e.closed) })
	for {
		select {
		case pkt := <-e.q:
			pkt.DecRef()
		default:
			e.Endpoint.Close()
			return
		}
	}
}

// Close closes every socket of the stack, detaches it from the switch and stops its
// goroutines. It is safe to call more than once.
func (st *Stack) Close() error { return st.port.Close() }

func (st *Stack) close() error {
	st.port.sw.stacks.Delete(st)
	st.mu.Lock()
	st.closed = true
	st.mu.Unlock()
	st.cancel()
	st.wg.Wait()
	st.s.Destroy()
	st.ep.Close()
	return nil
}
