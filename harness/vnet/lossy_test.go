package vnet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"net/http"
	"net/netip"
	"testing"
	"time"
)

// With 10% loss and 50 ms delay on the machine's link (both ways, so a 100 ms round
// trip and a 19% chance that a request/answer pair fails), a 16 MiB TFTP transfer and a
// 64 MiB HTTP transfer complete intact.
//
// Lock-step TFTP pays one round trip per block and TCP's rate under loss is about
// MSS/(RTT*sqrt(p)), so both scale with the frame size: at MTU 1500 these transfers
// would take 20 minutes or more (11,400 TFTP blocks of 1468 bytes at >100 ms each;
// ~60 KB/s for TCP). The test runs them with 64 KiB frames (the largest IPv4 packet);
// the faults act per frame exactly as at any MTU. TestLossyStandardMTU covers MTU 1500
// with smaller files.
func TestLossyTransfersComplete(t *testing.T) {
	t.Parallel() // mostly waiting out delays; runs beside TestLossyStandardMTU
	faults := Faults{Loss: 0.10, Delay: 50 * time.Millisecond, Seed: 2026}
	runLossy(t, faults, MaxMTU, 16<<20, 64<<20, 65464)
}

func TestLossyStandardMTU(t *testing.T) {
	t.Parallel()
	faults := Faults{Loss: 0.10, Delay: 50 * time.Millisecond, Seed: 7}
	runLossy(t, faults, DefaultMTU, 128<<10, 1<<20, 1468)
}

func runLossy(t *testing.T, faults Faults, mtu, tftpSize, httpSize, blksize int) {
	t.Helper()
	sw, _ := newTestSwitch(t, Config{MTU: mtu})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rack := newRack(t, sw)
	m := newStack(t, sw, StackConfig{Name: "machine", Addrs: []netip.Prefix{netip.PrefixFrom(clientIP, 24)}})

	tftpData := blob(tftpSize, 11)
	httpData := blob(httpSize, 12)
	const rto = 200 * time.Millisecond // above the 100 ms round trip
	tftpServer(t, rack, map[string][]byte{"big": tftpData}, blksize, rto)
	l, err := rack.ListenTCP(netip.AddrPortFrom(rackIP, 80))
	must(t, err)
	serveHTTP(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "big", time.Time{}, bytes.NewReader(httpData))
	}))
	fw := tftpForwarder(t, m, rackIP)
	must(t, m.Port().SetFaults(faults))

	start := time.Now()
	sum, n, err := tftpGet(fw, "big", blksize, rto)
	if err != nil {
		t.Fatalf("tftp after %v: %v", time.Since(start), err)
	}
	if n != int64(len(tftpData)) || sum != sha256.Sum256(tftpData) {
		t.Fatalf("tftp: got %d bytes, sha256 %x, want %d, %x", n, sum, len(tftpData), sha256.Sum256(tftpData))
	}
	t.Logf("tftp %d MiB, blksize %d, with %v: %v", len(tftpData)>>20, blksize, faults, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	hs, hn, err := getSHA(ctx, httpClient(m), "http://198.18.0.1/big")
	if err != nil {
		t.Fatalf("http after %v: %v", time.Since(start), err)
	}
	if hn != int64(len(httpData)) || hs != sha256.Sum256(httpData) {
		t.Fatalf("http: got %d bytes, sha256 %x", hn, hs)
	}
	t.Logf("http %d MiB with %v: %v", len(httpData)>>20, faults, time.Since(start).Round(time.Millisecond))
	c := m.Port().Counters()
	if c.DropLoss == 0 || c.Delayed == 0 {
		t.Errorf("faults did not act: %+v", c)
	}
	t.Logf("machine port: %d frames lost, %d delayed; rack TCP retransmits %d", c.DropLoss, c.Delayed, rack.Stats().TCPRetransmits)
	must(t, m.Port().SetFaults(Faults{}))
}
