package firstboot

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

func TestParseNetwork(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       NetConfig
		err        string
	}{
		{"absent: fallback", "", NetConfig{Fallback: true}, ""},
		{"disabled", "network: {config: disabled}", NetConfig{Disabled: true}, ""},
		{"disabled with version", "network: {version: 1, config: disabled}", NetConfig{Disabled: true}, ""},
		{"v2 static", `network:
  version: 2
  ethernets:
    ens3:
      match: {macaddress: '52:54:00:AA:BB:CC'}
      set-name: ens3
      addresses: [198.18.0.10/24]
      gateway4: 198.18.0.1
      nameservers: {addresses: [198.18.0.1], search: [maas]}
      routes: [{to: 10.0.0.0/8, via: 198.18.0.254}]
      mtu: 1500
`, NetConfig{Version: 2, Ifaces: []Iface{{Name: "ens3", MatchMAC: "52:54:00:aa:bb:cc", Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.10/24")},
			Gateway4: netip.MustParseAddr("198.18.0.1"), Routes: []Route{{To: netip.MustParsePrefix("10.0.0.0/8"), Via: netip.MustParseAddr("198.18.0.254")}},
			Nameservers: []string{"198.18.0.1"}, Search: []string{"maas"}, MTU: 1500}}}, ""},
		{"v2 default route", "network: {version: 2, ethernets: {eth0: {dhcp4: true, routes: [{to: default, via: 10.0.0.1}]}}}",
			NetConfig{Version: 2, Ifaces: []Iface{{Name: "eth0", MatchName: "eth0", DHCP4: true, Gateway4: netip.MustParseAddr("10.0.0.1")}}}, ""},
		{"v1", `network:
  version: 1
  config:
  - {type: physical, name: eth0, mac_address: '52:54:00:00:00:01', subnets: [{type: static, address: 10.1.0.5, netmask: 255.255.0.0, gateway: 10.1.0.1}]}
  - {type: physical, name: eth1, subnets: [{type: dhcp}]}
  - {type: nameserver, address: [10.1.0.2], search: [maas]}
`, NetConfig{Version: 1, Ifaces: []Iface{
			{Name: "eth0", MatchMAC: "52:54:00:00:00:01", Addresses: []netip.Prefix{netip.MustParsePrefix("10.1.0.5/16")}, Gateway4: netip.MustParseAddr("10.1.0.1"), Nameservers: []string{"10.1.0.2"}, Search: []string{"maas"}},
			{Name: "eth1", MatchName: "eth1", DHCP4: true, Nameservers: []string{"10.1.0.2"}, Search: []string{"maas"}},
		}}, ""},
		{"v2 bond, VLAN and bridge after the ethernets", `network:
  version: 2
  bridges:
    br0: {interfaces: [bond0.100], addresses: [10.100.0.5/24], parameters: {stp: false}}
  vlans:
    bond0.100: {id: 100, link: bond0}
  bonds:
    bond0:
      interfaces: [eth0, eth1]
      macaddress: '52:54:00:00:00:01'
      parameters: {mode: active-backup, mii-monitor-interval: 100}
      addresses: [198.18.0.11/24]
      gateway4: 198.18.0.1
  ethernets:
    eth1: {match: {macaddress: '52:54:00:00:00:02'}, set-name: eth1}
    eth0: {match: {macaddress: '52:54:00:00:00:01'}, set-name: eth0}
`, NetConfig{Version: 2, Ifaces: []Iface{
			{Name: "eth0", MatchMAC: "52:54:00:00:00:01"},
			{Name: "eth1", MatchMAC: "52:54:00:00:00:02"},
			{Name: "bond0", Kind: KindBond, Members: []string{"eth0", "eth1"}, BondMode: "active-backup", Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.11/24")}, Gateway4: netip.MustParseAddr("198.18.0.1")},
			{Name: "bond0.100", Kind: KindVLAN, VLANLink: "bond0", VLANID: 100},
			{Name: "br0", Kind: KindBridge, Members: []string{"bond0.100"}, Addresses: []netip.Prefix{netip.MustParsePrefix("10.100.0.5/24")}},
		}}, ""},
		{"v1 bond, VLAN and bridge after the physicals", `network:
  version: 1
  config:
  - {type: bridge, name: br0, bridge_interfaces: [eth2], subnets: [{type: dhcp}]}
  - {type: vlan, name: bond0.10, vlan_link: bond0, vlan_id: 10, subnets: [{type: static, address: 10.10.0.5/24}]}
  - {type: bond, name: bond0, bond_interfaces: [eth0, eth1], params: {bond-mode: 802.3ad}, subnets: [{type: static, address: 198.18.0.11/24}]}
  - {type: physical, name: eth0, mac_address: '52:54:00:00:00:01'}
  - {type: physical, name: eth1, mac_address: '52:54:00:00:00:02'}
  - {type: physical, name: eth2, mac_address: '52:54:00:00:00:03'}
`, NetConfig{Version: 1, Ifaces: []Iface{
			{Name: "eth0", MatchMAC: "52:54:00:00:00:01"},
			{Name: "eth1", MatchMAC: "52:54:00:00:00:02"},
			{Name: "eth2", MatchMAC: "52:54:00:00:00:03"},
			{Name: "bond0", Kind: KindBond, Members: []string{"eth0", "eth1"}, BondMode: "802.3ad", Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.11/24")}},
			{Name: "bond0.10", Kind: KindVLAN, VLANLink: "bond0", VLANID: 10, Addresses: []netip.Prefix{netip.MustParsePrefix("10.10.0.5/24")}},
			{Name: "br0", Kind: KindBridge, Members: []string{"eth2"}, DHCP4: true},
		}}, ""},
		{"v2 bond without members", "network: {version: 2, bonds: {bond0: {addresses: [10.0.0.2/24]}}}", NetConfig{}, "network.bonds.bond0.interfaces: a bond needs member interfaces"},
		{"v2 VLAN without an id", "network: {version: 2, vlans: {v: {link: eth0}}}", NetConfig{}, "network.vlans.v: a VLAN needs a link and an id in 1..4094"},
		{"v2 VLAN id out of range", "network: {version: 2, vlans: {v: {link: eth0, id: 4095}}}", NetConfig{}, `(link "eth0", id "4095")`},
		{"v1 VLAN without a link", "network: {version: 1, config: [{type: vlan, name: v, vlan_id: 5}]}", NetConfig{}, "network config v: a VLAN needs vlan_link"},
		{"v1 bridge without members", "network: {version: 1, config: [{type: bridge, name: br0}]}", NetConfig{}, "network config br0: a bridge needs member interfaces"},
		{"bad address", "network: {version: 2, ethernets: {e: {addresses: [not-an-ip]}}}", NetConfig{}, `"not-an-ip" is not an address/prefix`},
		{"bad version", "network: {version: 3}", NetConfig{}, "only 1 and 2 exist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var m map[string]any
			yaml.Unmarshal([]byte(c.yaml), &m)
			got, err := ParseNetwork(m["network"])
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
