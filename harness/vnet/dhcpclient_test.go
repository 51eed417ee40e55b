package vnet_test

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/maasemu/maasemu/harness/vnet"
	"github.com/maasemu/maasemu/pxe/dhcp4"
)

// A simulated machine's Stack leases an address from the project's DHCP server on the
// rack's Stack: DISCOVER from 0.0.0.0:68, OFFER, REQUEST, ACK; then it configures the
// lease and reaches the rack by unicast.
func TestStackLeasesFromPXEDHCP(t *testing.T) {
	sw, err := vnet.NewSwitch(vnet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	rack, err := sw.NewStack(vnet.StackConfig{Name: "rack", Addrs: []netip.Prefix{vnet.DefaultRackAddr}})
	if err != nil {
		t.Fatal(err)
	}
	rackIP := vnet.DefaultRackAddr.Addr()
	srv, err := dhcp4.New(dhcp4.Config{Subnets: []dhcp4.Subnet{{
		Prefix: vnet.DefaultSubnet, RackIP: rackIP, Router: rackIP,
		Pools: []dhcp4.Range{{Start: netip.MustParseAddr("198.18.0.100"), End: netip.MustParseAddr("198.18.0.199")}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	dconn, err := rack.ListenUDP(netip.MustParseAddrPort("0.0.0.0:67"), vnet.UDPOptions{Broadcast: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Add(1)
	go func() { defer wg.Done(); srv.Serve(ctx, dconn) }()

	m, err := sw.NewStack(vnet.StackConfig{Name: "sim1", Promiscuous: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.ListenUDP(netip.MustParseAddrPort("0.0.0.0:68"), vnet.UDPOptions{Broadcast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	exchange := func(req *dhcpv4.DHCPv4, want dhcpv4.MessageType) *dhcpv4.DHCPv4 {
		t.Helper()
		if _, err := c.WriteTo(req.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: 67}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				t.Fatalf("waiting for %s: %v", want, err)
			}
			resp, err := dhcpv4.FromBytes(buf[:n])
			if err != nil || resp.TransactionID != req.TransactionID {
				continue
			}
			if resp.MessageType() != want {
				t.Fatalf("got %s, want %s", resp.MessageType(), want)
			}
			return resp
		}
	}
	disc, err := dhcpv4.NewDiscovery(m.MAC(), dhcpv4.WithRequestedOptions(dhcpv4.OptionRouter, dhcpv4.OptionSubnetMask))
	if err != nil {
		t.Fatal(err)
	}
	offer := exchange(disc, dhcpv4.MessageTypeOffer)
	req, err := dhcpv4.NewRequestFromOffer(offer)
	if err != nil {
		t.Fatal(err)
	}
	ack := exchange(req, dhcpv4.MessageTypeAck)
	ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	ones, _ := ack.SubnetMask().Size()
	if !netip.MustParsePrefix("198.18.0.100/30").Contains(ip) || ones != 24 {
		t.Fatalf("lease %v/%d", ip, ones)
	}
	if err := m.AddAddress(netip.PrefixFrom(ip, ones)); err != nil {
		t.Fatal(err)
	}
	gw, _ := netip.AddrFromSlice(ack.Router()[0].To4())
	if err := m.SetGateway(gw); err != nil {
		t.Fatal(err)
	}
	m.SetPromiscuous(false)

	// Unicast to the rack now works, from the leased address.
	l, err := rack.ListenTCP(netip.AddrPortFrom(rackIP, 5248))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Write([]byte(c.RemoteAddr().String()))
			c.Close()
		}
	}()
	conn, err := m.DialContext(ctx, "tcp", "198.18.0.1:5248")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 64)
	n, _ := conn.Read(buf)
	if host, _, _ := net.SplitHostPort(string(buf[:n])); host != ip.String() {
		t.Errorf("rack saw the machine as %q, want %v", buf[:n], ip)
	}
	leases := srv.Leases()
	if len(leases) != 1 || leases[0].IP != ip {
		t.Errorf("server leases %+v", leases)
	}
}
