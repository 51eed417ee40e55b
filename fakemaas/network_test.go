package fakemaas_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/canonical/gomaasclient/client"
	"github.com/canonical/gomaasclient/entity"
	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/maasemu/maasemu/fakemaas/curtincfg"
	"github.com/maasemu/maasemu/fakemaas/regiontest"

	"github.com/maasemu/maasemu/fakemaas"
)

const (
	netMAC0 = "52:54:00:aa:00:01"
	netMAC1 = "52:54:00:aa:00:02"
)

// netLab is a region with the lab's subnet (198.18.0.0/24, gateway .1, the dynamic
// range the upper half) and a storage subnet 10.100.0.0/24 on VLAN 100 of fabric-0, made
// through gomaasclient, and a Ready machine with two NICs and a disk.
type netLab struct {
	env     *regiontest.Env
	c       *client.Client
	lab     *entity.Subnet
	storage *entity.Subnet
	vlan100 *entity.VLAN
	dynamic *entity.IPRange
	sid     string
}

func newNetLab(t *testing.T) *netLab {
	t.Helper()
	env := regiontest.Start(t)
	env.ImportDefaultStream(t)
	c := env.Client
	l := &netLab{env: env, c: c}
	var err error
	l.lab, err = c.Subnets.Create(&entity.SubnetParams{CIDR: "198.18.0.0/24", Name: "lab", GatewayIP: "198.18.0.1",
		DNSServers: []string{"198.18.0.1"}, RDNSMode: 2, AllowDNS: true, AllowProxy: true, Managed: true})
	if err != nil {
		t.Fatalf("create subnet: %v", err)
	}
	l.dynamic, err = c.IPRanges.Create(&entity.IPRangeParams{Type: "dynamic", Subnet: strconv.Itoa(l.lab.ID),
		StartIP: "198.18.0.128", EndIP: "198.18.0.254", Comment: "PXE"})
	if err != nil {
		t.Fatalf("create dynamic range: %v", err)
	}
	l.vlan100, err = c.VLANs.Create(0, &entity.VLANParams{VID: 100, Name: "storage", MTU: 9000})
	if err != nil {
		t.Fatalf("create VLAN: %v", err)
	}
	l.storage, err = c.Subnets.Create(&entity.SubnetParams{CIDR: "10.100.0.0/24", VLAN: strconv.Itoa(l.vlan100.ID),
		GatewayIP: "10.100.0.1", DNSServers: []string{"10.100.0.53"}, RDNSMode: 2, AllowDNS: true, Managed: true})
	if err != nil {
		t.Fatalf("create subnet on VLAN 100: %v", err)
	}
	m, err := c.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: "netnode", PowerType: "test",
		MACAddresses: []string{netMAC0, netMAC1}}, map[string]any{"commission": "false", "power_parameters_power_id": "vm-net"})
	if err != nil {
		t.Fatalf("create machine: %v", err)
	}
	l.sid = m.SystemID
	if _, err := c.BlockDevices.Create(l.sid, &entity.BlockDeviceParams{Name: "sda", Model: "QEMU HARDDISK", Serial: "QM1",
		Size: 20 << 30, BlockSize: 512}); err != nil {
		t.Fatal(err)
	}
	if r := call(t, env, env.APIKey, http.MethodPost, "/MAAS/api/2.0/machines/"+l.sid+"/?op=set_storage_layout",
		url.Values{"storage_layout": {"flat"}}, false); r.Status != http.StatusOK {
		t.Fatalf("set_storage_layout: %+v", r)
	}
	return l
}

func (l *netLab) iface(t *testing.T, name string) entity.NetworkInterface {
	t.Helper()
	ifaces, err := l.c.NetworkInterfaces.Get(l.sid)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifaces {
		if i.Name == name {
			return i
		}
	}
	t.Fatalf("machine has no interface %s", name)
	return entity.NetworkInterface{}
}

type linkView struct {
	Mode, IP, Subnet string
}

func links(i entity.NetworkInterface) []linkView {
	var out []linkView
	for _, l := range i.Links {
		out = append(out, linkView{l.Mode, l.IPAddress, l.Subnet.CIDR})
	}
	return out
}

// TestNetworkBondVLANDeploy configures, through gomaasclient, a bond of two NICs with an
// AUTO link on the lab subnet and a VLAN interface on the bond with a STATIC link on the
// storage subnet, deploys, and checks that the installer spec is what curtincfg renders
// for that network, that the AUTO address is claimed at deployment and freed at release.
func TestNetworkBondVLANDeploy(t *testing.T) {
	l := newNetLab(t)
	c, sid := l.c, l.sid
	image := bytes.Repeat([]byte("net image "), 100)
	if _, err := regiontest.UploadCustomImage(c, "netimg", "amd64/generic", "ddgz", "ubuntu/noble", image); err != nil {
		t.Fatal(err)
	}

	// A new Ready machine has MAAS's initial configuration: AUTO on the boot interface's
	// VLAN's subnet, LINK_UP on the other interface.
	eth0, eth1 := l.iface(t, "eth0"), l.iface(t, "eth1")
	if diff := cmp.Diff([]linkView{{"auto", "", "198.18.0.0/24"}}, links(eth0)); diff != "" {
		t.Errorf("eth0 links (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]linkView{{"link_up", "", ""}}, links(eth1)); diff != "" {
		t.Errorf("eth1 links (-want +got):\n%s", diff)
	}

	bond, err := c.NetworkInterfaces.CreateBond(sid, &entity.NetworkInterfaceBondParams{Name: "bond0",
		Parents: []int{eth0.ID, eth1.ID}, BondMode: "802.3ad", BondMiimon: 100, BondLACPRate: "fast",
		BondXMitHashPolicy: "layer3+4", MTU: 9000})
	if err != nil {
		t.Fatalf("create_bond: %v", err)
	}
	if bond.Type != "bond" || bond.MACAddress != netMAC0 || bond.VLAN.VID != 0 || bond.EffectiveMTU != 9000 ||
		!cmp.Equal(bond.Parents, []string{"eth0", "eth1"}) {
		t.Errorf("bond = type %q mac %q vid %d mtu %d parents %v", bond.Type, bond.MACAddress, bond.VLAN.VID, bond.EffectiveMTU, bond.Parents)
	}
	wantParams := map[string]any{"bond_mode": "802.3ad", "bond_miimon": 100.0, "bond_downdelay": 0.0, "bond_updelay": 0.0,
		"bond_num_grat_arp": 1.0, "bond_lacp_rate": "fast", "bond_xmit_hash_policy": "layer3+4", "mtu": 9000.0}
	if diff := cmp.Diff(wantParams, bond.Params); diff != "" {
		t.Errorf("bond params (-want +got):\n%s", diff)
	}
	// The parents lost their links; the bond is LINK_UP until linked.
	if got := links(l.iface(t, "eth0")); got != nil {
		t.Errorf("eth0 links after bonding = %v, want none", got)
	}
	vif, err := c.NetworkInterfaces.CreateVLAN(sid, &entity.NetworkInterfaceVLANParams{Parents: []int{bond.ID}, VLAN: l.vlan100.ID})
	if err != nil {
		t.Fatalf("create_vlan: %v", err)
	}
	if vif.Name != "bond0.100" || vif.Type != "vlan" || vif.MACAddress != netMAC0 || vif.VLAN.VID != 100 {
		t.Errorf("vlan interface = %q %q %q vid %d", vif.Name, vif.Type, vif.MACAddress, vif.VLAN.VID)
	}
	vif, err = c.NetworkInterface.LinkSubnet(sid, vif.ID, &entity.NetworkInterfaceLinkParams{Mode: "STATIC",
		Subnet: l.storage.ID, IPAddress: "10.100.0.10"})
	if err != nil {
		t.Fatalf("link_subnet STATIC: %v", err)
	}
	bond, err = c.NetworkInterface.LinkSubnet(sid, bond.ID, &entity.NetworkInterfaceLinkParams{Mode: "AUTO", Subnet: l.lab.ID})
	if err != nil {
		t.Fatalf("link_subnet AUTO: %v", err)
	}
	if diff := cmp.Diff([]linkView{{"static", "10.100.0.10", "10.100.0.0/24"}}, links(*vif)); diff != "" {
		t.Errorf("bond0.100 links (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]linkView{{"auto", "", "198.18.0.0/24"}}, links(*bond)); diff != "" {
		t.Errorf("bond0 links before deploying (-want +got):\n%s", diff)
	}

	if _, err := c.Machine.Deploy(sid, &entity.MachineDeployParams{DistroSeries: "netimg"}); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	// The AUTO link got the first address of the smallest free range: .2 (.1 is the
	// gateway, the upper half the dynamic range).
	if diff := cmp.Diff([]linkView{{"auto", "198.18.0.2", "198.18.0.0/24"}}, links(l.iface(t, "bond0"))); diff != "" {
		t.Errorf("bond0 links once deploying (-want +got):\n%s", diff)
	}

	// The installer spec is curtincfg's rendering of the machine as the API shows it.
	creds, err := l.env.Region.NodeToken(sid)
	if err != nil {
		t.Fatal(err)
	}
	n := &nodeAgent{t: t, creds: creds, metadataURL: l.env.Server.URL + "/MAAS/metadata/curtin"}
	var spec curtincfg.InstallerSpec
	if err := json.Unmarshal(n.mustGet("2012-03-01/"+fakemaas.InstallerRoute), &spec); err != nil {
		t.Fatal(err)
	}
	m, err := c.Machine.Get(sid)
	if err != nil {
		t.Fatal(err)
	}
	in := &curtincfg.Input{
		Machine: curtincfg.Machine{SystemID: sid, Hostname: "netnode", Domain: "maas", Arch: "amd64", Subarch: "generic",
			Firmware: "bios", BootInterface: "eth0"},
		Deployment: curtincfg.Deployment{OSystem: "custom", Series: "netimg", BaseImage: "ubuntu/noble",
			Image: curtincfg.Image{Filetype: "root-dd.gz", Filename: "root-dd.gz", FilenameOnDisk: sha(image)[:7], Subarch: "generic", Label: "uploaded"}},
		Storage:     curtincfg.Storage{Layout: "flat"},
		Credentials: curtincfg.Credentials{ConsumerKey: creds.ConsumerKey, TokenKey: creds.TokenKey, TokenSecret: creds.TokenSecret},
		URLs:        curtincfg.URLs{RackIP: "127.0.0.1"},
		Settings: curtincfg.Settings{MainArchive: "http://archive.ubuntu.com/ubuntu", PortsArchive: "http://ports.ubuntu.com/ubuntu-ports",
			SyslogPort: 5247, CommissioningOS: "ubuntu", CommissioningSeries: "noble", NTPServers: []string{"ntp.ubuntu.com"}},
	}
	for _, d := range m.BlockDeviceSet {
		in.Machine.BlockDevices = append(in.Machine.BlockDevices, curtincfg.BlockDevice{ID: d.ID, Name: d.Name, IDPath: d.IDPath,
			Model: d.Model, Serial: d.Serial, Size: d.Size, BlockSize: d.BlockSize})
	}
	in.Machine.Interfaces, in.Network.Subnets = apiNetworkInput(m.InterfaceSet)
	want, err := curtincfg.CurtinConfig(in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.InstallerSpec(), spec); diff != "" {
		t.Errorf("installer spec (-want +got):\n%s", diff)
	}
	netDoc, ok := want.Document("network")
	if !ok {
		t.Fatal("no network document")
	}

	// The v2 YAML has the bond, the VLAN, the addresses, routes and name servers.
	var doc struct {
		Network struct {
			Version   int                       `yaml:"version"`
			Ethernets map[string]map[string]any `yaml:"ethernets"`
			Bonds     map[string]map[string]any `yaml:"bonds"`
			VLANs     map[string]map[string]any `yaml:"vlans"`
		} `yaml:"network"`
	}
	if err := yaml.Unmarshal([]byte(netDoc.YAML), &doc); err != nil {
		t.Fatalf("network document: %v\n%s", err, netDoc.YAML)
	}
	if !strings.Contains(strings.Join(spec.Configs, "\n"), netDoc.YAML) {
		t.Errorf("the installer spec does not carry the network document")
	}
	nw := doc.Network
	b0, v100 := nw.Bonds["bond0"], nw.VLANs["bond0.100"]
	checks := []struct {
		what string
		got  any
		want any
	}{
		{"version", nw.Version, 2},
		{"ethernets", len(nw.Ethernets), 2},
		{"eth0 mtu (the bond's)", nw.Ethernets["eth0"]["mtu"], 9000},
		{"bond interfaces", b0["interfaces"], []any{"eth0", "eth1"}},
		{"bond mac", b0["macaddress"], netMAC0},
		{"bond parameters", b0["parameters"], map[string]any{"mode": "802.3ad", "mii-monitor-interval": 100, "down-delay": 0,
			"up-delay": 0, "lacp-rate": "fast", "transmit-hash-policy": "layer3+4"}},
		{"bond address", b0["addresses"], []any{"198.18.0.2/24"}},
		{"bond gateway", b0["gateway4"], "198.18.0.1"},
		{"bond name servers", b0["nameservers"], map[string]any{"addresses": []any{"198.18.0.1"}, "search": []any{"maas"}}},
		{"vlan id", v100["id"], 100},
		{"vlan link", v100["link"], "bond0"},
		{"vlan mtu", v100["mtu"], 9000},
		{"vlan address", v100["addresses"], []any{"10.100.0.10/24"}},
		{"vlan name servers", v100["nameservers"], map[string]any{"addresses": []any{"10.100.0.53"}, "search": []any{"maas"}}},
		{"vlan routes (source routing)", v100["routes"], []any{map[string]any{"to": "0.0.0.0/0", "via": "10.100.0.1", "table": 1}}},
		{"vlan routing policy", v100["routing-policy"], []any{
			map[string]any{"from": "10.100.0.0/24", "table": 1, "priority": 1000},
			map[string]any{"from": "10.100.0.0/24", "to": "10.100.0.0/24", "table": 254}}},
	}
	for _, ck := range checks {
		if diff := cmp.Diff(ck.want, ck.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s\n%s", ck.what, diff, netDoc.YAML)
		}
	}

	// The subnet lists the claimed address; release frees it, the static one stays.
	addrs := func(subnet int) []string {
		ips, err := c.Subnet.GetIPAddresses(subnet)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range ips {
			out = append(out, a.IP.String()+" "+a.NodeSummary.Hostname+" "+a.NodeSummary.Via)
		}
		return out
	}
	if diff := cmp.Diff([]string{"198.18.0.2 netnode bond0"}, addrs(l.lab.ID)); diff != "" {
		t.Errorf("lab subnet addresses (-want +got):\n%s", diff)
	}
	if _, err := c.Machine.Release(sid, &entity.MachineReleaseParams{}); err != nil {
		t.Fatalf("release: %v", err)
	}
	if diff := cmp.Diff([]linkView{{"auto", "", "198.18.0.0/24"}}, links(l.iface(t, "bond0"))); diff != "" {
		t.Errorf("bond0 links after release (-want +got):\n%s", diff)
	}
	if got := addrs(l.lab.ID); got != nil {
		t.Errorf("lab subnet addresses after release = %v, want none", got)
	}
	if diff := cmp.Diff([]string{"10.100.0.10 netnode bond0.100"}, addrs(l.storage.ID)); diff != "" {
		t.Errorf("storage subnet addresses after release (-want +got):\n%s", diff)
	}
}

// apiNetworkInput maps the interfaces the API shows onto curtincfg's input: an
// independent reading of the records the region maps in input.go.
func apiNetworkInput(ifaces []entity.NetworkInterface) ([]curtincfg.Interface, []curtincfg.Subnet) {
	var out []curtincfg.Interface
	var subnets []curtincfg.Subnet
	seen := map[int]bool{}
	for _, i := range ifaces {
		ci := curtincfg.Interface{ID: i.ID, Type: i.Type, Name: i.Name, MAC: i.MACAddress, MTU: i.VLAN.MTU,
			Parents: i.Parents, Disconnected: i.VLAN.ID == 0, Disabled: !i.Enabled}
		if i.Type == "vlan" {
			ci.VID = i.VLAN.VID
		}
		if p, ok := i.Params.(map[string]any); ok && len(p) > 0 {
			ci.Params = p
		}
		for _, l := range i.Links {
			ci.Links = append(ci.Links, curtincfg.Link{Mode: l.Mode, Subnet: l.Subnet.CIDR, IP: l.IPAddress})
			if s := l.Subnet; s.ID != 0 && !seen[s.ID] {
				seen[s.ID] = true
				cs := curtincfg.Subnet{CIDR: s.CIDR, DisallowDNS: !s.AllowDNS, Managed: s.VLAN.DHCPOn}
				if s.GatewayIP != nil {
					cs.Gateway = s.GatewayIP.String()
				}
				for _, d := range s.DNSServers {
					cs.DNSServers = append(cs.DNSServers, d.String())
				}
				subnets = append(subnets, cs)
			}
		}
		out = append(out, ci)
	}
	return out, subnets
}

// netSnapshot is everything a refused network request must leave unchanged.
func netSnapshot(t *testing.T, env *regiontest.Env) string {
	t.Helper()
	var b strings.Builder
	for _, p := range []string{"subnets/", "ipranges/", "fabrics/", "machines/"} {
		r := call(t, env, env.APIKey, http.MethodGet, "/MAAS/api/2.0/"+p, nil, false)
		b.WriteString(p + " " + r.Body + "\n")
	}
	return b.String()
}

// TestNetworkValidation sends each kind of bad network request and checks MAAS's status
// and message, and that nothing changed.
func TestNetworkValidation(t *testing.T) {
	l := newNetLab(t)
	env, c, sid := l.env, l.c, l.sid
	eth0, eth1 := l.iface(t, "eth0"), l.iface(t, "eth1")
	bond, err := c.NetworkInterfaces.CreateBond(sid, &entity.NetworkInterfaceBondParams{Name: "bond0", Parents: []int{eth0.ID, eth1.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if bond, err = c.NetworkInterface.LinkSubnet(sid, bond.ID, &entity.NetworkInterfaceLinkParams{Mode: "AUTO", Subnet: l.lab.ID}); err != nil {
		t.Fatal(err)
	}
	vif, err := c.NetworkInterfaces.CreateVLAN(sid, &entity.NetworkInterfaceVLANParams{Parents: []int{bond.ID}, VLAN: l.vlan100.ID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.NetworkInterface.LinkSubnet(sid, vif.ID, &entity.NetworkInterfaceLinkParams{Mode: "STATIC", Subnet: l.storage.ID, IPAddress: "10.100.0.10"}); err != nil {
		t.Fatal(err)
	}
	eth2, err := c.NetworkInterfaces.CreatePhysical(sid, &entity.NetworkInterfacePhysicalParams{Name: "eth2", MACAddress: "52:54:00:aa:00:03", VLAN: l.vlan100.ID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.NetworkInterface.LinkSubnet(sid, eth2.ID, &entity.NetworkInterfaceLinkParams{Mode: "DHCP", Subnet: l.storage.ID}); err != nil {
		t.Fatal(err)
	}
	eth3, err := c.NetworkInterfaces.CreatePhysical(sid, &entity.NetworkInterfacePhysicalParams{Name: "eth3", MACAddress: "52:54:00:aa:00:04"})
	if err != nil {
		t.Fatal(err)
	}
	// A subnet with DHCP on, served by the rack, on VLAN 200.
	dhcpSubnet, err := env.Region.EnsureSubnet(t.Context(), fakemaas.SubnetSpec{CIDR: mustPrefix("192.0.2.0/24"), VID: 200,
		RackIP: mustAddr("192.0.2.1"), Gateway: mustAddr("192.0.2.1"), DynamicStart: mustAddr("192.0.2.100"), DynamicEnd: mustAddr("192.0.2.200")})
	if err != nil {
		t.Fatal(err)
	}
	// A full subnet: a machine with an AUTO link on it cannot deploy.
	v300, err := c.VLANs.Create(0, &entity.VLANParams{VID: 300})
	if err != nil {
		t.Fatal(err)
	}
	full, err := c.Subnets.Create(&entity.SubnetParams{CIDR: "203.0.113.0/29", VLAN: strconv.Itoa(v300.ID), GatewayIP: "203.0.113.1", Managed: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.IPRanges.Create(&entity.IPRangeParams{Type: "dynamic", Subnet: strconv.Itoa(full.ID), StartIP: "203.0.113.2", EndIP: "203.0.113.6"}); err != nil {
		t.Fatal(err)
	}
	m3, err := c.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: "fullnode", PowerType: "test",
		MACAddresses: []string{"52:54:00:bb:00:01"}}, map[string]any{"commission": "false"})
	if err != nil {
		t.Fatal(err)
	}
	m3eth0 := m3.InterfaceSet[0]
	if _, err := c.NetworkInterface.LinkSubnet(m3.SystemID, m3eth0.ID, &entity.NetworkInterfaceLinkParams{Mode: "AUTO", Subnet: full.ID, Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.BlockDevices.Create(m3.SystemID, &entity.BlockDeviceParams{Name: "sda", Model: "M", Serial: "S3", Size: 8 << 30, BlockSize: 512}); err != nil {
		t.Fatal(err)
	}
	if _, err := regiontest.UploadCustomImage(c, "img", "amd64/generic", "tgz", "ubuntu/noble", []byte("tarball")); err != nil {
		t.Fatal(err)
	}
	deployed, err := c.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: "deployednode",
		MACAddresses: []string{"52:54:00:cc:00:01"}}, map[string]any{"deployed": "true"})
	if err != nil {
		t.Fatal(err)
	}
	bond = ptr(l.iface(t, "bond0"))
	autoLink := bond.Links[0].ID

	const (
		js   = "application/json"
		text = "text/plain"
	)
	S, IR, F := "/MAAS/api/2.0/subnets/", "/MAAS/api/2.0/ipranges/", "/MAAS/api/2.0/fabrics/"
	I := "/MAAS/api/2.0/nodes/" + sid + "/interfaces/"
	id := strconv.Itoa
	lab, storage := id(l.lab.ID), id(l.storage.ID)
	rng := func(typ, subnet, start, end string) url.Values {
		v := url.Values{"start_ip": {start}, "end_ip": {end}}
		if typ != "" {
			v.Set("type", typ)
		}
		if subnet != "" {
			v.Set("subnet", subnet)
		}
		return v
	}
	both := func(msg string) string { return `{"end_ip": ["` + msg + `"], "start_ip": ["` + msg + `"]}` }
	stateMsg := func(op string) string {
		return "Cannot " + op + " interface because the machine is not New, Ready, Allocated, or Broken."
	}
	cases := []struct {
		name   string
		method string
		path   string
		form   url.Values
		want   apiResult
	}{
		// Subnets.
		{"subnet without a CIDR", "POST", S, url.Values{"name": {"x"}}, apiResult{400, js, `{"cidr": ["This field is required."]}`}},
		{"subnet with a bad CIDR", "POST", S, url.Values{"cidr": {"10.0.0.0/abc"}}, apiResult{400, js, `{"cidr": ["Required format: <network>/<prefixlen>."]}`}},
		{"subnet of prefix length 0", "POST", S, url.Values{"cidr": {"0.0.0.0/0"}}, apiResult{400, js, `{"cidr": ["Prefix length must be greater than 0."]}`}},
		{"gateway outside the subnet", "POST", S, url.Values{"cidr": {"192.0.3.0/24"}, "gateway_ip": {"10.0.0.1"}}, apiResult{400, js, `{"gateway_ip": ["Gateway IP must be within CIDR range."]}`}},
		{"gateway not an address", "POST", S, url.Values{"cidr": {"192.0.3.0/24"}, "gateway_ip": {"gw"}}, apiResult{400, js, `{"gateway_ip": ["Enter a valid IPv4 or IPv6 address."]}`}},
		{"overlapping subnet", "POST", S, url.Values{"cidr": {"198.18.0.0/25"}}, apiResult{400, js, `{"__all__": ["Subnet 198.18.0.0/25 would overlap with existing subnets."]}`}},
		{"duplicate subnet", "POST", S, url.Values{"cidr": {"198.18.0.0/24"}}, apiResult{400, js, `{"__all__": ["Subnet 198.18.0.0/24 would overlap with existing subnets."], "cidr": ["Subnet with this Cidr already exists."]}`}},
		{"bad DNS server", "POST", S, url.Values{"cidr": {"192.0.3.0/24"}, "dns_servers": {"192.0.3.1 bogus"}}, apiResult{400, js, `{"dns_servers": ["Invalid IP address: bogus; provide a list of space-separated IP addresses"]}`}},
		{"subnet with a space", "POST", S, url.Values{"cidr": {"192.0.3.0/24"}, "space": {"s1"}}, apiResult{400, js, `{"space": ["Spaces may no longer be set on subnets. Set the space on the underlying VLAN."]}`}},
		{"subnet on an unknown VLAN", "POST", S, url.Values{"cidr": {"192.0.3.0/24"}, "vlan": {"999"}}, apiResult{400, js, `{"vlan": ["Select a valid choice. That choice is not one of the available choices."]}`}},
		{"subnet on an unknown VID", "POST", S, url.Values{"cidr": {"192.0.3.0/24"}, "vid": {"301"}}, apiResult{400, js, `{"vid": ["No VLAN with vid 301 in default fabric."]}`}},
		{"bad rdns_mode", "POST", S, url.Values{"cidr": {"192.0.3.0/24"}, "rdns_mode": {"7"}}, apiResult{400, js, `{"rdns_mode": ["Select a valid choice. 7 is not one of the available choices."]}`}},
		{"unknown boot architecture", "POST", S, url.Values{"cidr": {"192.0.3.0/24"}, "disabled_boot_architectures": {"pxe,floppy"}}, apiResult{400, js, `{"disabled_boot_architectures": ["Unknown boot architecture floppy"]}`}},
		{"update with a gateway outside", "PUT", S + lab + "/", url.Values{"gateway_ip": {"10.0.0.1"}}, apiResult{400, js, `{"gateway_ip": ["Gateway IP must be within CIDR range."]}`}},
		{"delete a subnet in use", "DELETE", S + storage + "/", nil, apiResult{400, text, "Cannot delete a subnet that has IP addresses in use by nodes. (Use the 'force' parameter to override.)"}},
		{"delete a subnet serving DHCP", "DELETE", S + id(dhcpSubnet) + "/", nil, apiResult{400, text, "Cannot delete a subnet that is actively servicing a dynamic IP range. (Delete the dynamic range or disable DHCP first.)"}},
		{"unknown subnet", "GET", S + "999/", nil, apiResult{404, text, "No Subnet matches the given query."}},
		// IP ranges.
		{"range without a type", "POST", IR, rng("", lab, "198.18.0.10", "198.18.0.20"), apiResult{400, js, `{"type": ["This field is required."]}`}},
		{"range of a bad type", "POST", IR, rng("static", lab, "198.18.0.10", "198.18.0.20"), apiResult{400, js, `{"type": ["Select a valid choice. static is not one of the available choices."]}`}},
		{"range without a start", "POST", IR, url.Values{"type": {"reserved"}, "subnet": {lab}, "end_ip": {"198.18.0.20"}}, apiResult{400, js, `{"start_ip": ["This field is required."]}`}},
		{"range with a bad end", "POST", IR, rng("reserved", lab, "198.18.0.10", "x"), apiResult{400, js, `{"end_ip": ["Enter a valid IPv4 or IPv6 address."]}`}},
		{"range ending before it starts", "POST", IR, rng("reserved", lab, "198.18.0.20", "198.18.0.10"), apiResult{400, js, `{"end_ip": ["End IP address must not be less than Start IP address."]}`}},
		{"range of two families", "POST", IR, rng("reserved", lab, "198.18.0.10", "2001:db8::1"), apiResult{400, js, both("Start IP address and end IP address must be in the same address family.")}},
		{"range outside the subnet", "POST", IR, rng("reserved", lab, "10.0.0.1", "10.0.0.5"), apiResult{400, js, both("IP addresses must be within subnet: 198.18.0.0/24.")}},
		{"range starting outside the subnet", "POST", IR, rng("reserved", lab, "10.0.0.1", "198.18.0.20"), apiResult{400, js, `{"start_ip": ["Start IP address must be within subnet: 198.18.0.0/24."]}`}},
		{"range with the network address", "POST", IR, rng("reserved", lab, "198.18.0.0", "198.18.0.20"), apiResult{400, js, `{"start_ip": ["Reserved network address cannot be included in IP range."]}`}},
		{"range with the broadcast address", "POST", IR, rng("reserved", lab, "198.18.0.10", "198.18.0.255"), apiResult{400, js, `{"end_ip": ["Broadcast address cannot be included in IP range."]}`}},
		{"dynamic range over the dynamic range", "POST", IR, rng("dynamic", lab, "198.18.0.100", "198.18.0.150"), apiResult{400, js, both("Requested dynamic range conflicts with an existing IP address or range.")}},
		{"reserved range over the dynamic range", "POST", IR, rng("reserved", lab, "198.18.0.120", "198.18.0.130"), apiResult{400, js, both("Requested reserved range conflicts with an existing range.")}},
		{"dynamic range over the gateway", "POST", IR, rng("dynamic", lab, "198.18.0.1", "198.18.0.5"), apiResult{400, js, both("Requested dynamic range conflicts with an existing IP address or range.")}},
		{"dynamic range over a static address", "POST", IR, rng("dynamic", storage, "10.100.0.5", "10.100.0.20"), apiResult{400, js, both("Requested dynamic range conflicts with an existing IP address or range.")}},
		{"range on an unknown subnet", "POST", IR, rng("reserved", "999", "198.18.0.10", "198.18.0.20"), apiResult{400, js, `{"subnet": ["Select a valid choice. That choice is not one of the available choices."]}`}},
		{"range in no subnet", "POST", IR, rng("reserved", "", "100.64.0.10", "100.64.0.20"), apiResult{400, js, `{"subnet": ["This field is required."]}`}},
		{"range update over the gateway", "PUT", IR + id(l.dynamic.ID) + "/", url.Values{"start_ip": {"198.18.0.1"}}, apiResult{400, js, both("Requested dynamic range conflicts with an existing IP address or range.")}},
		{"unknown range", "GET", IR + "999/", nil, apiResult{404, text, "No IPRange matches the given query."}},
		// VLANs and fabrics.
		{"VLAN without a VID", "POST", F + "0/vlans/", url.Values{"name": {"v"}}, apiResult{400, js, `{"vid": ["This field is required."]}`}},
		{"VLAN with a VID out of range", "POST", F + "0/vlans/", url.Values{"vid": {"5000"}}, apiResult{400, js, `{"vid": ["VID must be between 0 and 4094."]}`}},
		{"duplicate VLAN", "POST", F + "0/vlans/", url.Values{"vid": {"100"}}, apiResult{400, js, `{"__all__": ["A VLAN with the specified VID already exists in the destination fabric."]}`}},
		{"VLAN with a small MTU", "POST", F + "0/vlans/", url.Values{"vid": {"101"}, "mtu": {"100"}}, apiResult{400, js, `{"mtu": ["Ensure this value is greater than or equal to 552."]}`}},
		{"DHCP without a dynamic range", "PUT", F + "0/vlans/100/", url.Values{"dhcp_on": {"true"}}, apiResult{400, js, `{"dhcp_on": ["dhcp can only be turned on when a dynamic IP range is defined."]}`}},
		{"DHCP without a primary rack", "PUT", F + "0/vlans/0/", url.Values{"dhcp_on": {"true"}}, apiResult{400, js, `{"__all__": ["dhcp can only be turned on when a primary rack controller is set."]}`}},
		{"unknown primary rack", "PUT", F + "0/vlans/0/", url.Values{"primary_rack": {"nope"}}, apiResult{400, js, `{"primary_rack": ["Select a valid choice. nope is not one of the available choices."]}`}},
		{"delete the default VLAN", "DELETE", F + "0/vlans/0/", nil, apiResult{400, text, "This VLAN is the default VLAN in the fabric, it cannot be deleted."}},
		{"unknown VLAN", "GET", F + "0/vlans/999/", nil, apiResult{404, text, "No VLAN matches the given query."}},
		{"reserved fabric name", "POST", F, url.Values{"name": {"fabric-9"}}, apiResult{400, js, `{"name": ["Reserved fabric name."]}`}},
		{"bad fabric name", "POST", F, url.Values{"name": {"bad name"}}, apiResult{400, js, `{"name": ["Invalid fabric name: bad name."]}`}},
		{"delete the default fabric", "DELETE", F + "0/", nil, apiResult{400, text, "This fabric is the default fabric, it cannot be deleted."}},
		// Interfaces.
		{"bond without parents", "POST", I + "?op=create_bond", url.Values{"name": {"bond1"}}, apiResult{400, js, `{"parents": ["A bond interface must have one or more parents."]}`}},
		{"bond of an unknown interface", "POST", I + "?op=create_bond", url.Values{"name": {"bond1"}, "parents": {"999"}}, apiResult{400, js, `{"parents": ["Select a valid choice. 999 is not one of the available choices."]}`}},
		{"bond without a name", "POST", I + "?op=create_bond", url.Values{"parents": {id(eth3.ID)}}, apiResult{400, js, `{"name": ["This field is required."]}`}},
		{"bond with a bad mode", "POST", I + "?op=create_bond", url.Values{"name": {"bond1"}, "parents": {id(eth3.ID)}, "bond_mode": {"fast"}},
			apiResult{400, js, `{"bond_mode": ["'fast' is not a valid bond_mode.  It should be one of: 'balance-rr', 'active-backup', 'balance-xor', 'broadcast', '802.3ad', 'balance-tlb', 'balance-alb'."]}`}},
		{"bond_num_grat_arp too large", "POST", I + "?op=create_bond", url.Values{"name": {"bond1"}, "parents": {id(eth3.ID)}, "bond_num_grat_arp": {"300"}},
			apiResult{400, js, `{"bond_num_grat_arp": ["Ensure this value is less than or equal to 255."]}`}},
		{"parent already bonded", "POST", I + "?op=create_bond", url.Values{"name": {"bond1"}, "parents": {id(eth0.ID)}}, apiResult{400, js, `{"parents": ["Interfaces already in-use: eth0."]}`}},
		{"parents on different VLANs", "POST", I + "?op=create_bond", url.Values{"name": {"bond1"}, "parents": {id(eth2.ID), id(eth3.ID)}}, apiResult{400, js, `{"parents": ["All parents must belong to the same VLAN."]}`}},
		{"bond of a VLAN interface", "POST", I + "?op=create_bond", url.Values{"name": {"bond1"}, "parents": {id(vif.ID)}}, apiResult{400, js, `{"parents": ["Only physical interfaces can be bonded."]}`}},
		{"bond with a name in use", "POST", I + "?op=create_bond", url.Values{"name": {"bond0"}, "parents": {id(eth3.ID)}}, apiResult{400, js, `{"__all__": ["Interface with this Node config and Name already exists."]}`}},
		{"VLAN interface without a VLAN", "POST", I + "?op=create_vlan", url.Values{"parent": {id(bond.ID)}}, apiResult{400, js, `{"vlan": ["A VLAN interface must be connected to a tagged VLAN."]}`}},
		{"VLAN interface on the untagged VLAN", "POST", I + "?op=create_vlan", url.Values{"parent": {id(bond.ID)}, "vlan": {id(bond.VLAN.ID)}}, apiResult{400, js, `{"vlan": ["A VLAN interface can only belong to a tagged VLAN."]}`}},
		{"VLAN interface on a bonded NIC", "POST", I + "?op=create_vlan", url.Values{"parent": {id(eth0.ID)}, "vlan": {id(l.vlan100.ID)}}, apiResult{400, js, `{"parent": ["A VLAN interface can't have a parent that is already in a bond."]}`}},
		{"VLAN interface twice", "POST", I + "?op=create_vlan", url.Values{"parent": {id(bond.ID)}, "vlan": {id(l.vlan100.ID)}}, apiResult{400, js, `{"name": ["Node ` + sid + ` (netnode) already has an interface named 'bond0.100'."]}`}},
		{"VLAN interface with two parents", "POST", I + "?op=create_vlan", url.Values{"parents": {id(eth2.ID), id(eth3.ID)}, "vlan": {id(l.vlan100.ID)}}, apiResult{400, js, `{"parent": ["A VLAN interface must have exactly one parent."]}`}},
		{"bridge on a bonded NIC", "POST", I + "?op=create_bridge", url.Values{"name": {"br0"}, "parent": {id(eth0.ID)}}, apiResult{400, js, `{"parent": ["A bridge interface can't have a parent that is already in a bond or a bridge."]}`}},
		{"bridge with a bad type", "POST", I + "?op=create_bridge", url.Values{"name": {"br0"}, "parent": {id(eth3.ID)}, "bridge_type": {"linux"}}, apiResult{400, js, `{"bridge_type": ["'linux' is not a valid bridge_type.  It should be one of: 'standard', 'ovs'."]}`}},
		{"NIC with a MAC in use", "POST", I + "?op=create_physical", url.Values{"mac_address": {netMAC0}}, apiResult{400, js, `{"mac_address": ["This MAC address is already in use by eth0 (physical) on netnode."]}`}},
		{"NIC with a bad name", "POST", I + "?op=create_physical", url.Values{"mac_address": {"52:54:00:aa:00:09"}, "name": {"a-name-longer-than-15"}},
			apiResult{400, js, `{"name": ["The interface name must be 1 to 15 characters long and can only contain alphanumeric characters, hyphens ('-'), underscores ('_'), periods ('.'), and colons (':')."]}`}},
		{"interface on an unknown VLAN", "PUT", I + id(eth3.ID) + "/", url.Values{"vlan": {"999"}}, apiResult{400, js, `{"vlan": ["Select a valid choice. That choice is not one of the available choices."]}`}},
		{"static address outside the subnet", "POST", I + id(vif.ID) + "/?op=link_subnet", url.Values{"mode": {"STATIC"}, "subnet": {storage}, "ip_address": {"198.18.0.5"}},
			apiResult{400, js, `{"ip_address": ["IP address is not in the given subnet '10.100.0.0/24:10.100.0.0/24(vid=100)'."]}`}},
		{"static address in the dynamic range", "POST", I + id(bond.ID) + "/?op=link_subnet", url.Values{"mode": {"STATIC"}, "subnet": {lab}, "ip_address": {"198.18.0.200"}},
			apiResult{400, js, `{"ip_address": ["IP address is inside a dynamic range 198.18.0.128 to 198.18.0.254."]}`}},
		{"static address in use", "POST", I + id(vif.ID) + "/?op=link_subnet", url.Values{"mode": {"STATIC"}, "subnet": {storage}, "ip_address": {"10.100.0.10"}},
			apiResult{404, text, "IP address is already in use."}},
		{"static address not an address", "POST", I + id(vif.ID) + "/?op=link_subnet", url.Values{"mode": {"STATIC"}, "subnet": {storage}, "ip_address": {"10.100.0.300"}},
			apiResult{400, js, `{"ip_address": ["Enter a valid IPv4 or IPv6 address."]}`}},
		{"link without a mode", "POST", I + id(bond.ID) + "/?op=link_subnet", url.Values{"subnet": {lab}}, apiResult{400, js, `{"mode": ["This field is required."]}`}},
		{"link with a bad mode", "POST", I + id(bond.ID) + "/?op=link_subnet", url.Values{"mode": {"bogus"}}, apiResult{400, js, `{"mode": ["'bogus' is not a valid mode.  It should be one of: 'auto', 'dhcp', 'static', 'link_up'."]}`}},
		{"AUTO without a subnet", "POST", I + id(bond.ID) + "/?op=link_subnet", url.Values{"mode": {"AUTO"}}, apiResult{400, js, `{"subnet": ["This field is required."]}`}},
		{"subnet of another VLAN", "POST", I + id(bond.ID) + "/?op=link_subnet", url.Values{"mode": {"AUTO"}, "subnet": {storage}},
			apiResult{400, js, `{"subnet": ["None found with id=` + storage + `.", "This field is required."]}`}},
		{"link a bonded NIC", "POST", I + id(eth0.ID) + "/?op=link_subnet", url.Values{"mode": {"AUTO"}, "subnet": {lab}}, apiResult{400, js, `{"bond": ["Cannot link interface(eth0) when interface is in a bond(bond0)."]}`}},
		{"DHCP twice", "POST", I + id(eth2.ID) + "/?op=link_subnet", url.Values{"mode": {"DHCP"}}, apiResult{400, js, `{"mode": ["Interface is already set to DHCP from '10.100.0.0/24:10.100.0.0/24(vid=100)'."]}`}},
		{"LINK_UP over other links", "POST", I + id(bond.ID) + "/?op=link_subnet", url.Values{"mode": {"LINK_UP"}},
			apiResult{400, js, `{"mode": ["Cannot configure interface to link up (with no IP address) while other links are already configured. Specify force=True to override this behavior and delete all links."]}`}},
		{"default gateway with DHCP", "POST", I + id(eth3.ID) + "/?op=link_subnet", url.Values{"mode": {"DHCP"}, "default_gateway": {"true"}}, apiResult{400, js, `{"default_gateway": ["Cannot use in mode 'dhcp'."]}`}},
		{"unlink an unknown link", "POST", I + id(bond.ID) + "/?op=unlink_subnet", url.Values{"id": {"999"}}, apiResult{400, js, `{"id": ["'999' is not a valid id.  It should be one of: '` + id(autoLink) + `'."]}`}},
		{"unknown interface", "GET", I + "999/", nil, apiResult{404, text, "No Interface matches the given query."}},
		{"link on a deployed machine", "POST", "/MAAS/api/2.0/nodes/" + deployed.SystemID + "/interfaces/" + id(deployed.InterfaceSet[0].ID) + "/?op=link_subnet",
			url.Values{"mode": {"DHCP"}}, apiResult{409, text, stateMsg("link subnet")}},
		{"bond on a deployed machine", "POST", "/MAAS/api/2.0/nodes/" + deployed.SystemID + "/interfaces/?op=create_bond",
			url.Values{"name": {"bond0"}, "parents": {id(deployed.InterfaceSet[0].ID)}}, apiResult{409, text, stateMsg("create bond")}},
		{"delete on a deployed machine", "DELETE", "/MAAS/api/2.0/nodes/" + deployed.SystemID + "/interfaces/" + id(deployed.InterfaceSet[0].ID) + "/",
			nil, apiResult{409, text, stateMsg("delete interface")}},
		// Deploying with an AUTO link on a full subnet.
		{"deploy without a free address", "POST", "/MAAS/api/2.0/machines/" + m3.SystemID + "/?op=deploy", url.Values{"distro_series": {"img"}},
			apiResult{503, text, "No more IPs available in subnet: 203.0.113.0/29."}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := netSnapshot(t, env)
			if diff := cmp.Diff(tc.want, call(t, env, env.APIKey, tc.method, tc.path, tc.form, false)); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
			if after := netSnapshot(t, env); after != before {
				t.Errorf("state changed:\n%s", cmp.Diff(before, after))
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }

// TestCommissionedNetworking commissions a machine whose boot NIC was seen on a subnet
// the region knows: as MAAS does at the end of commissioning, the boot interface gets an
// AUTO link on that subnet and the disconnected NIC is on no VLAN.
func TestCommissionedNetworking(t *testing.T) {
	env := regiontest.Start(t)
	env.ImportDefaultStream(t)
	rack := env.StartRack(t)
	lab := ensureLab(t, env)
	const mac = "52:54:00:12:34:57"
	m, err := env.Client.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: "comm", PowerType: "test",
		MACAddresses: []string{mac}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	commissionNode(t, env, rack, mac, hardware(mac))
	ifaces, err := env.Client.NetworkInterfaces.Get(m.SystemID)
	if err != nil {
		t.Fatal(err)
	}
	type view struct {
		Name       string
		VID        int
		Connected  bool
		Links      []linkView
		Discovered []string
	}
	var got []view
	for _, i := range ifaces {
		v := view{Name: i.Name, VID: -1, Connected: i.LinkConnected, Links: links(i)}
		if i.VLAN.ID != 0 {
			v.VID = i.VLAN.VID
		}
		for _, d := range i.Discovered {
			v.Discovered = append(v.Discovered, d.IPAddress+" "+strconv.Itoa(d.Subnet.ID))
		}
		got = append(got, v)
	}
	want := []view{
		{Name: "ens3", VID: 0, Connected: true, Links: []linkView{{"auto", "", "198.18.0.0/24"}}, Discovered: []string{"198.18.0.50 " + strconv.Itoa(lab)}},
		{Name: "ens4", VID: -1, Connected: false},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("commissioned interfaces (-want +got):\n%s", diff)
	}
}

// TestAcquiredBridge creates a bridge on an allocated machine: the parent's links move to
// the bridge, which goes at release, its links back on the parent.
func TestAcquiredBridge(t *testing.T) {
	env := regiontest.Start(t)
	env.ImportDefaultStream(t)
	ensureLab(t, env)
	c := env.Client
	m := readyWithDisk(t, env, "bridged", "52:54:00:f0:00:01")
	if _, err := c.Machines.Allocate(&entity.MachineAllocateParams{SystemID: m.SystemID}); err != nil {
		t.Fatal(err)
	}
	br, err := c.NetworkInterfaces.CreateBridge(m.SystemID, &entity.NetworkInterfaceBridgeParams{Name: "br0",
		Parents: []int{m.InterfaceSet[0].ID}, BridgeSTP: true})
	if err != nil {
		t.Fatalf("create_bridge: %v", err)
	}
	if diff := cmp.Diff(map[string]any{"bridge_type": "standard", "bridge_stp": true, "bridge_fd": 15.0}, br.Params); diff != "" {
		t.Errorf("bridge params (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]linkView{{"auto", "", "198.18.0.0/24"}}, links(*br)); diff != "" {
		t.Errorf("bridge links (-want +got):\n%s", diff)
	}
	ifaces := func() []string {
		list, err := c.NetworkInterfaces.Get(m.SystemID)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, i := range list {
			out = append(out, fmt.Sprintf("%s %s %v", i.Name, i.Type, links(i)))
		}
		return out
	}
	if diff := cmp.Diff([]string{"eth0 physical []", "br0 bridge [{auto  198.18.0.0/24}]"}, ifaces()); diff != "" {
		t.Errorf("interfaces with the bridge (-want +got):\n%s", diff)
	}
	if _, err := c.Machine.Release(m.SystemID, &entity.MachineReleaseParams{}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"eth0 physical [{auto  198.18.0.0/24}]"}, ifaces()); diff != "" {
		t.Errorf("interfaces after release (-want +got):\n%s", diff)
	}
}

// TestInterfaceUpdate changes interfaces through PUT and disconnect: bond parameters
// change in place, a new VLAN drops the links (LINK_UP on the new one), disconnect leaves
// the interface on no VLAN without links.
func TestInterfaceUpdate(t *testing.T) {
	l := newNetLab(t)
	c, sid := l.c, l.sid
	eth0, eth1 := l.iface(t, "eth0"), l.iface(t, "eth1")
	bond, err := c.NetworkInterfaces.CreateBond(sid, &entity.NetworkInterfaceBondParams{Name: "bond0", Parents: []int{eth0.ID, eth1.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if bond.Params.(map[string]any)["bond_mode"] != "balance-rr" {
		t.Errorf("default bond mode = %v, want balance-rr (BOND_MODE_CHOICES[0])", bond.Params)
	}
	bond, err = c.NetworkInterface.Update(sid, bond.ID, &entity.NetworkInterfaceUpdateParams{BondMode: "active-backup", Name: "bond7"})
	if err != nil {
		t.Fatalf("update bond: %v", err)
	}
	if bond.Name != "bond7" || bond.Params.(map[string]any)["bond_mode"] != "active-backup" || bond.Params.(map[string]any)["bond_miimon"] != 100.0 {
		t.Errorf("updated bond = %q %v", bond.Name, bond.Params)
	}
	if _, err := c.NetworkInterface.LinkSubnet(sid, bond.ID, &entity.NetworkInterfaceLinkParams{Mode: "AUTO", Subnet: l.lab.ID}); err != nil {
		t.Fatal(err)
	}
	bond, err = c.NetworkInterface.Update(sid, bond.ID, &entity.NetworkInterfaceUpdateParams{VLAN: l.vlan100.ID})
	if err != nil {
		t.Fatalf("move the bond to VLAN 100: %v", err)
	}
	if diff := cmp.Diff([]linkView{{"link_up", "", ""}}, links(*bond)); diff != "" || bond.VLAN.VID != 100 || bond.EffectiveMTU != 9000 {
		t.Errorf("bond on VLAN 100: vid %d mtu %d links (-want +got):\n%s", bond.VLAN.VID, bond.EffectiveMTU, diff)
	}
	for _, p := range []string{"eth0", "eth1"} {
		if i := l.iface(t, p); i.VLAN.VID != 100 {
			t.Errorf("%s follows its bond: vid %d", p, i.VLAN.VID)
		}
	}
	bond, err = c.NetworkInterface.Disconnect(sid, bond.ID)
	if err != nil {
		t.Fatalf("disconnect: %v", err)
	}
	if bond.VLAN.ID != 0 || len(bond.Links) != 0 {
		t.Errorf("disconnected bond: vlan %+v links %v", bond.VLAN, bond.Links)
	}
	if i := l.iface(t, "eth1"); i.VLAN.ID != 0 {
		t.Errorf("eth1 stays on VLAN %d when its bond is disconnected", i.VLAN.VID)
	}
	if err := c.NetworkInterface.Delete(sid, bond.ID); err != nil {
		t.Fatalf("delete the bond: %v", err)
	}
	if i := l.iface(t, "eth0"); len(i.Children) != 0 {
		t.Errorf("eth0 children after deleting the bond = %v", i.Children)
	}
}
