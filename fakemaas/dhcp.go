package fakemaas

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// What the rack's DHCP servers need from the region, as MAAS's dhcpd configuration has it
// (maasserver/dhcp.py): the subnets the rack serves (make_subnet_config) and the host
// entries of machines with fixed addresses (make_hosts_for_subnets). The rack's form of
// them is package pxe's dhcp4.Subnet and dhcp4.Hosts; pxe/dhcp4 converts.

// SubnetSpec describes a subnet the harness wants the region to have (EnsureSubnet).
type SubnetSpec struct {
	CIDR    netip.Prefix
	Name    string     // default: the CIDR
	Gateway netip.Addr // invalid: none
	// DynamicStart and DynamicEnd bound the dynamic range MAAS's DHCP leases from; both
	// invalid: none.
	DynamicStart, DynamicEnd netip.Addr
	// RackIP is the rack's address on the subnet. With a dynamic range it makes the rack
	// the VLAN's primary rack and turns DHCP on, as an administrator does in MAAS.
	RackIP     netip.Addr
	DNSServers []netip.Addr
	// VID is the VLAN of fabric-0 the subnet is on (created when missing); 0 is the
	// untagged default VLAN.
	VID int
}

// EnsureSubnet makes the region have the subnet spec describes, creating or updating it,
// its VLAN, its dynamic range and the rack's address on it, with the API's validation
// (an overlapping subnet, a gateway or range outside the subnet, a range that conflicts
// with another, an address in use are refused and change nothing). It returns the
// subnet's id. For the lab's network:
//
//	id, err := region.EnsureSubnet(ctx, fakemaas.SubnetSpec{CIDR: netip.MustParsePrefix("198.18.0.0/24"),
//		Gateway: rack, RackIP: rack, DynamicStart: netip.MustParseAddr("198.18.0.128"),
//		DynamicEnd: netip.MustParseAddr("198.18.0.254")})
func (r *Region) EnsureSubnet(ctx context.Context, spec SubnetSpec) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	bad := func(format string, args ...any) (int, error) {
		return 0, fmt.Errorf("fakemaas: EnsureSubnet %s: %w", spec.CIDR, badRequest(fmt.Sprintf(format, args...)))
	}
	p := spec.CIDR
	if !p.IsValid() || p.Bits() == 0 {
		return bad("CIDR must be a prefix such as 198.18.0.0/24 with a length greater than 0")
	}
	p = p.Masked()
	for _, a := range []struct {
		what string
		ip   netip.Addr
	}{{"gateway", spec.Gateway}, {"rack IP", spec.RackIP}, {"dynamic range start", spec.DynamicStart}, {"dynamic range end", spec.DynamicEnd}} {
		if a.ip.IsValid() && !p.Contains(a.ip) {
			return bad("%s %s is not in the subnet", a.what, a.ip)
		}
	}
	if spec.DynamicStart.IsValid() != spec.DynamicEnd.IsValid() {
		return bad("a dynamic range needs both its start and its end")
	}
	if spec.VID < 0 || spec.VID > 4094 {
		return bad("VID %d is not from 0 to 4094", spec.VID)
	}
	var id int
	err := r.updateNetwork(func(t *netTx) error {
		n := t.n
		v := n.vlanByVID(defaultFabricID, spec.VID)
		if v == nil {
			v = &vlan{ID: vlanIDBase + int(t.w.next("vlan")) + 1, FabricID: defaultFabricID, VID: spec.VID, MTU: defaultMTU}
			n.VLANs = append(n.VLANs, v)
		}
		s := n.findSubnet(p.String())
		if s == nil {
			for _, o := range n.Subnets {
				if o.prefix().Overlaps(p) {
					return badRequest(fmt.Sprintf("Subnet %s would overlap with existing subnets.", p))
				}
			}
			s = &subnet{ID: int(t.w.next("subnet")), CIDR: p.String(), Name: p.String(), RDNSMode: 2, AllowDNS: true,
				AllowProxy: true, Managed: true}
			n.Subnets = append(n.Subnets, s)
		}
		id = s.ID
		s.VLAN = v.ID
		if spec.Name != "" {
			if !subnetNameRE.MatchString(spec.Name) {
				return badRequest(fmt.Sprintf("name %q: Enter a valid value.", spec.Name))
			}
			s.Name = spec.Name
		}
		s.Gateway = ""
		if spec.Gateway.IsValid() {
			s.Gateway = spec.Gateway.Unmap().String()
		}
		s.DNSServers = nil
		for _, d := range spec.DNSServers {
			s.DNSServers = append(s.DNSServers, d.Unmap().String())
		}
		if spec.RackIP.IsValid() {
			ip := spec.RackIP.Unmap()
			if !slices.Contains(n.Rack.Addresses, ip.String()) {
				for _, u := range t.r.usedIPs(n) {
					if u.ip == ip && !u.discovered {
						return conflict(fmt.Sprintf("The IP address %s is already in use.", ip))
					}
				}
				n.Rack.Addresses = append(n.Rack.Addresses, ip.String())
			}
		}
		if spec.DynamicStart.IsValid() {
			start, end := spec.DynamicStart.Unmap().String(), spec.DynamicEnd.Unmap().String()
			if !slices.ContainsFunc(n.rangesOf(s.ID), func(rg *ipRange) bool {
				return rg.Type == rangeDynamic && rg.Start == start && rg.End == end
			}) {
				rg := &ipRange{Subnet: s.ID, Type: rangeDynamic, Start: start, End: end, Comment: "maasemu lab"}
				if err := t.validateIPRange(rg); err != nil {
					return err
				}
				rg.ID = int(t.w.next("iprange"))
				n.Ranges = append(n.Ranges, rg)
			}
			if spec.RackIP.IsValid() {
				v.PrimaryRack = n.Rack.SystemID
				v.DHCPOn = true
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("fakemaas: EnsureSubnet %s: %w", p, err)
	}
	return id, nil
}

// DHCPPool is a dynamic range of a DHCP subnet.
type DHCPPool struct{ Start, End netip.Addr }

// DHCPSubnet is a subnet the rack serves DHCP on, as MAAS's dhcpd.conf has it
// (make_subnet_config).
type DHCPSubnet struct {
	Prefix netip.Prefix
	// RackIP is the rack's address in the subnet (next-server), else its first address of
	// the family.
	RackIP     netip.Addr
	Pools      []DHCPPool // the subnet's dynamic ranges
	Router     netip.Addr // the gateway; invalid when none
	DNS        []netip.Addr
	DomainName string
	SearchList []string
	NTP        []netip.Addr
	MTU        int // the VLAN's MTU
	// DisabledBootMethods are the subnet's disabled_boot_architectures.
	DisabledBootMethods []string
}

// DHCPSubnets returns the subnets the rack serves, in address order: the managed subnets
// of VLANs with DHCP on whose primary or secondary rack is the rack, each with its
// options: the gateway as router; the rack's addresses on the VLAN (when the subnet
// allows DNS; only in-subnet ones without a gateway) then the subnet's DNS servers; the
// default domain; the rack (or ntp_servers with ntp_external_only) for NTP.
func (r *Region) DHCPSubnets(ctx context.Context) ([]DHCPSubnet, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := r.net
	domain := r.configString("default_domain")
	var out []DHCPSubnet
	for _, s := range r.servedSubnets() {
		p := s.prefix()
		v := n.vlan(s.VLAN)
		d := DHCPSubnet{Prefix: p, DomainName: domain, SearchList: []string{domain}, MTU: v.MTU,
			DisabledBootMethods: slices.Clone(s.DisabledBootArchitectures)}
		rackIPs := r.rackIPsFor(s)
		if len(rackIPs) > 0 {
			d.RackIP = rackIPs[0]
		}
		if g, err := netip.ParseAddr(s.Gateway); err == nil {
			d.Router = g
		}
		if s.AllowDNS {
			for _, ip := range rackIPs {
				if s.Gateway != "" || p.Contains(ip) {
					d.DNS = append(d.DNS, ip)
				}
			}
		}
		for _, a := range s.DNSServers {
			if ip, err := netip.ParseAddr(a); err == nil && !slices.Contains(d.DNS, ip) {
				d.DNS = append(d.DNS, ip)
			}
		}
		if r.configValue("ntp_external_only") == true {
			for _, x := range strings.FieldsFunc(r.configString("ntp_servers"), func(c rune) bool { return c == ',' || c == ' ' }) {
				if ip, err := netip.ParseAddr(x); err == nil && ip.Is4() == p.Addr().Is4() {
					d.NTP = append(d.NTP, ip)
				}
			}
		} else if d.RackIP.IsValid() {
			d.NTP = []netip.Addr{d.RackIP}
		}
		for _, rg := range n.rangesOf(s.ID) {
			if rg.Type == rangeDynamic {
				d.Pools = append(d.Pools, DHCPPool{netip.MustParseAddr(rg.Start), netip.MustParseAddr(rg.End)})
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// servedSubnets are the managed subnets on VLANs with DHCP on that the rack serves, in
// address order (r.mu held).
func (r *Region) servedSubnets() []*subnet {
	n := r.net
	var out []*subnet
	for _, s := range n.Subnets {
		v := n.vlan(s.VLAN)
		if !s.Managed || v == nil || !v.DHCPOn || n.Rack.SystemID == "" ||
			(v.PrimaryRack != n.Rack.SystemID && v.SecondaryRack != n.Rack.SystemID) {
			continue
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].prefix().Addr().Less(out[j].prefix().Addr()) })
	return out
}

// rackIPsFor is get_boot_rackcontroller_ips: the rack's addresses on the subnet's VLAN
// of its family, those inside the subnet first (r.mu held).
func (r *Region) rackIPsFor(s *subnet) []netip.Addr {
	p := s.prefix()
	var in, out []netip.Addr
	for _, a := range r.net.rackAddressesOnVLAN(s.VLAN) {
		ip, err := netip.ParseAddr(a)
		if err != nil || ip.Is4() != p.Addr().Is4() {
			continue
		}
		if p.Contains(ip) {
			in = append(in, ip)
		} else {
			out = append(out, ip)
		}
	}
	return append(in, out...)
}

// DHCPHost is a host entry of MAAS's dhcpd configuration: a MAC with a fixed address.
type DHCPHost struct {
	Host      string // "<hostname>-<interface>" (dots in the interface name as dashes)
	MAC       string
	IP        netip.Addr
	SystemID  string
	Hostname  string
	Interface string // the interface whose address it is
}

// DHCPLookup is what the region tells the rack about a MAC.
type DHCPLookup struct {
	Known    bool // the MAC is one of a machine's interfaces
	SystemID string
	Hostname string
	// Hosts are the MAC's host entries, those of untagged interfaces (not VLAN
	// interfaces) first: one per subnet at most.
	Hosts []DHCPHost
}

// LookupDHCP answers the rack's DHCP server about a MAC: the machine it belongs to and
// its host entries (DHCPHosts).
func (r *Region) LookupDHCP(ctx context.Context, mac net.HardwareAddr) (DHCPLookup, error) {
	if err := ctx.Err(); err != nil {
		return DHCPLookup{}, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out DHCPLookup
	m := r.machines[r.macIndex[mac.String()]]
	if m == nil {
		return out, nil
	}
	out.Known, out.SystemID, out.Hostname = true, m.SystemID, m.Hostname
	var tagged []DHCPHost
	for _, h := range r.dhcpHosts(m) {
		if h.MAC != mac.String() {
			continue
		}
		if i := m.ifaceNamed(h.Interface); i != nil && i.kind() == ifaceVLAN {
			tagged = append(tagged, h)
		} else {
			out.Hosts = append(out.Hosts, h)
		}
	}
	out.Hosts = append(out.Hosts, tagged...)
	return out, nil
}

// DHCPHosts returns the host entries of MAAS's dhcpd configuration
// (make_hosts_for_subnets): for each AUTO (once claimed), STATIC address on a subnet the
// rack serves, in link order, the interface's MAC (each interface once); a bond's entry
// is repeated for each parent with another MAC.
func (r *Region) DHCPHosts(ctx context.Context) ([]DHCPHost, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	var ms []*machine
	for _, sid := range sortedKeys(r.machines) {
		ms = append(ms, r.machines[sid])
	}
	return r.dhcpHosts(ms...), nil
}

// dhcpHosts is make_hosts_for_subnets for the machines' addresses (r.mu held).
func (r *Region) dhcpHosts(machines ...*machine) []DHCPHost {
	served := map[int]bool{}
	for _, s := range r.servedSubnets() {
		served[s.ID] = true
	}
	type sip struct {
		link  Link
		m     *machine
		iface *Interface
	}
	var sips []sip
	for _, m := range machines {
		for x := range m.Interfaces {
			for _, l := range m.Interfaces[x].Links {
				if l.IP != "" && served[l.Subnet] && (l.Mode == linkAuto || l.Mode == linkStatic) {
					sips = append(sips, sip{l, m, &m.Interfaces[x]})
				}
			}
		}
	}
	sort.SliceStable(sips, func(i, j int) bool { return sips[i].link.ID < sips[j].link.ID })
	var out []DHCPHost
	seen := map[string]map[int]bool{}
	entry := func(m *machine, i *Interface, ip netip.Addr) DHCPHost {
		return DHCPHost{Host: m.Hostname + "-" + strings.ReplaceAll(i.Name, ".", "-"), MAC: i.MAC, IP: ip,
			SystemID: m.SystemID, Hostname: m.Hostname, Interface: i.Name}
	}
	for _, s := range sips {
		if seen[s.m.SystemID] == nil {
			seen[s.m.SystemID] = map[int]bool{}
		}
		if seen[s.m.SystemID][s.iface.ID] {
			continue
		}
		seen[s.m.SystemID][s.iface.ID] = true
		ip := netip.MustParseAddr(s.link.IP)
		if s.iface.kind() == ifaceBond {
			for _, p := range s.m.parents(s.iface) {
				if p.MAC != s.iface.MAC {
					seen[s.m.SystemID][p.ID] = true
					out = append(out, entry(s.m, p, ip))
				}
			}
		}
		out = append(out, entry(s.m, s.iface, ip))
	}
	return out
}
