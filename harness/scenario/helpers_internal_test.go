package scenario

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/harness/timeline"
	"github.com/maasemu/maasemu/harness/vnet/pcap"
	"github.com/maasemu/maasemu/trace"
)

// frameOf wraps a transport payload in Ethernet, IPv4 and UDP (proto 17) or TCP (6).
func frameOf(src, dst net.HardwareAddr, sip, dip netip.Addr, proto uint8, sport, dport uint16, payload []byte) []byte {
	var l4 []byte
	if proto == 17 {
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[4:], uint16(8+len(payload)))
	} else {
		l4 = make([]byte, 20)
		l4[12] = 5 << 4
	}
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	l4 = append(l4, payload...)
	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	ip[8], ip[9] = 64, proto
	s4, d4 := sip.As4(), dip.As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	eth := append(append(append([]byte{}, dst...), src...), 0x08, 0x00)
	return append(append(eth, ip...), l4...)
}

var (
	machineMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x01, 0x02, 0x03}
	rackMAC    = net.HardwareAddr{0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc}
	otherMAC   = net.HardwareAddr{0x52, 0x54, 0x00, 0x09, 0x09, 0x09}
	rackIP     = netip.MustParseAddr("198.18.0.1")
	machineIP  = netip.MustParseAddr("198.18.0.130")
)

// writeCapture writes a pcap of a machine's PXE conversation (and another machine's
// discover), and returns its path.
func writeCapture(t *testing.T) string {
	t.Helper()
	discover, err := dhcpv4.NewDiscovery(machineMAC, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")))
	if err != nil {
		t.Fatal(err)
	}
	offer, err := dhcpv4.NewReplyFromRequest(discover, dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer),
		dhcpv4.WithServerIP(rackIP.AsSlice()), dhcpv4.WithOption(dhcpv4.OptBootFileName("bootx64.efi")),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(rackIP.AsSlice())), dhcpv4.WithOption(dhcpv4.OptRouter(rackIP.AsSlice())))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := dhcpv4.NewDiscovery(otherMAC, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)))
	bcast := netip.MustParseAddr("255.255.255.255")
	zero := netip.MustParseAddr("0.0.0.0")
	frames := [][]byte{
		frameOf(machineMAC, net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, zero, bcast, 17, 68, 67, discover.ToBytes()),
		frameOf(rackMAC, machineMAC, rackIP, machineIP, 17, 67, 68, offer.ToBytes()),
		frameOf(otherMAC, net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, zero, bcast, 17, 68, 67, other.ToBytes()),
		frameOf(machineMAC, rackMAC, machineIP, rackIP, 17, 2070, 69, append([]byte{0, 1}, []byte("bootx64.efi\x00octet\x00blksize\x001468\x00")...)),
		frameOf(machineMAC, rackMAC, machineIP, rackIP, 6, 40000, 5248, []byte("GET /grub/grub.cfg-52:54:00:01:02:03?x=1 HTTP/1.1\r\nHost: 198.18.0.1:5248\r\n\r\n")),
		frameOf(otherMAC, rackMAC, machineIP, rackIP, 6, 40001, 5248, []byte("GET /not-mine HTTP/1.1\r\n\r\n")),
		{0x01, 0x02}, // a runt: skipped
		frameOf(machineMAC, rackMAC, machineIP, rackIP, 6, 40002, 5248, []byte("GET")), // too short to be a request
	}
	p := filepath.Join(t.TempDir(), "network.pcap")
	w, err := pcap.Create(p, pcap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		if err := w.WritePacket(time.Unix(int64(i), 0), f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCaptureDecoding(t *testing.T) {
	p := writeCapture(t)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	frames, err := readFrames(f)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range dhcpOf(frames, machineMAC) {
		for _, code := range []uint8{93, 67, 54, 3, 60} {
			if v, ok := d.msg.Options[code]; ok {
				got = append(got, d.msg.MessageType().String()+" "+d.dir+" "+string(rune('0'+code/10))+string(rune('0'+code%10))+"="+renderOption(code, v))
			}
		}
	}
	want := []string{
		"DISCOVER from-client 93=7", "DISCOVER from-client 60=PXEClient:Arch:00007:UNDI:003016",
		"OFFER from-server 67=bootx64.efi", "OFFER from-server 54=198.18.0.1", "OFFER from-server 03=198.18.0.1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DHCP options of the machine (-want +got):\n%s", diff)
	}

	events := []trace.Event{
		{Kind: trace.KindTFTPRead, Attrs: map[string]any{"file": "bootx64.efi"}},
		{Kind: trace.KindHTTPGet, Attrs: map[string]any{"path": "/images/abc/boot-kernel"}},
		{Kind: trace.KindConsoleLine, Message: "not a fetch"},
	}
	var names []string
	for _, fe := range fetchesOf(frames, []net.HardwareAddr{machineMAC}, events) {
		names = append(names, fe.String())
	}
	wantNames := []string{"tftp bootx64.efi (capture)", "http /grub/grub.cfg-52:54:00:01:02:03 (capture)",
		"tftp bootx64.efi (events)", "http /images/abc/boot-kernel (events)"}
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Errorf("fetches (-want +got):\n%s", diff)
	}
}

// A capture the lab is still writing can end mid-record: what precedes is read.
func TestCaptureCutShort(t *testing.T) {
	b, err := os.ReadFile(writeCapture(t))
	if err != nil {
		t.Fatal(err)
	}
	frames, err := readFrames(bytes.NewReader(b[:len(b)-10]))
	if err != nil || len(frames) < 5 {
		t.Errorf("a capture cut short: %d frames, %v; want the complete ones", len(frames), err)
	}
	if _, err := readFrames(strings.NewReader("not a capture at all, just text")); err == nil {
		t.Error("text read as a capture")
	}
}

func TestRenderOption(t *testing.T) {
	for _, c := range []struct {
		code uint8
		v    []byte
		want string
	}{
		{93, []byte{0, 0}, "0"},
		{93, []byte{0, 7, 0, 9}, "7,9"},
		{53, []byte{2}, "2"},
		{6, []byte{198, 18, 0, 1, 8, 8, 8, 8}, "198.18.0.1,8.8.8.8"},
		{67, []byte("lpxelinux.0\x00"), "lpxelinux.0"},
		{43, []byte{1, 2, 0xff}, "0102ff"},
		{3, []byte{1, 2, 3}, "010203"}, // not a whole address
	} {
		if got := renderOption(c.code, c.v); got != c.want {
			t.Errorf("renderOption(%d, %x) = %q, want %q", c.code, c.v, got, c.want)
		}
	}
}

func TestFetchMatches(t *testing.T) {
	for _, c := range []struct {
		want, name string
		ok         bool
	}{
		{"lpxelinux.0", "lpxelinux.0", true},
		{"lpxelinux.0", "/lpxelinux.0", true},
		{"pxelinux.cfg/01-*", "/pxelinux.cfg/01-52-54-00-01-02-03", true},
		{"boot-kernel", "/images/6a1/ubuntu/amd64/ga-22.04/jammy/stable/boot-kernel", true},
		{"grub/grub.cfg-*", "/grub/grub.cfg-52:54:00:01:02:03", true},
		{"kernel", "/images/x/boot-kernel", false},
		{"bootx64.efi", "/grubx64.efi", false},
	} {
		if got := fetchMatches(c.want, c.name); got != c.ok {
			t.Errorf("fetchMatches(%q, %q) = %v, want %v", c.want, c.name, got, c.ok)
		}
	}
}

func TestFlagParsers(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		err  bool
	}{{"4G", 4 << 30, false}, {"512M", 512 << 20, false}, {"64k", 64 << 10, false}, {"1000", 1000, false},
		{"0", 0, true}, {"-1G", 0, true}, {"G", 0, true}, {"4GB", 0, true}} {
		got, err := parseBytes(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("parseBytes(%q) = %d, %v", c.in, got, err)
		}
	}
	d := &diskFlag{}
	for _, v := range []string{"4G", "2G:sata:data1", "1G:nvme"} {
		if err := d.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	want := []machine.Disk{{SizeBytes: 4 << 30}, {SizeBytes: 2 << 30, Bus: "sata", Serial: "data1"}, {SizeBytes: 1 << 30, Bus: "nvme"}}
	if diff := cmp.Diff(want, d.disks); diff != "" {
		t.Errorf("disks (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"4G:ide", "4G:sata:x:y", "big"} {
		if err := d.Set(bad); err == nil {
			t.Errorf("-disk %q accepted", bad)
		}
	}
	b := budgetFlag{}
	if err := b.Set("curtin-extract=90s"); err != nil || b[timeline.CurtinExtr] != 90*time.Second {
		t.Errorf("budget: %v %v", b, err)
	}
	for _, bad := range []string{"curtin-extract", "extract=5s", "dhcp=-1s", "dhcp=0s"} {
		if err := b.Set(bad); err == nil {
			t.Errorf("-budget %q accepted", bad)
		}
	}
}

func TestCondLong(t *testing.T) {
	for _, c := range []struct {
		deadline time.Time
		want     bool
	}{{time.Time{}, true}, {time.Now().Add(time.Hour), true}, {time.Now().Add(9 * time.Minute), false}} {
		s := newSuite(Options{Deadline: c.deadline})
		got, err := s.condition("long")
		if err != nil || got != c.want {
			t.Errorf("[long] with deadline %v: %v, %v; want %v", c.deadline, got, err, c.want)
		}
	}
	if _, err := newSuite(Options{}).condition("kvmm"); err == nil || !strings.Contains(err.Error(), `unknown condition "kvmm"`) {
		t.Errorf("unknown condition: %v", err)
	}
}

// extractSparse copies a region holding data and holes; the copy reads back equal.
func TestExtractSparse(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "disk.img")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{1 << 20, 9 << 20, 40<<20 + 123} {
		if _, err := f.WriteAt(bytes.Repeat([]byte{byte(off)}, 5000), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	dst := filepath.Join(dir, "part.img")
	const off, size = 8 << 20, 40 << 20
	if err := extractSparse(src, off, size, dst); err != nil {
		t.Fatal(err)
	}
	whole, _ := os.ReadFile(src)
	part, _ := os.ReadFile(dst)
	if !bytes.Equal(whole[off:off+size], part) {
		t.Error("the extracted region differs from the source")
	}
	if err := extractSparse(filepath.Join(dir, "missing"), 0, 10, dst); err == nil {
		t.Error("extracting from a missing image succeeded")
	}
}
