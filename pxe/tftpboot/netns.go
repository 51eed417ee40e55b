package tftpboot

import (
	"net"

	"golang.org/x/sys/unix"
)

// followsNetns reports whether conn's socket lives in the network namespace that a new
// goroutine's sockets are made in. pin/tftp's multi-port mode opens a socket per transfer
// on whatever thread runs it: that works only if conn is not in a namespace of one
// thread's own (OpenHost's sockets may be). Without SO_NETNS_COOKIE (Linux < 5.14) it
// cannot tell and says no.
func followsNetns(conn *net.UDPConn) bool {
	raw, err := conn.SyscallConn()
	if err != nil {
		return false
	}
	var cookie uint64
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		cookie, gerr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	}); err != nil || gerr != nil {
		return false
	}
	fresh := make(chan uint64, 1)
	go func() { // a new goroutine never runs on a thread locked into a namespace
		var c uint64
		if fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err == nil {
			c, _ = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
			unix.Close(fd)
		}
		fresh <- c
	}()
	return cookie != 0 && <-fresh == cookie
}
