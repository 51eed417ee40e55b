package dhcp4_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/canonical/gomaasclient/entity"
	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/fakemaas/oauth"
	"github.com/maasemu/maasemu/fakemaas/regiontest"
	"github.com/maasemu/maasemu/pxe/dhcp4"
)

var (
	labPrefix = netip.MustParsePrefix("198.18.0.0/24")
	rackIP    = netip.MustParseAddr("198.18.0.1")
)

// post sends an API form request signed with the admin key.
func post(t *testing.T, env *regiontest.Env, path string, form url.Values) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, env.Server.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	c, err := oauth.ParseKey(env.APIKey)
	if err != nil {
		t.Fatal(err)
	}
	oauth.Sign(req, c)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s", path, resp.Status)
	}
}

// readyMachine creates a Ready machine with a disk and the flat layout on the region.
func readyMachine(t *testing.T, env *regiontest.Env, host, mac string) *entity.Machine {
	t.Helper()
	m, err := env.Client.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: host, PowerType: "test",
		MACAddresses: []string{mac}}, map[string]any{"commission": "false"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.BlockDevices.Create(m.SystemID, &entity.BlockDeviceParams{Name: "sda", Model: "M", Serial: host,
		Size: 8 << 30, BlockSize: 512}); err != nil {
		t.Fatal(err)
	}
	post(t, env, "/MAAS/api/2.0/machines/"+m.SystemID+"/?op=set_storage_layout", url.Values{"storage_layout": {"flat"}})
	return m
}

// offer sends a PXE DISCOVER for mac and returns the offered address (invalid: no answer).
func offer(t *testing.T, s *dhcp4.Server, mac string) netip.Addr {
	t.Helper()
	hw, _ := net.ParseMAC(mac)
	d, err := dhcpv4.NewDiscovery(hw, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, 0}))
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Handle(context.Background(), dhcp4.Packet{Data: d.ToBytes(), Peer: &net.UDPAddr{IP: net.IPv4zero, Port: dhcp4.ClientPort}})
	if err != nil {
		t.Fatal(err)
	}
	if r == nil {
		return netip.Addr{}
	}
	ip, _ := netip.AddrFromSlice(r.Msg.YourIPAddr.To4())
	return ip
}

// TestRegionDHCP runs the rack's DHCP server on the region's subnets and host entries: a
// deployed machine with an AUTO link and a machine with a STATIC link are offered their
// fixed addresses, a DHCP-only machine an address of the dynamic range, and a MAC the
// region does not know nothing when unknown machines are ignored.
func TestRegionDHCP(t *testing.T) {
	env := regiontest.Start(t)
	env.ImportDefaultStream(t)
	ctx := t.Context()
	lab, err := env.Region.EnsureSubnet(ctx, fakemaas.SubnetSpec{CIDR: labPrefix, Gateway: rackIP, RackIP: rackIP,
		DynamicStart: netip.MustParseAddr("198.18.0.128"), DynamicEnd: netip.MustParseAddr("198.18.0.254")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := regiontest.UploadCustomImage(env.Client, "img", "amd64/generic", "tgz", "ubuntu/noble", []byte("tarball")); err != nil {
		t.Fatal(err)
	}
	const autoMAC, staticMAC, dhcpMAC = "52:54:00:0d:00:01", "52:54:00:0d:00:02", "52:54:00:0d:00:03"
	auto := readyMachine(t, env, "auto", autoMAC)
	static := readyMachine(t, env, "static", staticMAC)
	dhcp := readyMachine(t, env, "dhcp", dhcpMAC)
	for _, x := range []struct {
		m    *entity.Machine
		mode string
		ip   string
	}{{static, "STATIC", "198.18.0.50"}, {dhcp, "DHCP", ""}} {
		i := x.m.InterfaceSet[0]
		if _, err := env.Client.NetworkInterface.UnlinkSubnet(x.m.SystemID, i.ID, i.Links[0].ID); err != nil {
			t.Fatal(err)
		}
		if _, err := env.Client.NetworkInterface.LinkSubnet(x.m.SystemID, i.ID,
			&entity.NetworkInterfaceLinkParams{Mode: x.mode, Subnet: lab, IPAddress: x.ip}); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []*entity.Machine{auto, dhcp} {
		if _, err := env.Client.Machine.Deploy(m.SystemID, &entity.MachineDeployParams{DistroSeries: "img"}); err != nil {
			t.Fatal(err)
		}
	}

	regionSubnets, err := env.Region.DHCPSubnets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	subnets := dhcp4.RegionSubnets(regionSubnets)
	want := []dhcp4.Subnet{{Prefix: labPrefix, RackIP: rackIP,
		Pools:  []dhcp4.Range{{Start: netip.MustParseAddr("198.18.0.128"), End: netip.MustParseAddr("198.18.0.254")}},
		Router: rackIP, DNS: []netip.Addr{rackIP}, DomainName: "maas", SearchList: []string{"maas"}, NTP: []netip.Addr{rackIP},
		MTU: 1500}}
	eq := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	if diff := cmp.Diff(want, subnets, eq, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("subnets (-want +got):\n%s", diff)
	}
	hosts := dhcp4.RegionHosts{Region: env.Region, Subnets: subnets}
	s, err := dhcp4.New(dhcp4.Config{Subnets: subnets, Hosts: hosts, Unknown: dhcp4.IgnoreUnknown})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]netip.Addr{}
	for _, mac := range []string{autoMAC, staticMAC, dhcpMAC, "52:54:00:0d:00:ff"} {
		got[mac] = offer(t, s, mac)
	}
	// The AUTO address: the first of 198.18.0.2-.49 and .51-.127, the smaller range.
	if got[autoMAC] != netip.MustParseAddr("198.18.0.2") || got[staticMAC] != netip.MustParseAddr("198.18.0.50") {
		t.Errorf("fixed addresses offered: auto %v, static %v", got[autoMAC], got[staticMAC])
	}
	if pool := subnets[0].Pools[0]; got[dhcpMAC].Less(pool.Start) || pool.End.Less(got[dhcpMAC]) {
		t.Errorf("DHCP-only machine offered %v, want an address of the dynamic range", got[dhcpMAC])
	}
	if got["52:54:00:0d:00:ff"].IsValid() {
		t.Errorf("unknown machine offered %v", got["52:54:00:0d:00:ff"])
	}
	hw, _ := net.ParseMAC(dhcpMAC)
	if h, known, err := hosts.LookupHost(ctx, hw); err != nil || !known || h.IP.IsValid() || h.Hostname != "dhcp" || h.SystemID != dhcp.SystemID {
		t.Errorf("DHCP-only lookup = %+v, %v, %v", h, known, err)
	}
	// A fixed address outside the server's subnets does not count.
	other := dhcp4.RegionHosts{Region: env.Region, Subnets: []dhcp4.Subnet{{Prefix: netip.MustParsePrefix("10.0.0.0/24")}}}
	hw, _ = net.ParseMAC(staticMAC)
	if h, known, err := other.LookupHost(ctx, hw); err != nil || !known || h.IP.IsValid() {
		t.Errorf("lookup with a fixed address on a subnet not served = %+v, %v, %v", h, known, err)
	}
	// A region that fails is an error of the lookup.
	if _, _, err := (dhcp4.RegionHosts{Region: failingRegion{}}).LookupHost(ctx, hw); err == nil || !strings.Contains(err.Error(), "region down") {
		t.Errorf("lookup with a failing region: %v", err)
	}
}

type failingRegion struct{}

func (failingRegion) LookupDHCP(context.Context, net.HardwareAddr) (fakemaas.DHCPLookup, error) {
	return fakemaas.DHCPLookup{}, errors.New("region down")
}
