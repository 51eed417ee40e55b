package vnet

import (
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/maasemu/maasemu/harness/vnet/pcap"
)

// A pcap of a small boot-like session (ARP, DHCP, TFTP, HTTP) decodes in tshark.
func TestCaptureDecodesInTshark(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("pcap decoding: needs tshark (Debian package tshark)")
	}
	checkLeaks(t)
	path := filepath.Join(t.TempDir(), "lab.pcap")
	pw, err := pcap.Create(path, pcap.Options{Nanosecond: true})
	must(t, err)
	sw, _ := newTestSwitch(t, Config{Capture: pw})
	ctx := testCtx(t)
	rack := newRack(t, sw)

	// DHCP: a real DISCOVER broadcast from an unconfigured stack, a broadcast OFFER.
	srv, err := rack.ListenUDP(netip.MustParseAddrPort("0.0.0.0:67"), UDPOptions{Broadcast: true})
	must(t, err)
	defer srv.Close()
	m := newStack(t, sw, StackConfig{Name: "machine", Promiscuous: true})
	cl, err := m.ListenUDP(netip.MustParseAddrPort("0.0.0.0:68"), UDPOptions{Broadcast: true})
	must(t, err)
	defer cl.Close()
	disc, err := dhcpv4.NewDiscovery(m.MAC())
	must(t, err)
	_, err = cl.WriteTo(disc.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: 67})
	must(t, err)
	buf := make([]byte, 1500)
	must(t, srv.SetReadDeadline(time.Now().Add(30*time.Second)))
	n, _, err := srv.ReadFrom(buf)
	must(t, err)
	req, err := dhcpv4.FromBytes(buf[:n])
	must(t, err)
	offer, err := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer), dhcpv4.WithYourIP(clientIP.AsSlice()), dhcpv4.WithServerIP(rackIP.AsSlice()))
	must(t, err)
	_, err = srv.WriteTo(offer.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: 68})
	must(t, err)
	must(t, cl.SetReadDeadline(time.Now().Add(30*time.Second)))
	_, _, err = cl.ReadFrom(buf)
	must(t, err)
	must(t, m.AddAddress(netip.PrefixFrom(clientIP, 24)))

	// TFTP and HTTP (both start with ARP).
	tftpServer(t, rack, map[string][]byte{"lpxelinux.0": blob(10_000, 7)}, 0, 0)
	fw := tftpForwarder(t, m, rackIP)
	_, got, err := tftpGet(fw, "lpxelinux.0", 0, 0)
	must(t, err)
	if got != 10_000 {
		t.Fatalf("tftp got %d bytes", got)
	}
	l, err := rack.ListenTCP(netip.AddrPortFrom(rackIP, 5248))
	must(t, err)
	serveHTTP(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(blob(20_000, 8)) }))
	_, _, err = getSHA(ctx, httpClient(m), "http://198.18.0.1:5248/images/boot-kernel")
	must(t, err)

	must(t, sw.Close())
	must(t, pw.Close())
	out, err := exec.Command(tshark, "-r", path, "-d", "tcp.port==5248,http", "-T", "fields", "-e", "frame.protocols", "-e", "dhcp.option.dhcp", "-e", "tftp.source_file", "-e", "http.request.uri").CombinedOutput()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		"eth:ethertype:arp",
		"eth:ethertype:ip:udp:dhcp\t1", // DISCOVER
		"eth:ethertype:ip:udp:dhcp\t2", // OFFER
		"eth:ethertype:ip:udp:tftp\t\tlpxelinux.0",
		"eth:ethertype:ip:tcp:http\t\t\t/images/boot-kernel",
		"eth:ethertype:ip:udp:tftp:data",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("tshark output lacks %q:\n%s", want, text)
		}
	}
}
