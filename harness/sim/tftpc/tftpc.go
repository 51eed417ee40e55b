// Package tftpc is a small TFTP client (RFC 1350 with the blksize and tsize options of RFC
// 2348/2349) that works over any net.PacketConn, so a simulated machine can fetch its
// bootloader through its own virtual NIC.
package tftpc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

const (
	opRRQ   = 1
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// Options tune a transfer. Zero values mean RFC defaults.
type Options struct {
	BlockSize int           // requested blksize; 0 means 512 (no option sent)
	TSize     bool          // ask for the transfer size
	Timeout   time.Duration // per packet; 0 means 1 s
	Retries   int           // per packet; 0 means 5
}

// Error is an ERROR packet from the server.
type Error struct {
	Code    uint16
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("tftp error %d: %s", e.Code, e.Message) }

// NotFound reports whether err is the server's "file not found" (code 1).
func NotFound(err error) bool {
	var te *Error
	return errors.As(err, &te) && te.Code == 1
}

// Result describes a finished transfer.
type Result struct {
	Bytes     int64
	BlockSize int
	TSize     int64 // -1 when the server did not say
}

// Get fetches file from server over conn into w. conn must not be shared with other
// transfers while Get runs.
func Get(ctx context.Context, conn net.PacketConn, server net.Addr, file string, w io.Writer, o Options) (Result, error) {
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Retries <= 0 {
		o.Retries = 5
	}
	res := Result{BlockSize: 512, TSize: -1}
	rrq := buildRRQ(file, o)
	peer := server
	var last []byte = rrq
	buf := make([]byte, 65536+4)
	expect := uint16(1)
	started := false

	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	send := func(pkt []byte) error {
		_, err := conn.WriteTo(pkt, peer)
		return err
	}
	if err := send(rrq); err != nil {
		return res, fmt.Errorf("tftp: sending read request for %s: %w", file, err)
	}
	tries := 0
	for {
		if err := conn.SetReadDeadline(time.Now().Add(o.Timeout)); err != nil {
			return res, err
		}
		n, from, err := conn.ReadFrom(buf)
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				tries++
				if tries > o.Retries {
					return res, fmt.Errorf("tftp: %s: no answer from %s after %d tries", file, server, tries)
				}
				if err := send(last); err != nil {
					return res, err
				}
				continue
			}
			return res, err
		}
		if !sameHost(from, server) {
			continue
		}
		if started && from.String() != peer.String() {
			continue // a stray packet from another TID
		}
		if n < 4 {
			continue
		}
		pkt := buf[:n]
		op := binary.BigEndian.Uint16(pkt)
		switch op {
		case opERROR:
			msg := string(bytes.TrimRight(pkt[4:], "\x00"))
			return res, fmt.Errorf("tftp: %s: %w", file, &Error{Code: binary.BigEndian.Uint16(pkt[2:]), Message: msg})
		case opOACK:
			if started {
				continue
			}
			started, peer = true, from
			opts := parseOptions(pkt[2:])
			if v, ok := opts["blksize"]; ok {
				bs, err := strconv.Atoi(v)
				if err != nil || bs < 8 || bs > 65464 {
					return res, fmt.Errorf("tftp: %s: server acknowledged an invalid blksize %q", file, v)
				}
				res.BlockSize = bs
			}
			if v, ok := opts["tsize"]; ok {
				if ts, err := strconv.ParseInt(v, 10, 64); err == nil {
					res.TSize = ts
				}
			}
			last = ack(0)
			tries = 0
			if err := send(last); err != nil {
				return res, err
			}
		case opDATA:
			if !started {
				started, peer = true, from
				if o.BlockSize > 0 || o.TSize {
					res.BlockSize = 512 // the server ignored our options
				}
			}
			block := binary.BigEndian.Uint16(pkt[2:])
			data := pkt[4:]
			if block != expect {
				if err := send(ack(block)); err != nil { // duplicate: acknowledge again
					return res, err
				}
				continue
			}
			if _, err := w.Write(data); err != nil {
				return res, fmt.Errorf("tftp: %s: writing: %w", file, err)
			}
			res.Bytes += int64(len(data))
			last = ack(block)
			tries = 0
			expect++
			if err := send(last); err != nil {
				return res, err
			}
			if len(data) < res.BlockSize {
				if res.TSize >= 0 && res.TSize != res.Bytes {
					return res, fmt.Errorf("tftp: %s: received %d bytes, server announced tsize %d", file, res.Bytes, res.TSize)
				}
				return res, nil
			}
		}
	}
}

func buildRRQ(file string, o Options) []byte {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.BigEndian, uint16(opRRQ))
	b.WriteString(file)
	b.WriteByte(0)
	b.WriteString("octet")
	b.WriteByte(0)
	if o.BlockSize > 0 {
		b.WriteString("blksize\x00" + strconv.Itoa(o.BlockSize) + "\x00")
	}
	if o.TSize {
		b.WriteString("tsize\x000\x00")
	}
	return b.Bytes()
}

func ack(block uint16) []byte {
	p := make([]byte, 4)
	binary.BigEndian.PutUint16(p, opACK)
	binary.BigEndian.PutUint16(p[2:], block)
	return p
}

func parseOptions(b []byte) map[string]string {
	parts := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	out := map[string]string{}
	for i := 0; i+1 < len(parts); i += 2 {
		out[strings.ToLower(parts[i])] = parts[i+1]
	}
	return out
}

func sameHost(a, b net.Addr) bool {
	ha, _, err1 := net.SplitHostPort(a.String())
	hb, _, err2 := net.SplitHostPort(b.String())
	return err1 == nil && err2 == nil && ha == hb
}
