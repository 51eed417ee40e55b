// Package ra answers IPv6 Router Solicitations with a Router Advertisement that carries no
// prefix, no default route and neither the M nor the O flag, which ends iPXE's IPv6 router
// discovery at once instead of after its ~16 s of retries.
//
// Why: the iPXE ROM that Debian 12's QEMU uses (ipxe-qemu 1.0.0+git-20190125.36a4c85) is
// built with IPv6 and configures a NIC with every configurator in parallel; ifconf waits for
// all of them (src/usr/ifmgmt.c). Router discovery (src/net/ndp.c start_ipv6conf) retries
// with the default retry timer, 0.25 s doubling to 10 s, and gives up only after
// 0.25+0.5+1+2+4+8 = 15.75 s: the ~13 s pause seen between the DHCPv4 ACK and the first TFTP
// request. ipv6conf_rx_router_advertisement stops it as soon as an advertisement arrives and,
// without M/O flags, starts no DHCPv6. A userspace switch or stack calls Reply on each frame.
package ra

import (
	"encoding/binary"
	"net"
	"net/netip"
)

const (
	etherTypeIPv6       = 0x86dd
	protoICMPv6         = 58
	typeRouterSolicit   = 133
	typeRouterAdvertise = 134
	optSourceLinkLayer  = 1
)

// LinkLocal is the EUI-64 link-local address of mac (RFC 4291 appendix A).
func LinkLocal(mac net.HardwareAddr) netip.Addr {
	var a [16]byte
	a[0], a[1] = 0xfe, 0x80
	copy(a[8:11], mac[0:3])
	a[8] ^= 0x02
	a[11], a[12] = 0xff, 0xfe
	copy(a[13:16], mac[3:6])
	return netip.AddrFrom16(a)
}

// Reply returns the Ethernet frame that answers frame when frame is a Router Solicitation
// (an untagged IPv6 packet, ICMPv6 type 133, hop limit 255); ok is false otherwise. The
// advertisement comes from routerMAC's link-local address, unicast to the soliciting host
// (or to all nodes when it had no address yet).
func Reply(frame []byte, routerMAC net.HardwareAddr) (reply []byte, ok bool) {
	if len(frame) < 14+40+8 || len(routerMAC) != 6 {
		return nil, false
	}
	if binary.BigEndian.Uint16(frame[12:14]) != etherTypeIPv6 {
		return nil, false
	}
	ip := frame[14:]
	if ip[0]>>4 != 6 || ip[6] != protoICMPv6 || ip[7] != 255 {
		return nil, false
	}
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if plen < 8 || len(ip) < 40+plen {
		return nil, false
	}
	icmp := ip[40 : 40+plen]
	src := netip.AddrFrom16([16]byte(ip[8:24]))
	dst := netip.AddrFrom16([16]byte(ip[24:40]))
	if icmp[0] != typeRouterSolicit || icmp[1] != 0 || checksum(src, dst, icmp) != 0 {
		return nil, false
	}
	dstIP, dstMAC := src, net.HardwareAddr(frame[6:12])
	if src.IsUnspecified() {
		dstIP = netip.MustParseAddr("ff02::1")
		dstMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	}
	return Advertisement(routerMAC, dstMAC, dstIP), true
}

// Message is the ICMPv6 Router Advertisement itself, with its checksum zero (a raw ICMPv6
// socket has the kernel fill it in): type 134, current hop limit 0 (unspecified), neither
// the M nor the O flag, router lifetime 0 (not a default router), reachable time and
// retransmit timer unspecified, no prefix, and the source link-layer address option
// when routerMAC is an Ethernet address.
func Message(routerMAC net.HardwareAddr) []byte {
	body := make([]byte, 16, 24)
	body[0] = typeRouterAdvertise
	if len(routerMAC) == 6 {
		body = append(body, optSourceLinkLayer, 1)
		body = append(body, routerMAC...)
	}
	return body
}

// Advertisement builds the Ethernet frame of the Router Advertisement (Message) from
// routerMAC's link-local address to dstMAC/dstIP, hop limit 255, checksum filled in.
func Advertisement(routerMAC, dstMAC net.HardwareAddr, dstIP netip.Addr) []byte {
	src := LinkLocal(routerMAC)
	body := Message(routerMAC)
	binary.BigEndian.PutUint16(body[2:4], checksum(src, dstIP, body))

	frame := make([]byte, 0, 14+40+len(body))
	frame = append(frame, dstMAC...)
	frame = append(frame, routerMAC...)
	frame = binary.BigEndian.AppendUint16(frame, etherTypeIPv6)
	frame = append(frame, 0x60, 0, 0, 0)
	frame = binary.BigEndian.AppendUint16(frame, uint16(len(body)))
	frame = append(frame, protoICMPv6, 255)
	s, d := src.As16(), dstIP.As16()
	frame = append(frame, s[:]...)
	frame = append(frame, d[:]...)
	return append(frame, body...)
}

// checksum is the ICMPv6 checksum over the IPv6 pseudo-header and msg (RFC 4443 2.3). Over
// a message carrying a correct checksum it returns 0.
func checksum(src, dst netip.Addr, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	s, d := src.As16(), dst.As16()
	add(s[:])
	add(d[:])
	var l [8]byte
	binary.BigEndian.PutUint32(l[0:4], uint32(len(msg)))
	l[7] = protoICMPv6
	add(l[:])
	add(msg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
