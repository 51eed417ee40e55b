package curtincfg

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/maasemu/maasemu/fakemaas/curtincfg/pyyaml"
)

// These cases rebuild machines of MAAS 3.7.3's src/maasserver/tests/
// test_preseed_network.py (TestNetplan, TestDHCPNetworkLayout) and expect the network
// dictionaries written there. MAAS's factory puts interfaces on a VLAN (so no
// "optional"), with MTU 1500, in the "maas" domain.

func netInput(ifaces []Interface, subnets []Subnet, routes []Route) *Input {
	in := baseInput()
	in.Machine.Interfaces = ifaces
	in.Network = Network{Subnets: subnets, Routes: routes}
	return in
}

func eth(name, mac string, links ...Link) Interface {
	return Interface{Type: IfacePhysical, Name: name, MAC: mac, Links: links}
}

func TestNetworkMatchesMAASTests(t *testing.T) {
	two := func() []Interface {
		return []Interface{eth("eth0", "00:01:02:03:04:05"), eth("eth1", "02:01:02:03:04:05")}
	}
	ethernets := `
    eth0: {match: {macaddress: "00:01:02:03:04:05"}, mtu: 1500, set-name: eth0}
    eth1: {match: {macaddress: "02:01:02:03:04:05"}, mtu: 1500, set-name: eth1}`
	routesSubnets := []Subnet{
		{CIDR: "10.0.0.0/24", Gateway: "10.0.0.1"},
		{CIDR: "10.0.1.0/24", Gateway: "10.0.1.1"},
		{CIDR: "192.168.0.0/24"},
	}
	routesIfaces := []Interface{
		eth("eth0", "00:01:02:03:04:05", Link{Mode: LinkStatic, Subnet: "10.0.0.0/24", IP: "10.0.0.4"}),
		eth("eth1", "02:01:02:03:04:05", Link{Mode: LinkStatic, Subnet: "10.0.1.0/24", IP: "10.0.1.4"}),
	}
	routes := []Route{
		{Source: "10.0.0.0/24", Destination: "192.168.0.0/24", Gateway: "10.0.0.3", Metric: 42},
		{Source: "10.0.1.0/24", Destination: "192.168.0.0/24", Gateway: "10.0.1.3", Metric: 43},
	}
	tests := []struct {
		name          string // the MAAS test
		in            func() *Input
		version       int
		sourceRouting bool
		want          string
	}{
		{
			name:    "test_single_ethernet_interface",
			in:      func() *Input { return netInput([]Interface{eth("eth0", "00:01:02:03:04:05")}, nil, nil) },
			version: 2,
			want:    "network: {version: 2, ethernets: {eth0: {match: {macaddress: '00:01:02:03:04:05'}, mtu: 1500, set-name: eth0}}}",
		},
		{
			name: "test_bond",
			in: func() *Input {
				return netInput(append(two(), Interface{Type: IfaceBond, Name: "bond0", MAC: "00:01:02:03:04:05", Parents: []string{"eth0", "eth1"}}), nil, nil)
			},
			version: 2,
			want: `
network:
  version: 2
  ethernets:` + ethernets + `
  bonds:
    bond0: {interfaces: [eth0, eth1], mtu: 1500, macaddress: "00:01:02:03:04:05"}`,
		},
		{
			name: "test_non_lacp_bond_with_params",
			in: func() *Input {
				return netInput(append(two(), Interface{Type: IfaceBond, Name: "bond0", MAC: "03:01:02:03:04:05", Parents: []string{"eth0", "eth1"},
					Params: map[string]any{"bond_mode": "active-backup", "bond_lacp_rate": "fast", "bond_xmit_hash_policy": "layer2", "bond_num_grat_arp": 3}}), nil, nil)
			},
			version: 2,
			want: `
network:
  version: 2
  ethernets:` + ethernets + `
  bonds:
    bond0:
      interfaces: [eth0, eth1]
      mtu: 1500
      parameters: {mode: active-backup, transmit-hash-policy: layer2, gratuitious-arp: 3}
      macaddress: "03:01:02:03:04:05"`,
		},
		{
			name: "test_lacp_bond_with_params",
			in: func() *Input {
				return netInput(append(two(), Interface{Type: IfaceBond, Name: "bond0", MAC: "03:01:02:03:04:05", Parents: []string{"eth0", "eth1"},
					Params: map[string]any{"bond_mode": "802.3ad", "bond_lacp_rate": "fast", "bond_xmit_hash_policy": "layer2", "bond_num_grat_arp": 3}}), nil, nil)
			},
			version: 2,
			want: `
network:
  version: 2
  ethernets:` + ethernets + `
  bonds:
    bond0:
      interfaces: [eth0, eth1]
      mtu: 1500
      parameters: {mode: 802.3ad, lacp-rate: fast, transmit-hash-policy: layer2}
      macaddress: "03:01:02:03:04:05"`,
		},
		{
			name: "test_bridge_standard_with_params",
			in: func() *Input {
				return netInput(append(two(), Interface{Type: IfaceBridge, Name: "br0", MAC: "04:01:02:03:04:05", Parents: []string{"eth0", "eth1"},
					Params: map[string]any{"bridge_type": "standard", "bridge_stp": false, "bridge_fd": 15}}), nil, nil)
			},
			version: 2,
			want: `
network:
  version: 2
  ethernets:` + ethernets + `
  bridges:
    br0: {interfaces: [eth0, eth1], mtu: 1500, macaddress: "04:01:02:03:04:05", parameters: {forward-delay: 15, stp: false}}`,
		},
		{
			name: "test_bridge_ovs_with_params",
			in: func() *Input {
				return netInput(append(two(), Interface{Type: IfaceBridge, Name: "br0", MAC: "04:01:02:03:04:05", Parents: []string{"eth0", "eth1"},
					Params: map[string]any{"bridge_type": "ovs", "bridge_stp": false, "bridge_fd": 15}}), nil, nil)
			},
			version: 2,
			want: `
network:
  version: 2
  ethernets:` + ethernets + `
  bridges:
    br0: {interfaces: [eth0, eth1], mtu: 1500, macaddress: "04:01:02:03:04:05", parameters: {forward-delay: 15, stp: false}, openvswitch: {}, optional: false}`,
		},
		{
			name: "test_bridged_bond",
			in: func() *Input {
				return netInput(append(two(),
					Interface{Type: IfaceBond, Name: "bond0", MAC: "00:01:02:03:04:05", Parents: []string{"eth0", "eth1"}},
					Interface{Type: IfaceBridge, Name: "br0", MAC: "00:01:02:03:04:05", Parents: []string{"bond0"}}), nil, nil)
			},
			version: 2,
			want: `
network:
  version: 2
  ethernets:` + ethernets + `
  bonds:
    bond0: {interfaces: [eth0, eth1], macaddress: "00:01:02:03:04:05", mtu: 1500}
  bridges:
    br0: {interfaces: [bond0], macaddress: "00:01:02:03:04:05", mtu: 1500}`,
		},
		{
			name: "test_multiple_ethernet_interfaces_with_routes (v2)",
			in: func() *Input {
				in := netInput(routesIfaces, routesSubnets, routes)
				in.Network.DefaultDNSServers = []string{"127.0.0.2"}
				return in
			},
			version: 2,
			want: `
network:
  version: 2
  ethernets:
    eth0:
      gateway4: 10.0.0.1
      match: {macaddress: "00:01:02:03:04:05"}
      mtu: 1500
      set-name: eth0
      addresses: [10.0.0.4/24]
      routes: [{to: 192.168.0.0/24, via: 10.0.0.3, metric: 42}]
      nameservers: {addresses: [127.0.0.2], search: [maas]}
    eth1:
      match: {macaddress: "02:01:02:03:04:05"}
      mtu: 1500
      set-name: eth1
      addresses: [10.0.1.4/24]
      routes: [{to: 192.168.0.0/24, via: 10.0.1.3, metric: 43}]
      nameservers: {addresses: [127.0.0.2], search: [maas]}`,
		},
		{
			name: "test_multiple_ethernet_interfaces_with_routes (source routing)",
			in: func() *Input {
				in := netInput(routesIfaces, routesSubnets, routes)
				in.Network.DefaultDNSServers = []string{"127.0.0.2"}
				return in
			},
			version: 2, sourceRouting: true,
			want: `
network:
  version: 2
  ethernets:
    eth0:
      gateway4: 10.0.0.1
      match: {macaddress: "00:01:02:03:04:05"}
      mtu: 1500
      set-name: eth0
      addresses: [10.0.0.4/24]
      routes: [{to: 192.168.0.0/24, via: 10.0.0.3, metric: 42}]
      nameservers: {addresses: [127.0.0.2], search: [maas]}
    eth1:
      match: {macaddress: "02:01:02:03:04:05"}
      mtu: 1500
      set-name: eth1
      addresses: [10.0.1.4/24]
      routes:
        - {to: 0.0.0.0/0, via: 10.0.1.1, table: 1}
        - {to: 192.168.0.0/24, via: 10.0.1.3, metric: 43, table: 1}
      routing-policy:
        - {from: 10.0.1.0/24, priority: 1000, table: 1}
        - {from: 10.0.1.0/24, table: 254, to: 10.0.1.0/24}
        - {from: 0.0.0.0/0, priority: 1000, table: 1, to: 192.168.0.0/24}
      nameservers: {addresses: [127.0.0.2], search: [maas]}`,
		},
		{
			name: "test_multiple_ethernet_interfaces_with_routes (v1)",
			in: func() *Input {
				in := netInput(routesIfaces, routesSubnets, routes)
				in.Network.DefaultDNSServers = []string{"127.0.0.2"}
				return in
			},
			version: 1,
			want: `
network:
  version: 1
  config:
    - id: eth0
      mac_address: "00:01:02:03:04:05"
      mtu: 1500
      name: eth0
      subnets:
        - {address: 10.0.0.4/24, gateway: 10.0.0.1, type: static, routes: [{destination: 192.168.0.0/24, gateway: 10.0.0.3, metric: 42}]}
      type: physical
    - id: eth1
      mac_address: "02:01:02:03:04:05"
      mtu: 1500
      name: eth1
      subnets:
        - {address: 10.0.1.4/24, type: static, routes: [{destination: 192.168.0.0/24, gateway: 10.0.1.3, metric: 43}]}
      type: physical
    - {address: [127.0.0.2], search: [maas], type: nameserver}`,
		},
		{
			name: "test_multiple_ethernet_interfaces_with_dns (v1)",
			in: func() *Input {
				in := netInput(routesIfaces, []Subnet{
					{CIDR: "10.0.0.0/24", Gateway: "10.0.0.1", DNSServers: []string{"10.0.0.2"}},
					{CIDR: "10.0.1.0/24", Gateway: "10.0.1.1", DNSServers: []string{"10.0.1.2"}},
				}, nil)
				in.Network.DefaultDNSServers = []string{"127.0.0.2"}
				in.Network.SearchDomains = []string{"maas", "zzz-domain2"}
				return in
			},
			version: 1,
			want: `
network:
  version: 1
  config:
    - id: eth0
      mac_address: "00:01:02:03:04:05"
      mtu: 1500
      name: eth0
      subnets: [{address: 10.0.0.4/24, dns_nameservers: [10.0.0.2], dns_search: [maas, zzz-domain2], gateway: 10.0.0.1, type: static}]
      type: physical
    - id: eth1
      mac_address: "02:01:02:03:04:05"
      mtu: 1500
      name: eth1
      subnets: [{address: 10.0.1.4/24, dns_nameservers: [10.0.1.2], dns_search: [maas, zzz-domain2], type: static}]
      type: physical
    - {address: [127.0.0.2], type: nameserver, search: [maas, zzz-domain2]}`,
		},
		{
			name: "TestDHCPNetworkLayout test_dhcp_configurations_rendered",
			in: func() *Input {
				in := netInput([]Interface{eth("eth0", "00:01:02:03:04:05", Link{Mode: LinkDHCP, Subnet: "10.0.0.0/24"})},
					[]Subnet{{CIDR: "10.0.0.0/24", Gateway: "10.0.0.1", DNSServers: []string{"8.8.8.8"}}}, nil)
				return in
			},
			version: 1,
			want:    `network: {version: 1, config: [{id: eth0, mac_address: "00:01:02:03:04:05", mtu: 1500, name: eth0, type: physical, subnets: [{type: dhcp4}]}]}`,
		},
		{
			name: "TestDHCPNetworkLayout test_dhcp_configurations_rendered_includes_dns_with_static",
			in: func() *Input {
				in := netInput([]Interface{
					eth("eth0", "00:01:02:03:04:05", Link{Mode: LinkDHCP, Subnet: "10.0.0.0/24"}),
					eth("eth1", "00:01:02:03:04:06", Link{Mode: LinkStatic, Subnet: "10.0.0.0/24", IP: "10.0.0.7"}),
				}, []Subnet{{CIDR: "10.0.0.0/24", Gateway: "10.0.0.1", DNSServers: []string{"8.8.8.8"}}}, nil)
				in.Network.MAASDNSServers = []string{"127.0.0.1"} // resolve_hostname patched to loopback
				return in
			},
			version: 1,
			want: `
network:
  version: 1
  config:
    - {id: eth0, mac_address: "00:01:02:03:04:05", mtu: 1500, name: eth0, type: physical, subnets: [{type: dhcp4}]}
    - {id: eth1, mac_address: "00:01:02:03:04:06", mtu: 1500, name: eth1, type: physical, subnets: [{address: 10.0.0.7/24, dns_nameservers: [8.8.8.8], dns_search: [maas], gateway: 10.0.0.1, type: static}]}
    - {address: [8.8.8.8], search: [maas], type: nameserver}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tt.in().networkConfig(tt.version, tt.sourceRouting)
			if err != nil {
				t.Fatal(err)
			}
			var want map[string]any
			if err := yaml.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, roundTrip(t, cfg)); diff != "" {
				t.Errorf("network differs from MAAS's %s (-maas +got):\n%s", tt.name, diff)
			}
		})
	}
}

func TestNetworkV2OrderAndBooleans(t *testing.T) {
	in := netInput([]Interface{eth("eth0", "00:01:02:03:04:05"), eth("eth1", "02:01:02:03:04:05"),
		{Type: IfaceBond, Name: "bond0", Parents: []string{"eth0", "eth1"}},
		{Type: IfaceBridge, Name: "br0", Parents: []string{"eth1"}, Params: map[string]any{"bridge_stp": false}}}, nil, nil)
	doc, err := in.networkDocument(OSUbuntu, "noble")
	if err != nil {
		t.Fatal(err)
	}
	out := mustDump(t, doc)
	// MAAS renders network v2 from an OrderedDict (test_yaml_output_is_ordered), and
	// bridge stp stays a boolean (test_bridge_standard_with_params).
	iv, ie, ib, ibr := strings.Index(out, "version: 2"), strings.Index(out, "ethernets:"), strings.Index(out, "bonds:"), strings.Index(out, "bridges:")
	if !(iv < ie && ie < ib && ib < ibr) {
		t.Errorf("network v2 keys out of order (version, ethernets, bonds, bridges):\n%s", out)
	}
	if !strings.Contains(out, "stp: false") {
		t.Errorf("stp is not a boolean:\n%s", out)
	}
	if !strings.Contains(out, "macaddress: 00:01:02:03:04:05") {
		t.Errorf("bond without a MAC does not take its first parent's:\n%s", out)
	}
	v1, err := in.networkConfig(1, false)
	if err != nil {
		t.Fatal(err)
	}
	if out := mustDump(t, v1); !strings.Contains(out, "bridge_stp: 0") {
		t.Errorf("v1 bridge params do not use 0/1 booleans:\n%s", out)
	}
}

func TestNetworkVersionChoice(t *testing.T) {
	tests := []struct {
		osys, series string
		force        bool
		version      int
		sr           bool
	}{
		{OSUbuntu, "noble", false, 2, true},
		{OSUbuntu, "bionic", false, 2, true},
		{OSUbuntu, "18.04", false, 2, true},
		{OSUbuntu, "xenial", false, 2, false},
		{OSUbuntu, "trusty", false, 1, false},
		{OSUbuntuCore, "24", false, 2, false},
		{OSRHEL, "9", false, 1, false},
		{OSCentOS, "centos70", false, 1, false},
		{OSESXi, "8.0", false, 1, false},
		{OSUbuntu, "noble", true, 1, false},
	}
	for _, tt := range tests {
		in := baseInput()
		in.Settings.ForceV1NetworkYAML = tt.force
		v, sr := in.networkVersion(tt.osys, tt.series)
		if v != tt.version || sr != tt.sr {
			t.Errorf("networkVersion(%s, %s, force=%v) = %d, %v; want %d, %v", tt.osys, tt.series, tt.force, v, sr, tt.version, tt.sr)
		}
	}
}

func mustDump(t *testing.T, v any) string {
	t.Helper()
	s, err := pyyaml.Dump(v)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestNetworkV2SectionsSorted: only the top level of network v2 is an OrderedDict in
// MAAS; each section is a dict that safe_dump sorts, although interfaces are generated
// parents-first.
func TestNetworkV2SectionsSorted(t *testing.T) {
	in := netInput([]Interface{
		eth("eth0", "00:01:02:03:04:00"), eth("eth1", "00:01:02:03:04:01"),
		eth("eth2", "00:01:02:03:04:02"), eth("eth3", "00:01:02:03:04:03"),
		{Type: IfaceBond, Name: "bond1", Parents: []string{"eth0", "eth1"}},
		{Type: IfaceBond, Name: "bond0", Parents: []string{"eth2", "eth3"}},
	}, nil, nil)
	cfg, err := in.networkConfig(2, true)
	if err != nil {
		t.Fatal(err)
	}
	out := mustDump(t, cfg)
	if i0, i1 := strings.Index(out, "    bond0:"), strings.Index(out, "    bond1:"); i0 < 0 || i1 < i0 {
		t.Errorf("bonds not sorted by name:\n%s", out)
	}
	v1, err := in.networkConfig(1, false)
	if err != nil {
		t.Fatal(err)
	}
	// v1 keeps the parents-first list order: bond1 is complete after eth1, bond0 after eth3.
	out = mustDump(t, v1)
	if i0, i1 := strings.Index(out, "id: bond0"), strings.Index(out, "id: bond1"); i1 > i0 {
		t.Errorf("v1 not in parents-first order (bond1 before bond0):\n%s", out)
	}
}
