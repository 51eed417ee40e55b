package vnet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gvisor.dev/gvisor/pkg/tcpip"

	tcp "github.com/maasemu/maasemu/harness/vnet/internal/gvisortcp"
)

var (
	rackIP   = netip.MustParseAddr("198.18.0.1")
	clientIP = netip.MustParseAddr("198.18.0.50")
	leaseIP  = netip.MustParseAddr("198.18.0.77")
)

func newStack(t *testing.T, sw *Switch, cfg StackConfig) *Stack {
	t.Helper()
	st, err := sw.NewStack(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newRack(t *testing.T, sw *Switch) *Stack {
	return newStack(t, sw, StackConfig{Name: "rack", Addrs: []netip.Prefix{DefaultRackAddr}})
}

func TestARPRequestReply(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{})
	ctx := testCtx(t)
	rack := newRack(t, sw)
	cl := attachRaw(t, sw, "client")

	must(t, cl.Send(arpRequest(macA, clientIP, rackIP)))
	f, err := cl.Recv(ctx)
	must(t, err)
	got, err := parseARP(f)
	must(t, err)
	want := arpPacket{op: 2, senderMAC: rack.MAC(), senderIP: rackIP, targetMAC: macA, targetIP: clientIP}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(arpPacket{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("ARP reply (-want +got):\n%s", diff)
	}
	if !bytes.Equal(f[0:6], macA) {
		t.Errorf("reply sent to %v, want %v", net.HardwareAddr(f[0:6]), macA)
	}
	// A request for an address the rack does not have gets no answer.
	must(t, cl.Send(arpRequest(macA, clientIP, netip.MustParseAddr("198.18.0.2"))))
	if rack.Stats().ARPRequestsReceived != 2 {
		t.Errorf("rack saw %d ARP requests, want 2", rack.Stats().ARPRequestsReceived)
	}
	quiet(t, cl)
}

// A DHCP-style exchange with a raw-frame client: a broadcast from 0.0.0.0:68 reaches a
// server bound to 0.0.0.0:67, which answers by broadcast and by unicast.
func TestBroadcastExchangeRawClient(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{})
	ctx := testCtx(t)
	rack := newRack(t, sw)
	srv, err := rack.ListenUDP(netip.MustParseAddrPort("0.0.0.0:67"), UDPOptions{Broadcast: true})
	must(t, err)
	defer srv.Close()
	cl := attachRaw(t, sw, "client")

	discover := udpFrame(bcastMAC, macA, netip.MustParseAddrPort("0.0.0.0:68"), netip.MustParseAddrPort("255.255.255.255:67"), []byte("DISCOVER"))
	must(t, cl.Send(discover))
	buf := make([]byte, 1500)
	must(t, srv.SetReadDeadline(time.Now().Add(30*time.Second)))
	n, from, err := srv.ReadFrom(buf)
	must(t, err)
	if string(buf[:n]) != "DISCOVER" || from.String() != "0.0.0.0:68" {
		t.Fatalf("server got %q from %v, want DISCOVER from 0.0.0.0:68", buf[:n], from)
	}

	// Broadcast reply.
	_, err = srv.WriteTo([]byte("OFFER-bcast"), &net.UDPAddr{IP: net.IPv4bcast, Port: 68})
	must(t, err)
	f, err := cl.Recv(ctx)
	must(t, err)
	p, err := parseUDPFrame(f)
	must(t, err)
	if string(p.payload) != "OFFER-bcast" || !bytes.Equal(p.dstMAC, bcastMAC) || p.src != netip.MustParseAddrPort("198.18.0.1:67") || p.dst != netip.MustParseAddrPort("255.255.255.255:68") {
		t.Errorf("broadcast reply: %q %v -> %v to MAC %v", p.payload, p.src, p.dst, p.dstMAC)
	}

	// Unicast reply to an address the client does not answer ARP for yet: needs a static
	// neighbour entry (what a kernel DHCP server does with SIOCSARP).
	must(t, rack.AddNeighbor(leaseIP, macA))
	_, err = srv.WriteTo([]byte("OFFER-unicast"), &net.UDPAddr{IP: leaseIP.AsSlice(), Port: 68})
	must(t, err)
	f, err = cl.Recv(ctx)
	must(t, err)
	p, err = parseUDPFrame(f)
	must(t, err)
	if string(p.payload) != "OFFER-unicast" || !bytes.Equal(p.dstMAC, macA) || p.dst != netip.AddrPortFrom(leaseIP, 68) {
		t.Errorf("unicast reply: %q -> %v to MAC %v", p.payload, p.dst, p.dstMAC)
	}
	quiet(t, cl)
}

// A Stack as a DHCP client: unconfigured, it broadcasts from 0.0.0.0:68, receives a
// unicast offer for an address it does not have yet, then takes the address.
func TestStackAsDHCPClient(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{})
	rack := newRack(t, sw)
	srv, err := rack.ListenUDP(netip.MustParseAddrPort("0.0.0.0:67"), UDPOptions{Broadcast: true})
	must(t, err)
	defer srv.Close()
	m := newStack(t, sw, StackConfig{Name: "machine", Promiscuous: true})
	if m.Addr().IsValid() {
		t.Fatalf("unconfigured stack has address %v", m.Addr())
	}
	cl, err := m.ListenUDP(netip.MustParseAddrPort("0.0.0.0:68"), UDPOptions{Broadcast: true})
	must(t, err)
	defer cl.Close()
	deadline := time.Now().Add(30 * time.Second)
	must(t, cl.SetReadDeadline(deadline))
	must(t, srv.SetReadDeadline(deadline))

	_, err = cl.WriteTo([]byte("DISCOVER"), &net.UDPAddr{IP: net.IPv4bcast, Port: 67})
	must(t, err)
	buf := make([]byte, 1500)
	n, from, err := srv.ReadFrom(buf)
	must(t, err)
	if string(buf[:n]) != "DISCOVER" || from.String() != "0.0.0.0:68" {
		t.Fatalf("server got %q from %v, want DISCOVER from 0.0.0.0:68", buf[:n], from)
	}
	// Unicast offer to the address being offered.
	must(t, rack.AddNeighbor(leaseIP, m.MAC()))
	_, err = srv.WriteTo([]byte("OFFER"), &net.UDPAddr{IP: leaseIP.AsSlice(), Port: 68})
	must(t, err)
	n, from, err = cl.ReadFrom(buf)
	must(t, err)
	if string(buf[:n]) != "OFFER" || from.String() != "198.18.0.1:67" {
		t.Fatalf("client got %q from %v", buf[:n], from)
	}
	// Broadcast ACK.
	_, err = srv.WriteTo([]byte("ACK"), &net.UDPAddr{IP: net.IPv4bcast, Port: 68})
	must(t, err)
	n, _, err = cl.ReadFrom(buf)
	must(t, err)
	if string(buf[:n]) != "ACK" {
		t.Fatalf("client got %q, want ACK", buf[:n])
	}

	// Take the lease; now ordinary unicast works both ways, with ARP.
	must(t, m.AddAddress(netip.PrefixFrom(leaseIP, 24)))
	must(t, m.SetGateway(rackIP))
	m.SetPromiscuous(false)
	if m.Addr() != leaseIP {
		t.Fatalf("address %v, want %v", m.Addr(), leaseIP)
	}
	echo, err := rack.ListenUDP(netip.AddrPortFrom(rackIP, 7), UDPOptions{})
	must(t, err)
	defer echo.Close()
	go func() {
		b := make([]byte, 1500)
		for {
			n, from, err := echo.ReadFrom(b)
			if err != nil {
				return
			}
			echo.WriteTo(b[:n], from)
		}
	}()
	c, err := m.DialContext(testCtx(t), "udp", "198.18.0.1:7")
	must(t, err)
	defer c.Close()
	must(t, c.SetDeadline(deadline))
	_, err = c.Write([]byte("ping"))
	must(t, err)
	n, err = c.Read(buf)
	must(t, err)
	if string(buf[:n]) != "ping" {
		t.Errorf("echo %q", buf[:n])
	}
	if got := c.LocalAddr().String(); got[:len("198.18.0.77:")] != "198.18.0.77:" {
		t.Errorf("source address %s, want 198.18.0.77", got)
	}
	// Releasing the lease makes it unconfigured again.
	must(t, m.RemoveAddress(leaseIP))
	if m.Addr().IsValid() {
		t.Errorf("address %v after release", m.Addr())
	}
}

func TestStackBadInput(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{})
	rack := newRack(t, sw)
	for _, cfg := range []StackConfig{
		{Name: "v6", Addrs: []netip.Prefix{netip.MustParsePrefix("fd00::1/64")}},
		{Name: "mc", MAC: mustMAC("01:00:5e:00:00:01")},
		{Name: "short", MAC: net.HardwareAddr{1, 2, 3}},
		{Name: "mtu", MTU: 20},
		{Name: "bcast", Addrs: []netip.Prefix{netip.MustParsePrefix("255.255.255.255/32")}},
		{Name: "rack"}, // name taken
	} {
		if st, err := sw.NewStack(cfg); err == nil {
			st.Close()
			t.Errorf("NewStack(%+v) accepted", cfg)
		}
	}
	if err := rack.AddAddress(DefaultRackAddr); err == nil {
		t.Error("adding an assigned address again was accepted")
	}
	if err := rack.RemoveAddress(netip.MustParseAddr("10.0.0.1")); err == nil {
		t.Error("removing an address never assigned was accepted")
	}
	for _, addr := range []string{"rack:80", "198.18.0.1", "198.18.0.1:http", "[fd00::1]:80"} {
		if _, err := rack.DialContext(testCtx(t), "tcp", addr); err == nil {
			t.Errorf("dial %q accepted", addr)
		}
	}
	if _, err := rack.DialContext(testCtx(t), "sctp", "198.18.0.2:80"); err == nil {
		t.Error("dial sctp accepted")
	}
	if got := rack.Addrs(); len(got) != 1 || got[0] != DefaultRackAddr {
		t.Errorf("addresses changed by refused calls: %v", got)
	}
}

// serveHTTP runs an HTTP server on l until the test ends.
func serveHTTP(t *testing.T, l net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(l)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		srv.Close()
		<-done
	})
}

func blob(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

func httpClient(st *Stack) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: st.DialContext, DisableKeepAlives: true}}
}

func getSHA(ctx context.Context, c *http.Client, url string) ([32]byte, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return [32]byte{}, 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return [32]byte{}, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return [32]byte{}, 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return [32]byte{}, n, err
	}
	return [32]byte(h.Sum(nil)), n, nil
}

func TestHTTPAcrossSwitch(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{})
	ctx := testCtx(t)
	rack := newRack(t, sw)
	l, err := rack.ListenTCP(netip.AddrPortFrom(rackIP, 80))
	must(t, err)
	data := blob(3<<20, 1)
	serveHTTP(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(data))
	}))
	m := newStack(t, sw, StackConfig{Name: "machine", Addrs: []netip.Prefix{netip.PrefixFrom(clientIP, 24)}})
	sum, n, err := getSHA(ctx, httpClient(m), "http://198.18.0.1/blob")
	must(t, err)
	if n != int64(len(data)) || sum != sha256.Sum256(data) {
		t.Errorf("got %d bytes, sha256 %x; want %d, %x", n, sum, len(data), sha256.Sum256(data))
	}
	// Through the host forwarder, with the host's HTTP client.
	fw, err := m.ForwardTCP(netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("198.18.0.1:80"))
	must(t, err)
	defer fw.Close()
	sum, n, err = getSHA(ctx, &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, "http://"+fw.Addr().String()+"/blob")
	must(t, err)
	if n != int64(len(data)) || sum != sha256.Sum256(data) {
		t.Errorf("forwarded: got %d bytes, sha256 %x", n, sum)
	}
	must(t, fw.Close())
}

func TestStackCloseReleasesSockets(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{})
	rack := newRack(t, sw)
	l, err := rack.ListenTCP(netip.AddrPortFrom(rackIP, 80))
	must(t, err)
	u, err := rack.ListenUDP(netip.AddrPortFrom(rackIP, 69), UDPOptions{})
	must(t, err)
	acceptErr := make(chan error, 1)
	readErr := make(chan error, 1)
	go func() { _, err := l.Accept(); acceptErr <- err }()
	go func() { _, _, err := u.ReadFrom(make([]byte, 10)); readErr <- err }()
	must(t, rack.Close())
	must(t, rack.Close())
	for name, ch := range map[string]chan error{"accept": acceptErr, "read": readErr} {
		select {
		case err := <-ch:
			if err == nil {
				t.Errorf("%s returned no error after Close", name)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s still blocked after Close", name)
		}
	}
	if _, ok := sw.Port("rack"); ok {
		t.Error("rack port still attached")
	}
	if err := rack.AddAddress(netip.MustParsePrefix("10.0.0.1/8")); !errors.Is(err, ErrClosed) {
		t.Errorf("AddAddress after Close: %v", err)
	}
}

// Several subnets on one lab: the rack holds an address on each (or one stack per
// subnet), and machines on either reach it.
func TestSeveralSubnets(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{})
	ctx := testCtx(t)
	second := netip.MustParsePrefix("198.18.1.1/24")
	rack := newStack(t, sw, StackConfig{Name: "rack", Addrs: []netip.Prefix{DefaultRackAddr, second}})
	third := newStack(t, sw, StackConfig{Name: "rack-third", Addrs: []netip.Prefix{netip.MustParsePrefix("10.20.0.1/16")}})
	for _, st := range []*Stack{rack, third} {
		l, err := st.ListenTCP(netip.MustParseAddrPort("0.0.0.0:80"))
		must(t, err)
		name := st.Name()
		serveHTTP(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s", name, r.Host)
		}))
	}
	tests := []struct {
		machine, url, want string
	}{
		{"198.18.0.20/24", "http://198.18.0.1/", "rack 198.18.0.1"},
		{"198.18.1.20/24", "http://198.18.1.1/", "rack 198.18.1.1"},
		{"10.20.3.4/16", "http://10.20.0.1/", "rack-third 10.20.0.1"},
	}
	for i, tt := range tests {
		m := newStack(t, sw, StackConfig{Name: fmt.Sprintf("m%d", i), Addrs: []netip.Prefix{netip.MustParsePrefix(tt.machine)}})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tt.url, nil)
		resp, err := httpClient(m).Do(req)
		must(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != tt.want {
			t.Errorf("%s from %s: %q, want %q", tt.url, tt.machine, body, tt.want)
		}
	}
	if diff := cmp.Diff([]netip.Prefix{DefaultRackAddr, second}, rack.Addrs(), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("rack addresses (-want +got):\n%s", diff)
	}
	// A machine on a subnet the rack has no address on gets no route.
	m := newStack(t, sw, StackConfig{Name: "stray", Addrs: []netip.Prefix{netip.MustParsePrefix("172.16.0.5/24")}})
	if _, err := m.DialContext(ctx, "tcp", "198.18.0.1:80"); err == nil {
		t.Error("dial across subnets without a route succeeded")
	}
}

func TestDeriveMAC(t *testing.T) {
	a, b := DeriveMAC("vm0"), DeriveMAC("vm1")
	if a.String() != DeriveMAC("vm0").String() || a.String() == b.String() {
		t.Errorf("DeriveMAC: vm0 %v, vm0 again %v, vm1 %v", a, DeriveMAC("vm0"), b)
	}
	if a[0] != 0x52 || a[1] != 0x54 || a[2] != 0 || a[0]&1 != 0 {
		t.Errorf("DeriveMAC(vm0) = %v: want 52:54:00:xx:xx:xx", a)
	}
}

// A connection across a cut link stalls and completes once the link heals: TCP's
// retransmissions carry it over.
func TestTCPSurvivesCut(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{})
	ctx := testCtx(t)
	rack := newRack(t, sw)
	l, err := rack.ListenTCP(netip.AddrPortFrom(rackIP, 80))
	must(t, err)
	data := blob(1<<20, 9)
	serveHTTP(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(data) }))
	m := newStack(t, sw, StackConfig{Name: "machine", Addrs: []netip.Prefix{netip.PrefixFrom(clientIP, 24)}})
	m.Port().Cut(0)
	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, n, err := getSHA(ctx, httpClient(m), "http://198.18.0.1/")
		done <- result{s, n, err}
	}()
	// Wait until the cut has visibly dropped the client's attempts (SYN retransmissions).
	for m.Port().Counters().DropCut < 2 {
		select {
		case r := <-done:
			t.Fatalf("request finished across a cut link: %+v", r)
		case <-ctx.Done():
			t.Fatal("no traffic reached the cut link")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if got := rack.Port().Counters().TxFrames; got != 0 {
		t.Errorf("the rack sent %d frames while the machine's link was cut", got)
	}
	m.Port().Heal()
	r := <-done
	must(t, r.err)
	if r.n != int64(len(data)) || r.sum != sha256.Sum256(data) {
		t.Errorf("after heal: %d bytes, sha256 %x", r.n, r.sum)
	}
}

// The stacks' retransmission timeout bound follows the delays configured on the switch:
// a second on a fast wire, twice the longest possible round trip under slow faults, with
// the retries scaled to keep a 15-minute give-up time.
func TestTCPMaxRTOFollowsFaults(t *testing.T) {
	sw, _ := newTestSwitch(t, Config{})
	rack := newRack(t, sw)
	m := newStack(t, sw, StackConfig{Name: "m", Addrs: []netip.Prefix{netip.PrefixFrom(clientIP, 24)}})
	bound := func(st *Stack) (time.Duration, uint64) {
		var rto tcpip.TCPMaxRTOOption
		var retries tcpip.TCPMaxRetriesOption
		st.s.TransportProtocolOption(tcp.ProtocolNumber, &rto)
		st.s.TransportProtocolOption(tcp.ProtocolNumber, &retries)
		return time.Duration(rto), uint64(retries)
	}
	type got struct {
		RTO     time.Duration
		Retries uint64
	}
	check := func(what string, want got) {
		t.Helper()
		for _, st := range []*Stack{rack, m} {
			rto, retries := bound(st)
			if diff := cmp.Diff(want, got{rto, retries}); diff != "" {
				t.Errorf("%s: stack %s (-want +got):\n%s", what, st.Port().Name(), diff)
			}
		}
	}
	check("no faults", got{time.Second, 900})
	must(t, m.Port().SetFaults(Faults{Delay: 400 * time.Millisecond, Jitter: 100 * time.Millisecond}))
	check("port delay 400ms±100ms", got{4 * time.Second, 225}) // 4 × (2 × 500 ms)
	must(t, sw.SetFaults(Faults{Delay: time.Second}))
	check("and switch delay 1s", got{8 * time.Second, 112})
	late := newStack(t, sw, StackConfig{Name: "late"})
	if rto, _ := bound(late); rto != 8*time.Second {
		t.Errorf("a stack attached later: max RTO %v, want 8s", rto)
	}
	must(t, sw.SetFaults(Faults{}))
	must(t, m.Port().SetFaults(Faults{Loss: 0.5}))
	check("loss only", got{time.Second, 900})
}

// A transfer survives a link cut longer than 15 retransmissions at the bounded timeout
// (about 14 s), as it would between Linux hosts, which give up after about 15 minutes.
func TestTCPSurvivesLongCut(t *testing.T) {
	t.Parallel() // mostly waiting out the cut
	sw, _ := newTestSwitch(t, Config{})
	ctx := testCtx(t)
	rack := newRack(t, sw)
	l, err := rack.ListenTCP(netip.AddrPortFrom(rackIP, 9000))
	must(t, err)
	defer l.Close()
	data := blob(4<<20, 5)
	const headLen = 64 << 10
	cut := make(chan struct{})
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write(data[:headLen])
		<-cut // the rest goes out into the cut link: lost, and retransmitted
		c.Write(data[headLen:])
	}()
	m := newStack(t, sw, StackConfig{Name: "m", Addrs: []netip.Prefix{netip.PrefixFrom(clientIP, 24)}})
	c, err := m.DialContext(ctx, "tcp", "198.18.0.1:9000")
	must(t, err)
	defer c.Close()
	head := make([]byte, headLen)
	if _, err := io.ReadFull(c, head); err != nil {
		t.Fatal(err)
	}
	m.Port().Cut(17 * time.Second)
	close(cut)
	rest, err := readAll(ctx, c)
	if err != nil {
		t.Fatalf("after the cut: %v (got %d more bytes)", err, len(rest))
	}
	if got := append(head, rest...); !bytes.Equal(got, data) {
		t.Errorf("received %d bytes, want the %d sent", len(got), len(data))
	}
	if n := rack.Stats().TCPRetransmits; n < 15 {
		t.Errorf("rack TCP retransmits = %d: the cut was not felt", n)
	}
}
