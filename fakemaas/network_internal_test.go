package fakemaas

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/maasemu/maasemu/fakemaas/nodestatus"
)

// TestNextFreeIP checks MAAS's allocation rule on several subnet shapes: the first
// address of the smallest free range, outside the gateway, DNS servers, ranges and
// addresses in use, the network and broadcast addresses, and IPv6's reserved ranges.
func TestNextFreeIP(t *testing.T) {
	cases := []struct {
		name    string
		s       subnet
		ranges  []*ipRange
		used    []string
		exclude []string
		want    string // "" for none
	}{
		{"empty /24", subnet{CIDR: "10.0.0.0/24", Managed: true}, nil, nil, nil, "10.0.0.1"},
		{"gateway and DNS taken", subnet{CIDR: "10.0.0.0/24", Managed: true, Gateway: "10.0.0.1", DNSServers: []string{"10.0.0.2", "8.8.8.8"}},
			nil, nil, nil, "10.0.0.3"},
		{"smallest free range first", subnet{CIDR: "10.0.0.0/24", Managed: true}, nil, []string{"10.0.0.100", "10.0.0.103"}, nil, "10.0.0.101"},
		{"dynamic and reserved ranges skipped", subnet{CIDR: "10.0.0.0/24", Managed: true},
			[]*ipRange{{ID: 1, Subnet: 1, Type: rangeDynamic, Start: "10.0.0.1", End: "10.0.0.127"},
				{ID: 2, Subnet: 1, Type: rangeReserved, Start: "10.0.0.128", End: "10.0.0.200"}}, nil, nil, "10.0.0.201"},
		{"excluded addresses", subnet{CIDR: "10.0.0.0/30", Managed: true}, nil, nil, []string{"10.0.0.1"}, "10.0.0.2"},
		{"full", subnet{CIDR: "10.0.0.0/30", Managed: true}, nil, []string{"10.0.0.1", "10.0.0.2"}, nil, ""},
		{"a /31 has no network or broadcast address", subnet{CIDR: "10.0.0.0/31", Managed: true}, nil, nil, nil, "10.0.0.0"},
		{"a /32", subnet{CIDR: "10.0.0.7/32", Managed: true}, nil, nil, nil, "10.0.0.7"},
		{"unmanaged: only inside reserved ranges", subnet{CIDR: "10.0.0.0/24"},
			[]*ipRange{{ID: 1, Subnet: 1, Type: rangeReserved, Start: "10.0.0.50", End: "10.0.0.60"}}, []string{"10.0.0.50"}, nil, "10.0.0.51"},
		{"unmanaged without reserved ranges", subnet{CIDR: "10.0.0.0/24"}, nil, nil, nil, ""},
		{"IPv6 /64 skips ::1-::ffff:ffff", subnet{CIDR: "2001:db8::/64", Managed: true}, nil, nil, nil, "2001:db8::1:0:0"},
		{"IPv6 /120", subnet{CIDR: "2001:db8::/120", Managed: true, Gateway: "2001:db8::1"}, nil, nil, nil, "2001:db8::2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			s.ID = 1
			n := &netModel{Subnets: []*subnet{&s}, Ranges: tc.ranges}
			r := &Region{machines: map[string]*machine{}, net: n}
			var uses []ipUse
			for _, u := range tc.used {
				uses = append(uses, ipUse{ip: netip.MustParseAddr(u)})
			}
			var ex []netip.Addr
			for _, e := range tc.exclude {
				ex = append(ex, netip.MustParseAddr(e))
			}
			ip, ok := s.nextFreeIP(r.subnetUse(n, &s, uses, 0), ex)
			got := ""
			if ok {
				got = ip.String()
			}
			if got != tc.want {
				t.Errorf("next free address = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestMigrateLegacyInterfaces reopens a state directory with machines recorded before the
// network model: their interfaces join the default VLAN and get links from their legacy
// modes, or MAAS's initial configuration; a commissioning machine waits for its results.
func TestMigrateLegacyInterfaces(t *testing.T) {
	dir := t.TempDir()
	opts := Options{StateDir: dir, Logger: slog.New(slog.DiscardHandler)}
	r, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	legacy := []*machine{
		{SystemID: "aaaaaa", Hostname: "plain", Status: nodestatus.Ready, Interfaces: []Interface{
			{ID: 1, Name: "eth0", MAC: "52:54:00:00:00:01"}, {ID: 2, Name: "eth1", MAC: "52:54:00:00:00:02"}}},
		{SystemID: "bbbbbb", Hostname: "modes", Status: nodestatus.Ready, Interfaces: []Interface{
			{ID: 3, Name: "eth0", MAC: "52:54:00:00:00:03", LegacyLinkMode: "link_up"},
			{ID: 4, Name: "eth1", MAC: "52:54:00:00:00:04", LegacyLinkMode: "dhcp"},
			{ID: 5, Name: "eth2", MAC: "52:54:00:00:00:05", LegacyLinkMode: "none", Disconnected: true}}},
		{SystemID: "cccccc", Hostname: "comm", Status: nodestatus.Commissioning, Interfaces: []Interface{
			{ID: 6, Name: "eth0", MAC: "52:54:00:00:00:06"}}},
	}
	err = r.locked(func() error {
		return r.commit(func(w *writer) error {
			for _, m := range legacy {
				w.putMachine(m)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r, err = New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	def := r.net.defaultVLAN().ID
	type view struct {
		VLAN  int
		Modes []string
	}
	got := map[string]view{}
	for _, m := range r.machines {
		if m.NetModel != 1 {
			t.Errorf("%s: net_model %d after loading", m.Hostname, m.NetModel)
		}
		for _, i := range m.Interfaces {
			v := view{VLAN: i.VLAN}
			for _, l := range i.Links {
				v.Modes = append(v.Modes, l.Mode)
			}
			got[m.Hostname+"/"+i.Name] = v
		}
	}
	want := map[string]view{
		"plain/eth0": {def, []string{linkDHCP}}, "plain/eth1": {def, []string{linkUp}},
		"modes/eth0": {def, []string{linkUp}}, "modes/eth1": {def, []string{linkDHCP}}, "modes/eth2": {0, nil},
		"comm/eth0": {def, nil},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("migrated interfaces (-want +got):\n%s", diff)
	}
}

// BenchmarkNextFreeIP is the cost of one AUTO or STATIC allocation on a /16 with 5,000
// addresses in use, a dynamic and a reserved range.
func BenchmarkNextFreeIP(b *testing.B) {
	s := &subnet{ID: 1, CIDR: "10.0.0.0/16", Managed: true, Gateway: "10.0.0.1"}
	n := &netModel{Subnets: []*subnet{s}, Ranges: []*ipRange{
		{ID: 1, Subnet: 1, Type: rangeDynamic, Start: "10.0.128.0", End: "10.0.255.254"},
		{ID: 2, Subnet: 1, Type: rangeReserved, Start: "10.0.100.0", End: "10.0.100.255"}}}
	r := &Region{machines: map[string]*machine{}, net: n}
	var uses []ipUse
	for i := range 5000 {
		uses = append(uses, ipUse{ip: netip.AddrFrom4([4]byte{10, 0, byte(2 + i/250), byte(1 + i%250)})})
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.nextFreeIP(r.subnetUse(n, s, uses, 0), nil); !ok {
			b.Fatal("no address")
		}
	}
}
