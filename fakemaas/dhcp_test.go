package fakemaas_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"testing"

	"github.com/canonical/gomaasclient/client"
	"github.com/canonical/gomaasclient/entity"
	"github.com/google/go-cmp/cmp"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/fakemaas/regiontest"
)

// netipCmp compares netip values by value.
var netipCmp = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

var (
	labPrefix = mustPrefix("198.18.0.0/24")
	labRack   = mustAddr("198.18.0.1")
)

// ensureLab is what the harness does at start: the lab's subnet with the rack at .1 and
// the dynamic range the upper half.
func ensureLab(t *testing.T, env *regiontest.Env) int {
	t.Helper()
	id, err := env.Region.EnsureSubnet(t.Context(), fakemaas.SubnetSpec{CIDR: labPrefix, Gateway: labRack, RackIP: labRack,
		DynamicStart: mustAddr("198.18.0.128"), DynamicEnd: mustAddr("198.18.0.254"), DNSServers: []netip.Addr{mustAddr("192.0.2.53")}})
	if err != nil {
		t.Fatalf("EnsureSubnet: %v", err)
	}
	return id
}

// readyWithDisk creates a Ready machine with a disk and the flat layout.
func readyWithDisk(t *testing.T, env *regiontest.Env, host string, macs ...string) *entity.Machine {
	t.Helper()
	c := env.Client
	m, err := c.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: host, PowerType: "test",
		MACAddresses: macs}, map[string]any{"commission": "false", "power_parameters_power_id": host})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.BlockDevices.Create(m.SystemID, &entity.BlockDeviceParams{Name: "sda", Model: "M", Serial: host, Size: 8 << 30, BlockSize: 512}); err != nil {
		t.Fatal(err)
	}
	if r := call(t, env, env.APIKey, http.MethodPost, "/MAAS/api/2.0/machines/"+m.SystemID+"/?op=set_storage_layout",
		url.Values{"storage_layout": {"flat"}}, false); r.Status != http.StatusOK {
		t.Fatalf("set_storage_layout: %+v", r)
	}
	return m
}

// relink replaces the links of a machine's interface with one of mode on subnet.
func relink(t *testing.T, c *client.Client, sid string, iface entity.NetworkInterface, mode string, subnet int, ip string) {
	t.Helper()
	for _, l := range iface.Links {
		if _, err := c.NetworkInterface.UnlinkSubnet(sid, iface.ID, l.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.NetworkInterface.LinkSubnet(sid, iface.ID, &entity.NetworkInterfaceLinkParams{Mode: mode, Subnet: subnet, IPAddress: ip}); err != nil {
		t.Fatalf("link_subnet %s: %v", mode, err)
	}
}

func lookup(t *testing.T, env *regiontest.Env, mac string) fakemaas.DHCPLookup {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	l, err := env.Region.LookupDHCP(t.Context(), hw)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestDHCPHosts checks the rack's view of the region: the subnets it serves and the host
// entries (fixed addresses) of machines with AUTO or STATIC links on them, as MAAS's
// dhcpd configuration has them.
func TestDHCPHosts(t *testing.T) {
	env := regiontest.Start(t)
	env.ImportDefaultStream(t)
	c := env.Client
	lab := ensureLab(t, env)
	if again := ensureLab(t, env); again != lab {
		t.Errorf("EnsureSubnet twice: ids %d and %d", lab, again)
	}
	subnets, err := env.Region.DHCPSubnets(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	wantSubnets := []fakemaas.DHCPSubnet{{Prefix: labPrefix, RackIP: labRack,
		Pools:  []fakemaas.DHCPPool{{Start: mustAddr("198.18.0.128"), End: mustAddr("198.18.0.254")}},
		Router: labRack, DNS: []netip.Addr{labRack, mustAddr("192.0.2.53")}, DomainName: "maas", SearchList: []string{"maas"},
		NTP: []netip.Addr{labRack}, MTU: 1500}}
	if diff := cmp.Diff(wantSubnets, subnets, netipCmp...); diff != "" {
		t.Errorf("DHCP subnets (-want +got):\n%s", diff)
	}
	// The subnet as the API shows it: managed, on the default VLAN with DHCP on from the rack.
	s, err := c.Subnet.Get(lab)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Managed || !s.VLAN.DHCPOn || s.VLAN.PrimaryRack == "" || s.VLAN.VID != 0 || s.GatewayIP.String() != "198.18.0.1" {
		t.Errorf("lab subnet = %+v", s)
	}
	v100, err := c.VLANs.Create(0, &entity.VLANParams{VID: 100})
	if err != nil {
		t.Fatal(err)
	}
	other, err := c.Subnets.Create(&entity.SubnetParams{CIDR: "10.100.0.0/24", VLAN: strconv.Itoa(v100.ID), Managed: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := regiontest.UploadCustomImage(c, "img", "amd64/generic", "tgz", "ubuntu/noble", []byte("tarball")); err != nil {
		t.Fatal(err)
	}

	const (
		autoMAC, staticMAC, dhcpMAC = "52:54:00:d0:00:01", "52:54:00:d0:00:02", "52:54:00:d0:00:03"
		bondMAC0, bondMAC1          = "52:54:00:d0:00:04", "52:54:00:d0:00:05"
	)
	// A new machine on the lab's VLAN gets AUTO on the lab subnet; no host entry until
	// the address is claimed at deployment.
	auto := readyWithDisk(t, env, "auto", autoMAC)
	if got := lookup(t, env, autoMAC); !got.Known || got.SystemID != auto.SystemID || got.Hostname != "auto" || got.Hosts != nil {
		t.Errorf("AUTO machine before deploying: %+v", got)
	}
	static := readyWithDisk(t, env, "static", staticMAC)
	relink(t, c, static.SystemID, static.InterfaceSet[0], "STATIC", lab, "198.18.0.50")
	dhcp := readyWithDisk(t, env, "dhcp", dhcpMAC)
	relink(t, c, dhcp.SystemID, dhcp.InterfaceSet[0], "DHCP", lab, "")
	bonded := readyWithDisk(t, env, "bonded", bondMAC0, bondMAC1)
	bond, err := c.NetworkInterfaces.CreateBond(bonded.SystemID, &entity.NetworkInterfaceBondParams{Name: "bond0",
		Parents: []int{bonded.InterfaceSet[0].ID, bonded.InterfaceSet[1].ID}, BondMode: "active-backup"})
	if err != nil {
		t.Fatal(err)
	}
	relink(t, c, bonded.SystemID, *bond, "STATIC", lab, "198.18.0.60")
	vif, err := c.NetworkInterfaces.CreateVLAN(bonded.SystemID, &entity.NetworkInterfaceVLANParams{Parents: []int{bond.ID}, VLAN: v100.ID})
	if err != nil {
		t.Fatal(err)
	}
	relink(t, c, bonded.SystemID, *vif, "STATIC", other.ID, "10.100.0.60") // a subnet the rack does not serve

	for _, sid := range []string{auto.SystemID, dhcp.SystemID} {
		if _, err := c.Machine.Deploy(sid, &entity.MachineDeployParams{DistroSeries: "img"}); err != nil {
			t.Fatalf("deploy: %v", err)
		}
	}
	host := func(name, sid, hostname, iface, mac, ip string) fakemaas.DHCPHost {
		return fakemaas.DHCPHost{Host: name, MAC: mac, IP: mustAddr(ip), SystemID: sid, Hostname: hostname, Interface: iface}
	}
	// The AUTO address is the first of the smallest free range (MAAS keeps large ranges
	// whole): .51-.59, between the static .50 and .60.
	wantAuto := host("auto-eth0", auto.SystemID, "auto", "eth0", autoMAC, "198.18.0.51")
	wantStatic := host("static-eth0", static.SystemID, "static", "eth0", staticMAC, "198.18.0.50")
	wantBondParent := host("bonded-eth1", bonded.SystemID, "bonded", "eth1", bondMAC1, "198.18.0.60")
	wantBond := host("bonded-bond0", bonded.SystemID, "bonded", "bond0", bondMAC0, "198.18.0.60")
	for _, tc := range []struct {
		name string
		mac  string
		want fakemaas.DHCPLookup
	}{
		{"AUTO, deployed", autoMAC, fakemaas.DHCPLookup{Known: true, SystemID: auto.SystemID, Hostname: "auto", Hosts: []fakemaas.DHCPHost{wantAuto}}},
		{"STATIC", staticMAC, fakemaas.DHCPLookup{Known: true, SystemID: static.SystemID, Hostname: "static", Hosts: []fakemaas.DHCPHost{wantStatic}}},
		{"DHCP only, deployed", dhcpMAC, fakemaas.DHCPLookup{Known: true, SystemID: dhcp.SystemID, Hostname: "dhcp"}},
		{"bond, its MAC", bondMAC0, fakemaas.DHCPLookup{Known: true, SystemID: bonded.SystemID, Hostname: "bonded", Hosts: []fakemaas.DHCPHost{wantBond}}},
		{"bond, the other parent", bondMAC1, fakemaas.DHCPLookup{Known: true, SystemID: bonded.SystemID, Hostname: "bonded", Hosts: []fakemaas.DHCPHost{wantBondParent}}},
		{"unknown", "52:54:00:ff:ff:ff", fakemaas.DHCPLookup{}},
	} {
		if diff := cmp.Diff(tc.want, lookup(t, env, tc.mac), netipCmp...); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	all, err := env.Region.DHCPHosts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// In link order: the AUTO link is the oldest, though its address came last.
	if diff := cmp.Diff([]fakemaas.DHCPHost{wantAuto, wantStatic, wantBondParent, wantBond}, all, netipCmp...); diff != "" {
		t.Errorf("host entries (-want +got):\n%s", diff)
	}

	// Release frees the AUTO address, and with it the host entry.
	if _, err := c.Machine.Release(auto.SystemID, &entity.MachineReleaseParams{}); err != nil {
		t.Fatal(err)
	}
	if got := lookup(t, env, autoMAC); got.Hosts != nil {
		t.Errorf("AUTO machine after release: %+v", got)
	}
}

// openEnv opens a region on dir behind a loopback server, with the test power type; close
// stops both.
func openEnv(t *testing.T, dir string) (env *regiontest.Env, close func()) {
	t.Helper()
	r, err := fakemaas.New(context.Background(), fakemaas.Options{StateDir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	r.RegisterPowerType("test", regiontest.NewPowerDriver())
	srv := httptest.NewServer(r.Handler())
	env = &regiontest.Env{Region: r, Server: srv, URL: srv.URL + "/MAAS/", APIKey: r.AdminAPIKey(), StateDir: dir}
	env.Client = env.NewClient(t, env.APIKey)
	return env, func() {
		srv.Close()
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	}
}

// TestNetworkPersists restarts the region on its state directory: the network model, the
// links and the claimed addresses survive.
func TestNetworkPersists(t *testing.T) {
	dir := t.TempDir()
	env, closeEnv := openEnv(t, dir)
	env.ImportDefaultStream(t)
	ensureLab(t, env)
	m := readyWithDisk(t, env, "keep", "52:54:00:e0:00:01")
	if _, err := regiontest.UploadCustomImage(env.Client, "img", "amd64/generic", "tgz", "ubuntu/noble", []byte("tarball")); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.Machine.Deploy(m.SystemID, &entity.MachineDeployParams{DistroSeries: "img"}); err != nil {
		t.Fatal(err)
	}
	paths := []string{"/MAAS/api/2.0/subnets/", "/MAAS/api/2.0/ipranges/", "/MAAS/api/2.0/fabrics/",
		"/MAAS/api/2.0/nodes/" + m.SystemID + "/interfaces/"}
	before := map[string]string{}
	for _, p := range paths {
		before[p] = call(t, env, env.APIKey, http.MethodGet, p, nil, false).Body
	}
	hosts, err := env.Region.DHCPHosts(t.Context())
	if err != nil || len(hosts) != 1 {
		t.Fatalf("host entries before the restart: %v, %v", hosts, err)
	}
	closeEnv()

	env, closeEnv = openEnv(t, dir)
	defer closeEnv()
	for _, p := range paths {
		if diff := cmp.Diff(before[p], call(t, env, env.APIKey, http.MethodGet, p, nil, false).Body); diff != "" {
			t.Errorf("%s after a restart (-want +got):\n%s", p, diff)
		}
	}
	after, err := env.Region.DHCPHosts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(hosts, after, netipCmp...); diff != "" {
		t.Errorf("host entries after a restart (-want +got):\n%s", diff)
	}
}
