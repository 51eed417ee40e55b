package hostnet_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maasemu/maasemu/harness/vnet"
	"github.com/maasemu/maasemu/harness/vnet/hostnet"
	"github.com/maasemu/maasemu/pxe/dhcp4"
	"github.com/maasemu/maasemu/trace"
	"github.com/pin/tftp/v3"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// labNetns makes two network namespaces joined by a veth pair: the server side's end is
// enslaved to a bridge br0 with 10.99.0.1/24 (a libvirt-style bridge), the client side's
// end vc is up with no address. Both namespaces go when the test ends.
func labNetns(t *testing.T) (srv, cli string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("bridge mode: needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("bridge mode: needs ip (Debian package iproute2)")
	}
	id := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%100000)
	srv, cli = "vnet-s-"+id, "vnet-c-"+id
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := exec.Command("ip", "netns", "add", srv).CombinedOutput(); err != nil {
		t.Skipf("bridge mode: cannot create a network namespace here: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", srv).Run() })
	run("netns", "add", cli)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", cli).Run() })
	run("-n", srv, "link", "add", "vs", "type", "veth", "peer", "name", "vc", "netns", cli)
	run("-n", srv, "link", "add", "br0", "type", "bridge")
	run("-n", srv, "link", "set", "vs", "master", "br0")
	run("-n", srv, "addr", "add", "10.99.0.1/24", "dev", "br0")
	for _, l := range []string{"lo", "vs", "br0"} {
		run("-n", srv, "link", "set", l, "up")
	}
	for _, l := range []string{"lo", "vc"} {
		run("-n", cli, "link", "set", l, "up")
	}
	return srv, cli
}

// inNetns runs fn on an OS thread switched into the named namespace. Sockets fn opens
// stay in that namespace whichever goroutine uses them later. The thread is thrown away
// afterwards (its goroutine ends locked), so no other goroutine runs in the namespace.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		f, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func TestBridgeModeServesDHCPTFTPHTTP(t *testing.T) {
	srvNS, cliNS := labNetns(t)
	for _, tool := range []string{"busybox", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("bridge mode clients: needs %s", tool)
		}
	}
	var (
		it           *hostnet.Interface
		dconn, tconn net.PacketConn
		hl           net.Listener
	)
	err := inNetns(srvNS, func() error {
		var err error
		if it, err = hostnet.Lookup("br0"); err != nil {
			return err
		}
		if dconn, err = it.ListenDHCP(); err != nil {
			return err
		}
		if tconn, err = it.ListenUDP(netip.AddrPortFrom(it.Addr(), 69), vnet.UDPOptions{}); err != nil {
			return err
		}
		hl, err = it.ListenTCP(netip.AddrPortFrom(it.Addr(), 5248))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if it.Addr() != netip.MustParseAddr("10.99.0.1") || it.Addrs[0].Bits() != 24 || it.Name != "br0" {
		t.Errorf("interface %+v", it)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	// The project's DHCP server on 0.0.0.0:67 bound to br0.
	rec := trace.NewRecorder(nil)
	dsrv, err := dhcp4.New(dhcp4.Config{Subnets: []dhcp4.Subnet{{
		Prefix: netip.MustParsePrefix("10.99.0.0/24"), RackIP: it.Addr(),
		Pools: []dhcp4.Range{{Start: netip.MustParseAddr("10.99.0.100"), End: netip.MustParseAddr("10.99.0.199")}},
	}}, Sink: rec})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); dsrv.Serve(ctx, dconn) }()

	// TFTP (pin/tftp, single port) on the interface address.
	data := bytes.Repeat([]byte("lpxelinux"), 5000)
	ts := tftp.NewServer(func(name string, rf io.ReaderFrom) error {
		if name != "lpxelinux.0" {
			return fmt.Errorf("%s: %w", name, os.ErrNotExist)
		}
		_, err := rf.ReadFrom(bytes.NewReader(data))
		return err
	}, nil)
	ts.EnableSinglePort()
	wg.Add(1)
	go func() { defer wg.Done(); ts.Serve(tconn) }()
	defer ts.Shutdown()

	// HTTP on the interface address.
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(data) }), ReadHeaderTimeout: 10 * time.Second}
	wg.Add(1)
	go func() { defer wg.Done(); hs.Serve(hl) }()
	defer hs.Close()

	// A real DHCP client in the client namespace takes a lease and configures it.
	script := filepath.Join(t.TempDir(), "udhcpc.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ncase \"$1\" in bound|renew) ip addr add \"$ip/$mask\" dev \"$interface\";; esac\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", cliNS, "busybox", "udhcpc", "-i", "vc", "-f", "-q", "-n", "-t", "5", "-T", "2", "-s", script).CombinedOutput()
	if err != nil {
		t.Fatalf("udhcpc: %v\n%s", err, out)
	}
	addrOut, _ := exec.Command("ip", "-n", cliNS, "-4", "addr", "show", "dev", "vc").CombinedOutput()
	if !strings.Contains(string(addrOut), "inet 10.99.0.1") || !strings.Contains(string(addrOut), "/24") {
		t.Fatalf("client has no lease from the pool:\n%s\nudhcpc:\n%s", addrOut, out)
	}
	var kinds []string
	for _, e := range rec.Events() {
		kinds = append(kinds, e.Kind)
	}
	if k := strings.Join(kinds, " "); !strings.Contains(k, trace.KindDHCPOffer) || !strings.Contains(k, trace.KindDHCPAck) {
		t.Errorf("DHCP events %s", k)
	}

	// curl fetches over TFTP and HTTP from the interface address.
	want := sha256.Sum256(data)
	for _, url := range []string{"tftp://10.99.0.1/lpxelinux.0", "http://10.99.0.1:5248/x"} {
		got, err := exec.Command("ip", "netns", "exec", cliNS, "curl", "-sS", "--max-time", "30", url).Output()
		if err != nil {
			t.Fatalf("curl %s: %v", url, err)
		}
		if sha256.Sum256(got) != want {
			t.Errorf("curl %s: %d bytes, sha256 differs", url, len(got))
		}
	}
}

func TestLookupErrors(t *testing.T) {
	if _, err := hostnet.Lookup("no-such-if0"); err == nil {
		t.Error("a missing interface was found")
	}
	if _, err := hostnet.Lookup("lo"); err != nil {
		t.Skipf("lo: %v", err)
	}
}

func TestAddressNotOnInterface(t *testing.T) {
	srvNS, _ := labNetns(t)
	err := inNetns(srvNS, func() error {
		it, err := hostnet.Lookup("br0")
		if err != nil {
			return err
		}
		if _, err := it.ListenUDP(netip.MustParseAddrPort("10.1.2.3:69"), vnet.UDPOptions{}); err == nil || !strings.Contains(err.Error(), "is not on interface br0") {
			return fmt.Errorf("listen on a foreign address: %v", err)
		}
		if _, err := it.ListenTCP(netip.MustParseAddrPort("[fd00::1]:80")); err == nil {
			return fmt.Errorf("listen on IPv6 accepted")
		}
		if _, err := hostnet.Lookup("vs"); err == nil || !strings.Contains(err.Error(), "no IPv4 address") {
			return fmt.Errorf("vs without an address: %v", err)
		}
		exec.Command("ip", "-n", srvNS, "link", "set", "br0", "down").Run()
		if _, err := hostnet.Lookup("br0"); err == nil || !strings.Contains(err.Error(), "down") {
			return fmt.Errorf("down interface: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// A router solicitation sent in the client namespace gets the do-nothing advertisement.
func TestRouterAdvertisements(t *testing.T) {
	srvNS, cliNS := labNetns(t)
	var it *hostnet.Interface
	if err := inNetns(srvNS, func() (err error) { it, err = hostnet.Lookup("br0"); return err }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- inNetns(srvNS, func() error { return it.ServeRouterAdvertisements(ctx) })
	}()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("ServeRouterAdvertisements: %v", err)
		}
	}()

	var got []byte
	var hopLimit int
	err := inNetns(cliNS, func() error {
		c, err := net.ListenPacket("ip6:ipv6-icmp", "::")
		if err != nil {
			return err
		}
		defer c.Close()
		p := ipv6.NewPacketConn(c)
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeRouterAdvertisement)
		p.SetICMPFilter(&f)
		p.SetMulticastHopLimit(255)
		p.SetControlMessage(ipv6.FlagHopLimit, true)
		rs := []byte{byte(ipv6.ICMPTypeRouterSolicitation), 0, 0, 0, 0, 0, 0, 0}
		buf := make([]byte, 1500)
		// The server's socket may not be listening yet, and the link-local addresses may
		// still be tentative: solicit until answered.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			p.WriteTo(rs, nil, &net.IPAddr{IP: net.ParseIP("ff02::2"), Zone: "vc"})
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			n, cm, _, err := p.ReadFrom(buf)
			if err != nil {
				continue
			}
			got = append([]byte(nil), buf[:n]...)
			if cm != nil {
				hopLimit = cm.HopLimit
			}
			return nil
		}
		return fmt.Errorf("no router advertisement")
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < 16 || got[0] != 134 || got[5] != 0 || got[6] != 0 || got[7] != 0 || hopLimit != 255 {
		t.Errorf("advertisement % x (hop limit %d): want type 134, no flags, router lifetime 0, hop limit 255", got, hopLimit)
	}
	if len(got) == 24 && !bytes.Equal(got[18:24], it.MAC) {
		t.Errorf("source link-layer address %x, want %v", got[18:24], it.MAC)
	}
}
