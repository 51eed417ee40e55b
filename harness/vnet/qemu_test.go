package vnet_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/harness/vnet"
	"github.com/maasemu/maasemu/harness/vnet/pcap"
	"github.com/maasemu/maasemu/pxe/bootfiles"
	"github.com/maasemu/maasemu/pxe/dhcp4"
	"github.com/maasemu/maasemu/pxe/tftpboot"
	"github.com/maasemu/maasemu/trace"
)

// hostRegion is a region with no machines and no imported bootloaders: the rack serves
// the host's packaged bootloaders (lpxelinux.0 from pxelinux).
type hostRegion struct{}

func (hostRegion) BootConfig(context.Context, fakemaas.BootRequest) (fakemaas.KernelParams, error) {
	return fakemaas.KernelParams{}, fakemaas.ErrNoBootConfig
}
func (hostRegion) OpenImage(context.Context, string) (fakemaas.ImageFile, error) {
	return fakemaas.ImageFile{}, fakemaas.ErrImageNotFound
}
func (hostRegion) OpenBootloader(context.Context, string, string, string) (fakemaas.ImageFile, error) {
	return fakemaas.ImageFile{}, fakemaas.ErrImageNotFound
}

// bootTimes are moments of a PXE boot, measured from QEMU's start on the switch's clock.
type bootTimes struct {
	Discover, Offer, Request, Ack, FirstRRQ time.Duration
	RSCount                                 int // IPv6 router solicitations seen
}

// watcher classifies the frames the switch forwards.
type watcher struct {
	start time.Time
	mu    sync.Mutex
	bt    bootTimes
	rrq   chan struct{}
	once  sync.Once
}

func (w *watcher) WritePacket(t time.Time, f []byte) error {
	if len(f) < 14 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	at := t.Sub(w.start)
	switch binary.BigEndian.Uint16(f[12:]) {
	case 0x86dd:
		if len(f) > 54 && f[20] == 58 && f[54] == 133 {
			w.bt.RSCount++
		}
	case 0x0800:
		ip := f[14:]
		ihl := int(ip[0]&0xf) * 4
		if ip[9] != 17 || len(ip) < ihl+8 {
			return nil
		}
		u := ip[ihl:]
		dport := binary.BigEndian.Uint16(u[2:])
		payload := u[8:]
		switch dport {
		case 67, 68:
			if mt := dhcpMessageType(payload); mt != 0 {
				p := map[byte]*time.Duration{1: &w.bt.Discover, 2: &w.bt.Offer, 3: &w.bt.Request, 5: &w.bt.Ack}[mt]
				if p != nil && *p == 0 {
					*p = at
				}
			}
		case 69:
			if len(payload) >= 2 && binary.BigEndian.Uint16(payload) == 1 && w.bt.FirstRRQ == 0 {
				w.bt.FirstRRQ = at
				w.once.Do(func() { close(w.rrq) })
			}
		}
	}
	return nil
}

func (w *watcher) times() bootTimes {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bt
}

func dhcpMessageType(b []byte) byte {
	if len(b) < 240 || binary.BigEndian.Uint32(b[236:]) != 0x63825363 {
		return 0
	}
	for i := 240; i+1 < len(b); {
		code := b[i]
		if code == 0 {
			i++
			continue
		}
		if code == 255 {
			break
		}
		n := int(b[i+1])
		if code == 53 && n == 1 && i+2 < len(b) {
			return b[i+2]
		}
		i += 2 + n
	}
	return 0
}

// QEMU loads this iPXE ROM (Debian package ipxe-qemu) for virtio-net-pci.
const ipxeROM = "/usr/lib/ipxe/qemu/efi-virtio.rom"

func needQEMU(tb testing.TB) string {
	tb.Helper()
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		tb.Skip("QEMU PXE boot: needs qemu-system-x86_64 (Debian package qemu-system-x86)")
	}
	if _, err := os.Stat(ipxeROM); err != nil {
		tb.Skip("QEMU PXE boot: needs the iPXE ROM " + ipxeROM + " (Debian package ipxe-qemu)")
	}
	if _, err := os.Stat("/usr/lib/PXELINUX/lpxelinux.0"); err != nil {
		tb.Skip("QEMU PXE boot: needs /usr/lib/PXELINUX/lpxelinux.0 (Debian package pxelinux)")
	}
	return qemu
}

type bootLab struct {
	sw      *vnet.Switch
	rec     *trace.Recorder
	watch   *watcher
	console string
	pcap    string
}

// pxeBootToTFTP boots a BIOS VM (SeaBIOS + iPXE, virtio-net) on the userspace network
// with the project's DHCP and TFTP servers, until its first TFTP read request; with
// wantFile, until that file was sent in full.
func pxeBootToTFTP(tb testing.TB, cfg vnet.Config, wantFile string) (bootTimes, *bootLab) {
	tb.Helper()
	qemu := needQEMU(tb)
	dir := tb.TempDir()
	lab := &bootLab{rec: trace.NewRecorder(nil), watch: &watcher{rrq: make(chan struct{})}, console: filepath.Join(dir, "console.log"), pcap: filepath.Join(dir, "boot.pcap")}
	pw, err := pcap.Create(lab.pcap, pcap.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Capture = vnet.TeeCapture(pw, lab.watch)
	cfg.Trace = lab.rec
	sw, err := vnet.NewSwitch(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	lab.sw = sw
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		sw.Close()
		pw.Close()
	}()
	rack, err := sw.NewStack(vnet.StackConfig{Name: "rack", Addrs: []netip.Prefix{vnet.DefaultRackAddr}})
	if err != nil {
		tb.Fatal(err)
	}
	rackIP := vnet.DefaultRackAddr.Addr()

	dsrv, err := dhcp4.New(dhcp4.Config{
		Subnets: []dhcp4.Subnet{{
			Prefix: vnet.DefaultSubnet, RackIP: rackIP,
			Pools: []dhcp4.Range{{Start: netip.MustParseAddr("198.18.0.100"), End: netip.MustParseAddr("198.18.0.199")}},
			// MAAS answers an iPXE ROM (user class "iPXE") with http://rack:5248/ipxe.cfg;
			// with that method disabled it gets the pxe method, lpxelinux.0 by TFTP.
			DisabledBootMethods: []string{"ipxe"},
		}},
		Sink: lab.rec,
	})
	if err != nil {
		tb.Fatal(err)
	}
	dconn, err := rack.ListenUDP(netip.MustParseAddrPort("0.0.0.0:67"), vnet.UDPOptions{Broadcast: true})
	if err != nil {
		tb.Fatal(err)
	}
	tconn, err := rack.ListenUDP(netip.AddrPortFrom(rackIP, 69), vnet.UDPOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tree := bootfiles.New(bootfiles.Config{Region: hostRegion{}, Sink: lab.rec})
	tsrv := tftpboot.New(tftpboot.Config{Tree: tree, LocalIP: rackIP, Sink: lab.rec})
	wg.Add(2)
	go func() { defer wg.Done(); dsrv.Serve(ctx, dconn) }()
	go func() { defer wg.Done(); tsrv.Serve(ctx, tconn) }()

	mac := "52:54:00:12:34:56"
	vm, err := sw.AttachUDP(vnet.UDPPortConfig{Name: "vm0", MAC: mustMAC(mac)})
	if err != nil {
		tb.Fatal(err)
	}
	args := []string{"-accel", "tcg", "-nographic", "-nodefaults", "-m", "256",
		"-serial", "file:" + lab.console, "-boot", "n", "-no-reboot",
		"-netdev", vm.QEMUNetdev("n0"),
		"-device", "virtio-net-pci,netdev=n0,mac=" + mac}
	cmd := exec.CommandContext(ctx, qemu, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	lab.watch.mu.Lock()
	lab.watch.start = time.Now()
	lab.watch.mu.Unlock()
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting QEMU: %v", err)
	}
	qemuDone := make(chan error, 1)
	go func() { qemuDone <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-qemuDone
	}()

	fail := func(why string) {
		console, _ := os.ReadFile(lab.console)
		tb.Fatalf("%s (times %+v)\nQEMU stderr: %s\nconsole:\n%s", why, lab.watch.times(), stderr.String(), console)
	}
	select {
	case <-lab.watch.rrq:
	case err := <-qemuDone:
		qemuDone <- err
		fail(fmt.Sprintf("QEMU exited (%v) before a TFTP request", err))
	case <-ctx.Done():
		fail("no TFTP request")
	}
	if wantFile != "" {
		events, stop := lab.rec.Subscribe()
		defer stop()
		sent := func(e trace.Event) bool {
			return e.Kind == trace.KindTFTPRead && e.Attrs["file"] == wantFile
		}
		found := false
		for _, e := range lab.rec.Events() {
			found = found || sent(e)
		}
		for !found {
			select {
			case e := <-events:
				found = sent(e)
			case <-ctx.Done():
				fail(wantFile + " not sent")
			}
		}
	}
	return lab.watch.times(), lab
}

func mustMAC(s string) net.HardwareAddr {
	hw, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return hw
}

// A real BIOS PXE boot on the userspace network: SeaBIOS and the iPXE ROM in QEMU take a
// lease from the project's DHCP server and fetch lpxelinux.0 from its TFTP server.
func TestQEMUPXEBoot(t *testing.T) {
	bt, lab := pxeBootToTFTP(t, vnet.Config{Name: "qemu-pxe"}, "lpxelinux.0")
	t.Logf("QEMU start -> DHCPDISCOVER %v, OFFER %v, REQUEST %v, ACK %v, first TFTP request %v (ACK to TFTP %v); router solicitations answered: %d",
		bt.Discover, bt.Offer, bt.Request, bt.Ack, bt.FirstRRQ, bt.FirstRRQ-bt.Ack, bt.RSCount)
	var kinds []string
	for _, e := range lab.rec.Events() {
		kinds = append(kinds, e.Kind)
	}
	all := strings.Join(kinds, " ")
	for _, k := range []string{trace.KindDHCPDiscover, trace.KindDHCPOffer, trace.KindDHCPRequest, trace.KindDHCPAck, trace.KindTFTPRead} {
		if !strings.Contains(all, k) {
			t.Errorf("no %s event; events: %s", k, all)
		}
	}
	if bt.Ack == 0 || bt.FirstRRQ < bt.Ack {
		t.Errorf("boot order wrong: %+v", bt)
	}
	if _, err := os.Stat(lab.pcap); err != nil {
		t.Error(err)
	}
}

// BenchmarkQEMUPXEToTFTP measures the time from QEMU's start to the first TFTP request of
// a BIOS PXE boot, with the switch answering IPv6 router solicitations (the default) and
// without (iPXE then waits for its IPv6 autoconfiguration to time out).
func BenchmarkQEMUPXEToTFTP(b *testing.B) {
	for _, ra := range []bool{true, false} {
		b.Run(fmt.Sprintf("router-adverts=%v", ra), func(b *testing.B) {
			var total, fromAck time.Duration
			for range b.N {
				bt, _ := pxeBootToTFTP(b, vnet.Config{NoRouterAdvertisements: !ra}, "")
				total += bt.FirstRRQ
				fromAck += bt.FirstRRQ - bt.Ack
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s-to-first-tftp")
			b.ReportMetric(fromAck.Seconds()/float64(b.N), "s-ack-to-tftp")
			b.ReportMetric(0, "ns/op")
		})
	}
}
