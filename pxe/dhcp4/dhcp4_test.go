package dhcp4

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/maasemu/maasemu/trace"
)

var (
	rack   = netip.MustParseAddr("198.18.0.2")
	subnet = Subnet{
		Prefix:     netip.MustParsePrefix("198.18.0.0/24"),
		RackIP:     rack,
		Pools:      []Range{{netip.MustParseAddr("198.18.0.100"), netip.MustParseAddr("198.18.0.109")}},
		Router:     netip.MustParseAddr("198.18.0.1"),
		DNS:        []netip.Addr{rack},
		DomainName: "maas",
		MTU:        1400,
	}
)

func mac(i int) net.HardwareAddr {
	return net.HardwareAddr{0x52, 0x54, 0x00, 0x00, byte(i >> 8), byte(i)}
}

// fakeHosts knows machines by MAC.
type fakeHosts map[string]Host

func (h fakeHosts) LookupHost(_ context.Context, m net.HardwareAddr) (Host, bool, error) {
	if m.String() == "52:54:00:ee:ee:ee" {
		return Host{}, false, errors.New("region unreachable")
	}
	x, ok := h[m.String()]
	return x, ok, nil
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newServer(t testing.TB, edit func(*Config)) (*Server, *trace.Recorder, *clock) {
	t.Helper()
	rec := trace.NewRecorder(nil)
	clk := &clock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	cfg := Config{Subnets: []Subnet{subnet}, Sink: rec, Now: clk.now}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, rec, clk
}

// discover builds a DISCOVER as a PXE ROM sends it.
func discover(m net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	d, err := dhcpv4.NewDiscovery(m, mods...)
	if err != nil {
		panic(err)
	}
	return d
}

// prl sets the parameter request list to exactly codes (nil: none).
func prl(codes ...dhcpv4.OptionCode) dhcpv4.Modifier {
	return func(d *dhcpv4.DHCPv4) {
		d.Options.Del(dhcpv4.OptionParameterRequestList)
		if codes != nil {
			d.UpdateOption(dhcpv4.OptParameterRequestList(codes...))
		}
	}
}

func arch(a ...byte) dhcpv4.Modifier {
	return dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, a)
}

func vendor(v string) dhcpv4.Modifier { return dhcpv4.WithOption(dhcpv4.OptClassIdentifier(v)) }

func userClass(v string) dhcpv4.Modifier {
	return dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, []byte(v))
}

var client68 = &net.UDPAddr{IP: net.IPv4zero, Port: ClientPort}

func handle(t *testing.T, s *Server, m *dhcpv4.DHCPv4) *Reply {
	t.Helper()
	r, err := s.Handle(context.Background(), Packet{Data: m.ToBytes(), Peer: client68})
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	return r
}

// summary is the part of an answer the table tests compare.
type summary struct {
	Type       string
	YIAddr     string
	SIAddr     string
	File       string
	Opt67      string
	PathPrefix string
	Vendor     string
	LeaseTime  int
	MTU        int
	Dest       string
}

func summarise(r *Reply) summary {
	if r == nil {
		return summary{}
	}
	m := r.Msg
	s := summary{
		Type: m.MessageType().String(), YIAddr: m.YourIPAddr.String(), SIAddr: m.ServerIPAddr.String(),
		File: m.BootFileName, Opt67: m.BootFileNameOption(), PathPrefix: string(m.Options.Get(dhcpv4.GenericOptionCode(210))),
		Vendor: m.ClassIdentifier(), LeaseTime: int(m.IPAddressLeaseTime(0).Seconds()), Dest: r.Dest.String(),
	}
	if v := m.Options.Get(dhcpv4.OptionInterfaceMTU); len(v) == 2 {
		s.MTU = int(v[0])<<8 | int(v[1])
	}
	return s
}

// TestBootloaderTable checks every row of MAAS's compose_conditional_bootloader table
// (dhcpd/config.py + maascommon/bootmethods.py) through a DISCOVER/OFFER.
func TestBootloaderTable(t *testing.T) {
	const pxeClient = "PXEClient:Arch:00000:UNDI:002001"
	cases := []struct {
		name string
		mods []dhcpv4.Modifier
		want summary
	}{
		// pxe (00:00): lpxelinux.0, path-prefix http://<rack>:5248/ forced, 30 s PXE class lease.
		{"BIOS PXE", []dhcpv4.Modifier{arch(0, 0), vendor(pxeClient)},
			summary{File: "lpxelinux.0", Opt67: "lpxelinux.0", PathPrefix: "http://198.18.0.2:5248/", LeaseTime: 30}},
		// No option 93: the else branch is pxe too.
		{"no arch option", nil,
			summary{File: "lpxelinux.0", Opt67: "lpxelinux.0", PathPrefix: "http://198.18.0.2:5248/", LeaseTime: 600}},
		// uefi_amd64_tftp (00:07) and uefi_ebc_tftp (00:09, LP:1768034): shim as bootx64.efi.
		{"UEFI x64 TFTP", []dhcpv4.Modifier{arch(0, 7), vendor("PXEClient:Arch:00007:UNDI:003016")},
			summary{File: "bootx64.efi", Opt67: "bootx64.efi", LeaseTime: 30}},
		{"UEFI EBC", []dhcpv4.Modifier{arch(0, 9), vendor("PXEClient:Arch:00009:UNDI:003016")},
			summary{File: "bootx64.efi", Opt67: "bootx64.efi", LeaseTime: 30}},
		// uefi_amd64_http (00:10): absolute URL under /images/ and vendor class HTTPClient.
		{"UEFI x64 HTTP", []dhcpv4.Modifier{arch(0, 0x10), vendor("HTTPClient:Arch:00016:UNDI:003001")},
			summary{File: "http://198.18.0.2:5248/images/bootx64.efi", Opt67: "http://198.18.0.2:5248/images/bootx64.efi", Vendor: "HTTPClient", LeaseTime: 600}},
		{"UEFI arm64 TFTP", []dhcpv4.Modifier{arch(0, 0x0b)}, summary{File: "bootaa64.efi", Opt67: "bootaa64.efi", LeaseTime: 600}},
		{"UEFI arm64 HTTP", []dhcpv4.Modifier{arch(0, 0x13)},
			summary{File: "http://198.18.0.2:5248/images/bootaa64.efi", Opt67: "http://198.18.0.2:5248/images/bootaa64.efi", Vendor: "HTTPClient", LeaseTime: 600}},
		{"open firmware ppc64el", []dhcpv4.Modifier{arch(0, 0x0c)}, summary{File: "bootppc64.bin", Opt67: "bootppc64.bin", LeaseTime: 600}},
		{"powernv", []dhcpv4.Modifier{arch(0, 0x0e)}, summary{File: "pxelinux.0", Opt67: "pxelinux.0", PathPrefix: "ppc64el/", LeaseTime: 600}},
		{"s390x", []dhcpv4.Modifier{arch(0, 0x1f)}, summary{File: "boots390x.bin", Opt67: "boots390x.bin", PathPrefix: "s390x/", LeaseTime: 600}},
		{"s390x partition", []dhcpv4.Modifier{arch(0, 0x20)}, summary{File: "s390x_partition/maas", Opt67: "s390x_partition/maas", LeaseTime: 600}},
		// An architecture MAAS has no row for falls to the else branch.
		{"EFI IA32 (00:06)", []dhcpv4.Modifier{arch(0, 6)},
			summary{File: "lpxelinux.0", Opt67: "lpxelinux.0", PathPrefix: "http://198.18.0.2:5248/", LeaseTime: 600}},
		// dhcpd compares the whole option: two architectures are not "00:07".
		{"two arches", []dhcpv4.Modifier{arch(0, 7, 0, 0x10)},
			summary{File: "lpxelinux.0", Opt67: "lpxelinux.0", PathPrefix: "http://198.18.0.2:5248/", LeaseTime: 600}},
		// ipxe is the first row: iPXE (user class "iPXE") gets ipxe.cfg whatever its arch.
		{"iPXE in SeaBIOS", []dhcpv4.Modifier{arch(0, 0), vendor(pxeClient), userClass("iPXE")},
			summary{File: "http://198.18.0.2:5248/ipxe.cfg", Opt67: "http://198.18.0.2:5248/ipxe.cfg", LeaseTime: 30}},
		{"iPXE EFI", []dhcpv4.Modifier{arch(0, 7), userClass("iPXE")},
			summary{File: "http://198.18.0.2:5248/ipxe.cfg", Opt67: "http://198.18.0.2:5248/ipxe.cfg", LeaseTime: 600}},
		// ... or an iPXE that says ipxe.http and ipxe.bzimage in option 175.
		{"iPXE by features", []dhcpv4.Modifier{arch(0, 0), dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(175), []byte{19, 1, 1, 24, 1, 1})},
			summary{File: "http://198.18.0.2:5248/ipxe.cfg", Opt67: "http://198.18.0.2:5248/ipxe.cfg", LeaseTime: 600}},
		{"iPXE http feature alone is not enough", []dhcpv4.Modifier{arch(0, 7), dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(175), []byte{19, 1, 1})},
			summary{File: "bootx64.efi", Opt67: "bootx64.efi", LeaseTime: 600}},
		// The user class is compared whole: an RFC 3004 encoded "iPXE" is not "iPXE".
		{"RFC 3004 user class", []dhcpv4.Modifier{arch(0, 7), userClass("\x04iPXE")},
			summary{File: "bootx64.efi", Opt67: "bootx64.efi", LeaseTime: 600}},
		// onie: no filename, the installer URL in option 125.
		{"ONIE", []dhcpv4.Modifier{userClass("onie_dhcp_user_class")}, summary{LeaseTime: 600}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, _, _ := newServer(t, nil)
			// No request list: dhcpd sends every option configured.
			r := handle(t, s, discover(mac(1), append(c.mods, prl())...))
			c.want.Type, c.want.YIAddr, c.want.SIAddr, c.want.MTU = "OFFER", "198.18.0.100", "198.18.0.2", 1400
			c.want.Dest = "255.255.255.255:68"
			if diff := cmp.Diff(c.want, summarise(r)); diff != "" {
				t.Errorf("OFFER (-want +got):\n%s", diff)
			}
		})
	}
}

func TestONIEOption125(t *testing.T) {
	s, _, _ := newServer(t, nil)
	r := handle(t, s, discover(mac(1), userClass("onie_dhcp_user_class"), prl()))
	url := "http://198.18.0.2:5248/MAAS/a/v3/nos-installer"
	want := append([]byte{0, 0, 0, 0, 3, 1, 1, 1, 0, 0, 0xa6, 0x7f, byte(2 + len(url)), 1, byte(len(url))}, url...)
	if diff := cmp.Diff(want, r.Msg.Options.Get(dhcpv4.OptionVendorIdentifyingVendorSpecific)); diff != "" {
		t.Errorf("option 125 (-want +got):\n%s", diff)
	}
}

func TestDisabledBootMethods(t *testing.T) {
	s, _, _ := newServer(t, func(c *Config) { c.Subnets[0].DisabledBootMethods = []string{"ipxe", "uefi_amd64_http"} })
	if got := summarise(handle(t, s, discover(mac(1), userClass("iPXE"), arch(0, 7)))).File; got != "bootx64.efi" {
		t.Errorf("iPXE with ipxe disabled got %q, want the arch row", got)
	}
	if got := summarise(handle(t, s, discover(mac(2), arch(0, 0x10)))).File; got != "lpxelinux.0" {
		t.Errorf("HTTP boot with uefi_amd64_http disabled got %q, want the else row", got)
	}
	s, _, _ = newServer(t, func(c *Config) { c.Subnets[0].DisabledBootMethods = []string{"pxe"} })
	r := handle(t, s, discover(mac(3)))
	if r.Msg.BootFileName != "" || r.Msg.Options.Has(dhcpv4.GenericOptionCode(210)) {
		t.Errorf("pxe disabled: no else branch, got file %q", r.Msg.BootFileName)
	}
}

// TestParameterRequestList: with a request list, only required, asked-for and forced options.
func TestParameterRequestList(t *testing.T) {
	s, _, _ := newServer(t, nil)
	// SeaBIOS's iPXE asks (among others) for 1, 3, 6, 15, 26, 43, 60, 66, 67, 175.
	r := handle(t, s, discover(mac(1), arch(0, 0), vendor("PXEClient:Arch:00000:UNDI:002001"), userClass("iPXE"),
		prl(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
			dhcpv4.OptionDomainName, dhcpv4.OptionInterfaceMTU, dhcpv4.OptionTFTPServerName, dhcpv4.OptionBootfileName,
			dhcpv4.GenericOptionCode(175))))
	var got []int
	for code := range r.Msg.Options {
		got = append(got, int(code))
	}
	want := []int{1, 3, 6, 15, 26, 51, 53, 54, 66, 67, 175}
	if diff := cmp.Diff(want, sorted(got)); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
	if v := r.Msg.Options.Get(dhcpv4.GenericOptionCode(175)); string(v) != "\xb0\x01\x01" {
		t.Errorf("iPXE no-pxedhcp option 175 = %x", v)
	}
	if v := r.Msg.TFTPServerName(); v != "198.18.0.2" {
		t.Errorf("option 66 = %q", v)
	}
	// lpxelinux: 210 is forced even when not asked for.
	r = handle(t, s, discover(mac(2), arch(0, 0), prl(dhcpv4.OptionSubnetMask)))
	if string(r.Msg.Options.Get(dhcpv4.GenericOptionCode(210))) != "http://198.18.0.2:5248/" {
		t.Errorf("path-prefix not forced: %v", r.Msg.Options)
	}
	if r.Msg.Options.Has(dhcpv4.OptionRouter) || r.Msg.Options.Has(dhcpv4.OptionBootfileName) {
		t.Errorf("options not asked for were sent: %v", r.Msg.Options)
	}
	// HTTP boot: vendor class HTTPClient always.
	r = handle(t, s, discover(mac(3), arch(0, 0x10), prl(dhcpv4.OptionSubnetMask)))
	if r.Msg.ClassIdentifier() != "HTTPClient" {
		t.Errorf("HTTPClient not forced")
	}
	// Without iPXE, no option 175.
	if r.Msg.Options.Has(dhcpv4.GenericOptionCode(175)) {
		t.Errorf("option 175 sent to a non-iPXE client")
	}
}

func sorted(a []int) []int {
	for i := range a {
		for j := i + 1; j < len(a); j++ {
			if a[j] < a[i] {
				a[i], a[j] = a[j], a[i]
			}
		}
	}
	return a
}

func TestReplyAddr(t *testing.T) {
	ack := &dhcpv4.DHCPv4{Options: dhcpv4.Options{53: {byte(dhcpv4.MessageTypeAck)}}}
	nak := &dhcpv4.DHCPv4{Options: dhcpv4.Options{53: {byte(dhcpv4.MessageTypeNak)}}}
	mk := func(gi, ci string, bcast bool) *dhcpv4.DHCPv4 {
		d := &dhcpv4.DHCPv4{GatewayIPAddr: net.ParseIP(gi).To4(), ClientIPAddr: net.ParseIP(ci).To4()}
		if bcast {
			d.SetBroadcast()
		}
		return d
	}
	p68 := &net.UDPAddr{IP: net.IPv4zero, Port: 68}
	cases := []struct {
		name string
		req  *dhcpv4.DHCPv4
		resp *dhcpv4.DHCPv4
		peer *net.UDPAddr
		want string
	}{
		{"relayed: giaddr:67", mk("10.1.0.1", "0.0.0.0", true), ack, &net.UDPAddr{IP: net.ParseIP("10.1.0.1"), Port: 67}, "10.1.0.1:67"},
		{"relayed NAK still to the relay", mk("10.1.0.1", "0.0.0.0", false), nak, &net.UDPAddr{IP: net.ParseIP("10.1.0.1"), Port: 67}, "10.1.0.1:67"},
		{"NAK: broadcast even with ciaddr", mk("0.0.0.0", "198.18.0.50", false), nak, p68, "255.255.255.255:68"},
		{"renewing: ciaddr:68", mk("0.0.0.0", "198.18.0.50", false), ack, &net.UDPAddr{IP: net.ParseIP("198.18.0.50"), Port: 68}, "198.18.0.50:68"},
		{"broadcast flag", mk("0.0.0.0", "0.0.0.0", true), ack, p68, "255.255.255.255:68"},
		{"no flag: broadcast fallback", mk("0.0.0.0", "0.0.0.0", false), ack, p68, "255.255.255.255:68"},
		{"non-standard client port", mk("0.0.0.0", "0.0.0.0", true), ack, &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: 40000}, "127.0.0.1:40000"},
	}
	for _, c := range cases {
		if got := replyAddr(c.req, c.resp, c.peer).String(); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func dora(t *testing.T, s *Server, m net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	offer := handle(t, s, discover(m, mods...))
	if offer == nil {
		t.Fatalf("no OFFER for %s", m)
	}
	req, _ := dhcpv4.NewRequestFromOffer(offer.Msg, mods...)
	ack := handle(t, s, req)
	if ack == nil || ack.Msg.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("REQUEST for %s: %v", m, ack)
	}
	return ack.Msg
}

func TestLeaseLifecycle(t *testing.T) {
	s, rec, clk := newServer(t, nil)
	a := dora(t, s, mac(1))
	if a.YourIPAddr.String() != "198.18.0.100" {
		t.Fatalf("first lease %v", a.YourIPAddr)
	}
	// DISCOVER again (a reboot): same address.
	if got := handle(t, s, discover(mac(1))).Msg.YourIPAddr.String(); got != "198.18.0.100" {
		t.Errorf("re-discover got %s", got)
	}
	// Renew (unicast, ciaddr) and rebind (broadcast, ciaddr) extend it.
	renew, _ := dhcpv4.NewRenewFromAck(a)
	if r := handle(t, s, renew); r.Msg.MessageType() != dhcpv4.MessageTypeAck || r.Dest.String() != "198.18.0.100:68" {
		t.Errorf("renew: %v to %v", r.Msg.MessageType(), r.Dest)
	}
	rebind, _ := dhcpv4.NewRenewFromAck(a, dhcpv4.WithBroadcast(true), dhcpv4.WithoutOption(dhcpv4.OptionServerIdentifier))
	if r := handle(t, s, rebind); r.Msg.MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("rebind: %v", r.Msg.MessageType())
	}
	// A second client gets the next address; it cannot take the first one.
	b := dora(t, s, mac(2))
	if b.YourIPAddr.String() != "198.18.0.101" {
		t.Errorf("second lease %v", b.YourIPAddr)
	}
	steal, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac(2)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("198.18.0.100"))))
	if r := handle(t, s, steal); r.Msg.MessageType() != dhcpv4.MessageTypeNak || !strings.Contains(r.Msg.Message(), "leased to 52:54:00:00:00:01") {
		t.Errorf("INIT-REBOOT for another's address: %v %q", r.Msg.MessageType(), r.Msg.Message())
	}
	// INIT-REBOOT on the wrong network: NAK, broadcast.
	wrong, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac(3)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.9.9.9"))))
	if r := handle(t, s, wrong); r.Msg.MessageType() != dhcpv4.MessageTypeNak || r.Dest.String() != "255.255.255.255:68" {
		t.Errorf("wrong network: %v to %v", r.Msg.MessageType(), r.Dest)
	}
	// Release frees the address for others but remembers the binding.
	rel, _ := dhcpv4.NewReleaseFromACK(a)
	if r := handle(t, s, rel); r != nil {
		t.Errorf("release answered: %v", r.Msg)
	}
	// Expiry: after the lease time, client 2's lease ends.
	clk.add(601 * time.Second)
	s.Expire()
	var expired, released []string
	for _, e := range rec.Events() {
		switch e.Kind {
		case trace.KindDHCPExpire:
			expired = append(expired, e.MAC+" "+e.Attrs["yiaddr"].(string))
		case trace.KindDHCPRelease:
			released = append(released, e.MAC)
		}
	}
	if diff := cmp.Diff([]string{"52:54:00:00:00:02 198.18.0.101"}, expired); diff != "" {
		t.Errorf("expired (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"52:54:00:00:00:01"}, released); diff != "" {
		t.Errorf("released (-want +got):\n%s", diff)
	}
	// Client 1 comes back: its old address.
	if got := dora(t, s, mac(1)).YourIPAddr.String(); got != "198.18.0.100" {
		t.Errorf("returning client got %s", got)
	}
}

func TestSelectingAnotherServer(t *testing.T) {
	s, rec, _ := newServer(t, nil)
	offer := handle(t, s, discover(mac(1)))
	req, _ := dhcpv4.NewRequestFromOffer(offer.Msg, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("198.18.0.250"))))
	if r := handle(t, s, req); r != nil {
		t.Fatalf("answered a REQUEST for another server: %v", r.Msg)
	}
	last := rec.Events()[len(rec.Events())-1]
	if last.Kind != trace.KindDHCPIgnored || !strings.Contains(last.Attrs["reason"].(string), "selected server 198.18.0.250") {
		t.Errorf("event %+v", last)
	}
	// Our offer was freed: another client gets that address.
	if got := handle(t, s, discover(mac(2))).Msg.YourIPAddr.String(); got != "198.18.0.100" {
		t.Errorf("offer not freed: next client got %s", got)
	}
}

func TestDecline(t *testing.T) {
	s, rec, clk := newServer(t, nil)
	a := dora(t, s, mac(1))
	dec, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac(1)), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(a.YourIPAddr)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("198.18.0.2"))))
	if r := handle(t, s, dec); r != nil {
		t.Fatal("decline answered")
	}
	last := rec.Events()[len(rec.Events())-1]
	if last.Kind != trace.KindDHCPDecline || last.MAC != mac(1).String() || last.Attrs["requested"] != "198.18.0.100" ||
		last.Attrs["msg_type"] != "DECLINE" {
		t.Errorf("decline event %+v", last)
	}
	for _, e := range rec.Events() {
		if e.Kind == trace.KindDHCPRelease {
			t.Errorf("a decline reported as a release: %+v", e)
		}
	}
	if got := handle(t, s, discover(mac(1))).Msg.YourIPAddr.String(); got != "198.18.0.101" {
		t.Errorf("after declining .100 the client got %s, want .101", got)
	}
	clk.add(11 * time.Minute) // the hold is over, and the offer to client 1 lapsed
	if got := handle(t, s, discover(mac(3))).Msg.YourIPAddr.String(); got != "198.18.0.100" {
		t.Errorf("declined address not reusable after the hold: %s", got)
	}
}

func TestPoolExhaustedAndReuse(t *testing.T) {
	s, rec, clk := newServer(t, nil)
	for i := 0; i < 10; i++ {
		dora(t, s, mac(i))
	}
	if r := handle(t, s, discover(mac(10))); r != nil {
		t.Fatalf("offered %v from a full pool", r.Msg.YourIPAddr)
	}
	last := rec.Events()[len(rec.Events())-1]
	if last.Kind != trace.KindDHCPIgnored || !strings.Contains(last.Attrs["reason"].(string), "no free address") {
		t.Errorf("event %+v", last)
	}
	clk.add(700 * time.Second) // all leases ended
	if got := summarise(handle(t, s, discover(mac(10)))).YIAddr; got != "198.18.0.100" {
		t.Errorf("after expiry the oldest binding is reused: got %s", got)
	}
}

func TestKnownAndUnknownHosts(t *testing.T) {
	hosts := fakeHosts{
		"52:54:00:00:00:01": {IP: netip.MustParseAddr("198.18.0.20"), Hostname: "node-1", SystemID: "abc"},
		"52:54:00:00:00:02": {Hostname: "node-2"},
	}
	s, rec, _ := newServer(t, func(c *Config) { c.Hosts = hosts; c.Unknown = IgnoreUnknown })
	if got := dora(t, s, mac(1)).YourIPAddr.String(); got != "198.18.0.20" {
		t.Errorf("fixed host got %s", got)
	}
	if got := dora(t, s, mac(2)).YourIPAddr.String(); got != "198.18.0.100" {
		t.Errorf("known dynamic host got %s", got)
	}
	if r := handle(t, s, discover(mac(3))); r != nil {
		t.Errorf("unknown machine answered with policy IgnoreUnknown")
	}
	if last := rec.Events()[len(rec.Events())-1]; !strings.Contains(last.Message, "unknown machine") {
		t.Errorf("event %+v", last)
	}
	// A lookup failure is an error, not an answer.
	if _, err := s.Handle(context.Background(), Packet{Data: discover(net.HardwareAddr{0x52, 0x54, 0, 0xee, 0xee, 0xee}).ToBytes()}); err == nil {
		t.Error("lookup failure not reported")
	}
	s, _, _ = newServer(t, func(c *Config) { c.Hosts = hosts })
	if r := handle(t, s, discover(mac(3))); r == nil {
		t.Errorf("unknown machine ignored with policy AnswerUnknown (enlistment)")
	}
}

func TestRelay(t *testing.T) {
	relayed := Subnet{Prefix: netip.MustParsePrefix("10.20.0.0/24"), RackIP: rack,
		Pools: []Range{{netip.MustParseAddr("10.20.0.50"), netip.MustParseAddr("10.20.0.60")}}, Router: netip.MustParseAddr("10.20.0.1")}
	s, _, _ := newServer(t, func(c *Config) { c.Subnets = append(c.Subnets, relayed) })
	d := discover(mac(1), arch(0, 7), dhcpv4.WithRelay(net.ParseIP("10.20.0.1")))
	r := handle(t, s, d)
	if got := summarise(r); got.YIAddr != "10.20.0.50" || got.Dest != "10.20.0.1:67" || got.SIAddr != "198.18.0.2" {
		t.Errorf("relayed offer %+v", got)
	}
	if string(r.Msg.Options.Get(dhcpv4.OptionRouter)) != string(net.ParseIP("10.20.0.1").To4()) {
		t.Errorf("relayed subnet's router not sent")
	}
	unknown := discover(mac(2), dhcpv4.WithRelay(net.ParseIP("172.16.0.1")))
	if r := handle(t, s, unknown); r != nil {
		t.Errorf("answered a relay from an unknown subnet")
	}
}

func TestLeaseFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "leases.json")
	s, _, _ := newServer(t, func(c *Config) { c.LeaseFile = file })
	dora(t, s, mac(1))
	dora(t, s, mac(2))
	s2, _, _ := newServer(t, func(c *Config) { c.LeaseFile = file })
	if diff := cmp.Diff(s.Leases(), s2.Leases(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("reloaded leases (-saved +loaded):\n%s", diff)
	}
	if got := handle(t, s2, discover(mac(2))).Msg.YourIPAddr.String(); got != "198.18.0.101" {
		t.Errorf("after restart client 2 got %s", got)
	}

	bad := []struct{ content, rule string }{
		{"{", "not valid JSON"},
		{`{"version":2,"leases":[]}`, "version 2, want 1"},
		{`{"version":1,"leases":[{"mac":"zz","ip":"198.18.0.100","state":"bound"}]}`, "not an Ethernet address"},
		{`{"version":1,"leases":[{"mac":"52:54:00:00:00:01","ip":"10.0.0.1","state":"bound"}]}`, "in no configured subnet"},
		{`{"version":1,"leases":[{"mac":"52:54:00:00:00:01","ip":"198.18.0.100","state":"offered"}]}`, "not bound, released or expired"},
		{`{"version":1,"leases":[{"mac":"52:54:00:00:00:01","ip":"198.18.0.100","state":"bound"},{"mac":"52:54:00:00:00:02","ip":"198.18.0.100","state":"bound"}]}`, "leased twice"},
	}
	for _, b := range bad {
		p := filepath.Join(dir, "bad.json")
		os.WriteFile(p, []byte(b.content), 0o644)
		_, err := New(Config{Subnets: []Subnet{subnet}, LeaseFile: p})
		if err == nil || !strings.Contains(err.Error(), b.rule) || !strings.Contains(err.Error(), p) {
			t.Errorf("lease file %s: err = %v, want %q naming the file", b.content, err, b.rule)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	mk := func(edit func(*Subnet)) Config {
		s := subnet
		s.Pools = append([]Range(nil), subnet.Pools...)
		edit(&s)
		return Config{Subnets: []Subnet{s}}
	}
	cases := []struct {
		cfg  Config
		rule string
	}{
		{Config{}, "no subnets"},
		{mk(func(s *Subnet) { s.Prefix = netip.MustParsePrefix("fd00::/64") }), "IPv4 CIDR"},
		{mk(func(s *Subnet) { s.RackIP = netip.Addr{} }), "rack IP"},
		{mk(func(s *Subnet) { s.Pools[0].End = netip.MustParseAddr("198.18.1.5") }), "inside the prefix"},
		{mk(func(s *Subnet) { s.Pools[0].Start = netip.MustParseAddr("198.18.0.2") }), "contains the rack address"},
		{mk(func(s *Subnet) { s.Router = netip.MustParseAddr("10.0.0.1") }), "router 10.0.0.1 is outside"},
		{mk(func(s *Subnet) { s.MTU = 20 }), "MTU 20"},
		{Config{Subnets: []Subnet{subnet, subnet}}, "overlaps"},
	}
	for _, c := range cases {
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.rule) {
			t.Errorf("err = %v, want %q", err, c.rule)
		}
	}
}

func TestBadPackets(t *testing.T) {
	s, rec, _ := newServer(t, nil)
	good := discover(mac(1)).ToBytes()
	reply := discover(mac(1))
	reply.OpCode = dhcpv4.OpcodeBootReply
	token := discover(mac(1))
	token.HWType = iana.HWTypeIEEE802
	bootp := discover(mac(1))
	bootp.Options.Del(dhcpv4.OptionDHCPMessageType)
	cases := []struct {
		name   string
		data   []byte
		reason string
	}{
		{"empty", nil, "malformed"},
		{"truncated header", good[:100], "malformed"},
		{"bad cookie", append(append([]byte{}, good[:236]...), 1, 2, 3, 4, 255), "magic cookie"},
		{"option runs past the end", append(append([]byte{}, good[:240]...), 53, 200, 1), "malformed"},
		{"no end option", append(append([]byte{}, good[:240]...), 53, 1, 1), "malformed"},
		{"BOOTREPLY", reply.ToBytes(), "not BOOTREQUEST"},
		{"token ring", token.ToBytes(), "only Ethernet"},
		{"BOOTP", bootp.ToBytes(), "BOOTP is not served"},
		{"long message type", append(append([]byte{}, good[:240]...), 53, 2, 1, 1, 255), "option 53 is 2 bytes"},
	}
	for _, c := range cases {
		before := len(rec.Events())
		r, err := s.Handle(context.Background(), Packet{Data: c.data})
		if r != nil || err != nil {
			t.Errorf("%s: answered %v %v", c.name, r, err)
		}
		evs := rec.Events()[before:]
		if len(evs) != 1 || evs[0].Kind != trace.KindDHCPBad || !strings.Contains(evs[0].Attrs["reason"].(string), c.reason) {
			t.Errorf("%s: events %+v, want one dhcp.bad with %q", c.name, evs, c.reason)
		}
		// The server keeps serving.
		if handle(t, s, discover(mac(9))) == nil {
			t.Fatalf("no answer after %s", c.name)
		}
	}
}

// FuzzHandle: any datagram is handled without a panic and leaves at least one event.
func FuzzHandle(f *testing.F) {
	f.Add(discover(mac(1), arch(0, 7), vendor("PXEClient"), userClass("iPXE")).ToBytes())
	req, _ := dhcpv4.NewRequestFromOffer(discover(mac(1)))
	f.Add(req.ToBytes())
	rel, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease), dhcpv4.WithHwAddr(mac(1)), dhcpv4.WithClientIP(net.ParseIP("198.18.0.100")))
	f.Add(rel.ToBytes())
	f.Add([]byte{})
	f.Add(discover(mac(2)).ToBytes()[:241])
	var events atomic.Int64
	s, _, _ := newServer(f, func(c *Config) {
		c.Subnets = append(c.Subnets, Subnet{Prefix: netip.MustParsePrefix("10.0.0.0/8"), RackIP: netip.MustParseAddr("10.0.0.2"),
			Pools: []Range{{netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.0.12")}}})
		c.Sink = trace.Func(func(trace.Event) { events.Add(1) })
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		before := events.Load()
		r, _ := s.Handle(context.Background(), Packet{Data: data, Peer: client68})
		if events.Load() == before {
			t.Fatalf("no event for %x", data)
		}
		if r != nil {
			_ = r.Msg.ToBytes()
			if r.Dest == nil {
				t.Fatal("reply without destination")
			}
		}
	})
}

// TestNClient4 runs real DORA exchanges with insomniacslk's nclient4 over loopback, one per
// client architecture, through Serve.
func TestNClient4(t *testing.T) {
	s, rec, _ := newServer(t, nil)
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	srv := conn.LocalAddr().(*net.UDPAddr)
	cases := []struct {
		name string
		mods []dhcpv4.Modifier
		file string
	}{
		{"SeaBIOS PXE", []dhcpv4.Modifier{arch(0, 0), vendor("PXEClient:Arch:00000:UNDI:002001")}, "lpxelinux.0"},
		{"SeaBIOS iPXE", []dhcpv4.Modifier{arch(0, 0), vendor("PXEClient:Arch:00000:UNDI:002001"), userClass("iPXE")}, "http://198.18.0.2:5248/ipxe.cfg"},
		{"OVMF PXE", []dhcpv4.Modifier{arch(0, 7), vendor("PXEClient:Arch:00007:UNDI:003000")}, "bootx64.efi"},
		{"OVMF HTTP", []dhcpv4.Modifier{arch(0, 0x10), vendor("HTTPClient:Arch:00016:UNDI:003000")}, "http://198.18.0.2:5248/images/bootx64.efi"},
		{"arm64", []dhcpv4.Modifier{arch(0, 0x0b)}, "bootaa64.efi"},
		{"ppc64el", []dhcpv4.Modifier{arch(0, 0x0c)}, "bootppc64.bin"},
		{"s390x", []dhcpv4.Modifier{arch(0, 0x1f)}, "boots390x.bin"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cc, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			client, err := nclient4.NewWithConn(cc, mac(100+i), nclient4.WithServerAddr(srv), nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(2))
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			lease, err := client.Request(context.Background(), c.mods...)
			if err != nil {
				t.Fatalf("DORA: %v", err)
			}
			if lease.Offer.BootFileName != c.file || lease.ACK.BootFileName != c.file {
				t.Errorf("filename offer %q ack %q, want %q", lease.Offer.BootFileName, lease.ACK.BootFileName, c.file)
			}
			if !lease.ACK.ServerIPAddr.Equal(net.ParseIP("198.18.0.2")) || !lease.ACK.ServerIdentifier().Equal(net.ParseIP("198.18.0.2")) {
				t.Errorf("next-server %v server-id %v", lease.ACK.ServerIPAddr, lease.ACK.ServerIdentifier())
			}
			renewed, err := client.Renew(context.Background(), lease)
			if err != nil || !renewed.ACK.YourIPAddr.Equal(lease.ACK.YourIPAddr) {
				t.Errorf("renew: %v %v", renewed, err)
			}
		})
	}
	// Every packet in and out is an event.
	counts := map[string]int{}
	for _, e := range rec.Events() {
		counts[e.Kind]++
	}
	n := len(cases)
	want := map[string]int{trace.KindDHCPDiscover: n, trace.KindDHCPOffer: n, trace.KindDHCPRequest: 2 * n, trace.KindDHCPAck: 2 * n}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("event counts (-want +got):\n%s", diff)
	}
	for _, e := range rec.Events() {
		if e.Kind == trace.KindDHCPOffer && e.Attrs["filename"] == "lpxelinux.0" {
			if e.Attrs["arch"] != "0000" || e.Attrs["next_server"] != "198.18.0.2" || e.Attrs["yiaddr"] == "" || e.Attrs["xid"] == "" {
				t.Errorf("offer event attrs %+v", e.Attrs)
			}
		}
	}
}

// BenchmarkDORA measures DISCOVER+REQUEST transactions for 1,000 distinct clients through
// the handler (no sockets).
func BenchmarkDORA(b *testing.B) {
	pool := Subnet{Prefix: netip.MustParsePrefix("10.0.0.0/16"), RackIP: netip.MustParseAddr("10.0.0.2"),
		Pools: []Range{{netip.MustParseAddr("10.0.1.0"), netip.MustParseAddr("10.0.8.255")}}, DomainName: "maas"}
	discovers := make([][]byte, 1000)
	for i := range discovers {
		discovers[i] = discover(mac(i), arch(0, 7), vendor("PXEClient:Arch:00007:UNDI:003000")).ToBytes()
	}
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		s, err := New(Config{Subnets: []Subnet{pool}})
		if err != nil {
			b.Fatal(err)
		}
		for _, d := range discovers {
			o, _ := s.Handle(ctx, Packet{Data: d, Peer: client68})
			req, _ := dhcpv4.NewRequestFromOffer(o.Msg)
			a, _ := s.Handle(ctx, Packet{Data: req.ToBytes(), Peer: client68})
			if a.Msg.MessageType() != dhcpv4.MessageTypeAck {
				b.Fatal("no ACK")
			}
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "transactions/s")
}

// BenchmarkDORALoopback runs the same 1,000 clients over a loopback UDP socket through Serve.
func BenchmarkDORALoopback(b *testing.B) {
	pool := Subnet{Prefix: netip.MustParsePrefix("10.0.0.0/16"), RackIP: netip.MustParseAddr("10.0.0.2"),
		Pools: []Range{{netip.MustParseAddr("10.0.1.0"), netip.MustParseAddr("10.0.8.255")}}, DomainName: "maas"}
	cc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	discovers := make([][]byte, 1000)
	for i := range discovers {
		discovers[i] = discover(mac(i), arch(0, 7), vendor("PXEClient:Arch:00007:UNDI:003000")).ToBytes()
	}
	buf := make([]byte, 2048)
	b.ResetTimer()
	for b.Loop() {
		s, _ := New(Config{Subnets: []Subnet{pool}})
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx, conn) }()
		for _, d := range discovers {
			cc.WriteTo(d, conn.LocalAddr())
			n, _, err := cc.ReadFrom(buf)
			if err != nil {
				b.Fatal(err)
			}
			o, err := dhcpv4.FromBytes(buf[:n])
			if err != nil {
				b.Fatal(err)
			}
			req, _ := dhcpv4.NewRequestFromOffer(o)
			cc.WriteTo(req.ToBytes(), conn.LocalAddr())
			if n, _, err = cc.ReadFrom(buf); err != nil || n < 240 {
				b.Fatal(err)
			}
		}
		cancel()
		<-done
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "transactions/s")
}

var _ = fmt.Sprint
