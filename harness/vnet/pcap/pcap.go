// Package pcap writes and reads classic libpcap capture files of Ethernet frames.
//
// The format is the original one (magic 0xa1b2c3d4 for microsecond timestamps,
// 0xa1b23c4d for nanosecond ones, version 2.4, LINKTYPE_ETHERNET) that tcpdump,
// tshark and Wireshark all open. A Writer is safe for concurrent use.
package pcap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// File header constants.
const (
	MagicMicro    = 0xa1b2c3d4 // microsecond timestamps
	MagicNano     = 0xa1b23c4d // nanosecond timestamps
	VersionMajor  = 2
	VersionMinor  = 4
	LinkTypeEther = 1 // LINKTYPE_ETHERNET
	// DefaultSnapLen is the largest frame a Writer records in full.
	DefaultSnapLen = 262144

	fileHeaderLen   = 24
	recordHeaderLen = 16
)

// Options configure a Writer.
type Options struct {
	// Nanosecond selects nanosecond timestamps; the default is microseconds.
	Nanosecond bool
	// SnapLen truncates longer frames to this many bytes (0 means DefaultSnapLen).
	SnapLen int
}

// Writer writes one capture file. WritePacket, Flush and Close are safe for concurrent use.
type Writer struct {
	mu      sync.Mutex
	bw      *bufio.Writer
	closer  io.Closer
	nano    bool
	snaplen int
	packets uint64
	err     error // first write error; sticky
	closed  bool
}

// NewWriter writes the file header to w and returns a Writer appending packets to it.
// Close flushes, and closes w when it is an io.Closer.
func NewWriter(w io.Writer, opts Options) (*Writer, error) {
	if opts.SnapLen < 0 {
		return nil, fmt.Errorf("pcap: snap length %d: must not be negative", opts.SnapLen)
	}
	if opts.SnapLen == 0 {
		opts.SnapLen = DefaultSnapLen
	}
	pw := &Writer{bw: bufio.NewWriterSize(w, 64<<10), nano: opts.Nanosecond, snaplen: opts.SnapLen}
	if c, ok := w.(io.Closer); ok {
		pw.closer = c
	}
	var h [fileHeaderLen]byte
	magic := uint32(MagicMicro)
	if opts.Nanosecond {
		magic = MagicNano
	}
	binary.LittleEndian.PutUint32(h[0:], magic)
	binary.LittleEndian.PutUint16(h[4:], VersionMajor)
	binary.LittleEndian.PutUint16(h[6:], VersionMinor)
	// thiszone and sigfigs stay 0.
	binary.LittleEndian.PutUint32(h[16:], uint32(opts.SnapLen))
	binary.LittleEndian.PutUint32(h[20:], LinkTypeEther)
	if _, err := pw.bw.Write(h[:]); err != nil {
		return nil, fmt.Errorf("pcap: writing file header: %w", err)
	}
	return pw, nil
}

// Create creates (or truncates) the file at path and returns a Writer on it.
func Create(path string, opts Options) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("pcap: %w", err)
	}
	w, err := NewWriter(f, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("pcap: writer closed")

// WritePacket appends one frame captured at t. Frames longer than the snap length are
// truncated, keeping their original length in the record header.
func (w *Writer) WritePacket(t time.Time, frame []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if w.err != nil {
		return w.err
	}
	incl := len(frame)
	if incl > w.snaplen {
		incl = w.snaplen
	}
	var h [recordHeaderLen]byte
	sec := t.Unix()
	var frac int64
	if w.nano {
		frac = int64(t.Nanosecond())
	} else {
		frac = int64(t.Nanosecond() / 1000)
	}
	binary.LittleEndian.PutUint32(h[0:], uint32(sec))
	binary.LittleEndian.PutUint32(h[4:], uint32(frac))
	binary.LittleEndian.PutUint32(h[8:], uint32(incl))
	binary.LittleEndian.PutUint32(h[12:], uint32(len(frame)))
	if _, err := w.bw.Write(h[:]); err != nil {
		w.err = fmt.Errorf("pcap: writing record: %w", err)
		return w.err
	}
	if _, err := w.bw.Write(frame[:incl]); err != nil {
		w.err = fmt.Errorf("pcap: writing record: %w", err)
		return w.err
	}
	w.packets++
	return nil
}

// Packets returns how many packets were written.
func (w *Writer) Packets() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.packets
}

// Flush writes buffered packets to the underlying writer.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("pcap: flush: %w", err)
	}
	return nil
}

// Close flushes and closes the underlying writer when it is an io.Closer. It is safe to
// call more than once.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	err := w.bw.Flush()
	if err != nil {
		err = fmt.Errorf("pcap: flush: %w", err)
	}
	if w.closer != nil {
		if cerr := w.closer.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("pcap: close: %w", cerr)
		}
	}
	return err
}

// Packet is one record read back from a capture file.
type Packet struct {
	Time    time.Time
	OrigLen int    // length of the frame on the wire
	Data    []byte // captured bytes (OrigLen or fewer)
}

// Reader reads a classic pcap file written by any libpcap-compatible tool.
type Reader struct {
	r        io.Reader
	order    binary.ByteOrder
	nano     bool
	snaplen  uint32
	linkType uint32
}

// NewReader reads and checks the file header.
func NewReader(r io.Reader) (*Reader, error) {
	var h [fileHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, fmt.Errorf("pcap: reading file header: %w", err)
	}
	pr := &Reader{r: r}
	switch {
	case binary.LittleEndian.Uint32(h[0:]) == MagicMicro:
		pr.order = binary.LittleEndian
	case binary.LittleEndian.Uint32(h[0:]) == MagicNano:
		pr.order, pr.nano = binary.LittleEndian, true
	case binary.BigEndian.Uint32(h[0:]) == MagicMicro:
		pr.order = binary.BigEndian
	case binary.BigEndian.Uint32(h[0:]) == MagicNano:
		pr.order, pr.nano = binary.BigEndian, true
	default:
		return nil, fmt.Errorf("pcap: magic %#08x: not a classic pcap file", binary.LittleEndian.Uint32(h[0:]))
	}
	if major := pr.order.Uint16(h[4:]); major != VersionMajor {
		return nil, fmt.Errorf("pcap: version %d.%d: only 2.x is supported", major, pr.order.Uint16(h[6:]))
	}
	pr.snaplen = pr.order.Uint32(h[16:])
	pr.linkType = pr.order.Uint32(h[20:]) & 0x0fffffff
	return pr, nil
}

// LinkType returns the file's link-layer header type (1 for Ethernet).
func (r *Reader) LinkType() uint32 { return r.linkType }

// Nanosecond reports whether the file has nanosecond timestamps.
func (r *Reader) Nanosecond() bool { return r.nano }

// maxRecord bounds a record's captured length so a corrupt file cannot make Next
// allocate gigabytes.
const maxRecord = 1 << 20

// Next returns the next packet, or io.EOF after the last one. A record cut short
// returns io.ErrUnexpectedEOF.
func (r *Reader) Next() (Packet, error) {
	var h [recordHeaderLen]byte
	if _, err := io.ReadFull(r.r, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return Packet{}, io.EOF
		}
		return Packet{}, fmt.Errorf("pcap: record header: %w", err)
	}
	sec := int64(r.order.Uint32(h[0:]))
	frac := int64(r.order.Uint32(h[4:]))
	incl := r.order.Uint32(h[8:])
	orig := r.order.Uint32(h[12:])
	if incl > maxRecord || (r.snaplen != 0 && incl > r.snaplen && incl > DefaultSnapLen) {
		return Packet{}, fmt.Errorf("pcap: record of %d bytes exceeds the snap length %d", incl, r.snaplen)
	}
	if incl > orig {
		return Packet{}, fmt.Errorf("pcap: record captured length %d exceeds its original length %d", incl, orig)
	}
	data := make([]byte, incl)
	if _, err := io.ReadFull(r.r, data); err != nil {
		return Packet{}, fmt.Errorf("pcap: record data: %w", io.ErrUnexpectedEOF)
	}
	if !r.nano {
		frac *= 1000
	}
	return Packet{Time: time.Unix(sec, frac), OrigLen: int(orig), Data: data}, nil
}
