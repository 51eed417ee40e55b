package tftpboot

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maasemu/maasemu/pxe/bootconfig"
	"github.com/maasemu/maasemu/pxe/bootfiles"
	"github.com/maasemu/maasemu/pxe/bootloader"
	"github.com/maasemu/maasemu/pxe/internal/pxetest"
	"github.com/maasemu/maasemu/trace"
	"github.com/pin/tftp/v3"
)

type fixture struct {
	addr   string // 127.0.0.1:port
	region *pxetest.Region
	rec    *trace.Recorder
	big    []byte // a 3 MiB bootloader
}

// wrappedConn hides *net.UDPConn, as a gVisor gonet conn does.
type wrappedConn struct{ net.PacketConn }

// start serves in single-port mode: on the host socket (wrap false) or on a conn that
// hides it, as a gVisor conn does.
func start(t *testing.T, wrap bool) *fixture {
	return startMode(t, wrap, true)
}

func startMode(t *testing.T, wrap, singlePort bool) *fixture {
	t.Helper()
	region := pxetest.NewRegion()
	big := make([]byte, 3<<20+123)
	for i := range big {
		big[i] = byte(i * 7)
	}
	region.Bootloaders["uefi/amd64/bootx64.efi"] = big
	region.Bootloaders["pxe/i386/lpxelinux.0"] = []byte("lpxelinux from the region")
	host := bootloader.Host{PXELinuxDir: t.TempDir(), SyslinuxBIOS: t.TempDir(), ShimDir: t.TempDir(), GRUBModules: t.TempDir(), CacheDir: t.TempDir()}
	if err := os.WriteFile(filepath.Join(host.SyslinuxBIOS, "ldlinux.c32"), []byte("ldlinux from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := trace.NewRecorder(nil)
	tree := bootfiles.New(bootfiles.Config{Region: region, Bootloader: bootloader.New(region, host, nil), Sink: rec})
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := conn.LocalAddr().String()
	var pc net.PacketConn = conn
	if wrap {
		pc = wrappedConn{conn}
	}
	srv := New(Config{Tree: tree, LocalIP: netip.MustParseAddr("127.0.0.1"), Sink: rec, Timeout: time.Second, Retries: 2, SinglePort: singlePort})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, pc) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &fixture{addr: addr, region: region, rec: rec, big: big}
}

func goGet(t *testing.T, addr, name string, blksize int) ([]byte, int64, error) {
	t.Helper()
	c, err := tftp.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(2 * time.Second)
	c.SetRetries(2)
	if blksize > 0 {
		c.SetBlockSize(blksize)
	}
	c.RequestTSize(true)
	wt, err := c.Receive(name, "octet")
	if err != nil {
		return nil, 0, err
	}
	size, _ := wt.(tftp.IncomingTransfer).Size()
	var buf bytes.Buffer
	_, err = wt.WriteTo(&buf)
	return buf.Bytes(), size, err
}

func (f *fixture) want(t *testing.T, name string) []byte {
	t.Helper()
	p := f.region.Machine(pxetest.MAC)
	p.FSHost = "127.0.0.1"
	switch name {
	case "pxelinux.cfg/01-52-54-00-12-34-56":
		c, _ := bootconfig.Render(bootconfig.PXELinux, p, bootconfig.TFTP, bootconfig.Options{})
		return c.Data
	case "grub/grub.cfg-52:54:00:12:34:56", "grub/grub.cfg-52-54-00-12-34-56":
		c, _ := bootconfig.Render(bootconfig.GRUB, p, bootconfig.TFTP, bootconfig.Options{})
		return c.Data
	case "bootx64.efi":
		return f.big
	case "lpxelinux.0":
		return []byte("lpxelinux from the region")
	case "ldlinux.c32":
		return []byte("ldlinux from the host")
	case "grub/grub.cfg":
		return []byte(bootconfig.GRUBPreloader)
	}
	t.Fatalf("no expectation for %s", name)
	return nil
}

var files = []string{"pxelinux.cfg/01-52-54-00-12-34-56", "grub/grub.cfg-52:54:00:12:34:56", "grub/grub.cfg", "lpxelinux.0", "ldlinux.c32", "bootx64.efi"}

func TestGoClient(t *testing.T) {
	for _, mode := range []struct{ wrap, single bool }{{false, true}, {true, false}, {false, false}} {
		t.Run(fmt.Sprintf("wrapped=%v,singleport=%v", mode.wrap, mode.single), func(t *testing.T) {
			f := startMode(t, mode.wrap, mode.single)
			for _, blk := range []int{0, 1468, 8192} {
				for _, name := range files {
					got, size, err := goGet(t, f.addr, name, blk)
					if err != nil {
						t.Fatalf("get %s blksize %d: %v", name, blk, err)
					}
					want := f.want(t, name)
					if !bytes.Equal(got, want) {
						t.Errorf("get %s blksize %d: %d bytes differ from the %d expected", name, blk, len(got), len(want))
					}
					if size != int64(len(want)) {
						t.Errorf("get %s: tsize %d, want %d", name, size, len(want))
					}
				}
			}
			// Every transfer is a tftp.read event with bytes and the negotiated blksize. The
			// server reports after the client's last ACK, which may still be on its way.
			reads := waitEvents(f.rec, trace.KindTFTPRead, 3*len(files))
			if len(reads) != 3*len(files) {
				t.Fatalf("%d tftp.read events, want %d", len(reads), 3*len(files))
			}
			last := reads[len(reads)-1]
			if last.Attrs["file"] != "bootx64.efi" || last.Attrs["bytes"] != int64(len(f.big)) ||
				last.Attrs["blksize"] != "1468" || last.Attrs["tsize"] != fmt.Sprint(len(f.big)) || last.Attrs["kind"] != "bootloader" {
				// 8192 is capped at DefaultMaxBlockSize.
				t.Errorf("last tftp.read: %+v", last.Attrs)
			}
			if reads[0].MAC != pxetest.MAC {
				t.Errorf("config read event has MAC %q", reads[0].MAC)
			}
		})
	}
}

// waitEvents returns the events of kind once there are n of them (or after 5 s).
func waitEvents(rec *trace.Recorder, kind string, n int) []trace.Event {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var out []trace.Event
		for _, e := range rec.Events() {
			if e.Kind == kind {
				out = append(out, e)
			}
		}
		if len(out) >= n || time.Now().After(deadline) {
			return out
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("needs %s (make deps installs it)", name)
	}
	return p
}

func TestCurl(t *testing.T) {
	curl := needTool(t, "curl")
	f := start(t, false)
	for _, blk := range []string{"512", "1468"} {
		for _, name := range files {
			out := filepath.Join(t.TempDir(), "out")
			cmd := exec.Command(curl, "-sS", "--fail", "--tftp-blksize", blk, "-o", out, "tftp://"+f.addr+"/"+name)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("curl %s: %v: %s", name, err, b)
			}
			got, _ := os.ReadFile(out)
			if !bytes.Equal(got, f.want(t, name)) {
				t.Errorf("curl %s blksize %s: content differs (%d bytes)", name, blk, len(got))
			}
		}
	}
	// curl asks for tsize: the OACK carried the size, the event says so.
	found := false
	for _, e := range waitEvents(f.rec, trace.KindTFTPRead, 2*len(files)) {
		if e.Kind == trace.KindTFTPRead && e.Attrs["file"] == "bootx64.efi" && e.Attrs["blksize"] == "1468" && e.Attrs["tsize"] == fmt.Sprint(len(f.big)) {
			found = true
		}
	}
	if !found {
		t.Error("no tftp.read event for curl's bootx64.efi with blksize 1468 and tsize")
	}
}

func TestTFTPHPA(t *testing.T) {
	tftpc := needTool(t, "tftp")
	f := start(t, false)
	host, port, _ := net.SplitHostPort(f.addr)
	for _, name := range files {
		if strings.Contains(name, ":") {
			// tftp-hpa's get reads "a:b" as host:file; GRUB's dashed MAC form is the same config.
			name = strings.ReplaceAll(name, ":", "-")
		}
		dir := t.TempDir()
		// tftp-hpa negotiates no options (no blksize, no tsize): 512-byte blocks.
		cmd := exec.Command(tftpc, "-m", "binary", host, port, "-c", "get", name, "out")
		cmd.Dir = dir
		b, err := cmd.CombinedOutput()
		if err != nil || len(b) != 0 && strings.Contains(string(b), "Error") {
			t.Fatalf("tftp get %s: %v: %s", name, err, b)
		}
		got, _ := os.ReadFile(filepath.Join(dir, "out"))
		if !bytes.Equal(got, f.want(t, name)) {
			t.Errorf("tftp-hpa %s: content differs (%d bytes)", name, len(got))
		}
	}
	// Verbose mode prints the transfer and no error.
	cmd := exec.Command(tftpc, "-v", "-m", "octet", host, port, "-c", "get", "lpxelinux.0", "out")
	cmd.Dir = t.TempDir()
	b, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(b), "Received") {
		t.Errorf("tftp -v: %v: %s", err, b)
	}
}

// rawRequest sends one TFTP request packet and, when a reply is expected, returns it.
func rawRequest(t *testing.T, addr string, pkt []byte, wantReply bool) []byte {
	t.Helper()
	c, err := net.Dial("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
	if !wantReply {
		return nil
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func rrq(op uint16, fields ...string) []byte {
	b := binary.BigEndian.AppendUint16(nil, op)
	for _, f := range fields {
		b = append(b, f...)
		b = append(b, 0)
	}
	return b
}

// errorPacket decodes an ERROR reply.
func errorPacket(b []byte) (uint16, string, bool) {
	if len(b) < 5 || binary.BigEndian.Uint16(b) != 5 {
		return 0, "", false
	}
	return binary.BigEndian.Uint16(b[2:]), string(bytes.TrimRight(b[4:], "\x00")), true
}

func TestBadRequests(t *testing.T) {
	f := start(t, false)
	cases := []struct {
		name   string
		pkt    []byte
		kind   string // event expected
		reason string // in the event's reason or the error packet
		reply  bool   // an ERROR packet comes back
	}{
		{"traversal", rrq(1, "../../etc/passwd", "octet"), trace.KindTFTPError, "'..' path segment", true},
		{"traversal after a prefix", rrq(1, "pxelinux.cfg/../../../../etc/shadow", "octet"), trace.KindTFTPError, "'..' path segment", true},
		{"backslash traversal", rrq(1, `..\..\etc\passwd`, "octet"), trace.KindTFTPError, "'..' path segment", true},
		{"DOS absolute", rrq(1, `C:\Windows\win.ini`, "octet"), trace.KindTFTPError, "absolute DOS path", true},
		{"absolute host path is rooted in the tree", rrq(1, "/etc/passwd", "octet"), trace.KindTFTPNotFound, "no such file in the served tree", true},
		{"control character", rrq(1, "lpxelinux.0\x01", "octet"), trace.KindTFTPError, "control character", true},
		{"1 KiB name", rrq(1, strings.Repeat("A", 1024), "octet"), trace.KindTFTPError, "longer than 255", true},
		{"2 KiB name, cut by the receive buffer", rrq(1, strings.Repeat("B", 2048), "octet"), trace.KindTFTPError, "malformed packet", false},
		{"write request", rrq(2, "pxelinux.cfg/default", "octet"), trace.KindTFTPError, "read-only", true},
		{"unknown opcode", rrq(9, "x", "octet"), trace.KindTFTPError, "malformed packet", false},
		{"truncated", []byte{0, 1}, trace.KindTFTPError, "malformed packet", false},
		{"empty", []byte{}, "", "", false},
		{"unknown MAC config", rrq(1, "pxelinux.cfg/01-52-54-00-aa-bb-cc", "octet"), trace.KindTFTPNotFound, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(f.rec.Events())
			reply := rawRequest(t, f.addr, c.pkt, c.reply)
			if c.reply {
				code, msg, ok := errorPacket(reply)
				if !ok || code != 1 {
					t.Errorf("reply %q, want an ERROR packet", reply)
				} else if c.reason != "" && !strings.Contains(msg, c.reason) {
					t.Errorf("error message %q does not say %q", msg, c.reason)
				}
			}
			if c.kind != "" {
				deadline := time.Now().Add(3 * time.Second)
				var got *trace.Event
				for got == nil && time.Now().Before(deadline) {
					for _, e := range f.rec.Events()[before:] {
						if e.Kind == c.kind {
							got = &e
							break
						}
					}
					if got == nil {
						time.Sleep(10 * time.Millisecond)
					}
				}
				if got == nil {
					t.Fatalf("no %s event", c.kind)
				}
				if r, _ := got.Attrs["reason"].(string); c.reason != "" && !strings.Contains(r+got.Message, c.reason) {
					t.Errorf("event %+v does not give reason %q", got, c.reason)
				}
			}
			// The server keeps serving others.
			got, _, err := goGet(t, f.addr, "lpxelinux.0", 1468)
			if err != nil || string(got) != "lpxelinux from the region" {
				t.Fatalf("good request after %s: %q, %v", c.name, got, err)
			}
		})
	}
}

func TestWriteWithGoClient(t *testing.T) {
	f := start(t, false)
	c, _ := tftp.NewClient(f.addr)
	c.SetTimeout(time.Second)
	rf, err := c.Send("pxelinux.cfg/default", "octet")
	if err == nil {
		_, err = rf.ReadFrom(strings.NewReader("DEFAULT evil"))
	}
	if err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("write: err = %v, want refusal", err)
	}
	got, _, err := goGet(t, f.addr, "grub/grub.cfg", 0)
	if err != nil || string(got) != bootconfig.GRUBPreloader {
		t.Errorf("after write: %q %v", got, err)
	}
}

// TestUEFISizeProbe replays EDK2's PxeBcTftpGetFileSize: RRQ with tsize=0, read the OACK,
// abort with ERROR 8. That is a debug-level probe event, not a failure.
func TestUEFISizeProbe(t *testing.T) {
	f := start(t, false)
	c, err := net.Dial("udp4", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(rrq(1, "bootx64.efi", "octet", "tsize", "0", "blksize", "1468"))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil || binary.BigEndian.Uint16(buf) != 6 {
		t.Fatalf("want OACK, got %q %v", buf[:n], err)
	}
	if !bytes.Contains(buf[:n], []byte(fmt.Sprintf("tsize\x00%d\x00", len(f.big)))) {
		t.Errorf("OACK %q lacks tsize", buf[:n])
	}
	abort := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 5), 8)
	c.Write(append(abort, "User aborted the transfer\x00"...))
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range f.rec.Events() {
			if e.Kind == trace.KindTFTPError {
				t.Fatalf("probe reported as a failure: %+v", e)
			}
			if e.Kind == trace.KindTFTPProbe {
				if e.Level != trace.LevelDebug || e.Attrs["file"] != "bootx64.efi" || e.Attrs["error"] != nil {
					t.Fatalf("probe event %+v", e)
				}
				// Then the real download works.
				got, _, err := goGet(t, f.addr, "bootx64.efi", 1468)
				if err != nil || !bytes.Equal(got, f.big) {
					t.Fatalf("download after probe: %v", err)
				}
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no probe event")
}

// TestShutdownAbortsTransfers cancels while a client has stopped acknowledging, in both
// modes (in the default one the first block comes from a new port).
func TestShutdownAbortsTransfers(t *testing.T) {
	for _, single := range []bool{true, false} {
		t.Run(fmt.Sprintf("singleport=%v", single), func(t *testing.T) {
			region := pxetest.NewRegion()
			region.Bootloaders["uefi/amd64/bootx64.efi"] = make([]byte, 1<<20)
			tree := bootfiles.New(bootfiles.Config{Region: region, Bootloader: bootloader.New(region, bootloader.Host{}, nil)})
			conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := New(Config{Tree: tree, SinglePort: single}) // default 1 s timeout, 5 retries
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx, conn) }()
			c, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.WriteTo(rrq(1, "bootx64.efi", "octet"), conn.LocalAddr())
			buf := make([]byte, 600)
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, _, err := c.ReadFrom(buf); err != nil {
				t.Fatal(err) // block 1 arrived; we never ack it
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Serve did not return after cancel with a silent client")
			}
			if _, err := conn.WriteTo([]byte{0}, c.LocalAddr()); !errors.Is(err, net.ErrClosed) {
				t.Errorf("conn not closed after Serve: %v", err)
			}
		})
	}
}

// TestClientClosesEmptyFile replays GRUB reading an empty *.lst: block 1 carries no data and
// GRUB answers with ERROR 0 "closed" instead of an ACK. The file was delivered.
func TestClientClosesEmptyFile(t *testing.T) {
	f := start(t, false)
	c, err := net.Dial("udp4", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(rrq(1, "/grub/x86_64-efi/command.lst", "octet"))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 600)
	n, err := c.Read(buf)
	if err != nil || n != 4 || binary.BigEndian.Uint16(buf) != 3 || binary.BigEndian.Uint16(buf[2:]) != 1 {
		t.Fatalf("want an empty DATA block 1, got %q %v", buf[:n], err)
	}
	c.Write(append([]byte{0, 5, 0, 0}, "closed\x00"...))
	reads := waitEvents(f.rec, trace.KindTFTPRead, 1)
	if len(reads) != 1 || reads[0].Attrs["closed_by_client"] != true || reads[0].Attrs["file"] != "/grub/x86_64-efi/command.lst" {
		t.Fatalf("events: %+v", f.rec.Events())
	}
	for _, e := range f.rec.Events() {
		if e.Kind == trace.KindTFTPError {
			t.Errorf("reported as an error: %+v", e)
		}
	}
}
