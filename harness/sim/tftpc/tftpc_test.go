package tftpc

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pin/tftp/v3"
)

func serve(t *testing.T, files map[string][]byte, singlePort bool) net.Addr {
	t.Helper()
	s := tftp.NewServer(func(name string, rf io.ReaderFrom) error {
		b, ok := files[name]
		if !ok {
			return os.ErrNotExist
		}
		_, err := rf.ReadFrom(bytes.NewReader(b))
		return err
	}, nil)
	s.SetBlockSize(65464)
	s.SetBlockSizeNegotiation(false) // else single-port mode on a plain PacketConn caps blksize at 512
	if singlePort {
		s.EnableSinglePort()
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(conn) }()
	t.Cleanup(func() { s.Shutdown(); <-done })
	return conn.LocalAddr()
}

func TestGet(t *testing.T) {
	big := make([]byte, 3*1468+17)
	_, _ = rand.Read(big)
	exact := make([]byte, 2*512) // a multiple of the block size ends with an empty block
	_, _ = rand.Read(exact)
	files := map[string][]byte{"lpxelinux.0": big, "exact": exact, "empty.lst": {}}
	for _, single := range []bool{false, true} {
		addr := serve(t, files, single)
		tests := []struct {
			file string
			opts Options
			want Result
		}{
			{"lpxelinux.0", Options{BlockSize: 1468, TSize: true}, Result{Bytes: int64(len(big)), BlockSize: 1468, TSize: int64(len(big))}},
			{"lpxelinux.0", Options{}, Result{Bytes: int64(len(big)), BlockSize: 512, TSize: -1}},
			{"exact", Options{TSize: true}, Result{Bytes: 1024, BlockSize: 512, TSize: 1024}},
			// pin/tftp leaves tsize out of the OACK for an empty file, and then sends no OACK at all.
			{"empty.lst", Options{TSize: true}, Result{Bytes: 0, BlockSize: 512, TSize: -1}},
		}
		for _, tt := range tests {
			conn, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			res, err := Get(context.Background(), conn, addr, tt.file, &got, tt.opts)
			conn.Close()
			if err != nil {
				t.Fatalf("single=%v Get(%s): %v", single, tt.file, err)
			}
			if diff := cmp.Diff(tt.want, res); diff != "" {
				t.Errorf("single=%v Get(%s) result (-want +got):\n%s", single, tt.file, diff)
			}
			if !bytes.Equal(got.Bytes(), files[tt.file]) {
				t.Errorf("single=%v Get(%s): content differs", single, tt.file)
			}
		}
	}
}

func TestNotFoundAndCancel(t *testing.T) {
	addr := serve(t, map[string][]byte{}, true)
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = Get(context.Background(), conn, addr, "pxelinux.cfg/01-52-54-00-00-00-01", io.Discard, Options{})
	if !NotFound(err) {
		t.Errorf("Get of a missing file = %v, want file not found", err)
	}
	// A server that never answers: cancellation ends the wait.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Get(ctx, conn, silent.LocalAddr(), "x", io.Discard, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context = %v, want context.Canceled", err)
	}
}
