package pxe

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/maasemu/maasemu/pxe/bootloader"
	"github.com/maasemu/maasemu/pxe/dhcp4"
	"github.com/maasemu/maasemu/pxe/internal/pxetest"
	"github.com/maasemu/maasemu/trace"
	"github.com/pin/tftp/v3"
)

var rackSubnet = dhcp4.Subnet{
	Prefix: netip.MustParsePrefix("198.18.0.0/24"), RackIP: netip.MustParseAddr("198.18.0.2"),
	Pools:      []dhcp4.Range{{Start: netip.MustParseAddr("198.18.0.100"), End: netip.MustParseAddr("198.18.0.199")}},
	DomainName: "maas", DNS: []netip.Addr{netip.MustParseAddr("198.18.0.2")},
}

type lab struct {
	rack     *Rack
	region   *pxetest.Region
	rec      *trace.Recorder
	dhcp     *net.UDPAddr
	tftp     string
	http     string // base URL of the rack HTTP service
	metadata []string
}

// startLab runs a rack on loopback: DHCP and TFTP on UDP sockets, HTTP on a TCP listener.
func startLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{region: pxetest.NewRegion(), rec: trace.NewRecorder(nil)}
	l.region.Bootloaders["pxe/i386/lpxelinux.0"] = []byte("lpxelinux")
	l.region.Bootloaders["pxe/i386/ldlinux.c32"] = []byte("ldlinux")
	l.region.Bootloaders["uefi/amd64/bootx64.efi"] = []byte("shim")
	l.region.Bootloaders["uefi/amd64/grubx64.efi"] = []byte("grub")
	regionHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.metadata = append(l.metadata, r.URL.RequestURI())
		fmt.Fprint(w, "#cloud-config\n")
	})
	rack, err := New(Config{
		Region: l.region, RegionHandler: regionHandler, Subnets: []dhcp4.Subnet{rackSubnet}, Sink: l.rec,
		BootloaderHost: bootloader.Host{CacheDir: t.TempDir()},
	})
	if err != nil {
		t.Fatal(err)
	}
	l.rack = rack
	ctx, cancel := context.WithCancel(context.Background())
	dc, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	tc, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	l.dhcp, l.tftp = dc.LocalAddr().(*net.UDPAddr), tc.LocalAddr().String()
	done := make(chan error, 2)
	go func() { done <- rack.ServeDHCP(ctx, dc) }()
	go func() { done <- rack.ServeTFTP(ctx, tc) }()
	srv := httptest.NewServer(rack.HTTPHandler())
	l.http = srv.URL
	t.Cleanup(func() {
		srv.Close()
		cancel()
		for i := 0; i < 2; i++ {
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	})
	return l
}

func (l *lab) tftpGet(t *testing.T, name string) []byte {
	t.Helper()
	c, _ := tftp.NewClient(l.tftp)
	c.SetTimeout(2 * time.Second)
	c.SetBlockSize(1468)
	wt, err := c.Receive(name, "octet")
	if err != nil {
		t.Fatalf("tftp %s: %v", name, err)
	}
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		t.Fatalf("tftp %s: %v", name, err)
	}
	return b.Bytes()
}

var rackURL = regexp.MustCompile(`^http://[^/]+:5248`)

// httpGet fetches a URL a boot config names (http://<rack>:5248/...) from the lab's HTTP
// server. Configs rendered from a loopback request name 127.0.0.1, DHCP names 198.18.0.2.
func (l *lab) httpGet(t *testing.T, url string) []byte {
	t.Helper()
	url = rackURL.ReplaceAllLiteralString(url, l.http)
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return b
}

func (l *lab) dora(t *testing.T, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *nclient4.Lease {
	t.Helper()
	cc, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	c, err := nclient4.NewWithConn(cc, mac, nclient4.WithServerAddr(l.dhcp), nclient4.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lease, err := c.Request(context.Background(), mods...)
	if err != nil {
		t.Fatalf("DORA: %v", err)
	}
	return lease
}

var mac = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

// TestBIOSBoot walks the path SeaBIOS's PXE ROM and lpxelinux take, as MAAS serves it.
func TestBIOSBoot(t *testing.T) {
	l := startLab(t)
	lease := l.dora(t, mac, dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, 0}),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")))
	if lease.ACK.BootFileName != "lpxelinux.0" || lease.ACK.IPAddressLeaseTime(0) != 30*time.Second {
		t.Fatalf("ACK file %q lease %v", lease.ACK.BootFileName, lease.ACK.IPAddressLeaseTime(0))
	}
	prefix := string(lease.ACK.Options.Get(dhcpv4.GenericOptionCode(210)))
	if prefix != "http://198.18.0.2:5248/" {
		t.Fatalf("path-prefix %q", prefix)
	}
	if got := string(l.tftpGet(t, lease.ACK.BootFileName)); got != "lpxelinux" {
		t.Fatalf("lpxelinux.0 = %q", got)
	}
	// lpxelinux fetches ldlinux.c32 and its config over HTTP, below the path prefix.
	if got := string(l.httpGet(t, prefix+"ldlinux.c32")); got != "ldlinux" {
		t.Fatalf("ldlinux.c32 = %q", got)
	}
	cfg := string(l.httpGet(t, prefix+"pxelinux.cfg/01-52-54-00-12-34-56"))
	kernel := regexp.MustCompile(`(?m)^  KERNEL (\S+)$`).FindStringSubmatch(cfg)
	initrd := regexp.MustCompile(`(?m)^  INITRD (\S+)$`).FindStringSubmatch(cfg)
	if kernel == nil || initrd == nil {
		t.Fatalf("config:\n%s", cfg)
	}
	if got := string(l.httpGet(t, kernel[1])); got != "kernel image bytes" {
		t.Errorf("kernel = %q", got)
	}
	if got := string(l.httpGet(t, initrd[1])); got != "initrd image bytes" {
		t.Errorf("initrd = %q", got)
	}
	preseed := regexp.MustCompile(`cloud-config-url=(\S+)`).FindStringSubmatch(cfg)
	l.httpGet(t, preseed[1])
	if len(l.metadata) != 1 || l.metadata[0] != "/MAAS/metadata/latest/by-id/xyz8kp/?op=get_preseed" {
		t.Errorf("region saw %v", l.metadata)
	}
	// The timeline: every step is an event, in order.
	var kinds []string
	for _, e := range l.rec.Events() {
		if e.Level != trace.LevelDebug {
			kinds = append(kinds, e.Kind)
		}
	}
	want := []string{"dhcp.discover", "dhcp.offer", "dhcp.request", "dhcp.ack", "tftp.read",
		"http.get", "boot.config", "http.get", "http.get", "http.get"}
	if strings.Join(kinds, " ") != strings.Join(want, " ") {
		t.Errorf("timeline\n got %v\nwant %v", kinds, want)
	}
}

// TestUEFIBoot walks OVMF's path: shim and GRUB over TFTP, the pre-loader, the MAC config,
// then the kernel over HTTP through GRUB's (http,<rack>:5248) device.
func TestUEFIBoot(t *testing.T) {
	l := startLab(t)
	lease := l.dora(t, mac, dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, 7}))
	if lease.ACK.BootFileName != "bootx64.efi" || !lease.ACK.ServerIPAddr.Equal(net.ParseIP("198.18.0.2")) {
		t.Fatalf("ACK %q next-server %v", lease.ACK.BootFileName, lease.ACK.ServerIPAddr)
	}
	if string(l.tftpGet(t, "bootx64.efi")) != "shim" || string(l.tftpGet(t, "grubx64.efi")) != "grub" {
		t.Fatal("shim/grub")
	}
	if !strings.Contains(string(l.tftpGet(t, "/grub/grub.cfg")), "configfile /grub/grub.cfg-${net_default_mac}") {
		t.Fatal("pre-loader")
	}
	if len(l.tftpGet(t, "/grub/x86_64-efi/command.lst")) != 0 {
		t.Fatal("command.lst not empty")
	}
	cfg := string(l.tftpGet(t, "/grub/grub.cfg-52:54:00:12:34:56"))
	// The TFTP request arrived on 127.0.0.1: that is the rack address GRUB is sent to.
	m := regexp.MustCompile(`linux  \(http,127\.0\.0\.1:5248\)(/images/\S+)`).FindStringSubmatch(cfg)
	if m == nil {
		t.Fatalf("config:\n%s", cfg)
	}
	if got := string(l.httpGet(t, "http://198.18.0.2:5248"+m[1])); got != "kernel image bytes" {
		t.Errorf("kernel = %q", got)
	}
}

// TestIPXEBoot: iPXE gets ipxe.cfg over HTTP, chains to ipxe.cfg-${mac}.
func TestIPXEBoot(t *testing.T) {
	l := startLab(t)
	lease := l.dora(t, mac, dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, []byte("iPXE")),
		dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, 0}))
	if lease.ACK.BootFileName != "http://198.18.0.2:5248/ipxe.cfg" {
		t.Fatalf("ACK %q", lease.ACK.BootFileName)
	}
	pre := string(l.httpGet(t, lease.ACK.BootFileName))
	if !strings.Contains(pre, "chain http://${next-server}:5248/ipxe.cfg-${mac} ||") {
		t.Fatalf("ipxe.cfg:\n%s", pre)
	}
	cfg := string(l.httpGet(t, "http://198.18.0.2:5248/ipxe.cfg-52:54:00:12:34:56"))
	k := regexp.MustCompile(`(?m)^kernel (\S+)$`).FindStringSubmatch(cfg)
	if k == nil || string(l.httpGet(t, k[1])) != "kernel image bytes" {
		t.Errorf("config:\n%s", cfg)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "no region") {
		t.Errorf("err = %v", err)
	}
	bad := rackSubnet
	bad.Pools = []dhcp4.Range{{Start: netip.MustParseAddr("10.0.0.1"), End: netip.MustParseAddr("10.0.0.5")}}
	if _, err := New(Config{Region: pxetest.NewRegion(), Subnets: []dhcp4.Subnet{bad}}); err == nil || !strings.Contains(err.Error(), "inside the prefix") {
		t.Errorf("err = %v", err)
	}
	r, err := New(Config{Region: pxetest.NewRegion()})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	if err := r.ServeDHCP(context.Background(), c); err == nil {
		t.Error("ServeDHCP without subnets")
	}
}
