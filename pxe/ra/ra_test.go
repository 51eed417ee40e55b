package ra

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

var (
	hostMAC   = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	routerMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}
)

// solicitation builds a Router Solicitation frame as iPXE's ndp_tx_router_solicitation
// sends it, marshalled by golang.org/x/net/icmp (an independent checksum).
func solicitation(t *testing.T, src netip.Addr, hop byte, corrupt bool) []byte {
	t.Helper()
	dst := netip.MustParseAddr("ff02::2")
	body := append([]byte{0, 0, 0, 0}, 1, 1) // reserved, then source link-layer option
	body = append(body, hostMAC...)
	m := icmp.Message{Type: ipv6.ICMPTypeRouterSolicitation, Body: &icmp.RawBody{Data: body}}
	msg, err := m.Marshal(icmp.IPv6PseudoHeader(src.AsSlice(), dst.AsSlice()))
	if err != nil {
		t.Fatal(err)
	}
	if corrupt {
		msg[2] ^= 0xff
	}
	f := append([]byte{0x33, 0x33, 0, 0, 0, 2}, hostMAC...)
	f = binary.BigEndian.AppendUint16(f, 0x86dd)
	f = append(f, 0x60, 0, 0, 0)
	f = binary.BigEndian.AppendUint16(f, uint16(len(msg)))
	f = append(f, 58, hop)
	s, d := src.As16(), dst.As16()
	f = append(f, s[:]...)
	f = append(f, d[:]...)
	return append(f, msg...)
}

func TestReplyToSolicitation(t *testing.T) {
	host := LinkLocal(hostMAC)
	if host.String() != "fe80::5054:ff:fe12:3456" {
		t.Fatalf("LinkLocal = %s", host)
	}
	reply, ok := Reply(solicitation(t, host, 255, false), routerMAC)
	if !ok {
		t.Fatal("no reply to a valid solicitation")
	}
	if !bytes.Equal(reply[0:6], hostMAC) || !bytes.Equal(reply[6:12], routerMAC) {
		t.Errorf("ethernet %x", reply[:14])
	}
	ip := reply[14:54]
	src, dst := netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
	if ip[6] != 58 || ip[7] != 255 || src != LinkLocal(routerMAC) || dst != host {
		t.Errorf("ipv6 header next %d hop %d %s -> %s", ip[6], ip[7], src, dst)
	}
	body := reply[54:]
	if int(binary.BigEndian.Uint16(ip[4:6])) != len(body) {
		t.Errorf("payload length %d for %d bytes", binary.BigEndian.Uint16(ip[4:6]), len(body))
	}
	msg, err := icmp.ParseMessage(58, body)
	if err != nil || msg.Type != ipv6.ICMPTypeRouterAdvertisement {
		t.Fatalf("parsed %v %v", msg, err)
	}
	// Re-marshal with x/net/icmp: same checksum.
	raw := msg.Body.(*icmp.RawBody).Data
	again, _ := (&icmp.Message{Type: ipv6.ICMPTypeRouterAdvertisement, Body: &icmp.RawBody{Data: raw}}).Marshal(icmp.IPv6PseudoHeader(src.AsSlice(), dst.AsSlice()))
	if !bytes.Equal(again, body) {
		t.Errorf("checksum differs from x/net/icmp: %x vs %x", body, again)
	}
	// No M/O flags (no DHCPv6), router lifetime 0, no prefix; source link-layer address.
	if raw[1] != 0 || binary.BigEndian.Uint16(raw[2:4]) != 0 || !bytes.Equal(raw[12:20], append([]byte{1, 1}, routerMAC...)) {
		t.Errorf("advertisement body %x", raw)
	}
	// From the unspecified address: to all nodes.
	reply, ok = Reply(solicitation(t, netip.IPv6Unspecified(), 255, false), routerMAC)
	if !ok || !bytes.Equal(reply[0:6], []byte{0x33, 0x33, 0, 0, 0, 1}) || netip.AddrFrom16([16]byte(reply[38:54])) != netip.MustParseAddr("ff02::1") {
		t.Errorf("unspecified source: %x", reply)
	}
}

func TestNotASolicitation(t *testing.T) {
	good := solicitation(t, LinkLocal(hostMAC), 255, false)
	arp := append(append([]byte{}, good[:12]...), 0x08, 0x06)
	arp = append(arp, make([]byte, 60)...)
	ra := Advertisement(routerMAC, hostMAC, LinkLocal(hostMAC))
	cases := map[string][]byte{
		"ARP":                      arp,
		"hop limit 64 (off-link)":  solicitation(t, LinkLocal(hostMAC), 64, false),
		"bad checksum":             solicitation(t, LinkLocal(hostMAC), 255, true),
		"an advertisement":         ra,
		"truncated":                good[:60],
		"payload length too large": append(append([]byte{}, good[:18]...), append([]byte{0xff, 0xff}, good[20:]...)...),
		"empty":                    nil,
	}
	for name, f := range cases {
		if r, ok := Reply(f, routerMAC); ok {
			t.Errorf("%s: answered %x", name, r)
		}
	}
}

// TestMessage: the bare ICMPv6 message a raw socket sends is the advertisement's body
// without its checksum; without an Ethernet address it has no link-layer option.
func TestMessage(t *testing.T) {
	m := Message(routerMAC)
	want := append(make([]byte, 16), 1, 1)
	want[0] = 134
	want = append(want, routerMAC...)
	if !bytes.Equal(m, want) {
		t.Errorf("Message = %x, want %x", m, want)
	}
	adv := Advertisement(routerMAC, hostMAC, LinkLocal(hostMAC))
	body := append([]byte(nil), adv[54:]...)
	body[2], body[3] = 0, 0
	if !bytes.Equal(body, m) {
		t.Errorf("advertisement body %x is not Message %x", body, m)
	}
	if m := Message(nil); len(m) != 16 || m[0] != 134 {
		t.Errorf("Message without a MAC = %x", m)
	}
}
