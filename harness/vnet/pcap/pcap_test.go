package pcap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func frame(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

func TestRoundTrip(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	for _, nano := range []bool{false, true} {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, Options{Nanosecond: nano, SnapLen: 100})
		if err != nil {
			t.Fatal(err)
		}
		frames := [][]byte{frame(60, 1), frame(100, 2), frame(150, 3)}
		for i, f := range frames {
			if err := w.WritePacket(t0.Add(time.Duration(i)*time.Millisecond), f); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if w.Packets() != 3 {
			t.Errorf("Packets() = %d", w.Packets())
		}
		r, err := NewReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if r.LinkType() != LinkTypeEther || r.Nanosecond() != nano {
			t.Errorf("link type %d nano %v", r.LinkType(), r.Nanosecond())
		}
		var got []Packet
		for {
			p, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, p)
		}
		res := time.Microsecond
		if nano {
			res = time.Nanosecond
		}
		want := []Packet{
			{Time: t0.Truncate(res), OrigLen: 60, Data: frame(60, 1)},
			{Time: t0.Add(time.Millisecond).Truncate(res), OrigLen: 100, Data: frame(100, 2)},
			{Time: t0.Add(2 * time.Millisecond).Truncate(res), OrigLen: 150, Data: frame(100, 3)}, // snapped
		}
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
			t.Errorf("nano=%v (-want +got):\n%s", nano, diff)
		}
	}
}

func TestConcurrentWrites(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				if err := w.WritePacket(time.Now(), frame(64+g, byte(g))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		p, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("record %d: %v", n, err)
		}
		// Records are whole: every byte is the writer's own.
		g := int(p.Data[0])
		if !bytes.Equal(p.Data, frame(64+g, byte(g))) {
			t.Fatalf("record %d interleaved", n)
		}
		n++
	}
	if n != 4000 {
		t.Errorf("%d records, want 4000", n)
	}
}

func TestWriterClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.pcap")
	w, err := Create(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WritePacket(time.Now(), frame(60, 1)); err != nil {
		t.Fatal(err)
	}
	// Buffered until Flush or Close.
	if fi, _ := os.Stat(path); fi.Size() != 0 {
		t.Logf("size before flush %d", fi.Size())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := w.WritePacket(time.Now(), frame(60, 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
	if err := w.Flush(); !errors.Is(err, ErrClosed) {
		t.Errorf("flush after close: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 24+16+60 {
		t.Errorf("file is %d bytes, want %d", fi.Size(), 24+16+60)
	}
	if _, err := NewWriter(&bytes.Buffer{}, Options{SnapLen: -1}); err == nil {
		t.Error("negative snap length accepted")
	}
	if _, err := Create(filepath.Join(t.TempDir(), "no", "such", "dir.pcap"), Options{}); err == nil {
		t.Error("create in a missing directory succeeded")
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(b []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("disk full")
	}
	f.n--
	return len(b), nil
}

func TestWriteErrorSticks(t *testing.T) {
	w, err := NewWriter(&failWriter{n: 1}, Options{}) // the header fits in the buffer
	if err != nil {
		t.Fatal(err)
	}
	big := frame(70000, 1) // larger than the buffer: forces writes
	var first error
	for range 3 {
		if err := w.WritePacket(time.Now(), big); err != nil {
			first = err
			break
		}
	}
	if first == nil || !strings.Contains(first.Error(), "disk full") {
		t.Fatalf("write error %v", first)
	}
	if err := w.WritePacket(time.Now(), frame(10, 1)); err == nil {
		t.Error("a write after a failed one succeeded")
	}
}

func header(magic uint32, major uint16, order binary.ByteOrder) []byte {
	h := make([]byte, 24)
	order.PutUint32(h[0:], magic)
	order.PutUint16(h[4:], major)
	order.PutUint16(h[6:], 4)
	order.PutUint32(h[16:], 65535)
	order.PutUint32(h[20:], 1)
	return h
}

func record(incl, orig uint32, data []byte) []byte {
	r := make([]byte, 16)
	binary.LittleEndian.PutUint32(r[8:], incl)
	binary.LittleEndian.PutUint32(r[12:], orig)
	return append(r, data...)
}

func TestReaderBadInput(t *testing.T) {
	good := header(MagicMicro, 2, binary.LittleEndian)
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "reading file header"},
		{"short header", good[:10], "reading file header"},
		{"bad magic", append([]byte{1, 2, 3, 4}, good[4:]...), "not a classic pcap file"},
		{"pcapng", append([]byte{0x0a, 0x0d, 0x0d, 0x0a}, good[4:]...), "not a classic pcap file"},
		{"version 3", header(MagicMicro, 3, binary.LittleEndian), "only 2.x is supported"},
		{"truncated record header", append(clone(good), 1, 2, 3), "record header"},
		{"truncated record", append(clone(good), record(100, 100, frame(10, 1))...), "unexpected EOF"},
		{"incl over orig", append(clone(good), record(100, 50, frame(100, 1))...), "exceeds its original length"},
		{"huge record", append(clone(good), record(1<<30, 1<<30, nil)...), "exceeds the snap length"},
	}
	for _, tt := range tests {
		r, err := NewReader(bytes.NewReader(tt.in))
		if err == nil {
			_, err = r.Next()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
	// Big-endian files (written on other machines) read fine.
	be := header(MagicNano, 2, binary.BigEndian)
	rec := make([]byte, 16)
	binary.BigEndian.PutUint32(rec[0:], 10)
	binary.BigEndian.PutUint32(rec[4:], 5)
	binary.BigEndian.PutUint32(rec[8:], 3)
	binary.BigEndian.PutUint32(rec[12:], 3)
	r, err := NewReader(bytes.NewReader(append(append(be, rec...), 7, 8, 9)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Next()
	if err != nil || !p.Time.Equal(time.Unix(10, 5)) || !bytes.Equal(p.Data, []byte{7, 8, 9}) {
		t.Errorf("big-endian record %+v, %v", p, err)
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// tshark, the real reader, opens the file and decodes the frames.
func TestTsharkReads(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark decoding: needs tshark (Debian package tshark)")
	}
	// An ARP request: who has 198.18.0.1, tell 198.18.0.50.
	arp := []byte{
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0, 0, 0x0a, 0x08, 0x06,
		0, 1, 8, 0, 6, 4, 0, 1, 0x52, 0x54, 0, 0, 0, 0x0a, 198, 18, 0, 50,
		0, 0, 0, 0, 0, 0, 198, 18, 0, 1,
	}
	for _, nano := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "arp.pcap")
		w, err := Create(path, Options{Nanosecond: nano})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WritePacket(time.Unix(1700000000, 123456789), arp); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(tshark, "-r", path, "-T", "fields", "-e", "frame.time_epoch", "-e", "arp.dst.proto_ipv4", "-e", "arp.src.proto_ipv4").CombinedOutput()
		if err != nil {
			t.Fatalf("tshark: %v\n%s", err, out)
		}
		want := "1700000000.123456000\t198.18.0.1\t198.18.0.50"
		if nano {
			want = "1700000000.123456789\t198.18.0.1\t198.18.0.50"
		}
		if !strings.Contains(string(out), want) {
			t.Errorf("nano=%v: tshark printed %q, want %q", nano, out, want)
		}
	}
}
