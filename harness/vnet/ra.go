package vnet

import (
	"encoding/binary"
	"hash/fnv"
	"net"
	"time"
)

// IPv6 router solicitation handling. iPXE (and UEFI network stacks) start IPv6
// autoconfiguration next to DHCPv4 and do not boot until it ends; with no router on the
// link, iPXE sends router solicitations at 0.25, 0.5, 1, 2, 4 s and gives up after
// another 8 s. A router advertisement with router lifetime 0, no prefix options and
// neither the M nor the O flag ends that wait at once and configures nothing.

const (
	etherTypeIPv6       = 0x86dd
	ipv6HeaderLen       = 40
	protoICMPv6         = 58
	icmpv6RouterSolicit = 133
	icmpv6RouterAdvert  = 134
)

type raResponder struct {
	mac net.HardwareAddr // the advertising "router"
	ll  [16]byte         // its link-local address
}

func newRAResponder(name string) *raResponder {
	h := fnv.New32a()
	h.Write([]byte("vnet-ra:" + name))
	sum := h.Sum32()
	// A locally administered unicast address.
	hw := net.HardwareAddr{0x02, 0x00, 0x5e, byte(sum >> 16), byte(sum >> 8), byte(sum)}
	r := &raResponder{mac: hw}
	r.ll[0], r.ll[1] = 0xfe, 0x80
	// Modified EUI-64 interface identifier.
	r.ll[8] = hw[0] ^ 0x02
	r.ll[9], r.ll[10] = hw[1], hw[2]
	r.ll[11], r.ll[12] = 0xff, 0xfe
	r.ll[13], r.ll[14], r.ll[15] = hw[3], hw[4], hw[5]
	return r
}

// isRouterSolicitation reports whether frame is an ICMPv6 router solicitation.
func isRouterSolicitation(frame []byte) bool {
	if len(frame) < ethHeaderLen+ipv6HeaderLen+8 {
		return false
	}
	if binary.BigEndian.Uint16(frame[12:]) != etherTypeIPv6 {
		return false
	}
	ip := frame[ethHeaderLen:]
	return ip[0]>>4 == 6 && ip[6] == protoICMPv6 && ip[7] == 255 && ip[ipv6HeaderLen] == icmpv6RouterSolicit
}

// handle answers a router solicitation from src. The solicitation itself is forwarded
// as usual by the caller.
func (r *raResponder) handle(sw *Switch, src *Port, frame []byte, now time.Time) {
	if !isRouterSolicitation(frame) {
		return
	}
	ra := r.advertisement(frame)
	if cb := sw.capture.Load(); cb != nil {
		if err := cb.w.WritePacket(now, ra); err != nil {
			sw.c.captureErrors.Add(1)
		}
	}
	src.send(nil, ra)
}

// advertisement builds the router advertisement answering the solicitation rs.
func (r *raResponder) advertisement(rs []byte) []byte {
	const icmpLen = 16 + 8 // RA header + source link-layer address option
	f := make([]byte, ethHeaderLen+ipv6HeaderLen+icmpLen)
	solIP := rs[ethHeaderLen:]
	var dstIP [16]byte
	copy(dstIP[:], solIP[8:24]) // the solicitation's source
	dstMAC := rs[6:12]
	if dstIP == ([16]byte{}) { // unspecified source: answer all nodes
		dstIP = [16]byte{0xff, 0x02, 15: 0x01}
		dstMAC = []byte{0x33, 0x33, 0, 0, 0, 1}
	}
	copy(f[0:6], dstMAC)
	copy(f[6:12], r.mac)
	binary.BigEndian.PutUint16(f[12:], etherTypeIPv6)
	ip := f[ethHeaderLen:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], icmpLen)
	ip[6] = protoICMPv6
	ip[7] = 255 // hop limit: NDP requires 255
	copy(ip[8:24], r.ll[:])
	copy(ip[24:40], dstIP[:])
	m := ip[ipv6HeaderLen:]
	m[0] = icmpv6RouterAdvert
	m[4] = 64 // current hop limit
	// m[5] flags 0 (no M, no O); router lifetime, reachable time, retrans timer: 0.
	m[16], m[17] = 1, 1 // source link-layer address option, 8 bytes
	copy(m[18:24], r.mac)
	binary.BigEndian.PutUint16(m[2:], icmpv6Checksum(ip[8:24], ip[24:40], m))
	return f
}

func icmpv6Checksum(src, dst, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src)
	add(dst)
	sum += uint32(len(msg))
	sum += protoICMPv6
	add(msg)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
