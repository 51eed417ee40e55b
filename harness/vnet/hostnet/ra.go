package hostnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/net/ipv6"

	"github.com/maasemu/maasemu/pxe/ra"
)

// ServeRouterAdvertisements answers IPv6 router solicitations arriving on the interface
// with pxe/ra's router advertisement, which configures nothing (router lifetime 0, no
// prefix, neither the managed nor the other-configuration flag), until ctx ends.
//
// iPXE does not boot until its IPv6 autoconfiguration ends, which without a router on
// the link takes about 16 s; the answer ends it at once. Call it in bridge mode when the
// network has no IPv6 router of its own. It needs an IPv6 link-local address on the
// interface and root (a raw ICMPv6 socket).
func (it *Interface) ServeRouterAdvertisements(ctx context.Context) error {
	lc := net.ListenConfig{Control: it.control(false, 0)}
	c, err := lc.ListenPacket(ctx, "ip6:ipv6-icmp", "::")
	if err != nil {
		return fmt.Errorf("hostnet: router advertisements on %s: %w", it.Name, err)
	}
	defer c.Close()
	p := ipv6.NewPacketConn(c)
	var filter ipv6.ICMPFilter
	filter.SetAll(true)
	filter.Accept(ipv6.ICMPTypeRouterSolicitation)
	if err := p.SetICMPFilter(&filter); err != nil {
		return fmt.Errorf("hostnet: router advertisements on %s: ICMPv6 filter: %w", it.Name, err)
	}
	ifi, err := net.InterfaceByIndex(it.Index)
	if err != nil {
		return fmt.Errorf("hostnet: router advertisements on %s: %w", it.Name, err)
	}
	allRouters := &net.IPAddr{IP: net.ParseIP("ff02::2")}
	if err := p.JoinGroup(ifi, allRouters); err != nil {
		return fmt.Errorf("hostnet: router advertisements on %s: joining ff02::2: %w", it.Name, err)
	}
	// Neighbour discovery messages must carry hop limit 255 (RFC 4861 §6.1.2).
	if err := p.SetMulticastHopLimit(255); err != nil {
		return fmt.Errorf("hostnet: router advertisements on %s: %w", it.Name, err)
	}
	if err := p.SetHopLimit(255); err != nil {
		return fmt.Errorf("hostnet: router advertisements on %s: %w", it.Name, err)
	}
	if err := p.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagInterface, true); err != nil {
		return fmt.Errorf("hostnet: router advertisements on %s: %w", it.Name, err)
	}
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()
	adv := ra.Message(ifi.HardwareAddr)
	buf := make([]byte, 1500)
	for {
		n, cm, src, err := p.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			continue
		}
		// Only well-formed solicitations from this link (hop limit 255).
		if n < 8 || buf[0] != byte(ipv6.ICMPTypeRouterSolicitation) || buf[1] != 0 {
			continue
		}
		if cm != nil && (cm.HopLimit != 255 || (cm.IfIndex != 0 && cm.IfIndex != it.Index)) {
			continue
		}
		dst := &net.IPAddr{IP: net.ParseIP("ff02::1"), Zone: it.Name}
		if ia, ok := src.(*net.IPAddr); ok && !ia.IP.IsUnspecified() {
			dst = &net.IPAddr{IP: ia.IP, Zone: it.Name}
		}
		// The kernel fills in the ICMPv6 checksum.
		_, _ = p.WriteTo(adv, &ipv6.ControlMessage{HopLimit: 255, IfIndex: it.Index}, dst)
	}
}
