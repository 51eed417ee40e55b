package tftpboot

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func listenBlocking(t *testing.T, network, addr string) *blockingConn {
	t.Helper()
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Skipf("%s %s: %v", network, addr, err)
	}
	bc, err := newBlockingConn(c.(*net.UDPConn))
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { bc.Close() })
	return bc
}

// Datagrams go both ways between a blocking socket and a normal one, IPv4 and IPv6.
func TestBlockingConnRoundTrip(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{{"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"}} {
		t.Run(tc.network, func(t *testing.T) {
			bc := listenBlocking(t, tc.network, tc.addr)
			peer, err := net.ListenPacket(tc.network, tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			if _, err := peer.WriteTo([]byte("ack 1"), bc.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			n, from, err := bc.ReadFrom(buf)
			if err != nil || string(buf[:n]) != "ack 1" || from.String() != peer.LocalAddr().String() {
				t.Fatalf("ReadFrom = %q from %v, %v; want \"ack 1\" from %v", buf[:n], from, err, peer.LocalAddr())
			}
			if _, err := bc.WriteTo([]byte("block 2"), from); err != nil {
				t.Fatal(err)
			}
			peer.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err = peer.ReadFrom(buf)
			if err != nil || string(buf[:n]) != "block 2" {
				t.Fatalf("peer read %q, %v; want \"block 2\"", buf[:n], err)
			}
		})
	}
}

// A read deadline ends a blocked read with a timeout error, as a net.PacketConn's does.
func TestBlockingConnDeadline(t *testing.T) {
	bc := listenBlocking(t, "udp4", "127.0.0.1:0")
	bc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, _, err := bc.ReadFrom(make([]byte, 16))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadFrom after the deadline: %v, want a timeout", err)
	}
	bc.SetReadDeadline(time.Time{})
	if d := bc.deadline.Load(); d != 0 {
		t.Errorf("deadline after clearing = %d", d)
	}
}

// Close wakes a read blocked in the kernel, closes both descriptors, and later calls fail
// with net.ErrClosed.
func TestBlockingConnCloseWakesReader(t *testing.T) {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bc, err := newBlockingConn(c.(*net.UDPConn))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, _, err := bc.ReadFrom(make([]byte, 16))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it block
	if err := bc.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("blocked read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake the blocked read")
	}
	if _, err := bc.WriteTo([]byte("x"), c.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteTo after Close: %v, want net.ErrClosed", err)
	}
	if _, err := c.WriteTo([]byte("x"), c.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the wrapped socket after Close: %v, want net.ErrClosed", err)
	}
	if err := bc.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v, want net.ErrClosed", err)
	}
}

// A write to something that is not a UDP address is refused with the address named.
func TestBlockingConnBadAddress(t *testing.T) {
	bc := listenBlocking(t, "udp4", "127.0.0.1:0")
	_, err := bc.WriteTo([]byte("x"), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 69})
	if err == nil || !containsAll(err.Error(), "127.0.0.1:69", "not a UDP address") {
		t.Fatalf("WriteTo a TCP address: %v", err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
