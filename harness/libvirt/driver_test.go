package libvirt

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/go-cmp/cmp"
	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/trace"
)

// fakeFirmware writes stand-in OVMF files and returns them.
func fakeFirmware(t *testing.T) UEFIFirmware {
	t.Helper()
	dir := t.TempDir()
	fw := UEFIFirmware{Code: filepath.Join(dir, "CODE.fd"), Vars: filepath.Join(dir, "VARS.fd")}
	if err := os.WriteFile(fw.Code, bytes.Repeat([]byte{0xc0}, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fw.Vars, bytes.Repeat([]byte{0x5a, 0xa5}, 2048), 0o644); err != nil {
		t.Fatal(err)
	}
	return fw
}

type fakeEnv struct {
	daemon *fakeDaemon
	rec    *trace.Recorder
	d      *Driver
	work   string
}

func newFakeEnv(t *testing.T, ctx context.Context, mod func(*Options)) *fakeEnv {
	t.Helper()
	e := &fakeEnv{daemon: newFakeDaemon(), rec: trace.NewRecorder(nil), work: t.TempDir()}
	opts := Options{
		Lab: "unit", WorkDir: e.work, Accel: AccelTCG, UEFI: fakeFirmware(t),
		Sink: e.rec, Dial: e.daemon.dial, CacheDir: t.TempDir(), ConsolePoll: 5 * time.Millisecond, Logger: quietLog,
	}
	if mod != nil {
		mod(&opts)
	}
	d, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.d = d
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if n := e.daemon.openConns(); n != 0 {
			t.Errorf("%d libvirt connections left open after Close", n)
		}
	})
	return e
}

// waitEvent waits for an event matching ok among those recorded, for a liveness bound
// (not a timing assertion).
func waitEvent(t *testing.T, rec *trace.Recorder, ok func(trace.Event) bool) trace.Event {
	t.Helper()
	ch, stop := rec.Subscribe()
	defer stop()
	for _, e := range rec.Events() {
		if ok(e) {
			return e
		}
	}
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case e := <-ch:
			if ok(e) {
				return e
			}
		case <-timeout.C:
			t.Fatalf("event not seen; recorded: %v", kinds(rec.Events()))
			return trace.Event{}
		}
	}
}

func kinds(evs []trace.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Kind+":"+e.Message)
	}
	return out
}

func kindIs(kind, machineName string) func(trace.Event) bool {
	return func(e trace.Event) bool { return e.Kind == kind && e.Attrs["machine"] == machineName }
}

func countKind(evs []trace.Event, kind string) int {
	n := 0
	for _, e := range evs {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func TestCreateMakesDomainAndFiles(t *testing.T) {
	e := newFakeEnv(t, t.Context(), nil)
	spec := machine.Spec{
		Name: "n1", Firmware: machine.UEFI,
		NICs: []machine.NIC{udpNIC("52:54:00:00:00:01", "", 5001, 5002)},
		Disks: []machine.Disk{
			{SizeBytes: 8 * gib, Serial: "S0"},
			{SizeBytes: 1 << 20, Bus: "sata", Serial: "S1", Model: "Disk Model"},
		},
	}
	m, err := e.d.Create(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	v := m.(*VM)
	if got, want := v.Domain(), "maasemu-unit-n1"; got != want {
		t.Errorf("domain %q, want %q", got, want)
	}
	if diff := cmp.Diff([]string{"maasemu-unit-n1"}, e.daemon.names()); diff != "" {
		t.Errorf("domains (-want +got):\n%s", diff)
	}
	// Disks: sparse files of the asked size, in Spec order, in the machine's directory.
	var sizes []int64
	for i, p := range m.DiskPaths() {
		if filepath.Dir(p) != v.Dir() || filepath.Base(p) != diskFileName(i) {
			t.Errorf("disk %d at %s, want %s/%s", i, p, v.Dir(), diskFileName(i))
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, st.Size())
		if blocks := st.Sys().(*syscall.Stat_t).Blocks; blocks != 0 {
			t.Errorf("disk %d uses %d blocks: not sparse", i, blocks)
		}
	}
	if diff := cmp.Diff([]int64{8 * gib, 1 << 20}, sizes); diff != "" {
		t.Errorf("disk sizes (-want +got):\n%s", diff)
	}
	// NVRAM: a private copy of the variable store template.
	want, _ := os.ReadFile(e.d.opts.UEFI.Vars)
	got, err := os.ReadFile(v.NVRAMPath())
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("NVRAM copy %s: %v (equal to template: %v)", v.NVRAMPath(), err, bytes.Equal(got, want))
	}
	if filepath.Dir(m.ConsolePath()) != v.Dir() {
		t.Errorf("console %s is not in %s", m.ConsolePath(), v.Dir())
	}
	// The XML defined is the one built for the config, and carries the metadata Sweep uses.
	if dir := metadataDir(v.XML()); dir != v.Dir() {
		t.Errorf("metadata dir %q, want %q", dir, v.Dir())
	}
	if p, err := m.PowerState(t.Context()); err != nil || p != machine.PowerOff {
		t.Errorf("new machine power %q, %v; want off", p, err)
	}
	ev := waitEvent(t, e.rec, kindIs(trace.KindMachineCreated, "n1"))
	if ev.MAC != "52:54:00:00:00:01" || ev.Source != trace.SourceMachine {
		t.Errorf("created event %+v: want the boot MAC and source machine", ev)
	}
}

func TestPowerCycleEmitsLifecycleEvents(t *testing.T) {
	e := newFakeEnv(t, t.Context(), nil)
	m, err := e.d.Create(t.Context(), machine.Spec{Name: "p1", NICs: []machine.NIC{udpNIC("52:54:00:00:00:02", "", 5003, 5004)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var states []machine.PowerState
	step := func(f func(context.Context) error) {
		t.Helper()
		if err := f(ctx); err != nil {
			t.Fatal(err)
		}
		s, err := m.PowerState(ctx)
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, s)
	}
	step(m.PowerOn)
	step(m.PowerOn) // already on: no error
	step(m.PowerOff)
	step(m.PowerOff) // already off: no error
	step(m.PowerOn)
	if diff := cmp.Diff([]machine.PowerState{"on", "on", "off", "off", "on"}, states); diff != "" {
		t.Errorf("states (-want +got):\n%s", diff)
	}
	stopped := waitEvent(t, e.rec, kindIs(trace.KindMachineStopped, "p1"))
	if stopped.Attrs["detail"] != "destroyed" {
		t.Errorf("stopped event detail %v, want destroyed", stopped.Attrs["detail"])
	}
	waitEvent(t, e.rec, func(ev trace.Event) bool {
		return countKind(e.rec.Events(), trace.KindMachineStarted) == 2
	})
}

func TestPowerStateMapsLikeMAAS(t *testing.T) {
	e := newFakeEnv(t, t.Context(), nil)
	m, err := e.d.Create(t.Context(), machine.Spec{Name: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	states := []golibvirt.DomainState{golibvirt.DomainNostate, golibvirt.DomainRunning, golibvirt.DomainBlocked, golibvirt.DomainPaused, golibvirt.DomainShutdown, golibvirt.DomainShutoff, golibvirt.DomainCrashed, golibvirt.DomainPmsuspended}
	var got []machine.PowerState
	for _, s := range states {
		e.daemon.setState("maasemu-unit-s1", s)
		p, err := m.PowerState(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p)
	}
	want := []machine.PowerState{"off", "on", "off", "off", "on", "off", "off", "off"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("power states (-want +got):\n%s", diff)
	}
	e.daemon.setState("maasemu-unit-s1", golibvirt.DomainShutoff)
}

func TestDestroyIsIdempotentAndLeavesNothing(t *testing.T) {
	e := newFakeEnv(t, t.Context(), nil)
	m, err := e.d.Create(t.Context(), machine.Spec{Name: "d1", Firmware: machine.UEFI, Disks: []machine.Disk{{SizeBytes: gib}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.PowerOn(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := m.Destroy(t.Context()); err != nil {
			t.Fatalf("Destroy #%d: %v", i+1, err)
		}
	}
	if n := e.daemon.names(); len(n) != 0 {
		t.Errorf("domains left: %v", n)
	}
	if left := dirEntries(t, e.work); len(left) != 0 {
		t.Errorf("work dir still holds %v", left)
	}
	if n := countKind(e.rec.Events(), trace.KindMachineDestroyed); n != 1 {
		t.Errorf("%d destroyed events, want 1", n)
	}
	if len(e.d.Machines()) != 0 {
		t.Errorf("driver still lists %d machines", len(e.d.Machines()))
	}
	// The name is free again.
	if _, err := e.d.Create(t.Context(), machine.Spec{Name: "d1"}); err != nil {
		t.Errorf("re-creating a destroyed machine: %v", err)
	}
}

// A cancelled context must not stop Destroy from cleaning up (Ctrl-C).
func TestDestroyWithCancelledContext(t *testing.T) {
	e := newFakeEnv(t, t.Context(), nil)
	m, err := e.d.Create(t.Context(), machine.Spec{Name: "c1", Disks: []machine.Disk{{SizeBytes: gib}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.PowerOn(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := m.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.daemon.names(); len(n) != 0 {
		t.Errorf("domains left: %v", n)
	}
	if left := dirEntries(t, e.work); len(left) != 0 {
		t.Errorf("work dir still holds %v", left)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	e := newFakeEnv(t, t.Context(), nil)
	for _, n := range []string{"a", "b", "c"} {
		m, err := e.d.Create(t.Context(), machine.Spec{Name: n, Firmware: machine.UEFI, Disks: []machine.Disk{{SizeBytes: gib}}})
		if err != nil {
			t.Fatal(err)
		}
		if n != "b" {
			if err := m.PowerOn(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := e.d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n := e.daemon.names(); len(n) != 0 {
		t.Errorf("domains left: %v", n)
	}
	if left := dirEntries(t, e.work); len(left) != 0 {
		t.Errorf("work dir still holds %v", left)
	}
	if _, err := e.d.Create(t.Context(), machine.Spec{Name: "late"}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Create after Close: %v, want a 'closed' error", err)
	}
}

func TestContextCancelRemovesEverything(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	e := newFakeEnv(t, ctx, nil)
	for _, n := range []string{"x", "y"} {
		m, err := e.d.Create(ctx, machine.Spec{Name: n, Disks: []machine.Disk{{SizeBytes: gib}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.PowerOn(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	<-e.d.Done()
	if n := e.daemon.names(); len(n) != 0 {
		t.Errorf("domains left after cancel: %v", n)
	}
	if left := dirEntries(t, e.work); len(left) != 0 {
		t.Errorf("work dir still holds %v after cancel", left)
	}
	if n := e.daemon.openConns(); n != 0 {
		t.Errorf("%d connections open after cancel", n)
	}
}

// Close while a Create is under way: the Create ends with an error and leaves nothing.
func TestCloseDuringCreate(t *testing.T) {
	e := newFakeEnv(t, t.Context(), nil)
	inDefine, release := make(chan struct{}), make(chan struct{})
	e.daemon.beforeDefine = func() {
		close(inDefine)
		<-release
	}
	errc := make(chan error, 1)
	go func() {
		_, err := e.d.Create(t.Context(), machine.Spec{Name: "slow", Firmware: machine.UEFI, Disks: []machine.Disk{{SizeBytes: gib}}})
		errc <- err
	}()
	<-inDefine
	closed := make(chan error, 1)
	go func() { closed <- e.d.Close() }()
	<-e.d.life.Done() // Close has marked the driver closed
	close(release)    // so the define completes after Close began
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "closed while it was created") {
		t.Errorf("Create during Close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if n := e.daemon.names(); len(n) != 0 {
		t.Errorf("domains left: %v", n)
	}
	if left := dirEntries(t, e.work); len(left) != 0 {
		t.Errorf("work dir holds %v", left)
	}
}

func TestCreateCancelledLeavesNothing(t *testing.T) {
	e := newFakeEnv(t, t.Context(), nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := e.d.Create(ctx, machine.Spec{Name: "z", Disks: []machine.Disk{{SizeBytes: gib}}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Create with a cancelled context: %v, want context.Canceled", err)
	}
	if n := e.daemon.names(); len(n) != 0 {
		t.Errorf("domains left: %v", n)
	}
	if left := dirEntries(t, e.work); len(left) != 0 {
		t.Errorf("work dir holds %v", left)
	}
}

func TestCreateFailureRollsBack(t *testing.T) {
	for _, method := range []string{"DomainDefineXMLFlags", "DomainLookupByName"} {
		t.Run(method, func(t *testing.T) {
			e := newFakeEnv(t, t.Context(), nil)
			e.daemon.fail(method, errors.New("injected failure"))
			_, err := e.d.Create(t.Context(), machine.Spec{Name: "f", Firmware: machine.UEFI, Disks: []machine.Disk{{SizeBytes: gib}}})
			if err == nil || !strings.Contains(err.Error(), "injected failure") {
				t.Fatalf("Create: %v, want the injected failure", err)
			}
			e.daemon.fail(method, nil)
			if n := e.daemon.names(); len(n) != 0 {
				t.Errorf("domains left: %v", n)
			}
			if left := dirEntries(t, e.work); len(left) != 0 {
				t.Errorf("work dir holds %v", left)
			}
			if _, err := e.d.Create(t.Context(), machine.Spec{Name: "f"}); err != nil {
				t.Errorf("the name is not free after a failed Create: %v", err)
			}
		})
	}
}

func TestBadSpecsAreRefusedAndChangeNothing(t *testing.T) {
	udp := udpNIC("52:54:00:00:00:09", "", 5009, 5010)
	tests := []struct {
		name string
		spec machine.Spec
		want string
	}{
		{"empty name", machine.Spec{}, "machine name is empty"},
		{"slash in name", machine.Spec{Name: "../x"}, `machine name "../x": must be`},
		{"long name", machine.Spec{Name: strings.Repeat("a", 49)}, "must be 1-48 characters"},
		{"firmware", machine.Spec{Name: "m", Firmware: "coreboot"}, `firmware "coreboot": must be "bios" or "uefi"`},
		{"memory", machine.Spec{Name: "m", MemoryMiB: 32}, "memory 32 MiB: must be at least 64 MiB"},
		{"cpus", machine.Spec{Name: "m", CPUs: -1}, "cpus -1: must be between 1 and 64"},
		{"nic model", machine.Spec{Name: "m", NICs: []machine.NIC{{Model: "ne2k", Network: "n"}}}, `NIC 0: model "ne2k": must be one of`},
		{"nic mac length", machine.Spec{Name: "m", NICs: []machine.NIC{{MAC: net.HardwareAddr{1, 2, 3}, Network: "n"}}}, "must be 6 bytes"},
		{"nic multicast mac", machine.Spec{Name: "m", NICs: []machine.NIC{{MAC: mustMAC("01:00:5e:00:00:01"), Network: "n"}}}, "must be unicast"},
		{"nic duplicate mac", machine.Spec{Name: "m", NICs: []machine.NIC{{MAC: mustMAC("52:54:00:00:00:01"), Network: "n"}, {MAC: mustMAC("52:54:00:00:00:01"), Bridge: "b"}}}, "already used by NIC 0"},
		{"nic no attachment", machine.Spec{Name: "m", NICs: []machine.NIC{{}}}, "exactly one of UDP, Network, Bridge must be set (got 0)"},
		{"nic two attachments", machine.Spec{Name: "m", NICs: []machine.NIC{{Network: "n", Bridge: "b"}}}, "(got 2)"},
		{"nic link", machine.Spec{Name: "m", NICs: []machine.NIC{{Link: struct{}{}}}}, "Link attachments are for simulated machines"},
		{"nic udp port 0", machine.Spec{Name: "m", NICs: []machine.NIC{{UDP: &machine.UDPAttachment{Remote: udp.UDP.Remote}}}}, "UDP local invalid AddrPort: must be an address and a non-zero port"},
		{"two boot nics", machine.Spec{Name: "m", NICs: []machine.NIC{{Network: "n", Boot: true}, {Bridge: "b", Boot: true}}}, "2 NICs are marked Boot"},
		{"disk size", machine.Spec{Name: "m", Disks: []machine.Disk{{SizeBytes: 1000}}}, "size 1000 bytes: must be a positive multiple of 512"},
		{"disk zero", machine.Spec{Name: "m", Disks: []machine.Disk{{}}}, "size 0 bytes"},
		{"disk bus", machine.Spec{Name: "m", Disks: []machine.Disk{{SizeBytes: gib, Bus: "ide"}}}, `bus "ide": must be one of virtio, sata, scsi, nvme`},
		{"disk serial chars", machine.Spec{Name: "m", Disks: []machine.Disk{{SizeBytes: gib, Serial: "a,b"}}}, `serial "a,b": must be 1-20 characters`},
		{"disk serial long", machine.Spec{Name: "m", Disks: []machine.Disk{{SizeBytes: gib, Serial: strings.Repeat("s", 21)}}}, "must be 1-20 characters"},
		{"disk serial dup", machine.Spec{Name: "m", Disks: []machine.Disk{{SizeBytes: gib, Serial: "A"}, {SizeBytes: gib, Serial: "A"}}}, `serial "A": already used by disk 0`},
		{"virtio model", machine.Spec{Name: "m", Disks: []machine.Disk{{SizeBytes: gib, Model: "X"}}}, "virtio disks have no model to set; use bus sata or scsi"},
		{"nvme model", machine.Spec{Name: "m", Disks: []machine.Disk{{SizeBytes: gib, Bus: "nvme", Model: "X"}}}, "nvme disks have no model"},
		{"scsi product long", machine.Spec{Name: "m", Disks: []machine.Disk{{SizeBytes: gib, Bus: "scsi", Model: strings.Repeat("p", 17)}}}, "a SCSI product is 1-16 characters"},
		{"too many nvme", machine.Spec{Name: "m", Disks: slices.Repeat([]machine.Disk{{SizeBytes: gib, Bus: "nvme"}}, 9)}, "at most 8 NVMe disks"},
		{"nvme and many devices", machine.Spec{Name: "m", Disks: append(slices.Repeat([]machine.Disk{{SizeBytes: gib}}, 12), machine.Disk{SizeBytes: gib, Bus: "nvme"})}, "with NVMe disks at most 12 are supported"},
	}
	e := newFakeEnv(t, t.Context(), nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.d.Create(t.Context(), tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Create: %v\nwant an error containing %q", err, tt.want)
			}
			if n := e.daemon.names(); len(n) != 0 {
				t.Errorf("domains defined: %v", n)
			}
			if left := dirEntries(t, e.work); len(left) != 0 {
				t.Errorf("work dir holds %v", left)
			}
		})
	}
}

func TestSpecDefaults(t *testing.T) {
	got, err := normalizeSpec(machine.Spec{
		Name:  "dflt",
		NICs:  []machine.NIC{{Network: "n"}, {Bridge: "b"}},
		Disks: []machine.Disk{{SizeBytes: gib}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := machine.Spec{
		Name: "dflt", Firmware: machine.BIOS, MemoryMiB: DefaultMemoryMiB, CPUs: 1,
		NICs: []machine.NIC{
			{MAC: DeriveMAC("dflt", 0), Model: "virtio", Network: "n", Boot: true},
			{MAC: DeriveMAC("dflt", 1), Model: "virtio", Bridge: "b"},
		},
		Disks: []machine.Disk{{SizeBytes: gib, Bus: "virtio"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("normalized spec (-want +got):\n%s", diff)
	}
	if m := DeriveMAC("dflt", 0); !bytes.HasPrefix(m, []byte{0x52, 0x54, 0x00}) || bytes.Equal(m, DeriveMAC("dflt", 1)) {
		t.Errorf("derived MACs %v, %v: want distinct MACs in QEMU's 52:54:00 range", m, DeriveMAC("dflt", 1))
	}
}

func TestDuplicatesAndLeftoversAreRefused(t *testing.T) {
	e := newFakeEnv(t, t.Context(), nil)
	if _, err := e.d.Create(t.Context(), machine.Spec{Name: "dup"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Create(t.Context(), machine.Spec{Name: "dup"}); err == nil || !strings.Contains(err.Error(), `machine "dup": already exists in lab "unit"`) {
		t.Errorf("second Create: %v", err)
	}
	// A domain left by another run.
	conn, _ := e.daemon.dial(t.Context(), "")
	if _, err := conn.DomainDefineXMLFlags("<domain type='qemu'><name>maasemu-unit-old</name></domain>", 0); err != nil {
		t.Fatal(err)
	}
	_, err := e.d.Create(t.Context(), machine.Spec{Name: "old"})
	if err == nil || !strings.Contains(err.Error(), "domain maasemu-unit-old already exists (a leftover of an earlier run? Sweep") {
		t.Errorf("Create over a leftover domain: %v", err)
	}
	if slices.Contains(dirEntries(t, e.work), "maasemu-unit-old") {
		t.Error("a work dir was made for the refused machine")
	}
	// A directory left by another run is not ours to reuse or delete.
	stale := filepath.Join(e.work, "maasemu-unit-stale")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(stale, "keep"), []byte("x"), 0o644)
	_, err = e.d.Create(t.Context(), machine.Spec{Name: "stale"})
	if err == nil || !strings.Contains(err.Error(), "already exists (a leftover") {
		t.Errorf("Create over a leftover dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(stale, "keep")); err != nil {
		t.Errorf("the leftover dir was touched: %v", err)
	}
	conn.Disconnect()
}

func TestSweep(t *testing.T) {
	e := newFakeEnv(t, t.Context(), nil)
	live, err := e.d.Create(t.Context(), machine.Spec{Name: "live"})
	if err != nil {
		t.Fatal(err)
	}
	// A crashed run of the same lab: a driver that is never closed.
	other := t.TempDir()
	crashed, err := New(t.Context(), Options{Lab: "unit", WorkDir: e.work, Accel: AccelTCG, Dial: e.daemon.dial, UEFI: e.d.opts.UEFI, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	m, err := crashed.Create(t.Context(), machine.Spec{Name: "left", Firmware: machine.UEFI, Disks: []machine.Disk{{SizeBytes: gib}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.PowerOn(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A directory without a domain (the run died between mkdir and define).
	if err := os.Mkdir(filepath.Join(e.work, "maasemu-unit-orphan"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A domain whose metadata points elsewhere: the domain goes, the directory stays.
	conn, _ := e.daemon.dial(t.Context(), "")
	defer conn.Disconnect()
	xml := `<domain type='qemu'><name>maasemu-unit-evil</name><metadata><maasemu:machine xmlns:maasemu="` + MetadataNamespace + `" dir="` + other + `"/></metadata></domain>`
	if _, err := conn.DomainDefineXMLFlags(xml, 0); err != nil {
		t.Fatal(err)
	}
	// Someone else's domain.
	if _, err := conn.DomainDefineXMLFlags(`<domain type='qemu'><name>webserver</name></domain>`, 0); err != nil {
		t.Fatal(err)
	}

	if _, err := e.d.Sweep(t.Context(), "webserver"); err == nil || !strings.Contains(err.Error(), `must start with "maasemu-"`) {
		t.Errorf("Sweep with a foreign prefix: %v", err)
	}
	removed, err := e.d.Sweep(t.Context(), e.d.Prefix())
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	want := []string{filepath.Join(e.work, "maasemu-unit-orphan"), "maasemu-unit-evil", "maasemu-unit-left"}
	slices.Sort(want)
	if diff := cmp.Diff(want, removed); diff != "" {
		t.Errorf("swept (-want +got):\n%s", diff)
	}
	names := e.daemon.names()
	slices.Sort(names)
	if diff := cmp.Diff([]string{"maasemu-unit-live", "webserver"}, names); diff != "" {
		t.Errorf("domains after sweep (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"maasemu-unit-live"}, dirEntries(t, e.work)); diff != "" {
		t.Errorf("work dir after sweep (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("Sweep removed a directory not named for the domain: %v", err)
	}
	if p, err := live.PowerState(t.Context()); err != nil || p != machine.PowerOff {
		t.Errorf("live machine after sweep: %v, %v", p, err)
	}
	// The crashed driver's own cleanup now finds nothing left, without error.
	if err := crashed.Close(); err != nil {
		t.Errorf("closing the swept driver: %v", err)
	}
}

func TestConsoleLinesReachTheTrace(t *testing.T) {
	e := newFakeEnv(t, t.Context(), nil)
	m, err := e.d.Create(t.Context(), machine.Spec{Name: "con", NICs: []machine.NIC{udpNIC("52:54:00:00:00:0c", "", 5011, 5012)}})
	if err != nil {
		t.Fatal(err)
	}
	// What QEMU's serial file would get from SeaBIOS and iPXE.
	out := "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2-debian-1.16.2-1)\r\n\r\n" +
		"iPXE (http://ipxe.org) 00:03.0 CA00 PCI2.10 PnP PMM+7EF8B860+7EEEB860 CA00\r\n" +
		"Press Ctrl-B to configure iPXE (PCI 00:03.0)...\b \b\b \b\r\n"
	if err := os.WriteFile(m.ConsolePath(), []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, e.rec, func(ev trace.Event) bool {
		return ev.Kind == trace.KindConsoleLine && strings.HasPrefix(ev.Message, "Press Ctrl-B")
	})
	var lines []string
	for _, ev := range e.rec.Events() {
		if ev.Kind == trace.KindConsoleLine {
			lines = append(lines, ev.Message)
			if ev.Source != trace.SourceConsole || ev.MAC != "52:54:00:00:00:0c" || ev.Attrs["machine"] != "con" {
				t.Errorf("console event %+v: want source console, the boot MAC, machine con", ev)
			}
		}
	}
	want := []string{
		"SeaBIOS (version 1.16.2-debian-1.16.2-1)",
		"iPXE (http://ipxe.org) 00:03.0 CA00 PCI2.10 PnP PMM+7EF8B860+7EEEB860 CA00",
		"Press Ctrl-B to configure iPXE (PCI 00:03.0).",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("console lines (-want +got):\n%s", diff)
	}
}

func TestRemoteDaemonRefusesCreate(t *testing.T) {
	e := newFakeEnv(t, t.Context(), func(o *Options) { o.URI = "qemu+ssh://root@hv1/system" })
	_, err := e.d.Create(t.Context(), machine.Spec{Name: "r"})
	if err == nil || !strings.Contains(err.Error(), "creating machines needs a local libvirt daemon") {
		t.Errorf("Create on a remote daemon: %v", err)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	d := newFakeDaemon()
	for _, tt := range []struct {
		opts Options
		want string
	}{
		{Options{Lab: "a b", Dial: d.dial}, `lab name "a b"`},
		{Options{Lab: "x", Accel: "hvf", Dial: d.dial}, `accel "hvf"`},
		{Options{Lab: "x", URI: "qemu:///root", Dial: d.dial}, `the qemu driver's path must be /system or /session`},
		{Options{Lab: "x", URI: "/var/run/libvirt", Dial: d.dial}, "no scheme"},
	} {
		if _, err := New(t.Context(), tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v): %v, want %q", tt.opts, err, tt.want)
		}
	}
	if d.dials != 0 {
		t.Errorf("%d connections made for bad options", d.dials)
	}
}

func TestRunAsDefaults(t *testing.T) {
	for _, tt := range []struct {
		uri, runAs, want string
	}{
		{"qemu:///system", "", "+" + strconv.Itoa(os.Getuid()) + ":+" + strconv.Itoa(os.Getgid())},
		{"qemu:///system", "-", ""},
		{"qemu:///system", "+64055:+108", "+64055:+108"},
		{"qemu:///session", "", ""},
		{"qemu+ssh://h/system", "", ""},
	} {
		d, err := New(t.Context(), Options{URI: tt.uri, RunAs: tt.runAs, Dial: newFakeDaemon().dial, WorkDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if d.opts.RunAs != tt.want {
			t.Errorf("%s RunAs %q: got %q, want %q", tt.uri, tt.runAs, d.opts.RunAs, tt.want)
		}
		d.Close()
	}
}

func TestParseURIAndSockets(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	sessionWant := "/run/user/1000/libvirt/libvirt-sock"
	if os.Geteuid() == 0 {
		sessionWant = SystemSocket
	}
	for _, tt := range []struct {
		uri    string
		local  bool
		socket string
	}{
		{"qemu:///system", true, SystemSocket},
		{"qemu:///session", true, sessionWant},
		{"qemu+unix:///system?socket=/tmp/s", true, "/tmp/s"},
		{"test:///default", true, SystemSocket},
		{"qemu+ssh://root@hv/system", false, ""},
		{"qemu+tcp://hv:16509/system", false, ""},
		{"qemu://hv/system", false, ""},
	} {
		u, err := ParseURI(tt.uri)
		if err != nil {
			t.Errorf("%s: %v", tt.uri, err)
			continue
		}
		if got := isLocal(u); got != tt.local {
			t.Errorf("%s: local %v, want %v", tt.uri, got, tt.local)
		}
		if tt.local {
			if got := localSocket(u); got != tt.socket && !(tt.socket == SystemSocket && strings.HasSuffix(got, "-sock")) {
				t.Errorf("%s: socket %q, want %q", tt.uri, got, tt.socket)
			}
		}
	}
	for _, bad := range []string{"", "qemu:///", "qemu://h/sys", "%zz"} {
		if _, err := ParseURI(bad); err == nil {
			t.Errorf("ParseURI(%q) accepted", bad)
		}
	}
}

func TestLifecycleKinds(t *testing.T) {
	type out struct{ Kind, Level, Detail string }
	for _, tt := range []struct {
		ev     golibvirt.DomainEventType
		detail int32
		want   out
	}{
		{golibvirt.DomainEventStarted, 0, out{trace.KindMachineStarted, "info", "booted"}},
		{golibvirt.DomainEventStopped, int32(golibvirt.DomainEventStoppedDestroyed), out{trace.KindMachineStopped, "info", "destroyed"}},
		{golibvirt.DomainEventStopped, int32(golibvirt.DomainEventStoppedShutdown), out{trace.KindMachineStopped, "info", "shutdown"}},
		{golibvirt.DomainEventStopped, int32(golibvirt.DomainEventStoppedCrashed), out{trace.KindMachineCrashed, "error", "crashed"}},
		{golibvirt.DomainEventStopped, int32(golibvirt.DomainEventStoppedFailed), out{trace.KindMachineStopped, "error", "failed"}},
		{golibvirt.DomainEventCrashed, 0, out{trace.KindMachineCrashed, "error", "panicked"}},
		{golibvirt.DomainEventSuspended, int32(golibvirt.DomainEventSuspendedIoerror), out{trace.KindMachineCrashed, "error", "paused on I/O error"}},
		{golibvirt.DomainEventSuspended, int32(golibvirt.DomainEventSuspendedPaused), out{}},
		{golibvirt.DomainEventDefined, 0, out{}},
		{golibvirt.DomainEventUndefined, 0, out{}},
		{golibvirt.DomainEventStarted, 99, out{trace.KindMachineStarted, "info", "detail 99"}},
	} {
		k, l, d := lifecycleKind(tt.ev, tt.detail)
		if diff := cmp.Diff(tt.want, out{k, l, d}); diff != "" {
			t.Errorf("event %d detail %d (-want +got):\n%s", tt.ev, tt.detail, diff)
		}
	}
}

func TestAccelCache(t *testing.T) {
	dir := t.TempDir()
	daemon := newFakeDaemon()
	path := filepath.Join(dir, "libvirt", "accel.json")
	if err := writeAccelCache(path, map[string]accelVerdict{URISystem: {Accel: AccelKVM, Reason: "probed"}}); err != nil {
		t.Fatal(err)
	}
	d, err := New(t.Context(), Options{Dial: daemon.dial, CacheDir: dir, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a, err := d.Accel(t.Context())
	if err != nil || a != AccelKVM || !strings.Contains(d.AccelReason(), "cached") {
		t.Errorf("Accel = %q, %v (%s); want the cached kvm", a, err, d.AccelReason())
	}
	if daemon.names() != nil {
		t.Errorf("a cached verdict still probed: %v", daemon.names())
	}
	// A broken cache file reads as empty.
	os.WriteFile(path, []byte("{not json"), 0o644)
	if m := readAccelCache(path); len(m) != 0 {
		t.Errorf("broken cache read as %v", m)
	}
}

func TestFindDaemonMissing(t *testing.T) {
	_, err := findDaemon("maasemu-no-such-daemon")
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "maasemu-no-such-daemon") {
		t.Errorf("findDaemon of a missing binary: %v, want ErrNotInstalled naming it", err)
	}
}
