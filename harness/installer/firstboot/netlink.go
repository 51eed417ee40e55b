package firstboot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

// Netlink brings interfaces up on this machine: links matched by MAC and renamed
// (set-name), DHCPv4 with nclient4, static addresses and routes through netlink, and
// nameservers into ResolvConf.
type Netlink struct {
	// ResolvConf is written with the nameservers ("" = /etc/resolv.conf).
	ResolvConf string
	// DHCPTimeout bounds each DHCP exchange (0 = 30 s).
	DHCPTimeout time.Duration
}

// Up applies nc.
func (n Netlink) Up(ctx context.Context, nc NetConfig) ([]Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	ifaces := nc.Ifaces
	if nc.Fallback {
		// cloud-init's fallback: DHCP on the first physical NIC with carrier.
		for _, l := range links {
			if l.Type() != "device" || l.Attrs().Flags&net.FlagLoopback != 0 {
				continue
			}
			if _, err := os.Stat("/sys/class/net/" + l.Attrs().Name + "/device"); err != nil {
				continue
			}
			ifaces = []Iface{{Name: l.Attrs().Name, MatchName: l.Attrs().Name, DHCP4: true}}
			break
		}
		if len(ifaces) == 0 {
			return nil, errors.New("no network config and no physical NIC for the DHCP fallback")
		}
	}
	var out []Link
	var dns, search []string
	for _, ifc := range ifaces {
		link, err := n.link(ifc, links)
		if err != nil {
			return out, err
		}
		if ifc.MTU > 0 {
			_ = netlink.LinkSetMTU(link, ifc.MTU)
		}
		if err := netlink.LinkSetUp(link); err != nil {
			return out, fmt.Errorf("bringing %s up: %w", link.Attrs().Name, err)
		}
		res := Link{Name: link.Attrs().Name, MAC: link.Attrs().HardwareAddr.String()}
		gw := ifc.Gateway4
		if ifc.DHCP4 {
			lease, err := n.dhcp(ctx, link.Attrs().Name)
			if err != nil {
				return out, fmt.Errorf("DHCP on %s: %w", link.Attrs().Name, err)
			}
			ack := lease.ACK
			ones, _ := ack.SubnetMask().Size()
			ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
			ifc.Addresses = append(ifc.Addresses, netip.PrefixFrom(ip, ones))
			if r := ack.Router(); len(r) > 0 && !gw.IsValid() {
				gw, _ = netip.AddrFromSlice(r[0].To4())
			}
			for _, d := range ack.DNS() {
				dns = append(dns, d.String())
			}
			if dl := ack.DomainSearch(); dl != nil {
				search = append(search, dl.Labels...)
			}
		}
		for _, p := range ifc.Addresses {
			addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
			if err := netlink.AddrReplace(link, addr); err != nil {
				return out, fmt.Errorf("adding %s to %s: %w", p, link.Attrs().Name, err)
			}
			res.Addresses = append(res.Addresses, p)
		}
		if gw.IsValid() {
			if err := netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
				return out, fmt.Errorf("default route via %s: %w", gw, err)
			}
			res.Gateway = gw
		}
		for _, r := range ifc.Routes {
			dst := &net.IPNet{IP: r.To.Addr().AsSlice(), Mask: net.CIDRMask(r.To.Bits(), r.To.Addr().BitLen())}
			if err := netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Gw: r.Via.AsSlice()}); err != nil {
				return out, fmt.Errorf("route %s via %s: %w", r.To, r.Via, err)
			}
		}
		dns = append(dns, ifc.Nameservers...)
		search = append(search, ifc.Search...)
		res.DNS = dns
		out = append(out, res)
	}
	if len(dns) > 0 {
		p := n.ResolvConf
		if p == "" {
			p = "/etc/resolv.conf"
		}
		var b strings.Builder
		b.WriteString("# written by the maasemu probe\n")
		for _, d := range dns {
			fmt.Fprintf(&b, "nameserver %s\n", d)
		}
		if len(search) > 0 {
			fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
		}
		_ = os.Remove(p) // often a dangling symlink to systemd-resolved
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			return out, err
		}
	}
	return out, nil
}

// link finds (an ethernet, renamed to its configured name) or creates (a bond, VLAN or
// bridge, its members enslaved) the link ifc names.
func (n Netlink) link(ifc Iface, links []netlink.Link) (netlink.Link, error) {
	switch ifc.Kind {
	case KindBond, KindBridge:
		var master netlink.Link
		if ifc.Kind == KindBond {
			b := netlink.NewLinkBond(netlink.LinkAttrs{Name: ifc.Name})
			if ifc.BondMode != "" {
				b.Mode = netlink.StringToBondMode(ifc.BondMode)
				if b.Mode == netlink.BOND_MODE_UNKNOWN {
					return nil, fmt.Errorf("bond %s: unknown mode %q", ifc.Name, ifc.BondMode)
				}
			}
			master = b
		} else {
			master = &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: ifc.Name}}
		}
		if old, err := netlink.LinkByName(ifc.Name); err == nil && old.Type() == master.Type() {
			// Loading the bonding driver makes an idle bond0: replace it with the one configured.
			_ = netlink.LinkDel(old)
		}
		if err := netlink.LinkAdd(master); err != nil {
			return nil, fmt.Errorf("creating %s %s: %w", ifc.Kind, ifc.Name, err)
		}
		for _, m := range ifc.Members {
			l, err := netlink.LinkByName(m)
			if err != nil {
				return nil, fmt.Errorf("%s %s: member %s: %w", ifc.Kind, ifc.Name, m, err)
			}
			_ = netlink.LinkSetDown(l)
			if err := netlink.LinkSetMaster(l, master); err != nil {
				return nil, fmt.Errorf("%s %s: enslaving %s: %w", ifc.Kind, ifc.Name, m, err)
			}
			if err := netlink.LinkSetUp(l); err != nil {
				return nil, fmt.Errorf("%s %s: bringing %s up: %w", ifc.Kind, ifc.Name, m, err)
			}
		}
		return netlink.LinkByName(ifc.Name)
	case KindVLAN:
		parent, err := netlink.LinkByName(ifc.VLANLink)
		if err != nil {
			return nil, fmt.Errorf("VLAN %s: link %s: %w", ifc.Name, ifc.VLANLink, err)
		}
		v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: ifc.Name, ParentIndex: parent.Attrs().Index}, VlanId: ifc.VLANID}
		if err := netlink.LinkAdd(v); err != nil {
			return nil, fmt.Errorf("creating VLAN %s (id %d on %s): %w", ifc.Name, ifc.VLANID, ifc.VLANLink, err)
		}
		return netlink.LinkByName(ifc.Name)
	}
	var link netlink.Link
	for _, l := range links {
		a := l.Attrs()
		if (ifc.MatchMAC != "" && strings.EqualFold(a.HardwareAddr.String(), ifc.MatchMAC)) || (ifc.MatchMAC == "" && a.Name == ifc.MatchName) {
			link = l
			break
		}
	}
	if link == nil {
		return nil, fmt.Errorf("no interface matches %s (mac %q, name %q)", ifc.Name, ifc.MatchMAC, ifc.MatchName)
	}
	if ifc.Name != "" && link.Attrs().Name != ifc.Name {
		_ = netlink.LinkSetDown(link)
		if err := netlink.LinkSetName(link, ifc.Name); err != nil {
			return nil, fmt.Errorf("renaming %s to %s: %w", link.Attrs().Name, ifc.Name, err)
		}
		if l, err := netlink.LinkByName(ifc.Name); err == nil {
			link = l
		}
	}
	return link, nil
}

func (n Netlink) dhcp(ctx context.Context, ifname string) (*nclient4.Lease, error) {
	t := n.DHCPTimeout
	if t == 0 {
		t = 30 * time.Second
	}
	c, err := nclient4.New(ifname, nclient4.WithTimeout(3*time.Second), nclient4.WithRetry(3))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	return c.Request(ctx)
}
