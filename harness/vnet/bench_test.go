package vnet_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maasemu/maasemu/harness/vnet"
)

// Benchmarks, side by side with QEMU's own networking. Method (see also the report):
//
//   - Frames: a sender blasts numbered frames into a UDP socket pair and a receiver
//     counts them, with at most 256 frames in flight (so nothing is lost to socket
//     buffers and the rate is sustainable). The frames cross either the vnet switch
//     (UDP port -> switch -> UDP port) or QEMU's hub between two socket netdevs (QEMU
//     with -machine none: no guest, only its network backends). Same sockets, same
//     frames; only the forwarder differs.
//   - TCP stream: one TCP stream from a server to a client, the client being a gVisor
//     stack standing in for the guest. Without a guest OS, the guest's NIC is emulated
//     the same way in every case: a gVisor stack on a switch whose UDP port is wired to
//     a QEMU socket netdev on a QEMU hub. What serves it differs:
//     vnet: the hub's other socket netdev -> UDP -> the lab switch -> the rack's gVisor
//     stack (how a VM reaches the rack);
//     slirp: the hub's user-mode netdev (-netdev user) -> the host kernel's TCP -> a
//     server on 127.0.0.1 (how a VM reaches a host server through QEMU user networking).
//     "inprocess" is the rack stack and the client stack on one switch, with no QEMU;
//     "vnet-via-qemu-stream" is vnet with QEMU's TCP socket netdevs instead of UDP.
//     QEMU's UDP socket netdev keeps the kernel's default receive buffer
//     (net.core.rmem_default, 208 KiB on Debian): bursts towards QEMU overflow it and
//     TCP backs off; the TCP form cannot drop.

const window = 256

// blast sends b.N frames of size bytes from send to dst and counts them at recv.
func blast(b *testing.B, send *net.UDPConn, dst netip.AddrPort, recv *net.UDPConn, frame []byte) {
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 70000)
		for {
			if _, _, err := recv.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	lost := int64(0)
	b.SetBytes(int64(len(frame)))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		stall := time.Now()
		for int64(i)-got.Load()-lost >= window {
			if time.Since(stall) > 200*time.Millisecond {
				lost = int64(i) - got.Load() // give up on what is in flight
				break
			}
			time.Sleep(10 * time.Microsecond)
		}
		if _, err := send.WriteToUDPAddrPort(frame, dst); err != nil {
			b.Fatal(err)
		}
	}
	for deadline := time.Now().Add(time.Second); got.Load()+lost < int64(b.N) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Microsecond)
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(got.Load())/el.Seconds(), "frames/s")
	b.ReportMetric(100*float64(int64(b.N)-got.Load())/float64(b.N), "%lost")
	recv.Close()
	<-done
}

func udpConn(b *testing.B, at netip.AddrPort) *net.UDPConn {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(at))
	if err != nil {
		b.Fatal(err)
	}
	_ = c.SetReadBuffer(8 << 20)
	b.Cleanup(func() { c.Close() })
	return c
}

func benchFrame(size int) []byte {
	f := make([]byte, size)
	copy(f[0:6], []byte{0x52, 0x54, 0, 0, 0, 0x0b})
	copy(f[6:12], []byte{0x52, 0x54, 0, 0, 0, 0x0a})
	f[12], f[13] = 0x88, 0xb5
	return f
}

// qemuNet runs QEMU with only network backends until the benchmark ends.
func qemuNet(b *testing.B, netdevs ...string) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		b.Skip("QEMU comparison: needs qemu-system-x86_64")
	}
	args := []string{"-machine", "none", "-nodefaults", "-nographic", "-display", "none", "-serial", "none", "-monitor", "none"}
	for _, n := range netdevs {
		args = append(args, "-netdev", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, qemu, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cancel()
		cmd.Wait()
	})
	time.Sleep(300 * time.Millisecond) // let QEMU bind its sockets
	if cmd.ProcessState != nil {
		b.Fatalf("QEMU exited: %s", stderr.String())
	}
}

func freePort(b *testing.B) netip.AddrPort {
	c := udpConn(b, netip.MustParseAddrPort("127.0.0.1:0"))
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func BenchmarkForwardFrames(b *testing.B) {
	for _, size := range []int{64, 1514} {
		b.Run(fmt.Sprintf("vnet-raw/%dB", size), func(b *testing.B) {
			sw, _ := vnet.NewSwitch(vnet.Config{})
			defer sw.Close()
			a, _ := sw.AttachRaw("a", vnet.RawOptions{Queue: 4096})
			rb, _ := sw.AttachRaw("b", vnet.RawOptions{Queue: 4096})
			f := benchFrame(size)
			learn := benchFrame(64)
			copy(learn[0:6], f[6:12])
			copy(learn[6:12], f[0:6])
			rb.Send(learn)
			ctx := context.Background()
			a.Recv(ctx)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range b.N {
					if _, err := rb.Recv(ctx); err != nil {
						return
					}
				}
			}()
			b.SetBytes(int64(size))
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				for rb.Pending() > 2048 {
					time.Sleep(time.Microsecond)
				}
				a.Send(f)
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "frames/s")
		})
		b.Run(fmt.Sprintf("vnet-udp/%dB", size), func(b *testing.B) {
			sw, _ := vnet.NewSwitch(vnet.Config{})
			defer sw.Close()
			p1, err := sw.AttachUDP(vnet.UDPPortConfig{Name: "p1"})
			if err != nil {
				b.Fatal(err)
			}
			p2, err := sw.AttachUDP(vnet.UDPPortConfig{Name: "p2"})
			if err != nil {
				b.Fatal(err)
			}
			send := udpConn(b, p1.PeerAddr())
			recv := udpConn(b, p2.PeerAddr())
			blast(b, send, p1.ListenAddr(), recv, benchFrame(size))
		})
		b.Run(fmt.Sprintf("qemu-hub-udp/%dB", size), func(b *testing.B) {
			aUDP, aLocal, bUDP, bLocal := freePort(b), freePort(b), freePort(b), freePort(b)
			qemuNet(b,
				fmt.Sprintf("socket,id=a,udp=%s,localaddr=%s", aUDP, aLocal),
				fmt.Sprintf("socket,id=b,udp=%s,localaddr=%s", bUDP, bLocal),
				"hubport,id=ha,hubid=0,netdev=a", "hubport,id=hb,hubid=0,netdev=b")
			send := udpConn(b, aUDP)
			recv := udpConn(b, bUDP)
			blast(b, send, aLocal, recv, benchFrame(size))
		})
	}
}

// streamTo reads b.N chunks from a connection the server side fills.
func streamBench(b *testing.B, dial func(ctx context.Context) (net.Conn, error), serve func(write func(net.Conn))) {
	const chunk = 64 << 10
	n := b.N
	serve(func(c net.Conn) {
		buf := make([]byte, chunk)
		for range n {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
		c.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b.SetBytes(chunk)
	b.ResetTimer()
	c, err := dial(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	got, err := io.Copy(io.Discard, c)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if got != int64(n)*chunk {
		b.Fatalf("received %d bytes, want %d", got, int64(n)*chunk)
	}
}

// serveOnce accepts one connection on l and hands it to write.
func serveOnce(b *testing.B, l net.Listener) func(func(net.Conn)) {
	return func(write func(net.Conn)) {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := l.Accept()
			if err != nil {
				return
			}
			write(c)
		}()
		b.Cleanup(func() { l.Close(); wg.Wait() })
	}
}

var (
	rackAddr  = vnet.DefaultRackAddr
	guestAddr = netip.MustParsePrefix("198.18.0.50/24")
)

func BenchmarkTCPStream(b *testing.B) {
	b.Run("inprocess", func(b *testing.B) {
		sw, _ := vnet.NewSwitch(vnet.Config{})
		defer sw.Close()
		rack, _ := sw.NewStack(vnet.StackConfig{Name: "rack", Addrs: []netip.Prefix{rackAddr}})
		guest, _ := sw.NewStack(vnet.StackConfig{Name: "guest", Addrs: []netip.Prefix{guestAddr}})
		l, err := rack.ListenTCP(netip.AddrPortFrom(rackAddr.Addr(), 5248))
		if err != nil {
			b.Fatal(err)
		}
		streamBench(b, func(ctx context.Context) (net.Conn, error) {
			return guest.DialContext(ctx, "tcp", "198.18.0.1:5248")
		}, serveOnce(b, l))
	})
	b.Run("vnet-via-qemu", func(b *testing.B) {
		lab, _ := vnet.NewSwitch(vnet.Config{Name: "lab"})
		defer lab.Close()
		guestNIC, _ := vnet.NewSwitch(vnet.Config{Name: "guest-nic"})
		defer guestNIC.Close()
		rack, _ := lab.NewStack(vnet.StackConfig{Name: "rack", Addrs: []netip.Prefix{rackAddr}})
		vm, err := lab.AttachUDP(vnet.UDPPortConfig{Name: "vm"})
		if err != nil {
			b.Fatal(err)
		}
		nic, err := guestNIC.AttachUDP(vnet.UDPPortConfig{Name: "nic"})
		if err != nil {
			b.Fatal(err)
		}
		guest, _ := guestNIC.NewStack(vnet.StackConfig{Name: "guest", Addrs: []netip.Prefix{guestAddr}})
		qemuNet(b, vm.QEMUNetdev("a"), nic.QEMUNetdev("b"), "hubport,id=ha,hubid=0,netdev=a", "hubport,id=hb,hubid=0,netdev=b")
		l, err := rack.ListenTCP(netip.AddrPortFrom(rackAddr.Addr(), 5248))
		if err != nil {
			b.Fatal(err)
		}
		streamBench(b, func(ctx context.Context) (net.Conn, error) {
			return guest.DialContext(ctx, "tcp", "198.18.0.1:5248")
		}, serveOnce(b, l))
	})
	b.Run("vnet-via-qemu-stream", func(b *testing.B) {
		lab, _ := vnet.NewSwitch(vnet.Config{Name: "lab"})
		defer lab.Close()
		guestNIC, _ := vnet.NewSwitch(vnet.Config{Name: "guest-nic"})
		defer guestNIC.Close()
		rack, _ := lab.NewStack(vnet.StackConfig{Name: "rack", Addrs: []netip.Prefix{rackAddr}})
		loop := netip.MustParseAddrPort("127.0.0.1:0")
		vm, err := lab.ListenStream(vnet.StreamPortConfig{Name: "vm"}, loop)
		if err != nil {
			b.Fatal(err)
		}
		nic, err := guestNIC.ListenStream(vnet.StreamPortConfig{Name: "nic"}, loop)
		if err != nil {
			b.Fatal(err)
		}
		guest, _ := guestNIC.NewStack(vnet.StackConfig{Name: "guest", Addrs: []netip.Prefix{guestAddr}})
		qemuNet(b, vm.QEMUNetdev("a"), nic.QEMUNetdev("b"), "hubport,id=ha,hubid=0,netdev=a", "hubport,id=hb,hubid=0,netdev=b")
		l, err := rack.ListenTCP(netip.AddrPortFrom(rackAddr.Addr(), 5248))
		if err != nil {
			b.Fatal(err)
		}
		streamBench(b, func(ctx context.Context) (net.Conn, error) {
			return guest.DialContext(ctx, "tcp", "198.18.0.1:5248")
		}, serveOnce(b, l))
	})
	b.Run("slirp", func(b *testing.B) {
		guestNIC, _ := vnet.NewSwitch(vnet.Config{Name: "guest-nic"})
		defer guestNIC.Close()
		nic, err := guestNIC.AttachUDP(vnet.UDPPortConfig{Name: "nic"})
		if err != nil {
			b.Fatal(err)
		}
		guest, _ := guestNIC.NewStack(vnet.StackConfig{Name: "guest", Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.2.15/24")}, Gateway: netip.MustParseAddr("10.0.2.2")})
		qemuNet(b, "user,id=u0,net=10.0.2.0/24", nic.QEMUNetdev("b"), "hubport,id=hu,hubid=0,netdev=u0", "hubport,id=hb,hubid=0,netdev=b")
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		streamBench(b, func(ctx context.Context) (net.Conn, error) {
			// slirp maps 10.0.2.2 to the host's loopback.
			return guest.DialContext(ctx, "tcp", fmt.Sprintf("10.0.2.2:%d", port))
		}, serveOnce(b, l))
	})
}
