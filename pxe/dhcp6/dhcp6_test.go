package dhcp6

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/dhcpv6/nclient6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/maasemu/maasemu/trace"
)

var sub6 = Subnet{
	Prefix:     netip.MustParsePrefix("fd00:198:18::/64"),
	RackIP:     netip.MustParseAddr("fd00:198:18::2"),
	Pools:      []Range{{netip.MustParseAddr("fd00:198:18::100"), netip.MustParseAddr("fd00:198:18::1ff")}},
	DNS:        []netip.Addr{netip.MustParseAddr("fd00:198:18::2")},
	SearchList: []string{"maas"},
}

func mac(i byte) net.HardwareAddr { return net.HardwareAddr{0x52, 0x54, 0, 0, 0, i} }

func newServer(t testing.TB, edit func(*Config)) (*Server, *trace.Recorder) {
	rec := trace.NewRecorder(nil)
	cfg := Config{Subnets: []Subnet{sub6}, Sink: rec, ServerMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, rec
}

var peer = &net.UDPAddr{IP: net.ParseIP("fe80::5054:ff:fe00:1"), Port: ClientPort, Zone: "eth0"}

func solicit(m net.HardwareAddr, mods ...dhcpv6.Modifier) *dhcpv6.Message {
	s, err := dhcpv6.NewSolicit(m, mods...)
	if err != nil {
		panic(err)
	}
	return s
}

func archType(b ...byte) dhcpv6.Modifier {
	return dhcpv6.WithOption(&dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionClientArchType, OptionData: b})
}

func handle(t *testing.T, s *Server, d dhcpv6.DHCPv6) *Reply {
	t.Helper()
	r, err := s.Handle(context.Background(), Packet{Data: d.ToBytes(), Peer: peer})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestBootURLs checks each row of MAAS's DHCPv6 bootloader block, and the missing default.
func TestBootURLs(t *testing.T) {
	cases := []struct {
		name   string
		mods   []dhcpv6.Modifier
		url    string
		vendor string
	}{
		{"BIOS (00:00)", []dhcpv6.Modifier{archType(0, 0)}, "http://[fd00:198:18::2]:5248/lpxelinux.0", ""},
		{"UEFI x64 PXE (00:07)", []dhcpv6.Modifier{archType(0, 7)}, "tftp://[fd00:198:18::2]/bootx64.efi", ""},
		{"UEFI x64 HTTP (00:10)", []dhcpv6.Modifier{archType(0, 0x10)}, "http://[fd00:198:18::2]:5248/images/bootx64.efi", "HTTPClient"},
		{"EBC (00:09)", []dhcpv6.Modifier{archType(0, 9)}, "tftp://[fd00:198:18::2]/bootx64.efi", ""},
		{"arm64 (00:0B)", []dhcpv6.Modifier{archType(0, 0x0b)}, "tftp://[fd00:198:18::2]/bootaa64.efi", ""},
		{"arm64 HTTP (00:13)", []dhcpv6.Modifier{archType(0, 0x13)}, "http://[fd00:198:18::2]:5248/images/bootaa64.efi", "HTTPClient"},
		{"ppc64el (00:0C)", []dhcpv6.Modifier{archType(0, 0x0c)}, "tftp://[fd00:198:18::2]/bootppc64.bin", ""},
		{"powernv (00:0E)", []dhcpv6.Modifier{archType(0, 0x0e)}, "tftp://[fd00:198:18::2]/ppc64el/pxelinux.0", ""},
		{"s390x (00:1F)", []dhcpv6.Modifier{archType(0, 0x1f)}, "tftp://[fd00:198:18::2]/s390x/boots390x.bin", ""},
		{"s390x partition (00:20)", []dhcpv6.Modifier{archType(0, 0x20)}, "tftp://[fd00:198:18::2]/s390x_partition/maas", ""},
		// No default branch in dhcpd6.conf: no arch, or an unknown one, gets no URL.
		{"no arch", nil, "", ""},
		{"EFI IA32 (00:06)", []dhcpv6.Modifier{archType(0, 6)}, "", ""},
		// iPXE's RFC 8415 user class ("\x00\x04iPXE") does not equal "iPXE": the arch row answers.
		{"iPXE user class", []dhcpv6.Modifier{archType(0, 7), dhcpv6.WithUserClass([]byte("iPXE"))}, "tftp://[fd00:198:18::2]/bootx64.efi", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, _ := newServer(t, nil)
			r := handle(t, s, solicit(mac(1), c.mods...))
			m := r.Msg.(*dhcpv6.Message)
			if m.Type() != dhcpv6.MessageTypeAdvertise {
				t.Fatalf("type %s", m.Type())
			}
			if got := m.Options.BootFileURL(); got != c.url {
				t.Errorf("bootfile-url %q, want %q", got, c.url)
			}
			var vendor string
			if vc := m.Options.VendorClass(0); len(vc) > 0 {
				vendor = string(vc[0])
			}
			if vendor != c.vendor {
				t.Errorf("vendor class %q, want %q", vendor, c.vendor)
			}
			if a := m.Options.OneIANA().Options.OneAddress(); a == nil || a.IPv6Addr.String() != "fd00:198:18::100" {
				t.Errorf("address %v", a)
			}
		})
	}
}

func TestSARRAndRelease(t *testing.T) {
	s, rec := newServer(t, nil)
	adv := handle(t, s, solicit(mac(1), archType(0, 7))).Msg.(*dhcpv6.Message)
	req, err := dhcpv6.NewRequestFromAdvertise(adv, archType(0, 7)) // clients repeat option 61
	if err != nil {
		t.Fatal(err)
	}
	rep := handle(t, s, req).Msg.(*dhcpv6.Message)
	if rep.Type() != dhcpv6.MessageTypeReply || rep.Options.OneIANA().Options.OneAddress().IPv6Addr.String() != "fd00:198:18::100" {
		t.Fatalf("reply %s", rep.Summary())
	}
	if rep.Options.BootFileURL() != "tftp://[fd00:198:18::2]/bootx64.efi" {
		t.Errorf("reply url %q", rep.Options.BootFileURL())
	}
	// A second client gets the next address.
	adv2 := handle(t, s, solicit(mac(2))).Msg.(*dhcpv6.Message)
	if got := adv2.Options.OneIANA().Options.OneAddress().IPv6Addr.String(); got != "fd00:198:18::101" {
		t.Errorf("second address %s", got)
	}
	// Renew of an unknown IA: NoBinding, reported as a NAK.
	other := solicit(mac(3))
	other.MessageType = dhcpv6.MessageTypeRenew
	other.AddOption(dhcpv6.OptServerID(s.duid))
	r := handle(t, s, other).Msg.(*dhcpv6.Message)
	if st := r.Options.OneIANA().Options.Status(); st == nil || st.StatusCode != iana.StatusNoBinding {
		t.Errorf("renew without binding: %s", r.Summary())
	}
	if last := rec.Events()[len(rec.Events())-1]; last.Kind != trace.KindDHCPNak {
		t.Errorf("last event %+v", last)
	}
	// A request for another server is ignored.
	foreign, _ := dhcpv6.NewRequestFromAdvertise(adv)
	foreign.UpdateOption(dhcpv6.OptServerID(&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: mac(99)}))
	if r := handle(t, s, foreign); r != nil {
		t.Errorf("answered a request for another server")
	}
	// Release frees the address.
	rel, _ := dhcpv6.NewRequestFromAdvertise(adv)
	rel.MessageType = dhcpv6.MessageTypeRelease
	if r := handle(t, s, rel).Msg.(*dhcpv6.Message); r.Options.Status().StatusCode != iana.StatusSuccess {
		t.Errorf("release: %s", r.Summary())
	}
	if got := handle(t, s, solicit(mac(4))).Msg.(*dhcpv6.Message).Options.OneIANA().Options.OneAddress().IPv6Addr.String(); got != "fd00:198:18::100" {
		t.Errorf("released address not reused: %s", got)
	}
}

func TestRelay(t *testing.T) {
	remote := Subnet{Prefix: netip.MustParsePrefix("fd00:20::/64"), RackIP: sub6.RackIP,
		Pools: []Range{{netip.MustParseAddr("fd00:20::10"), netip.MustParseAddr("fd00:20::20")}}}
	s, _ := newServer(t, func(c *Config) { c.Subnets = append(c.Subnets, remote) })
	fw, err := dhcpv6.EncapsulateRelay(solicit(mac(1), archType(0, 0x10)), dhcpv6.MessageTypeRelayForward,
		net.ParseIP("fd00:20::1"), net.ParseIP("fe80::1"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Handle(context.Background(), Packet{Data: fw.ToBytes(), Peer: &net.UDPAddr{IP: net.ParseIP("fd00:20::1"), Port: ServerPort}})
	if err != nil || r == nil {
		t.Fatalf("relay: %v %v", r, err)
	}
	if r.Dest.Port != ServerPort || !r.Msg.IsRelay() {
		t.Errorf("relay reply to %v relay=%v", r.Dest, r.Msg.IsRelay())
	}
	inner, _ := r.Msg.(*dhcpv6.RelayMessage).GetInnerMessage()
	if got := inner.Options.OneIANA().Options.OneAddress().IPv6Addr.String(); got != "fd00:20::10" {
		t.Errorf("relayed address %s", got)
	}
}

func TestBadPackets(t *testing.T) {
	s, rec := newServer(t, nil)
	noCID := solicit(mac(1))
	noCID.Options.Del(dhcpv6.OptionClientID)
	cases := []struct {
		name, reason string
		data         []byte
	}{
		{"empty", "malformed", nil},
		{"short", "malformed", []byte{1, 2}},
		{"option runs past the end", "malformed", []byte{1, 0, 0, 1, 0, 1, 0, 9, 1}},
		{"no client id", "without a client identifier", noCID.ToBytes()},
	}
	for _, c := range cases {
		before := len(rec.Events())
		if r, err := s.Handle(context.Background(), Packet{Data: c.data, Peer: peer}); r != nil || err != nil {
			t.Errorf("%s answered", c.name)
		}
		evs := rec.Events()[before:]
		if len(evs) != 1 || evs[0].Kind != trace.KindDHCPBad || !strings.Contains(evs[0].Message, c.reason) {
			t.Errorf("%s: events %+v", c.name, evs)
		}
		if handle(t, s, solicit(mac(9))) == nil {
			t.Fatalf("no answer after %s", c.name)
		}
	}
}

func FuzzHandle(f *testing.F) {
	f.Add(solicit(mac(1), archType(0, 7)).ToBytes())
	fw, _ := dhcpv6.EncapsulateRelay(solicit(mac(2)), dhcpv6.MessageTypeRelayForward, net.ParseIP("fd00:198:18::1"), net.ParseIP("fe80::1"))
	f.Add(fw.ToBytes())
	var events atomic.Int64
	s, _ := newServer(f, func(c *Config) { c.Sink = trace.Func(func(trace.Event) { events.Add(1) }) })
	f.Fuzz(func(t *testing.T, data []byte) {
		before := events.Load()
		s.Handle(context.Background(), Packet{Data: data, Peer: peer})
		if events.Load() == before {
			t.Fatalf("no event for %x", data)
		}
	})
}

// TestNClient6 runs Solicit/Advertise/Request/Reply with insomniacslk's nclient6 over
// loopback through Serve.
func TestNClient6(t *testing.T) {
	conn, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("needs IPv6 loopback: %v", err)
	}
	s, _ := newServer(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()
	defer func() { cancel(); <-done }()
	cc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := nclient6.NewWithConn(cc, mac(7), nclient6.WithBroadcastAddr(conn.LocalAddr().(*net.UDPAddr)),
		nclient6.WithTimeout(2*time.Second), nclient6.WithRetry(2))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	adv, err := c.Solicit(context.Background(), archType(0, 0x10), dhcpv6.WithRequestedOptions(dhcpv6.OptionBootfileURL, dhcpv6.OptionVendorClass))
	if err != nil {
		t.Fatalf("solicit: %v", err)
	}
	if adv.Options.BootFileURL() == "" {
		t.Fatalf("advertise without a boot URL: %s", adv.Summary())
	}
	rep, err := c.Request(context.Background(), adv, archType(0, 0x10))
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	var vendor string
	if vc := rep.Options.VendorClass(0); len(vc) > 0 {
		vendor = string(vc[0])
	}
	got := []string{rep.Options.BootFileURL(), vendor, rep.Options.OneIANA().Options.OneAddress().IPv6Addr.String()}
	want := []string{"http://[fd00:198:18::2]:5248/images/bootx64.efi", "HTTPClient", "fd00:198:18::100"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reply (-want +got):\n%s", diff)
	}
}

// TestDecline: a Decline is reported as dhcp.decline (not a release), and the declined
// address is not offered again at once.
func TestDecline(t *testing.T) {
	s, rec := newServer(t, nil)
	adv := handle(t, s, solicit(mac(1))).Msg.(*dhcpv6.Message)
	req, err := dhcpv6.NewRequestFromAdvertise(adv)
	if err != nil {
		t.Fatal(err)
	}
	handle(t, s, req)
	dec, _ := dhcpv6.NewRequestFromAdvertise(adv)
	dec.MessageType = dhcpv6.MessageTypeDecline
	if r := handle(t, s, dec).Msg.(*dhcpv6.Message); r.Options.Status().StatusCode != iana.StatusSuccess {
		t.Errorf("decline: %s", r.Summary())
	}
	var kinds []string
	for _, e := range rec.Events() {
		if e.Attrs["msg_type"] == "DECLINE" {
			kinds = append(kinds, e.Kind)
		}
	}
	if diff := cmp.Diff([]string{trace.KindDHCPDecline}, kinds); diff != "" {
		t.Errorf("events of the DECLINE (-want +got):\n%s", diff)
	}
	if got := handle(t, s, solicit(mac(2))).Msg.(*dhcpv6.Message).Options.OneIANA().Options.OneAddress().IPv6Addr.String(); got == "fd00:198:18::100" {
		t.Errorf("declined address offered again at once")
	}
}
