// Package dhcp6 is the rack's DHCPv6 server for network boot, answering as MAAS's
// dhcpd6.conf does: IA_NA addresses from per-subnet pools and a boot file URL chosen by the
// client architecture (option 61) or user class (option 15), with vendor class "HTTPClient"
// for UEFI HTTP boot. Like MAAS, there is no default branch: a client no row matches gets no
// boot file URL.
package dhcp6

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/maasemu/maasemu/trace"
)

// Ports (RFC 8415).
const (
	ClientPort = 546
	ServerPort = 547
)

// DefaultLeaseTime is MAAS's dhcpd6 default-lease-time and max-lease-time.
const DefaultLeaseTime = 1800 * time.Second

// Range is an inclusive address range.
type Range struct{ Start, End netip.Addr }

func (r Range) contains(a netip.Addr) bool { return !a.Less(r.Start) && !r.End.Less(a) }

// Subnet is one subnet6 block.
type Subnet struct {
	Prefix              netip.Prefix
	RackIP              netip.Addr // the host of boot URLs
	Pools               []Range
	DNS                 []netip.Addr // option 23
	SearchList          []string     // option 24
	LeaseTime           time.Duration
	DisabledBootMethods []string
}

// Host is a known machine.
type Host struct {
	IP       netip.Addr // fixed address (fixed-address6), or invalid
	Hostname string
}

// Hosts looks up known machines by MAC (from the client's DUID-LL/LLT or the relay's
// client link-layer address option).
type Hosts interface {
	LookupHost(ctx context.Context, mac net.HardwareAddr) (Host, bool, error)
}

// Config configures a Server.
type Config struct {
	Subnets []Subnet
	// ServerMAC builds the server DUID (DUID-LL). Empty: a locally administered address
	// derived from the first rack address.
	ServerMAC     net.HardwareAddr
	Hosts         Hosts
	IgnoreUnknown bool // stay silent for machines Hosts does not know
	Sink          trace.Sink
	Logger        *slog.Logger
	Now           func() time.Time
}

// BootMethod is one row of MAAS's DHCPv6 bootloader block (compose_conditional_bootloader
// with ipv6=True).
type BootMethod struct {
	Name       string
	ArchOctet  []byte // option 61 must equal these bytes
	UserClass  string // option 15 must equal this string, compared as raw option data
	URL        string // with <rack> bracketed
	HTTPClient bool   // option 16: enterprise 0, "HTTPClient"
}

// BootMethods is the table. Note on the user-class rows: MAAS declares
// "option dhcp6.user-class code 15 = string" and compares the whole option with "iPXE", but
// RFC 8415 clients (iPXE's dhcpv6.c among them) send length-prefixed user class data
// ("\x00\x04iPXE"), so those rows never match a well-formed request (inferred from dhcpd's
// comparison of raw option data). This table keeps that behaviour.
var BootMethods = []BootMethod{
	{Name: "ipxe", UserClass: "iPXE", URL: "http://[<rack>]:5248/ipxe.cfg"},
	{Name: "onie", UserClass: "onie_dhcp_user_class", URL: "http://[<rack>]:5248/MAAS/a/v3/nos-installer"},
	{Name: "pxe", ArchOctet: []byte{0, 0}, URL: "http://[<rack>]:5248/lpxelinux.0"},
	{Name: "uefi_amd64_tftp", ArchOctet: []byte{0, 7}, URL: "tftp://[<rack>]/bootx64.efi"},
	{Name: "uefi_amd64_http", ArchOctet: []byte{0, 0x10}, URL: "http://[<rack>]:5248/images/bootx64.efi", HTTPClient: true},
	{Name: "uefi_ebc_tftp", ArchOctet: []byte{0, 9}, URL: "tftp://[<rack>]/bootx64.efi"},
	{Name: "uefi_arm64_tftp", ArchOctet: []byte{0, 0x0b}, URL: "tftp://[<rack>]/bootaa64.efi"},
	{Name: "uefi_arm64_http", ArchOctet: []byte{0, 0x13}, URL: "http://[<rack>]:5248/images/bootaa64.efi", HTTPClient: true},
	{Name: "open-firmware_ppc64el", ArchOctet: []byte{0, 0x0c}, URL: "tftp://[<rack>]/bootppc64.bin"},
	{Name: "powernv", ArchOctet: []byte{0, 0x0e}, URL: "tftp://[<rack>]/ppc64el/pxelinux.0"},
	{Name: "s390x", ArchOctet: []byte{0, 0x1f}, URL: "tftp://[<rack>]/s390x/boots390x.bin"},
	{Name: "s390x_partition", ArchOctet: []byte{0, 0x20}, URL: "tftp://[<rack>]/s390x_partition/maas"},
	// No else: the v6 default looks up BootMethodRegistry.get_item("uefi_amd64"), but the
	// registered name is "uefi_amd64_tftp", so dhcpd6.conf has no else branch.
}

// chooseBoot returns the first matching row, if any.
func chooseBoot(arch, userClass []byte, rack netip.Addr, disabled []string) (BootMethod, bool) {
	for _, m := range BootMethods {
		if slices.Contains(disabled, m.Name) {
			continue
		}
		if (m.UserClass != "" && userClass != nil && string(userClass) == m.UserClass) ||
			(m.ArchOctet != nil && arch != nil && bytes.Equal(arch, m.ArchOctet)) {
			m.URL = strings.ReplaceAll(m.URL, "<rack>", rack.String())
			return m, true
		}
	}
	return BootMethod{}, false
}

type lease struct {
	key     string // DUID hex + IAID hex
	mac     string
	ip      netip.Addr
	expires time.Time
}

// Server is the DHCPv6 server.
type Server struct {
	cfg  Config
	duid dhcpv6.DUID

	mu      sync.Mutex
	byKey   map[string]*lease
	byIP    map[netip.Addr]*lease
	decline map[netip.Addr]time.Time
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if len(cfg.Subnets) == 0 {
		return nil, errors.New("dhcp6 config: no subnets")
	}
	for i := range cfg.Subnets {
		s := &cfg.Subnets[i]
		name := fmt.Sprintf("dhcp6 config: subnet %d (%s)", i, s.Prefix)
		if !s.Prefix.IsValid() || !s.Prefix.Addr().Is6() || s.Prefix.Addr().Is4In6() {
			return nil, fmt.Errorf("%s: prefix must be an IPv6 CIDR", name)
		}
		s.Prefix = s.Prefix.Masked()
		if !s.RackIP.Is6() || s.RackIP.Is4In6() {
			return nil, fmt.Errorf("%s: rack IP %v must be an IPv6 address", name, s.RackIP)
		}
		for _, p := range s.Pools {
			if !s.Prefix.Contains(p.Start) || !s.Prefix.Contains(p.End) || p.End.Less(p.Start) {
				return nil, fmt.Errorf("%s: pool %v-%v must lie inside the prefix, start <= end", name, p.Start, p.End)
			}
			if p.contains(s.RackIP) {
				return nil, fmt.Errorf("%s: pool %v-%v contains the rack address %v", name, p.Start, p.End, s.RackIP)
			}
		}
		if s.LeaseTime == 0 {
			s.LeaseTime = DefaultLeaseTime
		}
	}
	mac := cfg.ServerMAC
	if len(mac) == 0 {
		h := sha256.Sum256(cfg.Subnets[0].RackIP.AsSlice())
		mac = net.HardwareAddr{0x02, h[0], h[1], h[2], h[3], h[4]}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Sink = trace.OrNop(cfg.Sink)
	return &Server{
		cfg: cfg, duid: &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: mac},
		byKey: map[string]*lease{}, byIP: map[netip.Addr]*lease{}, decline: map[netip.Addr]time.Time{},
	}, nil
}

// Packet is one received datagram.
type Packet struct {
	Data []byte
	Peer *net.UDPAddr
}

// Reply is a datagram to send.
type Reply struct {
	Msg  dhcpv6.DHCPv6
	Dest *net.UDPAddr
}

type errIgnored struct{ reason string }

func (e *errIgnored) Error() string { return e.reason }

func ignore(f string, a ...any) error { return &errIgnored{fmt.Sprintf(f, a...)} }

// Handle processes one datagram. It never panics on bad input; malformed packets are
// reported (dhcp.bad) and get no answer.
func (s *Server) Handle(ctx context.Context, p Packet) (*Reply, error) {
	if p.Peer == nil {
		p.Peer = &net.UDPAddr{IP: net.IPv6unspecified}
	}
	pkt, err := dhcpv6.FromBytes(p.Data)
	if err != nil {
		s.bad(p, fmt.Sprintf("malformed DHCPv6 packet (%d bytes): %v", len(p.Data), err))
		return nil, nil
	}
	var (
		msg    *dhcpv6.Message
		relay  *dhcpv6.RelayMessage
		linkIP netip.Addr
		mac    net.HardwareAddr
	)
	if pkt.IsRelay() {
		relay = pkt.(*dhcpv6.RelayMessage)
		if relay.Type() != dhcpv6.MessageTypeRelayForward {
			s.bad(p, fmt.Sprintf("relay message type %s is not RELAY-FORW", relay.Type()))
			return nil, nil
		}
		linkIP, _ = netip.AddrFromSlice(relay.LinkAddr)
		if _, lla := relay.Options.ClientLinkLayerAddress(); lla != nil {
			mac = lla
		}
		inner, err := relay.GetInnerMessage()
		if err != nil {
			s.bad(p, "relay message without a client message: "+err.Error())
			return nil, nil
		}
		msg = inner
	} else {
		msg = pkt.(*dhcpv6.Message)
	}
	if msg.Options.ClientID() == nil && msg.Type() != dhcpv6.MessageTypeInformationRequest {
		s.bad(p, fmt.Sprintf("%s without a client identifier (option 1)", msg.Type()))
		return nil, nil
	}
	if mac == nil {
		mac = macFromDUID(msg.Options.ClientID())
	}
	s.inbound(msg, mac, p)
	resp, sub, err := s.handle(ctx, msg, mac, linkIP)
	if err != nil {
		var ig *errIgnored
		if !errors.As(err, &ig) {
			s.ignored(msg, mac, err.Error())
			return nil, err
		}
		s.ignored(msg, mac, ig.reason)
		return nil, nil
	}
	var out dhcpv6.DHCPv6 = resp
	dest := &net.UDPAddr{IP: p.Peer.IP, Port: ClientPort, Zone: p.Peer.Zone}
	if relay != nil {
		out, err = dhcpv6.NewRelayReplFromRelayForw(relay, resp)
		if err != nil {
			return nil, fmt.Errorf("dhcp6: build RELAY-REPL: %w", err)
		}
		dest = &net.UDPAddr{IP: p.Peer.IP, Port: ServerPort, Zone: p.Peer.Zone}
	}
	if p.Peer.Port != ClientPort && p.Peer.Port != ServerPort && p.Peer.Port != 0 {
		dest = p.Peer // a test client or a client behind NAT: answer where it listens
	}
	s.outbound(msg, resp, mac, sub, dest)
	return &Reply{Msg: out, Dest: dest}, nil
}

func macFromDUID(d dhcpv6.DUID) net.HardwareAddr {
	switch x := d.(type) {
	case *dhcpv6.DUIDLL:
		return x.LinkLayerAddr
	case *dhcpv6.DUIDLLT:
		return x.LinkLayerAddr
	}
	return nil
}

func (s *Server) subnetFor(link netip.Addr) *Subnet {
	if link.IsValid() && !link.IsUnspecified() {
		for i := range s.cfg.Subnets {
			if s.cfg.Subnets[i].Prefix.Contains(link) {
				return &s.cfg.Subnets[i]
			}
		}
		return nil
	}
	return &s.cfg.Subnets[0]
}

func (s *Server) handle(ctx context.Context, msg *dhcpv6.Message, mac net.HardwareAddr, link netip.Addr) (*dhcpv6.Message, *Subnet, error) {
	sub := s.subnetFor(link)
	if sub == nil {
		return nil, nil, ignore("relay link address %v is in no configured subnet", link)
	}
	var host Host
	known := false
	if mac != nil && s.cfg.Hosts != nil {
		var err error
		host, known, err = s.cfg.Hosts.LookupHost(ctx, mac)
		if err != nil {
			return nil, sub, fmt.Errorf("host lookup for %s: %w", mac, err)
		}
	}
	if !known && s.cfg.IgnoreUnknown {
		return nil, sub, ignore("unknown machine %s (answering unknown machines is off)", mac)
	}
	if sid := msg.Options.ServerID(); sid != nil && !sid.Equal(s.duid) {
		return nil, sub, ignore("message for another server (server identifier %s)", sid)
	}
	now := s.cfg.Now()
	duid := hex.EncodeToString(msg.Options.ClientID().ToBytes())
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		resp *dhcpv6.Message
		err  error
	)
	switch msg.Type() {
	case dhcpv6.MessageTypeSolicit:
		resp, err = dhcpv6.NewAdvertiseFromSolicit(msg)
		if err == nil {
			err = s.assign(resp, msg, sub, duid, mac, host, now, false)
		}
	case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRebind:
		if msg.Type() != dhcpv6.MessageTypeRebind && msg.Options.ServerID() == nil {
			return nil, sub, ignore("%s without a server identifier", msg.Type())
		}
		resp, err = dhcpv6.NewReplyFromMessage(msg)
		if err == nil {
			err = s.assign(resp, msg, sub, duid, mac, host, now, true)
		}
	case dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
		// Both get a Reply (RFC 8415 18.4.7, 18.4.8); the library builds one for a Release
		// only, so a Decline is answered through a copy typed as one.
		asRelease := *msg
		asRelease.MessageType = dhcpv6.MessageTypeRelease
		resp, err = dhcpv6.NewReplyFromMessage(&asRelease)
		if err == nil {
			for _, ia := range msg.Options.IANA() {
				for _, a := range ia.Options.Addresses() {
					ip, _ := netip.AddrFromSlice(a.IPv6Addr)
					if l, ok := s.byIP[ip]; ok && l.key == duid+hex.EncodeToString(ia.IaId[:]) {
						delete(s.byIP, ip)
						delete(s.byKey, l.key)
						if msg.Type() == dhcpv6.MessageTypeDecline {
							s.decline[ip] = now.Add(10 * time.Minute)
						}
					}
				}
			}
			resp.AddOption(&dhcpv6.OptStatusCode{StatusCode: iana.StatusSuccess, StatusMessage: "done"})
		}
	case dhcpv6.MessageTypeConfirm:
		resp, err = dhcpv6.NewReplyFromMessage(msg)
		if err == nil {
			code, text := iana.StatusSuccess, "on link"
			for _, ia := range msg.Options.IANA() {
				for _, a := range ia.Options.Addresses() {
					if ip, _ := netip.AddrFromSlice(a.IPv6Addr); !sub.Prefix.Contains(ip) {
						code, text = iana.StatusNotOnLink, fmt.Sprintf("%v is not on %s", ip, sub.Prefix)
					}
				}
			}
			resp.AddOption(&dhcpv6.OptStatusCode{StatusCode: code, StatusMessage: text})
		}
	case dhcpv6.MessageTypeInformationRequest:
		resp, err = dhcpv6.NewReplyFromMessage(msg)
	default:
		return nil, sub, ignore("message type %s is not a client request this server answers", msg.Type())
	}
	if err != nil {
		return nil, sub, ignore("cannot answer %s: %v", msg.Type(), err)
	}
	resp.AddOption(dhcpv6.OptServerID(s.duid))
	s.options(resp, msg, sub)
	return resp, sub, nil
}

// assign fills IA_NA for each IA the client sent (one address each).
func (s *Server) assign(resp, msg *dhcpv6.Message, sub *Subnet, duid string, mac net.HardwareAddr, host Host, now time.Time, commit bool) error {
	ias := msg.Options.IANA()
	for _, ia := range ias {
		key := duid + hex.EncodeToString(ia.IaId[:])
		out := &dhcpv6.OptIANA{IaId: ia.IaId, T1: sub.LeaseTime / 2, T2: sub.LeaseTime * 4 / 5}
		ip, ok := netip.Addr{}, false
		if host.IP.IsValid() && sub.Prefix.Contains(host.IP) {
			ip, ok = host.IP, true
		} else if l, have := s.byKey[key]; have && sub.Prefix.Contains(l.ip) {
			ip, ok = l.ip, true
		} else if msg.Type() == dhcpv6.MessageTypeRenew || msg.Type() == dhcpv6.MessageTypeRebind {
			out.Options.Add(&dhcpv6.OptStatusCode{StatusCode: iana.StatusNoBinding, StatusMessage: "no binding for this IA"})
			resp.AddOption(out)
			continue
		} else {
			ip, ok = s.allocate(sub, now)
		}
		if !ok {
			out.Options.Add(&dhcpv6.OptStatusCode{StatusCode: iana.StatusNoAddrsAvail, StatusMessage: "no free address in " + sub.Prefix.String()})
			resp.AddOption(out)
			continue
		}
		hold := 60 * time.Second
		if commit {
			hold = sub.LeaseTime
		}
		l := &lease{key: key, mac: mac.String(), ip: ip, expires: now.Add(hold)}
		if old, have := s.byKey[key]; have && old.ip != ip {
			delete(s.byIP, old.ip)
		}
		s.byKey[key], s.byIP[ip] = l, l
		out.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: ip.AsSlice(), PreferredLifetime: sub.LeaseTime, ValidLifetime: sub.LeaseTime})
		resp.AddOption(out)
	}
	return nil
}

func (s *Server) allocate(sub *Subnet, now time.Time) (netip.Addr, bool) {
	for _, p := range sub.Pools {
		for a := p.Start; a.IsValid() && p.contains(a); a = a.Next() {
			if until, ok := s.decline[a]; ok && now.Before(until) {
				continue
			}
			if l, ok := s.byIP[a]; ok && now.Before(l.expires) {
				continue
			}
			return a, true
		}
	}
	return netip.Addr{}, false
}

// options adds DNS, search list and the boot URL, filtered by the client's option request.
func (s *Server) options(resp, msg *dhcpv6.Message, sub *Subnet) {
	oro := msg.Options.RequestedOptions()
	asked := func(c dhcpv6.OptionCode) bool { return oro == nil || slices.Contains(oro, c) }
	if len(sub.DNS) > 0 && asked(dhcpv6.OptionDNSRecursiveNameServer) {
		var ips []net.IP
		for _, a := range sub.DNS {
			ips = append(ips, a.AsSlice())
		}
		resp.AddOption(dhcpv6.OptDNS(ips...))
	}
	if len(sub.SearchList) > 0 && asked(dhcpv6.OptionDomainSearchList) {
		dhcpv6.WithDomainSearchList(sub.SearchList...)(resp)
	}
	var arch, uc []byte
	if o := msg.GetOneOption(dhcpv6.OptionClientArchType); o != nil {
		arch = o.ToBytes()
	}
	if o := msg.GetOneOption(dhcpv6.OptionUserClass); o != nil {
		uc = o.ToBytes()
	}
	if m, ok := chooseBoot(arch, uc, sub.RackIP, sub.DisabledBootMethods); ok {
		resp.AddOption(dhcpv6.OptBootFileURL(m.URL))
		if m.HTTPClient {
			resp.AddOption(&dhcpv6.OptVendorClass{EnterpriseNumber: 0, Data: [][]byte{[]byte("HTTPClient")}})
		}
	}
}

// ---- events -----------------------------------------------------------------------------

func kindIn(t dhcpv6.MessageType) string {
	switch t {
	case dhcpv6.MessageTypeSolicit:
		return trace.KindDHCPDiscover
	case dhcpv6.MessageTypeRelease:
		return trace.KindDHCPRelease
	case dhcpv6.MessageTypeDecline:
		return trace.KindDHCPDecline
	case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRebind,
		dhcpv6.MessageTypeConfirm, dhcpv6.MessageTypeInformationRequest:
		return trace.KindDHCPRequest
	}
	return ""
}

func attrs(msg *dhcpv6.Message, mac net.HardwareAddr) map[string]any {
	a := map[string]any{"ip_version": 6, "msg_type": msg.Type().String(), "xid": msg.TransactionID.String()}
	if o := msg.GetOneOption(dhcpv6.OptionClientArchType); o != nil {
		a["arch"] = hex.EncodeToString(o.ToBytes())
	}
	if o := msg.GetOneOption(dhcpv6.OptionUserClass); o != nil {
		a["user_class"] = fmt.Sprintf("%q", o.ToBytes())
	}
	if vc := msg.Options.VendorClasses(); len(vc) > 0 && len(vc[0].Data) > 0 {
		a["vendor_class"] = string(vc[0].Data[0])
	}
	if mac != nil {
		a["mac"] = mac.String()
	}
	return a
}

func macString(mac net.HardwareAddr) string {
	if mac == nil {
		return ""
	}
	return mac.String()
}

func (s *Server) inbound(msg *dhcpv6.Message, mac net.HardwareAddr, p Packet) {
	k := kindIn(msg.Type())
	if k == "" {
		return
	}
	a := attrs(msg, mac)
	if p.Peer != nil {
		a["peer"] = p.Peer.String()
	}
	s.cfg.Sink.Emit(trace.Event{Source: trace.SourceDHCP, Kind: k, MAC: macString(mac),
		Message: fmt.Sprintf("DHCPv6 %s from %s", msg.Type(), macString(mac)), Attrs: a})
}

func (s *Server) outbound(req, resp *dhcpv6.Message, mac net.HardwareAddr, sub *Subnet, dest *net.UDPAddr) {
	a := attrs(req, mac)
	a["msg_type"] = resp.Type().String()
	a["dest"] = dest.String()
	if sub != nil {
		a["subnet"] = sub.Prefix.String()
	}
	if u := resp.Options.BootFileURL(); u != "" {
		a["filename"] = u
	}
	var addrs []string
	kind, level := trace.KindDHCPAck, trace.LevelInfo
	if resp.Type() == dhcpv6.MessageTypeAdvertise {
		kind = trace.KindDHCPOffer
	}
	for _, ia := range resp.Options.IANA() {
		for _, ad := range ia.Options.Addresses() {
			addrs = append(addrs, ad.IPv6Addr.String())
		}
		if st := ia.Options.Status(); st != nil && st.StatusCode != iana.StatusSuccess {
			kind, level = trace.KindDHCPNak, trace.LevelWarn
			a["reason"] = st.StatusCode.String() + ": " + st.StatusMessage
		}
	}
	if st := resp.Options.Status(); st != nil && st.StatusCode != iana.StatusSuccess {
		kind, level = trace.KindDHCPNak, trace.LevelWarn
		a["reason"] = st.StatusCode.String() + ": " + st.StatusMessage
	}
	a["yiaddr"] = strings.Join(addrs, ",")
	msg := fmt.Sprintf("DHCPv6 %s to %s %s", resp.Type(), macString(mac), a["yiaddr"])
	s.cfg.Sink.Emit(trace.Event{Source: trace.SourceDHCP, Kind: kind, Level: level, MAC: macString(mac), Message: msg, Attrs: a})
	s.cfg.Logger.Info("dhcp6: "+msg, "dest", dest.String())
}

func (s *Server) ignored(msg *dhcpv6.Message, mac net.HardwareAddr, reason string) {
	a := attrs(msg, mac)
	a["reason"] = reason
	s.cfg.Sink.Emit(trace.Event{Source: trace.SourceDHCP, Kind: trace.KindDHCPIgnored, MAC: macString(mac),
		Message: fmt.Sprintf("ignored DHCPv6 %s: %s", msg.Type(), reason), Attrs: a})
}

func (s *Server) bad(p Packet, reason string) {
	a := map[string]any{"ip_version": 6, "reason": reason, "bytes": len(p.Data)}
	if p.Peer != nil {
		a["peer"] = p.Peer.String()
	}
	s.cfg.Sink.Emit(trace.Event{Source: trace.SourceDHCP, Kind: trace.KindDHCPBad, Level: trace.LevelWarn,
		Message: "bad DHCPv6 packet: " + reason, Attrs: a})
	s.cfg.Logger.Warn("dhcp6: bad packet", "reason", reason)
}

// Serve answers DHCPv6 on conn ([::]:547 joined to ff02::1:2, or a gVisor endpoint) until
// ctx is done, then closes conn.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	defer conn.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	buf := make([]byte, 65535)
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
				return fmt.Errorf("dhcp6 serve: %w", err)
			}
			s.cfg.Logger.Warn("dhcp6: read", "error", err)
			continue
		}
		peer, _ := addr.(*net.UDPAddr)
		if peer == nil {
			if ap, err := netip.ParseAddrPort(addr.String()); err == nil {
				peer = net.UDPAddrFromAddrPort(ap)
			} else {
				peer = &net.UDPAddr{}
			}
		}
		p := Packet{Data: append([]byte(nil), buf[:n]...), Peer: peer}
		wg.Add(1)
		go func() {
			defer wg.Done()
			reply, err := s.Handle(ctx, p)
			if err != nil {
				s.cfg.Logger.Error("dhcp6: handle", "error", err)
			}
			if reply != nil {
				if _, err := conn.WriteTo(reply.Msg.ToBytes(), reply.Dest); err != nil && ctx.Err() == nil {
					s.cfg.Logger.Error("dhcp6: send", "dest", reply.Dest.String(), "error", err)
				}
			}
		}()
	}
}
