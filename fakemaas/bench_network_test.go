package fakemaas_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"testing"

	"github.com/canonical/gomaasclient/entity"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/fakemaas/regiontest"
)

// BenchmarkLookupDHCP is the region's cost per DHCP packet (LookupDHCP, what the rack's
// RegionHosts asks) with 300 machines holding STATIC addresses on the served subnet.
func BenchmarkLookupDHCP(b *testing.B) {
	env := regiontest.Start(b)
	env.ImportDefaultStream(b)
	lab, err := env.Region.EnsureSubnet(b.Context(), fakemaas.SubnetSpec{CIDR: mustPrefix("10.0.0.0/16"), Gateway: mustAddr("10.0.0.1"),
		RackIP: mustAddr("10.0.0.1"), DynamicStart: mustAddr("10.0.128.0"), DynamicEnd: mustAddr("10.0.255.254")})
	if err != nil {
		b.Fatal(err)
	}
	c := newSignedClient(b, env)
	var last string
	for i := range 300 {
		mac := fmt.Sprintf("52:54:01:00:%02x:%02x", i>>8, i&0xff)
		var m entity.Machine
		if err := json.Unmarshal(c.form(b, "POST", "/MAAS/api/2.0/machines/", url.Values{"architecture": {"amd64/generic"},
			"mac_addresses": {mac}, "commission": {"false"}}), &m); err != nil {
			b.Fatal(err)
		}
		i0 := m.InterfaceSet[0]
		c.form(b, "POST", fmt.Sprintf("/MAAS/api/2.0/nodes/%s/interfaces/%d/?op=unlink_subnet", m.SystemID, i0.ID),
			url.Values{"id": {strconv.Itoa(i0.Links[0].ID)}})
		c.form(b, "POST", fmt.Sprintf("/MAAS/api/2.0/nodes/%s/interfaces/%d/?op=link_subnet", m.SystemID, i0.ID),
			url.Values{"mode": {"STATIC"}, "subnet": {strconv.Itoa(lab)}})
		last = mac
	}
	hw, _ := net.ParseMAC(last)
	b.ResetTimer()
	for b.Loop() {
		l, err := env.Region.LookupDHCP(b.Context(), hw)
		if err != nil || len(l.Hosts) != 1 {
			b.Fatalf("lookup: %+v, %v", l, err)
		}
	}
}
