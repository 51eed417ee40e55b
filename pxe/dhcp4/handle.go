package dhcp4

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/rfc1035label"
	"github.com/maasemu/maasemu/trace"
)

// Ports (RFC 2131).
const (
	ServerPort = 67
	ClientPort = 68
)

// Server is the DHCPv4 server. It is safe for concurrent use.
type Server struct {
	cfg Config

	mu     sync.Mutex
	leases *leases
}

// New validates cfg and returns a Server, loading cfg.LeaseFile when it exists.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, leases: newLeases()}
	if cfg.LeaseFile != "" {
		if err := s.leases.load(cfg.LeaseFile, &s.cfg); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Leases returns the lease table, sorted by address.
func (s *Server) Leases() []Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leases.list()
}

// Packet is one received datagram.
type Packet struct {
	Data  []byte
	Peer  *net.UDPAddr // where it came from
	Local netip.Addr   // the address it arrived on, when known (selects the subnet)
}

// Reply is a datagram to send.
type Reply struct {
	Msg  *dhcpv4.DHCPv4
	Dest *net.UDPAddr
}

// errIgnored carries the reason a request gets no answer.
type errIgnored struct{ reason string }

func (e *errIgnored) Error() string { return e.reason }

func ignore(format string, args ...any) error { return &errIgnored{fmt.Sprintf(format, args...)} }

// Handle processes one datagram and returns the reply to send, if any. It never panics on
// bad input: a malformed packet is reported (dhcp.bad) and answered with nothing.
func (s *Server) Handle(ctx context.Context, p Packet) (*Reply, error) {
	req, err := dhcpv4.FromBytes(p.Data)
	if err != nil {
		s.bad(p, fmt.Sprintf("malformed DHCPv4 packet (%d bytes): %v", len(p.Data), err))
		return nil, nil
	}
	if reason := checkRequest(req); reason != "" {
		s.bad(p, reason)
		return nil, nil
	}
	s.inbound(req, p)
	resp, sub, err := s.handle(ctx, req, p)
	if err != nil {
		var ig *errIgnored
		if errors.As(err, &ig) {
			s.ignored(req, ig.reason)
			return nil, nil
		}
		s.ignored(req, err.Error())
		return nil, err
	}
	if resp == nil {
		return nil, nil
	}
	dest := replyAddr(req, resp, p.Peer)
	s.outbound(req, resp, sub, dest)
	return &Reply{Msg: resp, Dest: dest}, nil
}

// checkRequest applies the rules a request must meet before any lookup.
func checkRequest(req *dhcpv4.DHCPv4) string {
	if b := req.Options.Get(dhcpv4.OptionDHCPMessageType); b != nil && len(b) != 1 {
		return fmt.Sprintf("option 53 is %d bytes, want 1", len(b))
	}
	switch {
	case req.OpCode != dhcpv4.OpcodeBootRequest:
		return fmt.Sprintf("op %d is not BOOTREQUEST (1)", req.OpCode)
	case len(req.ClientHWAddr) != 6 || req.HWType != 1:
		return fmt.Sprintf("hardware type %d length %d: only Ethernet (1, 6) is served", req.HWType, len(req.ClientHWAddr))
	case req.MessageType() == dhcpv4.MessageTypeNone:
		return "no DHCP message type (option 53): BOOTP is not served"
	}
	return ""
}

// handle returns the reply (nil for none) and the subnet it came from.
func (s *Server) handle(ctx context.Context, req *dhcpv4.DHCPv4, p Packet) (*dhcpv4.DHCPv4, *Subnet, error) {
	sub, err := s.selectSubnet(req, p)
	if err != nil {
		return nil, nil, err
	}
	mac := req.ClientHWAddr.String()
	host, known, err := s.lookup(ctx, req.ClientHWAddr)
	if err != nil {
		return nil, sub, fmt.Errorf("host lookup for %s: %w", mac, err)
	}
	if !known && s.cfg.Unknown == IgnoreUnknown {
		return nil, sub, ignore("unknown machine %s (answering unknown machines is off)", mac)
	}
	if known && host.IP.IsValid() && !sub.Prefix.Contains(host.IP) {
		return nil, sub, ignore("fixed address %v of %s is not in subnet %s", host.IP, mac, sub.Prefix)
	}
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		ip, err := s.pick(req, sub, mac, host, now)
		if err != nil {
			return nil, sub, err
		}
		s.leases.set(mac, ip, host.Hostname, StateOffered, now.Add(s.cfg.OfferHold))
		return s.reply(req, sub, dhcpv4.MessageTypeOffer, ip), sub, nil
	case dhcpv4.MessageTypeRequest:
		return s.request(req, sub, mac, host, now)
	case dhcpv4.MessageTypeRelease:
		ci, _ := netip.AddrFromSlice(req.ClientIPAddr.To4())
		l, ok := s.leases.byMAC[mac]
		if !ok || l.IP != ci || l.State != StateBound {
			return nil, sub, ignore("release of %v by %s, which holds no such lease", ci, mac)
		}
		l.State, l.Expires = StateReleased, now
		s.persist()
		return nil, sub, nil
	case dhcpv4.MessageTypeDecline:
		ip, _ := netip.AddrFromSlice(req.RequestedIPAddress().To4())
		if l, ok := s.leases.byMAC[mac]; !ok || l.IP != ip {
			return nil, sub, ignore("decline of %v by %s, which was not offered it", ip, mac)
		}
		s.leases.drop(mac)
		s.leases.declined[ip] = now.Add(s.cfg.DeclineHold)
		s.persist()
		return nil, sub, nil
	case dhcpv4.MessageTypeInform:
		r := s.reply(req, sub, dhcpv4.MessageTypeAck, netip.Addr{})
		r.Options.Del(dhcpv4.OptionIPAddressLeaseTime) // RFC 2131 4.3.5: no lease time
		return r, sub, nil
	}
	return nil, sub, ignore("message type %s is not a client request this server answers", req.MessageType())
}

// request handles DHCPREQUEST in its four states (RFC 2131 4.3.2).
func (s *Server) request(req *dhcpv4.DHCPv4, sub *Subnet, mac string, host Host, now time.Time) (*dhcpv4.DHCPv4, *Subnet, error) {
	ci, _ := netip.AddrFromSlice(req.ClientIPAddr.To4())
	rq, _ := netip.AddrFromSlice(req.RequestedIPAddress().To4())
	sid, _ := netip.AddrFromSlice(req.ServerIdentifier().To4())
	nak := func(why string) (*dhcpv4.DHCPv4, *Subnet, error) {
		r := s.nak(req, sub, why)
		return r, sub, nil
	}
	switch {
	case sid.IsValid() && !sid.IsUnspecified():
		// SELECTING: the client answers an offer.
		if sid != sub.RackIP {
			if l, ok := s.leases.byMAC[mac]; ok && l.State == StateOffered {
				s.leases.drop(mac) // free our offer
			}
			return nil, sub, ignore("client %s selected server %v", mac, sid)
		}
		l, ok := s.leases.byMAC[mac]
		if !ok || l.IP != rq || !l.active(now) {
			return nak(fmt.Sprintf("requested address %v was not offered to %s", rq, mac))
		}
		return s.bind(req, sub, mac, host, rq, now), sub, nil
	case ci.IsValid() && !ci.IsUnspecified():
		// RENEWING (unicast) or REBINDING (broadcast): extend the lease on ciaddr.
		return s.confirm(req, sub, mac, host, ci, now, nak)
	case rq.IsValid() && !rq.IsUnspecified():
		// INIT-REBOOT: the client asks to keep a previous address.
		return s.confirm(req, sub, mac, host, rq, now, nak)
	}
	return nak("request names no address (no server identifier, ciaddr or requested address)")
}

// confirm ACKs ip for mac when it is this client's, or free in the subnet; otherwise NAKs.
func (s *Server) confirm(req *dhcpv4.DHCPv4, sub *Subnet, mac string, host Host, ip netip.Addr, now time.Time,
	nak func(string) (*dhcpv4.DHCPv4, *Subnet, error)) (*dhcpv4.DHCPv4, *Subnet, error) {
	if !sub.Prefix.Contains(ip) {
		return nak(fmt.Sprintf("address %v is not on subnet %s", ip, sub.Prefix))
	}
	if host.IP.IsValid() {
		if ip != host.IP {
			return nak(fmt.Sprintf("%s has the fixed address %v, not %v", mac, host.IP, ip))
		}
		return s.bind(req, sub, mac, host, ip, now), sub, nil
	}
	if h := s.leases.holder(ip, now); h != "" && h != mac {
		return nak(fmt.Sprintf("address %v is leased to %s", ip, h))
	}
	if l, ok := s.leases.byMAC[mac]; ok && l.active(now) && l.IP != ip {
		return nak(fmt.Sprintf("%s holds %v, not %v", mac, l.IP, ip))
	}
	if !s.leases.free(ip, mac, now, s.reserved(sub)) || !sub.inPool(ip) {
		if l, ok := s.leases.byMAC[mac]; !ok || l.IP != ip {
			return nak(fmt.Sprintf("address %v is not available to %s", ip, mac))
		}
	}
	return s.bind(req, sub, mac, host, ip, now), sub, nil
}

// bind commits the lease and builds the ACK.
func (s *Server) bind(req *dhcpv4.DHCPv4, sub *Subnet, mac string, host Host, ip netip.Addr, now time.Time) *dhcpv4.DHCPv4 {
	r := s.reply(req, sub, dhcpv4.MessageTypeAck, ip)
	lt := r.IPAddressLeaseTime(sub.LeaseTime)
	s.leases.set(mac, ip, host.Hostname, StateBound, now.Add(lt))
	s.persist()
	return r
}

// pick chooses the address to offer.
func (s *Server) pick(req *dhcpv4.DHCPv4, sub *Subnet, mac string, host Host, now time.Time) (netip.Addr, error) {
	if host.IP.IsValid() {
		return host.IP, nil
	}
	reserved := s.reserved(sub)
	if l, ok := s.leases.byMAC[mac]; ok && sub.inPool(l.IP) && s.leases.free(l.IP, mac, now, reserved) {
		return l.IP, nil // the client's previous address
	}
	if rq, ok := netip.AddrFromSlice(req.RequestedIPAddress().To4()); ok && sub.inPool(rq) && s.leases.free(rq, mac, now, reserved) {
		return rq, nil
	}
	ip, ok := s.leases.allocate(sub, mac, now, reserved)
	if !ok {
		return netip.Addr{}, ignore("no free address in the pools of subnet %s", sub.Prefix)
	}
	return ip, nil
}

func (s *Server) reserved(sub *Subnet) func(netip.Addr) bool {
	return func(a netip.Addr) bool {
		return a == sub.RackIP || a == sub.Router || a == sub.Prefix.Addr() || a == sub.broadcast()
	}
}

func (s *Server) lookup(ctx context.Context, mac net.HardwareAddr) (Host, bool, error) {
	if s.cfg.Hosts == nil {
		return Host{}, false, nil
	}
	return s.cfg.Hosts.LookupHost(ctx, mac)
}

// selectSubnet picks the subnet as dhcpd does: the relay's giaddr, else the client's
// ciaddr, else the address the packet arrived on, else the directly attached (first) subnet.
func (s *Server) selectSubnet(req *dhcpv4.DHCPv4, p Packet) (*Subnet, error) {
	if gi, ok := netip.AddrFromSlice(req.GatewayIPAddr.To4()); ok && !gi.IsUnspecified() {
		if sub := s.cfg.subnetFor(gi); sub != nil {
			return sub, nil
		}
		return nil, ignore("relay address (giaddr) %v is in no configured subnet", gi)
	}
	if ci, ok := netip.AddrFromSlice(req.ClientIPAddr.To4()); ok && !ci.IsUnspecified() {
		if sub := s.cfg.subnetFor(ci); sub != nil {
			return sub, nil
		}
		if req.MessageType() != dhcpv4.MessageTypeRequest {
			return nil, ignore("client address (ciaddr) %v is in no configured subnet", ci)
		}
		// A renewing client on the wrong network is NAKed from the attached subnet.
	}
	if p.Local.IsValid() {
		if sub := s.cfg.subnetFor(p.Local); sub != nil {
			return sub, nil
		}
	}
	return &s.cfg.Subnets[0], nil
}

// persist saves the lease table when configured. Called with s.mu held.
func (s *Server) persist() {
	if s.cfg.LeaseFile == "" {
		return
	}
	if err := s.leases.save(s.cfg.LeaseFile); err != nil {
		s.cfg.Logger.Error("dhcp4: cannot save leases", "file", s.cfg.LeaseFile, "error", err)
	}
}

// Expire ends leases whose time is up, reporting each as a dhcp.expire event. Serve calls
// it periodically.
func (s *Server) Expire() {
	now := s.cfg.Now()
	s.mu.Lock()
	ended := s.leases.expire(now)
	if len(ended) > 0 {
		s.persist()
	}
	s.mu.Unlock()
	for _, l := range ended {
		s.cfg.Sink.Emit(trace.Event{Source: trace.SourceDHCP, Kind: trace.KindDHCPExpire, MAC: l.MAC,
			Message: fmt.Sprintf("lease of %v to %s expired", l.IP, l.MAC),
			Attrs:   map[string]any{"yiaddr": l.IP.String()}})
	}
}

// ---- replies ----------------------------------------------------------------------------

func ip4(a netip.Addr) net.IP {
	if !a.IsValid() {
		return net.IPv4zero.To4()
	}
	b := a.As4()
	return net.IP(b[:])
}

// isPXE is MAAS's class "PXE": vendor class starting with "PXE" gets 30 s leases.
func isPXE(req *dhcpv4.DHCPv4) bool {
	return strings.HasPrefix(string(req.Options.Get(dhcpv4.OptionClassIdentifier)), "PXE")
}

// isIPXE reports an iPXE client: user class "iPXE" or iPXE's option 175.
func isIPXE(req *dhcpv4.DHCPv4) bool {
	return string(req.Options.Get(dhcpv4.OptionUserClassInformation)) == "iPXE" || req.Options.Has(dhcpv4.GenericOptionCode(175))
}

// reply builds an OFFER or ACK for yiaddr with the subnet's options and the bootloader.
func (s *Server) reply(req *dhcpv4.DHCPv4, sub *Subnet, mt dhcpv4.MessageType, yiaddr netip.Addr) *dhcpv4.DHCPv4 {
	r, _ := dhcpv4.NewReplyFromRequest(req) // cannot fail: no modifier returns an error
	r.Options = dhcpv4.Options{}
	copyOpt := func(code dhcpv4.OptionCode) {
		if v := req.Options.Get(code); v != nil {
			r.Options[code.Code()] = v
		}
	}
	copyOpt(dhcpv4.OptionClientIdentifier)      // RFC 6842
	copyOpt(dhcpv4.OptionRelayAgentInformation) // RFC 3046
	r.Options.Update(dhcpv4.OptMessageType(mt))
	r.YourIPAddr = ip4(yiaddr)
	if mt == dhcpv4.MessageTypeAck && req.MessageType() == dhcpv4.MessageTypeInform {
		r.YourIPAddr = net.IPv4zero.To4()
	}
	r.ServerIPAddr = ip4(sub.RackIP) // next-server
	opts := dhcpv4.Options{}
	opts.Update(dhcpv4.OptServerIdentifier(ip4(sub.RackIP)))
	lt := sub.LeaseTime
	if isPXE(req) {
		lt = PXELeaseTime
	}
	if want := req.IPAddressLeaseTime(0); want > 0 && want < lt {
		lt = want // max-lease-time caps what the client asks
	}
	opts.Update(dhcpv4.OptIPAddressLeaseTime(lt))
	opts.Update(dhcpv4.OptSubnetMask(net.CIDRMask(sub.Prefix.Bits(), 32)))
	opts.Update(dhcpv4.OptBroadcastAddress(ip4(sub.broadcast())))
	if len(sub.DNS) > 0 {
		opts.Update(dhcpv4.OptDNS(ips(sub.DNS)...))
	}
	if sub.DomainName != "" {
		opts.Update(dhcpv4.OptDomainName(sub.DomainName))
	}
	if len(sub.SearchList) > 0 {
		opts.Update(dhcpv4.OptDomainSearch(&rfc1035label.Labels{Labels: sub.SearchList}))
	}
	if sub.Router.IsValid() {
		opts.Update(dhcpv4.OptRouter(ip4(sub.Router)))
	}
	if len(sub.NTP) > 0 {
		opts.Update(dhcpv4.OptNTPServers(ips(sub.NTP)...))
	}
	if sub.MTU != 0 && sub.MTU != 1500 {
		opts.Update(dhcpv4.OptGeneric(dhcpv4.OptionInterfaceMTU, binary.BigEndian.AppendUint16(nil, uint16(sub.MTU))))
	}
	forced := map[uint8]bool{}
	c := client{
		arch:      req.Options.Get(dhcpv4.OptionClientSystemArchitectureType),
		userClass: req.Options.Get(dhcpv4.OptionUserClassInformation),
		ipxeEncap: req.Options.Get(dhcpv4.GenericOptionCode(175)),
	}
	if boot, ok := chooseBoot(c, sub.RackIP, sub.DisabledBootMethods); ok {
		if len(boot.Filename) < 128 {
			r.BootFileName = boot.Filename
		}
		if boot.Filename != "" {
			opts.Update(dhcpv4.OptBootFileName(boot.Filename))
			if len(boot.Filename) >= 128 {
				forced[dhcpv4.OptionBootfileName.Code()] = true // too long for the file field
			}
			opts.Update(dhcpv4.OptTFTPServerName(sub.RackIP.String()))
		}
		if boot.PathPrefix != "" {
			opts.Update(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(210), []byte(boot.PathPrefix)))
			forced[210] = boot.ForcePrefix
		}
		if boot.HTTPClient {
			opts.Update(dhcpv4.OptClassIdentifier("HTTPClient"))
			forced[dhcpv4.OptionClassIdentifier.Code()] = true // UEFI HTTP boot requires it
		}
		if boot.ONIEURL != "" {
			opts.Update(dhcpv4.OptGeneric(dhcpv4.OptionVendorIdentifyingVendorSpecific, onieVIVSO(boot.ONIEURL)))
			forced[dhcpv4.OptionVendorIdentifyingVendorSpecific.Code()] = true
		}
	}
	if isIPXE(req) && !s.cfg.SkipIPXENoProxyDHCP {
		opts.Update(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(175), ipxeNoProxyDHCP))
	}
	// As dhcpd: with a parameter request list, send the required options and those asked
	// for (plus the ones MAAS forces); without one, send everything configured.
	prl := req.Options.Get(dhcpv4.OptionParameterRequestList)
	required := map[uint8]bool{
		dhcpv4.OptionDHCPMessageType.Code(): true, dhcpv4.OptionServerIdentifier.Code(): true,
		dhcpv4.OptionIPAddressLeaseTime.Code(): true, dhcpv4.OptionSubnetMask.Code(): true,
	}
	for code, v := range opts {
		if prl == nil || required[code] || forced[code] || bytes.IndexByte(prl, code) >= 0 {
			r.Options[code] = v
		}
	}
	return r
}

func (s *Server) nak(req *dhcpv4.DHCPv4, sub *Subnet, why string) *dhcpv4.DHCPv4 {
	r, _ := dhcpv4.NewReplyFromRequest(req)
	r.Options = dhcpv4.Options{}
	if v := req.Options.Get(dhcpv4.OptionClientIdentifier); v != nil {
		r.Options[dhcpv4.OptionClientIdentifier.Code()] = v
	}
	if v := req.Options.Get(dhcpv4.OptionRelayAgentInformation); v != nil {
		r.Options[dhcpv4.OptionRelayAgentInformation.Code()] = v
	}
	r.Options.Update(dhcpv4.OptMessageType(dhcpv4.MessageTypeNak))
	r.Options.Update(dhcpv4.OptServerIdentifier(ip4(sub.RackIP)))
	r.Options.Update(dhcpv4.OptMessage(why))
	r.YourIPAddr = net.IPv4zero.To4()
	r.ClientIPAddr = net.IPv4zero.To4()
	if !req.GatewayIPAddr.IsUnspecified() {
		r.SetBroadcast() // RFC 2131 4.3.2: a relay must broadcast the NAK
	}
	return r
}

func ips(as []netip.Addr) []net.IP {
	out := make([]net.IP, 0, len(as))
	for _, a := range as {
		out = append(out, ip4(a))
	}
	return out
}

// replyAddr is RFC 2131 section 4.1's choice of destination:
//   - giaddr set: the relay agent, giaddr:67;
//   - a NAK: broadcast;
//   - ciaddr set: unicast to ciaddr:68;
//   - broadcast flag set: broadcast;
//   - else unicast to yiaddr at chaddr, which a UDP socket cannot do (the client has no
//     address to ARP for yet), so broadcast, as coredhcp does.
//
// One addition: a request from a source port other than 68 (a test client, a client behind
// a NAT) is answered at its source address, the only place it can receive.
func replyAddr(req, resp *dhcpv4.DHCPv4, peer *net.UDPAddr) *net.UDPAddr {
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: ClientPort}
	switch {
	case !req.GatewayIPAddr.IsUnspecified():
		return &net.UDPAddr{IP: req.GatewayIPAddr, Port: ServerPort}
	case peer != nil && peer.Port != ClientPort && peer.Port != 0 && !peer.IP.IsUnspecified() && !peer.IP.Equal(net.IPv4bcast):
		return peer
	case resp.MessageType() == dhcpv4.MessageTypeNak:
		return bcast
	case !req.ClientIPAddr.IsUnspecified():
		return &net.UDPAddr{IP: req.ClientIPAddr, Port: ClientPort}
	default:
		return bcast
	}
}

// ---- events -----------------------------------------------------------------------------

var inKinds = map[dhcpv4.MessageType]string{
	dhcpv4.MessageTypeDiscover: trace.KindDHCPDiscover,
	dhcpv4.MessageTypeRequest:  trace.KindDHCPRequest,
	dhcpv4.MessageTypeInform:   trace.KindDHCPRequest,
	dhcpv4.MessageTypeRelease:  trace.KindDHCPRelease,
	dhcpv4.MessageTypeDecline:  trace.KindDHCPDecline,
}

var outKinds = map[dhcpv4.MessageType]string{
	dhcpv4.MessageTypeOffer: trace.KindDHCPOffer,
	dhcpv4.MessageTypeAck:   trace.KindDHCPAck,
	dhcpv4.MessageTypeNak:   trace.KindDHCPNak,
}

func reqAttrs(req *dhcpv4.DHCPv4) map[string]any {
	a := map[string]any{
		"xid":      req.TransactionID.String(),
		"msg_type": req.MessageType().String(),
	}
	if v := req.Options.Get(dhcpv4.OptionClientSystemArchitectureType); v != nil {
		a["arch"] = hex.EncodeToString(v)
	}
	if v := req.Options.Get(dhcpv4.OptionClassIdentifier); v != nil {
		a["vendor_class"] = printable(v)
	}
	if v := req.Options.Get(dhcpv4.OptionUserClassInformation); v != nil {
		a["user_class"] = printable(v)
	}
	if !req.GatewayIPAddr.IsUnspecified() {
		a["giaddr"] = req.GatewayIPAddr.String()
	}
	if !req.ClientIPAddr.IsUnspecified() {
		a["ciaddr"] = req.ClientIPAddr.String()
	}
	if v := req.RequestedIPAddress(); v != nil {
		a["requested"] = v.String()
	}
	return a
}

func printable(b []byte) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '.'
		}
		return r
	}, string(b))
}

func (s *Server) inbound(req *dhcpv4.DHCPv4, p Packet) {
	kind, ok := inKinds[req.MessageType()]
	if !ok {
		return // reported as ignored by handle
	}
	a := reqAttrs(req)
	if p.Peer != nil {
		a["peer"] = p.Peer.String()
	}
	msg := fmt.Sprintf("%s from %s", req.MessageType(), req.ClientHWAddr)
	if req.MessageType() == dhcpv4.MessageTypeDecline {
		msg = fmt.Sprintf("DECLINE of %v from %s (address in use)", req.RequestedIPAddress(), req.ClientHWAddr)
	}
	s.cfg.Sink.Emit(trace.Event{Source: trace.SourceDHCP, Kind: kind, MAC: req.ClientHWAddr.String(), Message: msg, Attrs: a})
}

func (s *Server) outbound(req, resp *dhcpv4.DHCPv4, sub *Subnet, dest *net.UDPAddr) {
	mt := resp.MessageType()
	a := reqAttrs(req)
	a["msg_type"] = mt.String()
	a["yiaddr"] = resp.YourIPAddr.String()
	a["next_server"] = resp.ServerIPAddr.String()
	a["filename"] = resp.BootFileName
	if f := resp.BootFileNameOption(); f != "" && resp.BootFileName == "" {
		a["filename"] = f
	}
	if v := resp.Options.Get(dhcpv4.GenericOptionCode(210)); v != nil {
		a["path_prefix"] = string(v)
	}
	if lt := resp.IPAddressLeaseTime(0); lt > 0 {
		a["lease_time"] = int(lt.Seconds())
	}
	if m := resp.Message(); m != "" {
		a["reason"] = m
	}
	a["dest"] = dest.String()
	if sub != nil {
		a["subnet"] = sub.Prefix.String()
	}
	level := trace.LevelInfo
	if mt == dhcpv4.MessageTypeNak {
		level = trace.LevelWarn
	}
	msg := fmt.Sprintf("%s %s to %s", mt, resp.YourIPAddr, req.ClientHWAddr)
	if resp.BootFileName != "" {
		msg += " file " + resp.BootFileName
	}
	s.cfg.Sink.Emit(trace.Event{Source: trace.SourceDHCP, Kind: outKinds[mt], Level: level, MAC: req.ClientHWAddr.String(), Message: msg, Attrs: a})
	s.cfg.Logger.Info("dhcp4: "+msg, "xid", req.TransactionID.String(), "dest", dest.String())
}

func (s *Server) ignored(req *dhcpv4.DHCPv4, reason string) {
	a := reqAttrs(req)
	a["reason"] = reason
	s.cfg.Sink.Emit(trace.Event{Source: trace.SourceDHCP, Kind: trace.KindDHCPIgnored, MAC: req.ClientHWAddr.String(),
		Message: fmt.Sprintf("ignored %s from %s: %s", req.MessageType(), req.ClientHWAddr, reason), Attrs: a})
	s.cfg.Logger.Info("dhcp4: ignored", "mac", req.ClientHWAddr.String(), "type", req.MessageType().String(), "reason", reason)
}

func (s *Server) bad(p Packet, reason string) {
	a := map[string]any{"reason": reason, "bytes": len(p.Data)}
	if p.Peer != nil {
		a["peer"] = p.Peer.String()
	}
	s.cfg.Sink.Emit(trace.Event{Source: trace.SourceDHCP, Kind: trace.KindDHCPBad, Level: trace.LevelWarn,
		Message: "bad DHCPv4 packet: " + reason, Attrs: a})
	s.cfg.Logger.Warn("dhcp4: bad packet", "reason", reason, "peer", a["peer"])
}
