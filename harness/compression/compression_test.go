package compression_test

import (
	"bytes"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/maasemu/maasemu/harness/compression"
)

func TestSniffAndRead(t *testing.T) {
	payload := []byte(strings.Repeat("maasemu ", 5000))
	for _, tc := range []struct {
		kind string
		tool []string // compresses stdin to stdout
	}{
		{compression.Gzip, []string{"gzip", "-c"}},
		{compression.Bzip2, []string{"bzip2", "-c"}},
		{compression.XZ, []string{"xz", "-c"}},
		{compression.Zstd, []string{"zstd", "-q", "-c"}},
		{compression.None, []string{"cat"}},
	} {
		t.Run(tc.tool[0], func(t *testing.T) {
			if _, err := exec.LookPath(tc.tool[0]); err != nil {
				t.Skipf("needs %s", tc.tool[0])
			}
			cmd := exec.Command(tc.tool[0], tc.tool[1:]...)
			cmd.Stdin = bytes.NewReader(payload)
			packed, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			if got := compression.Sniff(packed); got != tc.kind {
				t.Fatalf("Sniff = %q, want %q", got, tc.kind)
			}
			r, err := compression.NewReader(tc.kind, bytes.NewReader(packed))
			if err != nil {
				t.Fatal(err)
			}
			out, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(out, payload) {
				t.Errorf("round trip: %d bytes, err %v", len(out), err)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	if _, err := compression.NewReader(compression.Gzip, strings.NewReader("not gzip")); err == nil {
		t.Error("gzip reader accepted a non-gzip stream")
	}
	if _, err := compression.NewReader("lzma", strings.NewReader("x")); err == nil || !strings.Contains(err.Error(), `"lzma" is not one of`) {
		t.Errorf("unknown kind: err = %v", err)
	}
	// two gzip members read as one stream, as zcat does
	var two bytes.Buffer
	for _, s := range []string{"a", "b"} {
		c := exec.Command("gzip", "-c")
		c.Stdin = strings.NewReader(s)
		b, err := c.Output()
		if err != nil {
			t.Skip("needs gzip")
		}
		two.Write(b)
	}
	r, _ := compression.NewReader(compression.Gzip, &two)
	if b, _ := io.ReadAll(r); string(b) != "ab" {
		t.Errorf("multi-member gzip = %q", b)
	}
}
