package scenario

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/maasemu/maasemu/harness/vnet/pcap"
	"github.com/maasemu/maasemu/trace"
)

// capture dhcp-option MACHINE CODE [VALUE-REGEX] | capture fetched MACHINE FILE
func cmdCapture(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	const usage = "capture dhcp-option MACHINE CODE [VALUE-REGEX] | capture fetched MACHINE FILE"
	wantArgs(ts, "capture", usage, args, 3, 4)
	ms := sc.machine(ts, "capture", args[1])
	l := sc.lab
	if err := l.FlushCapture(); err != nil {
		ts.Fatalf("capture: flushing the lab's capture: %v", err)
	}
	f, err := os.Open(l.CapturePath())
	ts.Check(err)
	defer f.Close()
	frames, err := readFrames(f)
	if err != nil {
		ts.Fatalf("capture: reading %s: %v", l.CapturePath(), err)
	}
	switch args[0] {
	case "dhcp-option":
		code, err := strconv.Atoi(args[2])
		if err != nil || code < 1 || code > 254 {
			ts.Fatalf("capture dhcp-option: code %q: want a DHCP option number from 1 to 254", args[2])
		}
		var re *regexp.Regexp
		if len(args) == 4 {
			re = compile(ts, "capture", args[3])
		}
		var seen []string
		hits := 0
		for _, p := range dhcpOf(frames, ms.m.MACs[0]) {
			v, ok := p.msg.Options[uint8(code)]
			if !ok {
				continue
			}
			text := renderOption(uint8(code), v)
			line := fmt.Sprintf("%s %s option %d = %s", p.msg.MessageType(), p.dir, code, text)
			seen = append(seen, line)
			if re == nil || re.MatchString(text) || re.MatchString(hex.EncodeToString(v)) {
				hits++
				fmt.Fprintln(ts.Stdout(), line)
			}
		}
		if (hits > 0) == neg {
			if len(seen) == 0 {
				seen = []string{"(no DHCP packet of this machine carries the option)"}
			}
			want := fmt.Sprintf("option %d", code)
			if re != nil {
				want += " matching " + re.String()
			}
			if neg {
				ts.Fatalf("capture dhcp-option %s: found %s, want none:\n  %s", args[1], want, strings.Join(seen, "\n  "))
			}
			ts.Fatalf("capture dhcp-option %s: no DHCP packet of %s carries %s; seen:\n  %s", args[1], ms.m.MACs[0], want, strings.Join(seen, "\n  "))
		}
	case "fetched":
		if len(args) != 3 {
			ts.Fatalf("capture fetched: want MACHINE FILE\nusage: %s", usage)
		}
		want := args[2]
		if _, err := path.Match(want, ""); err != nil {
			ts.Fatalf("capture fetched: pattern %q: %v", want, err)
		}
		all := fetchesOf(frames, ms.m.MACs, sc.lab.Events(ms.m))
		var hits []string
		for _, f := range all {
			if fetchMatches(want, f.name) {
				hits = append(hits, f.String())
			}
		}
		for _, h := range hits {
			fmt.Fprintln(ts.Stdout(), h)
		}
		if (len(hits) > 0) == neg {
			var names []string
			for _, f := range all {
				names = append(names, f.String())
			}
			if len(names) == 0 {
				names = []string{"(nothing)"}
			}
			if neg {
				ts.Fatalf("capture fetched %s: %s was fetched, want not:\n  %s", args[1], want, strings.Join(hits, "\n  "))
			}
			ts.Fatalf("capture fetched %s: %s was not fetched; fetched:\n  %s", args[1], want, strings.Join(names, "\n  "))
		}
	default:
		ts.Fatalf("capture: %q: want dhcp-option or fetched\nusage: %s", args[0], usage)
	}
}

// frame is a decoded Ethernet frame carrying IPv4 UDP or TCP.
type frame struct {
	src, dst         net.HardwareAddr
	srcIP, dstIP     netip.Addr
	proto            uint8 // 17 UDP, 6 TCP
	srcPort, dstPort uint16
	payload          []byte
}

// readFrames reads a pcap and decodes what it can: Ethernet (with one 802.1Q tag), IPv4,
// UDP and TCP. Frames of other kinds, and malformed or truncated ones, are skipped. A
// capture that is not a pcap is an error; a last record cut short ends the capture (the
// lab is still writing it).
func readFrames(r io.Reader) ([]frame, error) {
	pr, err := pcap.NewReader(r)
	if err != nil {
		return nil, err
	}
	if pr.LinkType() != 1 {
		return nil, fmt.Errorf("link type %d: only Ethernet (1) captures are decoded", pr.LinkType())
	}
	var out []frame
	for {
		p, err := pr.Next()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if f, ok := decodeFrame(p.Data); ok {
			out = append(out, f)
		}
	}
}

func decodeFrame(b []byte) (frame, bool) {
	var f frame
	if len(b) < 14 {
		return f, false
	}
	f.dst, f.src = net.HardwareAddr(b[0:6]), net.HardwareAddr(b[6:12])
	etype := binary.BigEndian.Uint16(b[12:14])
	b = b[14:]
	if etype == 0x8100 {
		if len(b) < 4 {
			return f, false
		}
		etype = binary.BigEndian.Uint16(b[2:4])
		b = b[4:]
	}
	if etype != 0x0800 || len(b) < 20 || b[0]>>4 != 4 {
		return f, false
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < 20 || total < ihl || total > len(b) {
		return f, false
	}
	if frag := binary.BigEndian.Uint16(b[6:8]); frag&0x1fff != 0 {
		return f, false // a later fragment: no transport header
	}
	f.proto = b[9]
	f.srcIP = netip.AddrFrom4([4]byte(b[12:16]))
	f.dstIP = netip.AddrFrom4([4]byte(b[16:20]))
	t := b[ihl:total]
	switch f.proto {
	case 17:
		if len(t) < 8 {
			return f, false
		}
		f.srcPort, f.dstPort = binary.BigEndian.Uint16(t[0:2]), binary.BigEndian.Uint16(t[2:4])
		f.payload = t[8:]
	case 6:
		if len(t) < 20 {
			return f, false
		}
		off := int(t[12]>>4) * 4
		if off < 20 || off > len(t) {
			return f, false
		}
		f.srcPort, f.dstPort = binary.BigEndian.Uint16(t[0:2]), binary.BigEndian.Uint16(t[2:4])
		f.payload = t[off:]
	default:
		return f, false
	}
	return f, true
}

// dhcpPacket is one DHCPv4 message of a machine and which way it went.
type dhcpPacket struct {
	msg *dhcpv4.DHCPv4
	dir string // "from-client" or "from-server"
}

// dhcpOf returns the DHCPv4 messages whose client hardware address is mac.
func dhcpOf(frames []frame, mac net.HardwareAddr) []dhcpPacket {
	var out []dhcpPacket
	for _, f := range frames {
		if f.proto != 17 || !(f.dstPort == 67 || f.dstPort == 68) {
			continue
		}
		m, err := dhcpv4.FromBytes(f.payload)
		if err != nil || m.ClientHWAddr.String() != mac.String() {
			continue
		}
		dir := "from-client"
		if m.OpCode == dhcpv4.OpcodeBootReply {
			dir = "from-server"
		}
		out = append(out, dhcpPacket{msg: m, dir: dir})
	}
	return out
}

// ipOptions hold IPv4 addresses.
var ipOptions = map[uint8]bool{1: true, 3: true, 6: true, 28: true, 42: true, 44: true, 50: true, 54: true}

// renderOption renders an option value for matching: addresses dotted, the client
// architecture (93) and message type (53) as numbers, printable text as text, else hex.
func renderOption(code uint8, v []byte) string {
	switch {
	case ipOptions[code] && len(v) > 0 && len(v)%4 == 0:
		var ips []string
		for i := 0; i < len(v); i += 4 {
			ips = append(ips, netip.AddrFrom4([4]byte(v[i:i+4])).String())
		}
		return strings.Join(ips, ",")
	case code == 93 && len(v) > 0 && len(v)%2 == 0:
		var arch []string
		for i := 0; i < len(v); i += 2 {
			arch = append(arch, strconv.Itoa(int(binary.BigEndian.Uint16(v[i:i+2]))))
		}
		return strings.Join(arch, ",")
	case (code == 53 || code == 57 || code == 51) && len(v) > 0 && len(v) <= 4:
		n := 0
		for _, c := range v {
			n = n<<8 | int(c)
		}
		return strconv.Itoa(n)
	}
	s := strings.TrimRight(string(v), "\x00")
	printable := s != ""
	for _, r := range s {
		if !unicode.IsPrint(r) {
			printable = false
			break
		}
	}
	if printable {
		return s
	}
	return hex.EncodeToString(v)
}

// fetch is a file a machine fetched over TFTP or HTTP.
type fetch struct {
	proto, name, seenBy string
}

func (f fetch) String() string { return f.proto + " " + f.name + " (" + f.seenBy + ")" }

// fetchesOf lists the files the machine fetched: TFTP read requests and HTTP GET request
// lines from its MACs in the capture, and the rack's TFTP and HTTP events for it.
func fetchesOf(frames []frame, macs []net.HardwareAddr, events []trace.Event) []fetch {
	mine := map[string]bool{}
	for _, m := range macs {
		mine[m.String()] = true
	}
	seen := map[fetch]bool{}
	var out []fetch
	add := func(f fetch) {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	for _, f := range frames {
		if !mine[f.src.String()] {
			continue
		}
		switch {
		case f.proto == 17 && f.dstPort == 69 && len(f.payload) > 4 && binary.BigEndian.Uint16(f.payload[0:2]) == 1:
			name, _, _ := strings.Cut(string(f.payload[2:]), "\x00")
			add(fetch{"tftp", name, "capture"})
		case f.proto == 6 && len(f.payload) > 4 && (strings.HasPrefix(string(f.payload), "GET ") || strings.HasPrefix(string(f.payload), "HEAD ")):
			line, _, _ := strings.Cut(string(f.payload), "\r\n")
			parts := strings.Fields(line)
			if len(parts) >= 2 {
				p := parts[1]
				if u, err := urlPath(p); err == nil {
					p = u
				}
				add(fetch{"http", p, "capture"})
			}
		}
	}
	for _, e := range events {
		switch e.Kind {
		case trace.KindTFTPRead:
			if s, ok := e.Attrs["file"].(string); ok {
				add(fetch{"tftp", s, "events"})
			}
		case trace.KindHTTPGet:
			if s, ok := e.Attrs["path"].(string); ok {
				add(fetch{"http", s, "events"})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].seenBy < out[j].seenBy })
	return out
}

// urlPath strips a query and a scheme://host from an HTTP request target.
func urlPath(target string) (string, error) {
	if i := strings.Index(target, "://"); i >= 0 {
		rest := target[i+3:]
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			return "/", nil
		}
		target = rest[j:]
	}
	p, _, _ := strings.Cut(target, "?")
	if p == "" {
		return "", errors.New("empty path")
	}
	return p, nil
}

// fetchMatches: the whole name, its last elements, or a glob of either.
func fetchMatches(want, name string) bool {
	name = strings.TrimPrefix(name, "/")
	w := strings.TrimPrefix(want, "/")
	if name == w || strings.HasSuffix(name, "/"+w) {
		return true
	}
	if ok, _ := path.Match(w, name); ok {
		return true
	}
	ok, _ := path.Match(w, path.Base(name))
	return ok
}
