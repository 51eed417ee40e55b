package tftpboot

import (
	"net"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// A socket made by a thread in a network namespace of its own does not follow the
// process's namespace (multi-port mode would answer from the wrong one); a normal one does.
func TestFollowsNetns(t *testing.T) {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !followsNetns(c.(*net.UDPConn)) {
		t.Error("a socket of the process's namespace: followsNetns = false")
	}
	if os.Geteuid() != 0 {
		t.Skip("a network namespace needs root")
	}
	inNS := make(chan net.PacketConn, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			inNS <- nil
			return
		}
		c, _ := net.ListenPacket("udp4", "0.0.0.0:0")
		inNS <- c
	}()
	nc := <-inNS
	if nc == nil {
		t.Skip("cannot unshare a network namespace here")
	}
	defer nc.Close()
	if followsNetns(nc.(*net.UDPConn)) {
		t.Error("a socket of a thread's own namespace: followsNetns = true")
	}
}
