package vnet

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
)

// Hand-built IPv4/UDP frames for the raw-frame client.

func csum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func udpFrame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.AddrPort, payload []byte) []byte {
	ip := make([]byte, 20+8+len(payload))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	ip[8] = 64
	ip[9] = 17
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], csum(ip[:20], 0))
	u := ip[20:]
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	copy(u[8:], payload)
	var pseudo uint32
	pseudo += uint32(binary.BigEndian.Uint16(s4[0:])) + uint32(binary.BigEndian.Uint16(s4[2:]))
	pseudo += uint32(binary.BigEndian.Uint16(d4[0:])) + uint32(binary.BigEndian.Uint16(d4[2:]))
	pseudo += 17 + uint32(len(u))
	c := csum(u, pseudo)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return ethFrame(dstMAC, srcMAC, 0x0800, ip)
}

type udpPacket struct {
	dstMAC, srcMAC net.HardwareAddr
	src, dst       netip.AddrPort
	payload        []byte
}

func parseUDPFrame(f []byte) (udpPacket, error) {
	if len(f) < 14+20+8 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		return udpPacket{}, fmt.Errorf("not IPv4")
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[9] != 17 {
		return udpPacket{}, fmt.Errorf("IP protocol %d, not UDP", ip[9])
	}
	if csum(ip[:ihl], 0) != 0 {
		return udpPacket{}, fmt.Errorf("bad IPv4 header checksum")
	}
	total := int(binary.BigEndian.Uint16(ip[2:]))
	u := ip[ihl:total]
	src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), binary.BigEndian.Uint16(u[0:]))
	dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), binary.BigEndian.Uint16(u[2:]))
	return udpPacket{dstMAC: net.HardwareAddr(f[0:6]), srcMAC: net.HardwareAddr(f[6:12]), src: src, dst: dst, payload: u[8:]}, nil
}

type arpPacket struct {
	op                   uint16
	senderMAC, targetMAC net.HardwareAddr
	senderIP, targetIP   netip.Addr
}

func parseARP(f []byte) (arpPacket, error) {
	if len(f) < 14+28 || binary.BigEndian.Uint16(f[12:]) != 0x0806 {
		return arpPacket{}, fmt.Errorf("not ARP")
	}
	p := f[14:]
	return arpPacket{
		op:        binary.BigEndian.Uint16(p[6:]),
		senderMAC: net.HardwareAddr(p[8:14]),
		senderIP:  netip.AddrFrom4([4]byte(p[14:18])),
		targetMAC: net.HardwareAddr(p[18:24]),
		targetIP:  netip.AddrFrom4([4]byte(p[24:28])),
	}, nil
}
