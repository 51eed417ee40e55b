package fakemaas_test

import (
	"bytes"
	"encoding/json"
	"net/http"
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
