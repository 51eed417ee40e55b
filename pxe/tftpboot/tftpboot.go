// Package tftpboot is the rack's TFTP server: github.com/pin/tftp/v3 in single-port mode on
// any net.PacketConn, read-only, serving the boot tree, with every transfer, refusal and
// failure reported as a trace event.
package tftpboot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/maasemu/maasemu/pxe/bootconfig"
	"github.com/maasemu/maasemu/pxe/bootfiles"
	"github.com/maasemu/maasemu/trace"
	"github.com/pin/tftp/v3"
)

// Tree is the served tree (bootfiles.Tree).
type Tree interface {
	Open(ctx context.Context, req bootfiles.Request) (bootfiles.File, error)
}

// DefaultMaxBlockSize caps the blksize a client may negotiate: 1468 fills an Ethernet frame
// (1500 - IPv4 20 - UDP 8 - TFTP 4), which is what OVMF asks for.
const DefaultMaxBlockSize = 1468

// Config configures a Server.
type Config struct {
	Tree Tree
	// LocalIP is the rack address given to the tree (fs_host of rendered configs) when the
	// connection cannot tell which address a request arrived on.
	LocalIP netip.Addr
	// MaxBlockSize caps the negotiated blksize (512..65464); 0 means DefaultMaxBlockSize.
	MaxBlockSize int
	Timeout      time.Duration // per-packet retransmit timeout; 0 means 1 s (MAAS's tx-tftp retransmits after 1 s)
	// SinglePort answers every transfer from the listening socket even when it is a host
	// *net.UDPConn. By default a host socket answers each transfer from a new UDP socket
	// (pin/tftp's normal mode: a new transfer ID, as RFC 1350 has it and tftpd-hpa does), unless it lives in a
	// network namespace of one thread's own; any other net.PacketConn (a gVisor conn, which
	// cannot open sockets for the server) uses single-port mode. Single-port mode hands
	// every ACK between goroutines and is slower.
	SinglePort bool
	Retries    int // 0 means 5
	Sink       trace.Sink
	Logger     *slog.Logger
}

// Server serves TFTP read requests. One Server may serve several connections.
type Server struct {
	cfg  Config
	sink trace.Sink
	log  *slog.Logger
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.MaxBlockSize == 0 {
		cfg.MaxBlockSize = DefaultMaxBlockSize
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Retries == 0 {
		cfg.Retries = 5
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, sink: trace.OrNop(cfg.Sink), log: log}
}

// Serve answers TFTP requests on conn until ctx is done. It takes ownership of conn and
// closes it. conn must be bound to an address (pin/tftp needs an IP to pick IPv4 or IPv6);
// on a gVisor stack, bind it to the rack address. When ctx ends, transfers in progress are
// aborted (the client gets an error packet) and Serve returns.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sess := &session{s: s, ctx: ctx, transfers: map[string]*transfer{}}
	if ap, err := netip.ParseAddrPort(conn.LocalAddr().String()); err == nil && !ap.Addr().IsUnspecified() {
		sess.local = ap.Addr().Unmap()
	}
	srv := tftp.NewServer(sess.read, sess.write)
	uc, host := conn.(*net.UDPConn)
	multiPort := host && !s.cfg.SinglePort && followsNetns(uc)
	if !multiPort {
		srv.EnableSinglePort()
	}
	// Block sizes: honour what the client asks up to the cap. pin/tftp's MTU-based
	// negotiation would clamp every non-*net.UDPConn (a gVisor conn) to 512 bytes.
	srv.SetBlockSizeNegotiation(false)
	srv.SetBlockSize(s.cfg.MaxBlockSize)
	srv.SetTimeout(s.cfg.Timeout)
	srv.SetRetries(s.cfg.Retries)
	srv.SetBackoff(func(int) time.Duration {
		if ctx.Err() != nil {
			return 0 // shutting down: fail fast
		}
		return time.Duration(rand.Int64N(int64(time.Second))) // pin/tftp's default
	})
	srv.SetHook(sess)

	// In single-port mode pin/tftp reads a *net.UDPConn with control messages and looks the
	// interface up (net.InterfaceByIndex, a netlink dump) for every packet, which costs
	// more than the transfer itself. A connection bound to one address needs neither: hide
	// the *net.UDPConn, and read a host socket with blocking system calls (blockingConn).
	// An unspecified-address socket keeps them, to answer from the address each request
	// arrived on.
	served := conn
	if sess.local.IsValid() && !multiPort {
		served = plainConn{conn}
		if host {
			if bc, err := newBlockingConn(uc); err == nil {
				served, conn = bc, bc
			} else {
				s.log.Debug("tftp: reading through the network poller", "addr", conn.LocalAddr(), "err", err)
			}
		}
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(served) }()
	select {
	case err := <-done:
		conn.Close()
		if err != nil {
			return fmt.Errorf("tftp serve on %s: %w", conn.LocalAddr(), err)
		}
		return nil
	case <-ctx.Done():
	}
	if multiPort {
		// Shutdown closes conn and waits for the transfers, which abort at their next read.
		srv.Shutdown()
		<-done
		return nil
	}
	// Shutdown stops accepting requests; transfers see ctx done in their reader and abort.
	// The single-port loop notices only when a read returns, so keep waking it. A transfer
	// waiting on a silent client gets a grace period, then the connection is closed under it:
	// its retransmissions fail at once and it ends within one Timeout.
	srv.Shutdown()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	grace := time.NewTimer(time.Second)
	defer grace.Stop()
	for {
		_ = conn.SetReadDeadline(time.Now())
		select {
		case <-done:
			conn.Close()
			return nil
		case <-grace.C:
			conn.Close()
		case <-tick.C:
		}
	}
}

// session is one Serve call: its context, and the transfers in flight for the hook.
type session struct {
	s     *Server
	ctx   context.Context
	local netip.Addr

	mu        sync.Mutex
	transfers map[string]*transfer
}

type transfer struct {
	name  string // cleaned
	kind  string
	mac   string
	size  int64
	bytes int64
}

// handledError marks errors the read/write handlers already reported.
type handledError struct{ err error }

func (e *handledError) Error() string { return e.err.Error() }
func (e *handledError) Unwrap() error { return e.err }

func key(addr net.IP, port int, file string) string {
	return net.JoinHostPort(addr.String(), strconv.Itoa(port)) + "\x00" + file
}

func (ss *session) read(filename string, rf io.ReaderFrom) error {
	s := ss.s
	start := time.Now()
	ot, _ := rf.(tftp.OutgoingTransfer)
	var raddr net.UDPAddr
	if ot != nil {
		raddr = ot.RemoteAddr()
	}
	remote, _ := netip.AddrFromSlice(raddr.IP)
	local := ss.local
	if rpi, ok := rf.(tftp.RequestPacketInfo); ok {
		if a, ok := netip.AddrFromSlice(rpi.LocalIP()); ok && !a.IsUnspecified() {
			local = a.Unmap()
		}
	}
	if !local.IsValid() {
		local = s.cfg.LocalIP
	}
	f, err := s.cfg.Tree.Open(ss.ctx, bootfiles.Request{
		Name: filename, Protocol: bootconfig.TFTP, LocalIP: local, RemoteIP: remote.Unmap(),
	})
	if err != nil {
		ss.refused(filename, raddr, err, time.Since(start))
		return &handledError{err}
	}
	defer f.Close()
	t := &transfer{name: f.Name, kind: f.Kind, size: f.Size, mac: macOf(f.Name)}
	k := key(raddr.IP, raddr.Port, filename)
	ss.mu.Lock()
	ss.transfers[k] = t
	ss.mu.Unlock()
	defer func() {
		ss.mu.Lock()
		delete(ss.transfers, k)
		ss.mu.Unlock()
	}()
	if ot != nil && f.Size > 0 {
		ot.SetSize(f.Size) // tsize (RFC 2349), when the client asked
	}
	// Read the file in large chunks, not one block per system call.
	_, err = rf.ReadFrom(&ctxReader{ctx: ss.ctx, r: bufio.NewReaderSize(f, 64<<10), n: &t.bytes})
	if err != nil {
		return &handledError{err} // the hook reported it
	}
	return nil
}

// refused reports a request the tree would not serve.
func (ss *session) refused(filename string, raddr net.UDPAddr, err error, d time.Duration) {
	attrs := map[string]any{"file": filename, "remote": raddr.String(), "duration_ms": d.Milliseconds(), "error": err.Error()}
	var re *bootfiles.RefusedError
	switch {
	case errors.As(err, &re):
		attrs["reason"] = re.Reason
		ss.s.sink.Emit(trace.Event{Source: trace.SourceTFTP, Kind: trace.KindTFTPError, Level: trace.LevelWarn,
			Message: fmt.Sprintf("refused read of %q: %s", filename, re.Reason), Attrs: attrs})
		ss.s.log.Warn("tftp: refused", "file", filename, "remote", raddr.String(), "reason", re.Reason)
	case errors.Is(err, bootfiles.ErrNotFound):
		attrs["reason"] = err.Error()
		ss.s.sink.Emit(trace.Event{Source: trace.SourceTFTP, Kind: trace.KindTFTPNotFound, MAC: macOf(filename),
			Message: fmt.Sprintf("file not found: %s", filename), Attrs: attrs})
		ss.s.log.Info("tftp: not found", "file", filename, "remote", raddr.String(), "error", err)
	default:
		ss.s.sink.Emit(trace.Event{Source: trace.SourceTFTP, Kind: trace.KindTFTPError, Level: trace.LevelError,
			MAC: macOf(filename), Message: fmt.Sprintf("cannot serve %s: %v", filename, err), Attrs: attrs})
		ss.s.log.Error("tftp: cannot serve", "file", filename, "remote", raddr.String(), "error", err)
	}
}

func (ss *session) write(filename string, wt io.WriterTo) error {
	var raddr string
	if it, ok := wt.(interface{ RemoteAddr() net.UDPAddr }); ok {
		a := it.RemoteAddr()
		raddr = a.String()
	}
	err := errors.New("write request refused: the rack's TFTP server is read-only")
	ss.s.sink.Emit(trace.Event{Source: trace.SourceTFTP, Kind: trace.KindTFTPError, Level: trace.LevelWarn,
		Message: fmt.Sprintf("refused write of %q: the rack's TFTP server is read-only", filename),
		Attrs:   map[string]any{"file": filename, "remote": raddr, "reason": "write request", "error": err.Error()}})
	ss.s.log.Warn("tftp: refused write request", "file", filename, "remote", raddr)
	return &handledError{err}
}

// OnSuccess reports a completed transfer (tftp.Hook).
func (ss *session) OnSuccess(st tftp.TransferStats) {
	ss.mu.Lock()
	t := ss.transfers[key(st.RemoteAddr, st.Tid, st.Filename)]
	ss.mu.Unlock()
	if t == nil {
		t = &transfer{name: st.Filename}
	}
	attrs := ss.statsAttrs(st, t)
	ss.s.sink.Emit(trace.Event{Source: trace.SourceTFTP, Kind: trace.KindTFTPRead, MAC: t.mac,
		Message: fmt.Sprintf("sent %s (%d bytes)", st.Filename, t.bytes), Attrs: attrs})
	ss.s.log.Info("tftp: sent", "file", st.Filename, "bytes", t.bytes, "blksize", attrs["blksize"], "duration", st.Duration)
}

// OnFailure reports a failed transfer or a bad packet (tftp.Hook).
func (ss *session) OnFailure(st tftp.TransferStats, err error) {
	var he *handledError
	if errors.As(err, &he) && !isTransferError(he.err) {
		return // the handler reported the refusal or the missing file
	}
	if st.Filename == "" && st.RemoteAddr == nil {
		// A packet that started no transfer: malformed request, unexpected opcode, read error.
		if ss.ctx.Err() != nil {
			return // shutdown wake-ups
		}
		ss.s.sink.Emit(trace.Event{Source: trace.SourceTFTP, Kind: trace.KindTFTPError, Level: trace.LevelWarn,
			Message: "bad TFTP packet: " + err.Error(), Attrs: map[string]any{"error": err.Error(), "reason": "malformed packet"}})
		ss.s.log.Warn("tftp: bad packet", "error", err)
		return
	}
	ss.mu.Lock()
	t := ss.transfers[key(st.RemoteAddr, st.Tid, st.Filename)]
	ss.mu.Unlock()
	if t == nil {
		t = &transfer{name: st.Filename}
	}
	attrs := ss.statsAttrs(st, t)
	attrs["error"] = err.Error()
	ev := trace.Event{Source: trace.SourceTFTP, Kind: trace.KindTFTPError, Level: trace.LevelWarn, MAC: t.mac, Attrs: attrs}
	switch {
	case t.kind != "" && t.bytes >= t.size && strings.Contains(err.Error(), "code="):
		// Everything was sent and the client closed instead of sending the last ACK: GRUB
		// does this for the empty *.lst files ("closed"). The file was delivered.
		ev.Kind, ev.Level = trace.KindTFTPRead, trace.LevelInfo
		attrs["closed_by_client"] = true
		delete(attrs, "error")
		ev.Message = fmt.Sprintf("sent %s (%d bytes; the client closed the transfer)", st.Filename, t.bytes)
	case t.bytes == 0 && strings.Contains(err.Error(), "code=8"):
		// UEFI (EDK2 PxeBcTftpGetFileSize) asks with tsize, reads the OACK and aborts with
		// error 8 "user aborted"; then it reads the file. Normal, not a failure (pin/tftp#125).
		ev.Kind, ev.Level = trace.KindTFTPProbe, trace.LevelDebug
		delete(attrs, "error")
		attrs["reason"] = "tsize probe aborted by the client (normal for UEFI)"
		ev.Message = fmt.Sprintf("size probe of %s (client aborted after the OACK, as UEFI does)", st.Filename)
	case ss.ctx.Err() != nil:
		attrs["reason"] = "server shutting down"
		ev.Level = trace.LevelInfo
		ev.Message = fmt.Sprintf("transfer of %s aborted: server shutting down", st.Filename)
	default:
		attrs["reason"] = "transfer failed"
		ev.Message = fmt.Sprintf("transfer of %s failed after %d bytes: %v", st.Filename, t.bytes, err)
	}
	ss.s.sink.Emit(ev)
	ss.s.log.Log(context.Background(), levelOf(ev.Level), "tftp: "+ev.Message)
}

// isTransferError tells errors from ReadFrom (a failed transfer, which the hook reports)
// from the tree's refusals (which the handler reported).
func isTransferError(err error) bool {
	var re *bootfiles.RefusedError
	return !errors.As(err, &re) && !errors.Is(err, bootfiles.ErrNotFound) && !strings.HasPrefix(err.Error(), "write request refused")
}

func (ss *session) statsAttrs(st tftp.TransferStats, t *transfer) map[string]any {
	blksize := "512"
	if v, ok := st.Opts["blksize"]; ok {
		blksize = v
	}
	attrs := map[string]any{
		"file": st.Filename, "name": t.name, "kind": t.kind, "bytes": t.bytes, "blksize": blksize,
		"duration_ms": st.Duration.Milliseconds(), "mode": st.Mode, "datagrams": st.DatagramsSent,
		"remote": net.JoinHostPort(st.RemoteAddr.String(), strconv.Itoa(st.Tid)),
	}
	if v, ok := st.Opts["tsize"]; ok {
		attrs["tsize"] = v
	}
	return attrs
}

func levelOf(l string) slog.Level {
	switch l {
	case trace.LevelDebug:
		return slog.LevelDebug
	case trace.LevelWarn:
		return slog.LevelWarn
	case trace.LevelError:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// macOf returns the MAC a config file name carries, for events.
func macOf(name string) string {
	n := strings.TrimLeft(strings.ReplaceAll(name, `\`, "/"), "/")
	if m, ok := bootconfig.MatchPath(n); ok {
		return m.MAC
	}
	return ""
}

// plainConn hides the concrete connection type from pin/tftp, and yields before each read.
//
// In single-port mode pin/tftp's read loop hands every ACK to the transfer's goroutine
// over a channel and goes straight back to reading. Yielding first lets that goroutine
// send the next block on this P before the loop's receive system call, instead of an idle
// P being woken to steal it: on a 2-core machine that is ~50% more throughput.
type plainConn struct{ net.PacketConn }

func (c plainConn) ReadFrom(b []byte) (int, net.Addr, error) {
	runtime.Gosched()
	return c.PacketConn.ReadFrom(b)
}

// ctxReader counts bytes and stops the transfer when the server shuts down.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
	n   *int64
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, fmt.Errorf("server shutting down: %w", err)
	}
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}
