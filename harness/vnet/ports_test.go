package vnet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"
)

// trunk connects two switches the way QEMU connects a NIC: sw2's UDP port plays QEMU,
// listening on sw1's peer address and sending to sw1's listen address.
func trunk(t *testing.T, sw1, sw2 *Switch) (*UDPPort, *UDPPort) {
	t.Helper()
	p1, err := sw1.AttachUDP(UDPPortConfig{Name: "vm0"})
	must(t, err)
	p2, err := sw2.AttachUDP(UDPPortConfig{Name: "uplink", Listen: p1.PeerAddr(), Peer: p1.ListenAddr()})
	must(t, err)
	return p1, p2
}

func TestUDPPortPair(t *testing.T) {
	checkLeaks(t)
	sw1, _ := newTestSwitch(t, Config{Name: "lab"})
	sw2, _ := newTestSwitch(t, Config{Name: "guest"})
	ctx := testCtx(t)
	p1, _ := trunk(t, sw1, sw2)

	att := p1.Attachment()
	if att.Remote != p1.ListenAddr() || att.Local != p1.PeerAddr() || !att.Remote.Addr().IsLoopback() || att.Local.Port() == 0 || att.Remote.Port() == 0 {
		t.Errorf("attachment %+v", att)
	}
	want := "socket,id=n0,udp=" + att.Remote.String() + ",localaddr=" + att.Local.String()
	if got := p1.QEMUNetdev("n0"); got != want {
		t.Errorf("netdev %q, want %q", got, want)
	}

	rack := newRack(t, sw1)
	l, err := rack.ListenTCP(netip.AddrPortFrom(rackIP, 80))
	must(t, err)
	data := blob(2<<20, 4)
	serveHTTP(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(data) }))
	m := newStack(t, sw2, StackConfig{Name: "machine", Addrs: []netip.Prefix{netip.PrefixFrom(clientIP, 24)}})
	sum, n, err := getSHA(ctx, httpClient(m), "http://198.18.0.1/")
	must(t, err)
	if n != int64(len(data)) || sum != sha256.Sum256(data) {
		t.Errorf("got %d bytes, sha %x", n, sum)
	}
	c := p1.Counters()
	if c.RxFrames == 0 || c.TxFrames == 0 || c.TxBytes < uint64(len(data)) {
		t.Errorf("UDP port counters %+v", c)
	}
}

func TestUDPPortRefusesForeignSenders(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{})
	p, err := sw.AttachUDP(UDPPortConfig{Name: "vm0"})
	must(t, err)
	other := attachRaw(t, sw, "other")
	intruder, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	must(t, err)
	defer intruder.Close()
	// From the wrong address: dropped and counted.
	_, err = intruder.WriteToUDPAddrPort(testFrame(bcastMAC, macA, 1, 64), p.ListenAddr())
	must(t, err)
	// From the peer address: forwarded.
	peer, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(p.PeerAddr()))
	must(t, err)
	defer peer.Close()
	_, err = peer.WriteToUDPAddrPort(testFrame(bcastMAC, macA, 2, 64), p.ListenAddr())
	must(t, err)
	// A datagram too short to be a frame: dropped and counted.
	_, err = peer.WriteToUDPAddrPort([]byte{1, 2, 3}, p.ListenAddr())
	must(t, err)
	_, err = peer.WriteToUDPAddrPort(testFrame(bcastMAC, macA, 3, 64), p.ListenAddr())
	must(t, err)
	ctx := testCtx(t)
	got := recvN(t, ctx, other, 2)
	if frameSeq(got[0]) != 2 || frameSeq(got[1]) != 3 {
		t.Errorf("forwarded frames %d, %d; want 2, 3", frameSeq(got[0]), frameSeq(got[1]))
	}
	c := p.Counters()
	if c.Foreign != 1 || c.Malformed != 1 {
		t.Errorf("foreign %d malformed %d, want 1 and 1", c.Foreign, c.Malformed)
	}
	// Frames for the VM go to the peer address.
	must(t, other.Send(testFrame(bcastMAC, macB, 4, 64)))
	buf := make([]byte, 2000)
	must(t, peer.SetReadDeadline(time.Now().Add(30*time.Second)))
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	must(t, err)
	if frameSeq(buf[:n]) != 4 || from != p.ListenAddr() {
		t.Errorf("peer got frame %d from %v", frameSeq(buf[:n]), from)
	}
}

func TestUDPPortBadConfig(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{})
	if _, err := sw.AttachUDP(UDPPortConfig{Peer: netip.MustParseAddrPort("127.0.0.1:0")}); err == nil {
		t.Error("peer port 0 accepted")
	}
	p, err := sw.AttachUDP(UDPPortConfig{Name: "a"})
	must(t, err)
	if _, err := sw.AttachUDP(UDPPortConfig{Name: "b", Listen: p.ListenAddr()}); err == nil {
		t.Error("a second port on the same listen address was accepted")
	}
	if len(sw.Ports()) != 1 {
		t.Errorf("%d ports after refused attaches", len(sw.Ports()))
	}
}

func TestStreamPorts(t *testing.T) {
	checkLeaks(t)
	sw1, _ := newTestSwitch(t, Config{Name: "lab"})
	sw2, _ := newTestSwitch(t, Config{Name: "guest"})
	ctx := testCtx(t)
	lp, err := sw1.ListenStream(StreamPortConfig{Name: "vm0"}, netip.MustParseAddrPort("127.0.0.1:0"))
	must(t, err)
	if got := lp.QEMUNetdev("n0"); got != "socket,id=n0,connect="+lp.Addr().String() {
		t.Errorf("netdev %q", got)
	}
	dp, err := sw2.DialStream(ctx, StreamPortConfig{Name: "uplink"}, lp.Addr())
	must(t, err)
	if got := dp.QEMUNetdev("n0"); got != "socket,id=n0,listen="+lp.Addr().String() {
		t.Errorf("netdev %q", got)
	}
	rack := newRack(t, sw1)
	l, err := rack.ListenTCP(netip.AddrPortFrom(rackIP, 80))
	must(t, err)
	data := blob(2<<20, 5)
	serveHTTP(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(data) }))
	m := newStack(t, sw2, StackConfig{Name: "machine", Addrs: []netip.Prefix{netip.PrefixFrom(clientIP, 24)}})
	// The listening side may not have adopted the connection yet; TCP retries SYNs.
	sum, n, err := getSHA(ctx, httpClient(m), "http://198.18.0.1/")
	must(t, err)
	if n != int64(len(data)) || sum != sha256.Sum256(data) {
		t.Errorf("got %d bytes, sha %x", n, sum)
	}
	if !lp.Connected() || !dp.Connected() {
		t.Error("stream ports not connected")
	}
}

func TestStreamPortFraming(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{})
	ctx := testCtx(t)
	lp, err := sw.ListenStream(StreamPortConfig{Name: "vm0"}, netip.MustParseAddrPort("127.0.0.1:0"))
	must(t, err)
	other := attachRaw(t, sw, "other")
	conn, err := net.Dial("tcp", lp.Addr().String())
	must(t, err)
	defer conn.Close()
	write := func(f []byte) {
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(f)))
		_, err := conn.Write(append(hdr[:], f...))
		must(t, err)
	}
	// Two frames in one write, then a frame split across writes.
	f1, f2, f3 := testFrame(bcastMAC, macA, 1, 64), testFrame(bcastMAC, macA, 2, 1514), testFrame(bcastMAC, macA, 3, 100)
	var two []byte
	for _, f := range [][]byte{f1, f2} {
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(f)))
		two = append(append(two, hdr[:]...), f...)
	}
	_, err = conn.Write(two)
	must(t, err)
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(f3)))
	_, err = conn.Write(append(hdr[:], f3[:50]...))
	must(t, err)
	time.Sleep(10 * time.Millisecond)
	_, err = conn.Write(f3[50:])
	must(t, err)
	got := recvN(t, ctx, other, 3)
	for i, f := range [][]byte{f1, f2, f3} {
		if !bytes.Equal(got[i], f) {
			t.Errorf("frame %d differs", i+1)
		}
	}
	// Frames towards the VM come length-prefixed.
	must(t, other.Send(f2))
	must(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
	var rh [4]byte
	_, err = readFull(conn, rh[:])
	must(t, err)
	if n := binary.BigEndian.Uint32(rh[:]); n != uint32(len(f2)) {
		t.Fatalf("length prefix %d, want %d", n, len(f2))
	}
	body := make([]byte, len(f2))
	_, err = readFull(conn, body)
	must(t, err)
	if !bytes.Equal(body, f2) {
		t.Error("frame to the VM differs")
	}

	// A bad length loses the framing: the connection is closed and counted.
	write(make([]byte, 5))
	_, err = readFull(conn, rh[:])
	if err == nil {
		t.Error("connection still open after a 5-byte frame length")
	}
	if lp.Counters().Malformed != 1 {
		t.Errorf("malformed = %d, want 1", lp.Counters().Malformed)
	}
	// QEMU reconnects: a new connection is served.
	conn2, err := net.Dial("tcp", lp.Addr().String())
	must(t, err)
	defer conn2.Close()
	binary.BigEndian.PutUint32(hdr[:], uint32(len(f1)))
	_, err = conn2.Write(append(hdr[:], f1...))
	must(t, err)
	if g := recvN(t, ctx, other, 1); !bytes.Equal(g[0], f1) {
		t.Error("frame after reconnect differs")
	}
}

func TestDialStreamGivesUp(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{})
	free, err := freeUDPPort(netip.MustParseAddr("127.0.0.1")) // a TCP port nobody listens on, most likely
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := sw.DialStream(ctx, StreamPortConfig{Name: "x"}, free); err == nil {
		t.Error("dial to a closed port succeeded")
	}
	if len(sw.Ports()) != 0 {
		t.Error("a port was attached by a failed dial")
	}
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func TestUDPPortAnyPeer(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{})
	p, err := sw.AttachUDP(UDPPortConfig{Name: "vm0", AnyPeer: true})
	must(t, err)
	other := attachRaw(t, sw, "other")
	stranger, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	must(t, err)
	defer stranger.Close()
	_, err = stranger.WriteToUDPAddrPort(testFrame(bcastMAC, macA, 7, 64), p.ListenAddr())
	must(t, err)
	if got := recvN(t, testCtx(t), other, 1); frameSeq(got[0]) != 7 {
		t.Errorf("got frame %d", frameSeq(got[0]))
	}
	if p.Counters().Foreign != 0 {
		t.Errorf("foreign = %d with AnyPeer", p.Counters().Foreign)
	}
}
