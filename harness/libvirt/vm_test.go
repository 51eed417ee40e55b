package libvirt

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/harness/vnet"
	"github.com/maasemu/maasemu/trace"
)

// Tests in this file run real VMs (TCG where KVM does not work) through qemu:///system.

// requireLibvirt skips the test when libvirt or QEMU is not installed, and starts
// virtlogd and libvirtd when they are not running. Where they cannot start, the test
// skips, except in CI (CI set), where that is a failure.
func requireLibvirt(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("libvirt VM test: needs qemu-system-x86_64 (Debian's qemu-system-x86)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := EnsureDaemons(ctx); err != nil {
		if errors.Is(err, ErrNotInstalled) || os.Getenv("CI") == "" {
			t.Skipf("libvirt VM test: needs libvirtd and virtlogd running: %v", err)
		}
		t.Fatalf("libvirt daemons: %v", err)
	}
}

func randomLab(t testing.TB) string {
	b := make([]byte, 3)
	rand.Read(b)
	return "t" + hex.EncodeToString(b)
}

// newVMDriver returns a driver on qemu:///system for a fresh lab in a temp work dir, and
// checks at the test's end that the lab left nothing: no domain, no file, no QEMU.
func newVMDriver(t *testing.T, ctx context.Context, sink trace.Sink) *Driver {
	t.Helper()
	requireLibvirt(t)
	work := t.TempDir()
	d, err := New(ctx, Options{Lab: randomLab(t), WorkDir: work, Sink: sink, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertNothingLeft(t, d.Prefix(), work)
	})
	return d
}

// assertNothingLeft checks that no domain, file or QEMU process of the lab is left.
func assertNothingLeft(t *testing.T, prefix, work string) {
	t.Helper()
	out, err := exec.Command("virsh", "-c", URISystem, "list", "--all", "--name").CombinedOutput()
	if err != nil {
		t.Errorf("virsh list --all: %v: %s", err, out)
	}
	for _, name := range strings.Fields(string(out)) {
		if strings.HasPrefix(name, prefix) {
			t.Errorf("virsh list --all still shows %s", name)
		}
	}
	if left := dirEntries(t, work); len(left) != 0 {
		t.Errorf("work dir %s still holds %v", work, left)
	}
	if procs := qemuProcesses(prefix); len(procs) != 0 {
		t.Errorf("QEMU processes still running: %v", procs)
	}
}

// qemuProcesses returns the pids of QEMU processes whose guest name starts with prefix.
func qemuProcesses(prefix string) []string {
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) == 0 || !strings.Contains(filepath.Base(args[0]), "qemu-system") {
			continue
		}
		for _, a := range args {
			if strings.HasPrefix(a, "guest="+prefix) {
				out = append(out, filepath.Base(d))
			}
		}
	}
	return out
}

// TestGoldenXMLAcceptedByLibvirt defines every golden domain with libvirt's schema
// validation on, then undefines it.
func TestGoldenXMLAcceptedByLibvirt(t *testing.T) {
	requireLibvirt(t)
	api, err := Dial(t.Context(), URISystem)
	if err != nil {
		t.Fatal(err)
	}
	defer api.Disconnect()
	for _, c := range goldenCases() {
		t.Run(c.name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", c.name+".xml"))
			if err != nil {
				t.Fatal(err)
			}
			// A lab name of our own, so a concurrent run cannot collide.
			xml := strings.ReplaceAll(string(b), "maasemu-golden-", "maasemu-golden"+randomLab(t)+"-")
			dom, err := api.DomainDefineXMLFlags(xml, golibvirt.DomainDefineValidate)
			if err != nil {
				t.Fatalf("libvirt refused testdata/%s.xml: %v", c.name, err)
			}
			if err := api.DomainUndefineFlags(dom, golibvirt.DomainUndefineNvram); err != nil {
				t.Fatal(err)
			}
		})
	}
	// And a broken one is refused with libvirt's reason.
	_, err = api.DomainDefineXMLFlags("<domain type='qemu'><name>maasemu-bad</name><devices><disk type='file'><target bus='floppy-net'/></disk></devices></domain>", golibvirt.DomainDefineValidate)
	if err == nil {
		t.Error("libvirt accepted a domain that does not validate")
	}
}

// dhcpSniffer collects DHCP DISCOVERs seen on a raw port of the switch.
type dhcpSniffer struct {
	port *vnet.RawPort
}

// discover waits for a DHCPDISCOVER from mac and returns it.
func (s dhcpSniffer) discover(t *testing.T, ctx context.Context, mac string) *dhcpv4.DHCPv4 {
	t.Helper()
	for {
		frame, err := s.port.Recv(ctx)
		if err != nil {
			t.Fatalf("no DHCPDISCOVER from %s: %v", mac, err)
		}
		if m := parseDHCP(frame); m != nil && m.MessageType() == dhcpv4.MessageTypeDiscover && m.ClientHWAddr.String() == mac {
			return m
		}
	}
}

// parseDHCP returns the DHCP message in an Ethernet/IPv4/UDP frame to port 67, or nil.
func parseDHCP(frame []byte) *dhcpv4.DHCPv4 {
	if len(frame) < 14+20+8 || binary.BigEndian.Uint16(frame[12:14]) != 0x0800 {
		return nil
	}
	ip := frame[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[9] != 17 || len(ip) < ihl+8 {
		return nil
	}
	udp := ip[ihl:]
	if binary.BigEndian.Uint16(udp[2:4]) != 67 {
		return nil
	}
	m, err := dhcpv4.FromBytes(udp[8:])
	if err != nil {
		return nil
	}
	return m
}

// bootCase is a VM boot test: firmware, the console line that proves the firmware
// network-booted, and the DHCP client architecture (option 93) it must send.
type bootCase struct {
	firmware machine.Firmware
	marker   string
	arch     uint16
}

func TestVMBootsToPXE(t *testing.T) {
	for _, c := range []bootCase{
		{machine.BIOS, "iPXE", 0},                // SeaBIOS runs QEMU's iPXE ROM: "Intel x86PC"
		{machine.UEFI, "Start PXE over IPv4", 7}, // OVMF's own PXE: "EFI x86-64"
	} {
		t.Run(string(c.firmware), func(t *testing.T) { testVMBoot(t, c) })
	}
}

func testVMBoot(t *testing.T, c bootCase) {
	ctx := t.Context()
	rec := trace.NewRecorder(nil)
	d := newVMDriver(t, ctx, rec)
	sw, err := vnet.NewSwitch(vnet.Config{Name: "lv-" + string(c.firmware), Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	sniff, err := sw.AttachRaw("sniffer", vnet.RawOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mac := mustMAC("52:54:00:12:34:56")
	if c.firmware == machine.UEFI {
		mac = mustMAC("52:54:00:12:34:57")
	}
	port, err := sw.AttachUDP(vnet.UDPPortConfig{Name: "vm", MAC: mac})
	if err != nil {
		t.Fatal(err)
	}
	m, err := d.CreateVM(ctx, machine.Spec{
		Name: "boot-" + string(c.firmware), Firmware: c.firmware, MemoryMiB: 512,
		NICs:  []machine.NIC{{MAC: mac, UDP: port.Attachment()}},
		Disks: []machine.Disk{{SizeBytes: 4 * gib, Serial: "blank0"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("accelerator %s: %s", m.Accel(), d.AccelReason())
	if c.firmware == machine.UEFI {
		if _, err := os.Stat(m.NVRAMPath()); err != nil {
			t.Fatalf("NVRAM copy: %v", err)
		}
	}
	// Power it on the way MAAS does: through the virsh power type.
	power := &VirshPower{Sink: rec, Logger: quietLog}
	params := fakemaas.PowerParams{"power_address": URISystem, "power_id": m.Domain()}
	if s, err := power.PowerQuery(ctx, params); err != nil || s != "off" {
		t.Fatalf("query before power on: %q, %v", s, err)
	}
	if err := power.PowerOn(ctx, params); err != nil {
		t.Fatal(err)
	}
	if s, err := power.PowerQuery(ctx, params); err != nil || s != "on" {
		t.Fatalf("query after power on: %q, %v", s, err)
	}
	waitEvent(t, rec, kindIs(trace.KindMachineStarted, m.Name()))

	// The firmware network-boots: its output streams into the trace, and its DHCP
	// DISCOVER reaches the userspace switch with the architecture MAAS keys on.
	dctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	disc := sniffer(sniff).discover(t, dctx, mac.String())
	arch := disc.ClientArch()
	if len(arch) == 0 || uint16(arch[0]) != c.arch {
		t.Errorf("DHCPDISCOVER client arch %v, want %d", arch, c.arch)
	}
	if !strings.HasPrefix(disc.ClassIdentifier(), "PXEClient") {
		t.Errorf("DHCPDISCOVER vendor class %q, want PXEClient:...", disc.ClassIdentifier())
	}
	line := waitEvent(t, rec, func(e trace.Event) bool {
		return e.Kind == trace.KindConsoleLine && strings.Contains(e.Message, c.marker)
	})
	if line.MAC != mac.String() || line.Source != trace.SourceConsole {
		t.Errorf("console event %+v: want the boot MAC and source console", line)
	}
	if b, err := os.ReadFile(m.ConsolePath()); err != nil || !bytes.Contains(b, []byte(c.marker)) {
		t.Errorf("console file %s lacks %q: %v", m.ConsolePath(), c.marker, err)
	}

	// Power off and on again through the power type, checking the state each time.
	if err := power.PowerOff(ctx, params); err != nil {
		t.Fatal(err)
	}
	if p, err := m.PowerState(ctx); err != nil || p != machine.PowerOff {
		t.Fatalf("after power off: %q, %v", p, err)
	}
	stopped := waitEvent(t, rec, kindIs(trace.KindMachineStopped, m.Name()))
	if stopped.Attrs["detail"] != "destroyed" {
		t.Errorf("stopped detail %v, want destroyed", stopped.Attrs["detail"])
	}
	if len(qemuProcesses(m.Domain())) != 0 {
		t.Error("QEMU still runs after power off")
	}
	if err := power.PowerOn(ctx, params); err != nil {
		t.Fatal(err)
	}
	if p, err := m.PowerState(ctx); err != nil || p != machine.PowerOn {
		t.Fatalf("after power on: %q, %v", p, err)
	}
	// The console keeps the first boot (append) and gets the second.
	sniffer(sniff).discover(t, dctx, mac.String())

	// Destroy takes the domain, its NVRAM, disks and console, and QEMU.
	dir, nvram := m.Dir(), m.NVRAMPath()
	if err := m.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range append([]string{dir, nvram}, m.DiskPaths()...) {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after Destroy (%v)", p, err)
		}
	}
	if _, err := power.PowerQuery(ctx, params); err == nil || !strings.HasPrefix(err.Error(), "Failed to get domain: "+m.Domain()) {
		t.Errorf("query after destroy: %v", err)
	}
	waitEvent(t, rec, kindIs(trace.KindMachineDestroyed, m.Name()))
}

func sniffer(p *vnet.RawPort) dhcpSniffer { return dhcpSniffer{port: p} }

// TestDestroyMidBootLeavesNothing powers machines on and destroys them while their
// firmware runs.
func TestDestroyMidBootLeavesNothing(t *testing.T) {
	ctx := t.Context()
	rec := trace.NewRecorder(nil)
	d := newVMDriver(t, ctx, rec)
	for _, fw := range []machine.Firmware{machine.BIOS, machine.UEFI} {
		m, err := d.CreateVM(ctx, machine.Spec{
			Name: "mid-" + string(fw), Firmware: fw, MemoryMiB: 256,
			NICs:  []machine.NIC{udpNIC(DeriveMAC("mid", len(fw)).String(), "", freeUDP(t), freeUDP(t))},
			Disks: []machine.Disk{{SizeBytes: gib}, {SizeBytes: gib, Bus: "nvme", Serial: "nv0"}, {SizeBytes: gib, Bus: "scsi"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.PowerOn(ctx); err != nil {
			t.Fatal(err)
		}
		// Wait until the firmware is running (its first console line), then pull it.
		waitEvent(t, rec, func(e trace.Event) bool { return e.Kind == trace.KindConsoleLine && e.Attrs["machine"] == m.Name() })
		if len(qemuProcesses(m.Domain())) != 1 {
			t.Fatalf("no QEMU process for %s while it boots", m.Domain())
		}
		if err := m.Destroy(ctx); err != nil {
			t.Fatal(err)
		}
		assertNothingLeft(t, m.Domain(), d.WorkDir())
	}
}

// TestContextCancelCleansUp cancels the driver's context (what Ctrl-C does in the CLI)
// with machines running and defined.
func TestContextCancelCleansUp(t *testing.T) {
	requireLibvirt(t)
	ctx, cancel := context.WithCancel(t.Context())
	work := t.TempDir()
	d, err := New(ctx, Options{Lab: randomLab(t), WorkDir: work, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	for i, fw := range []machine.Firmware{machine.UEFI, machine.BIOS} {
		m, err := d.Create(ctx, machine.Spec{Name: fmt.Sprintf("c%d", i), Firmware: fw, MemoryMiB: 256, Disks: []machine.Disk{{SizeBytes: gib}}})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := m.PowerOn(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(qemuProcesses(d.Prefix())) != 1 {
		t.Fatalf("want one running QEMU before cancel, have %v", qemuProcesses(d.Prefix()))
	}
	cancel()
	<-d.Done()
	assertNothingLeft(t, d.Prefix(), work)
}

// TestSweepRemovesLeftovers leaves a running machine behind, as a crashed maasemu would,
// and sweeps it from a new driver of the same lab.
func TestSweepRemovesLeftovers(t *testing.T) {
	requireLibvirt(t)
	ctx := t.Context()
	lab, work := randomLab(t), t.TempDir()
	crashed, err := New(ctx, Options{Lab: lab, WorkDir: work, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	m, err := crashed.CreateVM(ctx, machine.Spec{Name: "left", Firmware: machine.UEFI, MemoryMiB: 256, Disks: []machine.Disk{{SizeBytes: gib}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := New(ctx, Options{Lab: lab, WorkDir: work, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	removed, err := d.Sweep(ctx, d.Prefix())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, m.Domain()) {
		t.Errorf("swept %v, want %s among them", removed, m.Domain())
	}
	assertNothingLeft(t, d.Prefix(), work)
	if err := crashed.Close(); err != nil {
		t.Errorf("closing the swept driver: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Error(err)
	}
}

// TestAccelProbe probes KVM afresh and checks the verdict is cached and the probe
// domain gone. It does not assert which accelerator: that depends on the host.
func TestAccelProbe(t *testing.T) {
	requireLibvirt(t)
	cache := t.TempDir()
	d, err := New(t.Context(), Options{Lab: randomLab(t), WorkDir: t.TempDir(), CacheDir: cache, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a, err := d.Accel(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("verdict: %s (%s)", a, d.AccelReason())
	got := readAccelCache(filepath.Join(cache, "libvirt", "accel.json"))
	if got[URISystem].Accel != a {
		t.Errorf("cache holds %+v, want %s", got, a)
	}
	assertNothingLeft(t, d.Prefix(), d.WorkDir())
	if _, err := os.Stat("/dev/kvm"); err != nil && a != AccelTCG {
		t.Errorf("no /dev/kvm but verdict %s", a)
	}
}

// TestDialURIs connects with each local URI form and lists domains.
func TestDialURIs(t *testing.T) {
	requireLibvirt(t)
	uris := []string{URISystem, "qemu+unix:///system?socket=" + SystemSocket, "test:///default"}
	if os.Geteuid() == 0 || socketAlive(SessionSocket()) {
		uris = append(uris, URISession)
	}
	for _, uri := range uris {
		api, err := Dial(t.Context(), uri)
		if err != nil {
			t.Errorf("%s: %v", uri, err)
			continue
		}
		if _, _, err := api.ConnectListAllDomains(1, 0); err != nil {
			t.Errorf("%s: listing domains: %v", uri, err)
		}
		if err := api.Disconnect(); err != nil {
			t.Errorf("%s: disconnect: %v", uri, err)
		}
	}
	if _, err := Dial(t.Context(), "qemu+unix:///system?socket=/nonexistent/sock"); err == nil || !strings.Contains(err.Error(), "/nonexistent/sock") {
		t.Errorf("dialing a missing socket: %v, want an error naming it", err)
	}
}

// TestVirshPowerAgainstLibvirt checks the power type's errors against a real daemon.
func TestVirshPowerAgainstLibvirt(t *testing.T) {
	requireLibvirt(t)
	p := &VirshPower{Logger: quietLog, Waits: []time.Duration{0}}
	_, err := p.PowerQuery(t.Context(), fakemaas.PowerParams{"power_address": URISystem, "power_id": "maasemu-no-such-domain"})
	if err == nil || !strings.HasPrefix(err.Error(), "Failed to get domain: maasemu-no-such-domain (Virsh command ['domstate', 'maasemu-no-such-domain'] failed: Domain not found") {
		t.Errorf("unknown domain: %v", err)
	}
	err = p.PowerOn(t.Context(), fakemaas.PowerParams{"power_address": "qemu:///system?socket=/nonexistent", "power_id": "x"})
	if err == nil || err.Error() != "Supplying extra parameters to the Virsh address is not supported." {
		t.Errorf("query string: %v", err)
	}
	err = p.PowerOn(t.Context(), fakemaas.PowerParams{"power_address": "qemu+tcp://127.0.0.1:1/system", "power_id": "x"})
	if err == nil || !strings.HasPrefix(err.Error(), "Failed to login to virsh console.") {
		t.Errorf("unreachable daemon: %v", err)
	}
}

// freeUDP returns a UDP port on 127.0.0.1 that is free now.
func freeUDP(t *testing.T) uint16 {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

// TestNICModelsNetworkBoot checks that every NIC model PXE boots under both firmwares:
// a DHCPDISCOVER with the firmware's architecture reaches the switch. Under UEFI,
// virtio uses OVMF's own driver and the others QEMU's iPXE EFI ROMs.
func TestNICModelsNetworkBoot(t *testing.T) {
	ctx := t.Context()
	d := newVMDriver(t, ctx, nil)
	sw, err := vnet.NewSwitch(vnet.Config{Name: "lv-models", Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	sniff, err := sw.AttachRaw("sniffer", vnet.RawOptions{})
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for _, fw := range []machine.Firmware{machine.BIOS, machine.UEFI} {
		for _, model := range []string{ModelVirtio, ModelE1000, ModelE1000e, ModelRTL8139} {
			t.Run(string(fw)+"-"+model, func(t *testing.T) {
				i++
				mac := DeriveMAC("models", i)
				port, err := sw.AttachUDP(vnet.UDPPortConfig{Name: fmt.Sprintf("vm%d", i), MAC: mac})
				if err != nil {
					t.Fatal(err)
				}
				defer port.Close()
				m, err := d.Create(ctx, machine.Spec{
					Name: fmt.Sprintf("%s-%s", fw, model), Firmware: fw, MemoryMiB: 256,
					NICs: []machine.NIC{{MAC: mac, Model: model, UDP: port.Attachment()}},
				})
				if err != nil {
					t.Fatal(err)
				}
				defer m.Destroy(ctx)
				if err := m.PowerOn(ctx); err != nil {
					t.Fatal(err)
				}
				dctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
				defer cancel()
				disc := sniffer(sniff).discover(t, dctx, mac.String())
				want := uint16(0)
				if fw == machine.UEFI {
					want = 7
				}
				if arch := disc.ClientArch(); len(arch) == 0 || uint16(arch[0]) != want {
					t.Errorf("client arch %v, want %d", arch, want)
				}
			})
		}
	}
}

// TestDiskIdentityReachesQEMU checks, in QEMU's own device tree, that every disk bus
// gets the device and the serial (and model) asked for: storage configs match disks by
// serial, so these must be what the guest sees.
func TestDiskIdentityReachesQEMU(t *testing.T) {
	ctx := t.Context()
	d := newVMDriver(t, ctx, nil)
	for _, fw := range []machine.Firmware{machine.BIOS, machine.UEFI} {
		t.Run(string(fw), func(t *testing.T) {
			m, err := d.CreateVM(ctx, machine.Spec{Name: "ids-" + string(fw), Firmware: fw, MemoryMiB: 256, Disks: []machine.Disk{
				{SizeBytes: gib, Serial: "VIRT0"},
				{SizeBytes: gib, Bus: BusSATA, Serial: "SATA1", Model: "Samsung SSD 860"},
				{SizeBytes: gib, Bus: BusSCSI, Serial: "SCSI2", Model: "PERC H730"},
				{SizeBytes: gib, Bus: BusNVMe, Serial: "NVME3"},
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Destroy(ctx)
			if err := m.PowerOn(ctx); err != nil {
				t.Fatal(err)
			}
			out, err := exec.CommandContext(ctx, "virsh", "-c", URISystem, "qemu-monitor-command", "--hmp", m.Domain(), "info qtree").CombinedOutput()
			if err != nil {
				t.Fatalf("info qtree: %v: %s", err, out)
			}
			type dev struct{ Type, Model, Product string }
			got := map[string]dev{} // by serial
			var cur dev
			serial := ""
			flush := func() {
				if serial != "" {
					got[serial] = cur
				}
			}
			for _, line := range strings.Split(string(out), "\n") {
				line = strings.TrimSpace(line)
				if typ, ok := strings.CutPrefix(line, "dev: "); ok {
					flush()
					cur, serial = dev{Type: strings.Split(typ, ",")[0]}, ""
					continue
				}
				key, val, ok := strings.Cut(line, " = ")
				if !ok {
					continue
				}
				val = strings.Trim(val, `"`)
				switch key {
				case "model":
					cur.Model = val
				case "product":
					cur.Product = val
				case "serial":
					serial = val
				}
			}
			flush()
			want := map[string]dev{
				"VIRT0": {Type: "virtio-blk-device"},
				"SATA1": {Type: "ide-hd", Model: "Samsung SSD 860"},
				"SCSI2": {Type: "scsi-hd", Product: "PERC H730"},
				"NVME3": {Type: "nvme"},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("QEMU devices by serial (-want +got):\n%s", diff)
			}
		})
	}
}
