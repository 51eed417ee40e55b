package pxe

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/dhcpv6/nclient6"
	"github.com/maasemu/maasemu/pxe/bootloader"
	"github.com/maasemu/maasemu/pxe/dhcp4"
	"github.com/maasemu/maasemu/pxe/dhcp6"
	"github.com/maasemu/maasemu/pxe/internal/pxetest"
	"github.com/maasemu/maasemu/trace"
	"github.com/pin/tftp/v3"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestServeHostInNetns runs the rack on real host sockets, as `maasemu serve
// --dhcp-interface` does, inside a network namespace this test creates: DHCP on 0.0.0.0:67
// bound to one end of a veth pair, a raw-socket DHCP client (broadcast, like firmware) on the
// other end, then TFTP and HTTP from the leased address.
func TestServeHostInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: a network namespace, port 67 and a raw-socket DHCP client")
	}
	// Sockets and links are created by this goroutine's thread, moved into a new network
	// namespace. The thread is never unlocked, so it ends with the test.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Skipf("needs unshare(CLONE_NEWNET): %v", err)
	}
	lo, _ := netlink.LinkByName("lo")
	netlink.LinkSetUp(lo)
	// No duplicate address detection: link-local addresses are usable at once.
	for _, f := range []string{"all", "default"} {
		os.WriteFile("/proc/sys/net/ipv6/conf/"+f+"/accept_dad", []byte("0"), 0o644)
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "rack0"}, PeerName: "mach0",
		PeerHardwareAddr: net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Skipf("needs veth links: %v", err)
	}
	rackLink, _ := netlink.LinkByName("rack0")
	machLink, _ := netlink.LinkByName("mach0")
	for _, a := range []string{"198.18.0.2/24", "fd00:198:18::2/64"} {
		addr, _ := netlink.ParseAddr(a)
		if err := netlink.AddrAdd(rackLink, addr); err != nil {
			t.Fatal(err)
		}
	}
	netlink.LinkSetUp(rackLink)
	netlink.LinkSetUp(machLink)

	region := pxetest.NewRegion()
	region.Bootloaders["pxe/i386/lpxelinux.0"] = []byte("lpxelinux")
	rec := trace.NewRecorder(nil)
	rack, err := New(Config{Region: region, Subnets: []dhcp4.Subnet{rackSubnet}, Sink: rec,
		Subnets6: []dhcp6.Subnet{{Prefix: netip.MustParsePrefix("fd00:198:18::/64"), RackIP: netip.MustParseAddr("fd00:198:18::2"),
			Pools: []dhcp6.Range{{Start: netip.MustParseAddr("fd00:198:18::100"), End: netip.MustParseAddr("fd00:198:18::1ff")}}}},
		BootloaderHost: bootloader.Host{CacheDir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	socks, err := OpenHost(ctx, HostOptions{DHCPInterface: "rack0", DHCPv6: true, TFTPAddr: "198.18.0.2:69", HTTPAddr: "198.18.0.2:5248"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rack.ServeSockets(ctx, socks) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeSockets: %v", err)
		}
	}()

	// The machine's side: a raw-socket client that broadcasts, as PXE firmware does.
	client, err := nclient4.New("mach0", nclient4.WithTimeout(3*time.Second), nclient4.WithRetry(3))
	if err != nil {
		t.Skipf("needs a raw socket for the DHCP client: %v", err)
	}
	defer client.Close()
	lease, err := client.Request(context.Background(),
		dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, 0}),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")))
	if err != nil {
		t.Fatalf("DORA over the veth: %v", err)
	}
	if lease.ACK.BootFileName != "lpxelinux.0" || lease.ACK.YourIPAddr.String() != "198.18.0.100" {
		t.Fatalf("ACK: file %q address %v", lease.ACK.BootFileName, lease.ACK.YourIPAddr)
	}
	// Configure the leased address and fetch over TFTP and HTTP from it.
	leased, _ := netlink.ParseAddr(lease.ACK.YourIPAddr.String() + "/24")
	if err := netlink.AddrAdd(machLink, leased); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ { // wait for DAD-free IPv4: usable at once, but let the link settle
		if addrs, _ := netlink.AddrList(machLink, netlink.FAMILY_V4); len(addrs) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	tc, _ := tftp.NewClient("198.18.0.2:69")
	tc.SetLocalAddr("198.18.0.100")
	tc.SetTimeout(2 * time.Second)
	wt, err := tc.Receive("lpxelinux.0", "octet")
	if err != nil {
		t.Fatalf("tftp: %v", err)
	}
	var b bytes.Buffer
	wt.WriteTo(&b)
	if b.String() != "lpxelinux" {
		t.Errorf("tftp lpxelinux.0 = %q", b.String())
	}
	// HTTP, dialled from this thread (net/http dials on other threads, outside the namespace).
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("198.18.0.100")}}
	conn, err := d.Dial("tcp", "198.18.0.2:5248")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /pxelinux.cfg/01-52-54-00-12-34-56 HTTP/1.1\r\nHost: 198.18.0.2:5248\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "KERNEL http://198.18.0.2:5248/images/") {
		t.Errorf("config over HTTP: %d\n%s", resp.StatusCode, body)
	}
	// DHCPv6: a client on the machine's link solicits ff02::1:2 from its link-local address
	// (which the kernel adds when the link comes up).
	for i := 0; i < 200; i++ {
		if addrs, _ := netlink.AddrList(machLink, netlink.FAMILY_V6); len(addrs) > 0 && addrs[0].Flags&unix.IFA_F_TENTATIVE == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	c6conn, err := nclient6.NewIPv6UDPConn("mach0", dhcpv6.DefaultClientPort)
	if err != nil {
		t.Fatalf("dhcpv6 client socket: %v", err)
	}
	c6, err := nclient6.NewWithConn(c6conn, machLink.Attrs().HardwareAddr, nclient6.WithTimeout(2*time.Second), nclient6.WithRetry(3))
	if err != nil {
		t.Fatal(err)
	}
	defer c6.Close()
	adv, err := c6.Solicit(context.Background(), dhcpv6.WithOption(&dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionClientArchType, OptionData: []byte{0, 7}}))
	if err != nil {
		t.Fatalf("DHCPv6 solicit over the veth: %v", err)
	}
	if u := adv.Options.BootFileURL(); u != "tftp://[fd00:198:18::2]/bootx64.efi" {
		t.Errorf("DHCPv6 boot URL %q", u)
	}
	if got := rack.Leases(); len(got) != 1 || got[0].IP != netip.MustParseAddr("198.18.0.100") || got[0].State != dhcp4.StateBound {
		t.Errorf("leases %+v", got)
	}
}

func TestOpenHostErrors(t *testing.T) {
	if _, err := OpenHost(context.Background(), HostOptions{}); err == nil || !strings.Contains(err.Error(), "no host service") {
		t.Errorf("err = %v", err)
	}
	if _, err := OpenHost(context.Background(), HostOptions{TFTPAddr: "127.0.0.1:0", HTTPAddr: "256.0.0.1:1"}); err == nil {
		t.Error("bad HTTP address accepted")
	}
	if _, err := OpenHost(context.Background(), HostOptions{DHCPInterface: "no-such-if0", DHCPPort: 16767}); err == nil || !strings.Contains(err.Error(), "no-such-if0") {
		t.Errorf("unknown interface: err = %v", err)
	}
}
