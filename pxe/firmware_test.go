package pxe

import (
	"context"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maasemu/maasemu/pxe/bootloader"
	"github.com/maasemu/maasemu/pxe/dhcp4"
	"github.com/maasemu/maasemu/pxe/internal/pxetest"
	"github.com/maasemu/maasemu/pxe/ra"
	"github.com/maasemu/maasemu/trace"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// These tests boot real firmware under QEMU (TCG) against the rack on host sockets: a tap
// device in a network namespace the test creates, the rack's address on it, QEMU on the
// other side. The region's kernel is a few bytes, so each boot ends at the kernel download:
// the tests check the path up to there, from the rack's events.

type firmwareLab struct {
	rec      *trace.Recorder
	tapIndex int
	rs       atomic.Int32 // router solicitations seen from the machine
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// startFirmwareLab moves the calling goroutine's (locked, never unlocked) thread into a new
// network namespace, creates tap0 with the rack address, serves the rack on host sockets and
// answers the machine's IPv6 router solicitations (as the virtual network should, see ra).
func startFirmwareLab(t *testing.T, bootHost bootloader.Host) *firmwareLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: a network namespace, a tap device and port 67")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("needs qemu-system-x86_64 (make deps)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("needs /dev/net/tun for a tap device")
	}
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Skipf("needs unshare(CLONE_NEWNET): %v", err)
	}
	lo, _ := netlink.LinkByName("lo")
	netlink.LinkSetUp(lo)
	if err := netlink.LinkAdd(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "tap0"}, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_DEFAULTS}); err != nil {
		t.Skipf("needs a tap device: %v", err)
	}
	tap, _ := netlink.LinkByName("tap0")
	addr, _ := netlink.ParseAddr("198.18.0.2/24")
	if err := netlink.AddrAdd(tap, addr); err != nil {
		t.Fatal(err)
	}
	netlink.LinkSetUp(tap)

	l := &firmwareLab{rec: trace.NewRecorder(nil), tapIndex: tap.Attrs().Index}
	rack, err := New(Config{Region: pxetest.NewRegion(), Subnets: []dhcp4.Subnet{rackSubnet}, Sink: l.rec, BootloaderHost: bootHost})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	socks, err := OpenHost(ctx, HostOptions{DHCPInterface: "tap0", TFTPAddr: "198.18.0.2:69", HTTPAddr: "198.18.0.2:5248"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rack.ServeSockets(ctx, socks) }()

	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.tapIndex}); err != nil {
		t.Fatal(err)
	}
	// Closing a packet socket does not wake a blocked recvfrom: poll with a receive timeout.
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
	rackMAC := tap.Attrs().HardwareAddr
	raDone := make(chan struct{})
	var stopRA atomic.Bool
	go func() {
		defer close(raDone)
		buf := make([]byte, 2048)
		for !stopRA.Load() {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue // timeout (EAGAIN) or interrupted: check stopRA
			}
			if net.HardwareAddr(buf[6:12]).String() != pxetest.MAC {
				continue // the rack's own kernel solicits too
			}
			if reply, ok := ra.Reply(buf[:n], rackMAC); ok {
				l.rs.Add(1)
				unix.Sendto(fd, reply, 0, &unix.SockaddrLinklayer{Ifindex: l.tapIndex, Halen: 6})
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeSockets: %v", err)
		}
		stopRA.Store(true)
		<-raDone
		unix.Close(fd)
	})
	return l
}

// boot runs QEMU until done says the boot went far enough, then returns the events.
func (l *firmwareLab) boot(t *testing.T, done func([]string) bool, args ...string) []trace.Event {
	t.Helper()
	serial := t.TempDir() + "/serial.log"
	args = append(args, "-accel", "tcg", "-m", "512", "-display", "none", "-monitor", "none",
		"-serial", "file:"+serial, "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac="+pxetest.MAC+",bootindex=1")
	events, stop := l.rec.Subscribe()
	defer stop()
	cmd := exec.Command("qemu-system-x86_64", args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// A deadline so a broken boot fails instead of hanging; no assertion depends on time.
	deadline := time.After(3 * time.Minute)
	for {
		select {
		case <-events:
			if evs := l.rec.Events(); done(steps(evs)) {
				return evs
			}
		case <-deadline:
			log, _ := os.ReadFile(serial)
			t.Fatalf("no kernel download; events %+v\nserial:\n%s", l.rec.Events(), log)
		}
	}
}

// steps reduces events to "kind file" lines for order checks.
func steps(evs []trace.Event) []string {
	var out []string
	for _, e := range evs {
		switch e.Kind {
		case trace.KindDHCPAck:
			out = append(out, "dhcp.ack "+e.Attrs["filename"].(string))
		case trace.KindTFTPRead:
			out = append(out, "tftp.read "+e.Attrs["file"].(string))
		case trace.KindHTTPGet:
			out = append(out, "http.get "+e.Attrs["path"].(string))
		case trace.KindBootConfig:
			out = append(out, "boot.config "+e.Attrs["file"].(string))
		}
	}
	return out
}

// contains reports whether want appears in got in order (other steps may come between).
func inOrder(got []string, want ...string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && strings.HasPrefix(g, want[i]) {
			i++
		}
	}
	return i == len(want)
}

// TestFirmwareSeaBIOSIPXE boots SeaBIOS with QEMU's iPXE ROM: MAAS answers iPXE (user class
// "iPXE") with http://<rack>:5248/ipxe.cfg, which chains to ipxe.cfg-${mac} and the kernel.
func TestFirmwareSeaBIOSIPXE(t *testing.T) {
	l := startFirmwareLab(t, bootloader.Host{CacheDir: t.TempDir()})
	kernel := func(s []string) bool { return inOrder(s, "http.get /images/") }
	got := steps(l.boot(t, kernel, "-machine", "pc,graphics=off"))
	if !inOrder(got,
		"dhcp.ack http://198.18.0.2:5248/ipxe.cfg",
		"http.get /ipxe.cfg",
		"boot.config ipxe.cfg-52:54:00:12:34:56",
		"http.get /ipxe.cfg-52:54:00:12:34:56",
		"http.get /images/") {
		t.Errorf("boot path:\n%s", strings.Join(got, "\n"))
	}
	// The router advertisement ended iPXE's router discovery at the first solicitation
	// (without it, iPXE solicits six times over ~16 s before fetching anything).
	if n := l.rs.Load(); n != 1 {
		t.Errorf("iPXE sent %d router solicitations, want 1", n)
	}
}

// TestFirmwareOVMF boots OVMF: iPXE's EFI driver tries first (and gets ipxe.cfg, whose
// kernel is not bootable), then OVMF's own PXE gets bootx64.efi (shim, from the host) over
// TFTP, shim loads the GRUB image built with grub-mkimage, GRUB reads the pre-loader and the
// machine's config and fetches the kernel over HTTP through (http,<rack>:5248).
func TestFirmwareOVMF(t *testing.T) {
	for _, f := range []string{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd", "/usr/lib/shim/shimx64.efi.signed", "/usr/lib/grub/x86_64-efi/moddep.lst"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("needs ovmf, shim-signed and grub-efi-amd64-bin (make deps): %v", err)
		}
	}
	l := startFirmwareLab(t, bootloader.DefaultHost(t.TempDir()))
	vars := t.TempDir() + "/OVMF_VARS.fd"
	b, _ := os.ReadFile("/usr/share/OVMF/OVMF_VARS_4M.fd")
	os.WriteFile(vars, b, 0o600)
	// Wait for the UEFI PXE path (the iPXE attempt before it also downloads a kernel).
	uefiKernel := func(s []string) bool { return inOrder(s, "dhcp.ack bootx64.efi", "http.get /images/") }
	evs := l.boot(t, uefiKernel, "-machine", "q35",
		"-drive", "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
		"-drive", "if=pflash,format=raw,file="+vars)
	got := steps(evs)
	if !inOrder(got,
		"dhcp.ack bootx64.efi",
		"tftp.read bootx64.efi",
		"tftp.read grubx64.efi",
		"tftp.read /grub/grub.cfg",
		"boot.config grub/grub.cfg-52:54:00:12:34:56",
		"tftp.read /grub/grub.cfg-52:54:00:12:34:56",
		"http.get /images/") {
		t.Errorf("boot path:\n%s", strings.Join(got, "\n"))
	}
	for _, e := range evs {
		if e.Kind == trace.KindTFTPError {
			t.Errorf("TFTP error during a good boot: %s", e.Message)
		}
	}
}
