package dhcp4

import (
	"context"
	"fmt"
	"net"
	"slices"

	"github.com/maasemu/maasemu/fakemaas"
)

// The region's side of the server's configuration: its subnets (fakemaas.DHCPSubnet, what
// MAAS's dhcpd.conf has per subnet) and its host entries (fixed addresses of machines with
// AUTO or STATIC links on managed subnets).

// RegionSubnets converts the region's IPv4 DHCP subnets (fakemaas.Region.DHCPSubnets) to
// the server's form; IPv6 ones are left out. Put the directly attached subnet first when
// it matters (see Config).
func RegionSubnets(subnets []fakemaas.DHCPSubnet) []Subnet {
	out := make([]Subnet, 0, len(subnets))
	for _, s := range subnets {
		if !s.Prefix.Addr().Is4() {
			continue
		}
		x := Subnet{Prefix: s.Prefix, RackIP: s.RackIP, Router: s.Router, DomainName: s.DomainName,
			MTU: s.MTU, DNS: slices.Clone(s.DNS), NTP: slices.Clone(s.NTP), SearchList: slices.Clone(s.SearchList),
			DisabledBootMethods: slices.Clone(s.DisabledBootMethods)}
		for _, p := range s.Pools {
			x.Pools = append(x.Pools, Range{Start: p.Start, End: p.End})
		}
		out = append(out, x)
	}
	return out
}

// RegionLookup is what RegionHosts asks the region (fakemaas.Region implements it).
type RegionLookup interface {
	LookupDHCP(ctx context.Context, mac net.HardwareAddr) (fakemaas.DHCPLookup, error)
}

// RegionHosts implements Hosts from the region's records: a MAC of a machine is known,
// with MAAS's host entry (a fixed address) when the machine has an AUTO (claimed at
// deployment) or STATIC address on a subnet the rack serves; a machine with only DHCP
// links leases from the pool.
type RegionHosts struct {
	Region RegionLookup
	// Subnets, when set, are the server's subnets: a host entry counts only inside one of
	// them (a machine with addresses on several subnets gets the one the server serves).
	Subnets []Subnet
}

// LookupHost implements Hosts.
func (h RegionHosts) LookupHost(ctx context.Context, mac net.HardwareAddr) (Host, bool, error) {
	if h.Region == nil {
		return Host{}, false, fmt.Errorf("dhcp4: RegionHosts has no region")
	}
	l, err := h.Region.LookupDHCP(ctx, mac)
	if err != nil {
		return Host{}, false, fmt.Errorf("dhcp4: region lookup of %s: %w", mac, err)
	}
	if !l.Known {
		return Host{}, false, nil
	}
	host := Host{Hostname: l.Hostname, SystemID: l.SystemID}
	for _, e := range l.Hosts {
		if !e.IP.Is4() {
			continue
		}
		if len(h.Subnets) > 0 && !h.served(e) {
			continue
		}
		host.IP = e.IP
		break
	}
	return host, true, nil
}

func (h RegionHosts) served(e fakemaas.DHCPHost) bool {
	for _, s := range h.Subnets {
		if s.Prefix.Contains(e.IP) {
			return true
		}
	}
	return false
}
