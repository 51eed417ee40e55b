package vnet

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pin/tftp/v3"
)

// tftpServer serves files on the rack's address in single-port mode (one gonet UDP
// socket, no host sockets) until the test ends.
func tftpServer(t *testing.T, rack *Stack, files map[string][]byte, blksize int, timeout time.Duration) {
	t.Helper()
	conn, err := rack.ListenUDP(netip.AddrPortFrom(rack.Addr(), 69), UDPOptions{ReceiveBuffer: 4 << 20})
	must(t, err)
	s := tftp.NewServer(func(name string, rf io.ReaderFrom) error {
		data, ok := files[name]
		if !ok {
			return fmt.Errorf("%s: %w", name, os.ErrNotExist)
		}
		if ot, ok := rf.(tftp.OutgoingTransfer); ok {
			ot.SetSize(int64(len(data)))
		}
		_, err := rf.ReadFrom(bytes.NewReader(data))
		return err
	}, nil)
	s.EnableSinglePort()
	if blksize > 512 {
		s.SetBlockSize(blksize)
		s.SetBlockSizeNegotiation(false) // a gonet conn has no interface MTU to clamp to
	}
	if timeout > 0 {
		s.SetTimeout(timeout)
		s.SetRetries(50)
		s.SetBackoff(func(int) time.Duration { return 0 })
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(conn)
	}()
	t.Cleanup(func() {
		s.Shutdown()
		<-done
	})
}

// tftpForwarder relays host UDP to the TFTP server through st until the test ends (a
// forwarder closed at once could lose the client's final ACK in flight).
func tftpForwarder(t *testing.T, st *Stack, server netip.Addr) *Forwarder {
	t.Helper()
	fw, err := st.ForwardUDP(netip.MustParseAddrPort("127.0.0.1:0"), netip.AddrPortFrom(server, 69))
	must(t, err)
	t.Cleanup(func() { fw.Close() })
	return fw
}

// tftpGet fetches name with the pin/tftp client, a host program, through fw.
func tftpGet(fw *Forwarder, name string, blksize int, timeout time.Duration) ([32]byte, int64, error) {
	c, err := tftp.NewClient(fw.Addr().String())
	if err != nil {
		return [32]byte{}, 0, err
	}
	if blksize > 0 {
		c.SetBlockSize(blksize)
	}
	if timeout > 0 {
		c.SetTimeout(timeout)
		c.SetRetries(50)
		c.SetBackoff(func(int) time.Duration { return 0 })
	}
	wt, err := c.Receive(name, "octet")
	if err != nil {
		return [32]byte{}, 0, err
	}
	h := sha256.New()
	n, err := wt.WriteTo(h)
	return [32]byte(h.Sum(nil)), n, err
}

func TestTFTPAcrossSwitch(t *testing.T) {
	checkLeaks(t)
	sw, _ := newTestSwitch(t, Config{})
	rack := newRack(t, sw)
	lpxe := blob(45_000, 2) // about the size of lpxelinux.0
	tftpServer(t, rack, map[string][]byte{"lpxelinux.0": lpxe}, 1468, 0)
	m := newStack(t, sw, StackConfig{Name: "machine", Addrs: []netip.Prefix{netip.PrefixFrom(clientIP, 24)}})
	fw := tftpForwarder(t, m, rackIP)

	for _, blk := range []int{0, 1468} {
		sum, n, err := tftpGet(fw, "lpxelinux.0", blk, 0)
		must(t, err)
		if n != int64(len(lpxe)) || sum != sha256.Sum256(lpxe) {
			t.Errorf("blksize %d: got %d bytes, sha256 %x", blk, n, sum)
		}
	}
	if _, _, err := tftpGet(fw, "missing", 0, 0); err == nil {
		t.Error("a missing file was served")
	}
}
