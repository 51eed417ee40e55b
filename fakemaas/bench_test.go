package fakemaas_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/maasemu/maasemu/fakemaas/oauth"
	"github.com/maasemu/maasemu/fakemaas/regiontest"
)

// signedClient sends OAuth-signed requests over one keep-alive client, so benchmarks time
// the region, not connection setup.
type signedClient struct {
	base string
	cred oauth.Credentials
	hc   *http.Client
}

func newSignedClient(b testing.TB, env *regiontest.Env) *signedClient {
	cred, err := oauth.ParseKey(env.APIKey)
	if err != nil {
		b.Fatal(err)
	}
	return &signedClient{base: env.Server.URL, cred: cred, hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
}

func (c *signedClient) do(b testing.TB, method, path string, body io.Reader, ctype string, size int64) []byte {
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		b.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if size > 0 {
		req.ContentLength = size
	}
	oauth.Sign(req, c.cred)
	resp, err := c.hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, out)
	}
	return out
}

func (c *signedClient) form(b testing.TB, method, path string, v url.Values) []byte {
	return c.do(b, method, path, strings.NewReader(v.Encode()), "application/x-www-form-urlencoded", 0)
}

var sidRE = regexp.MustCompile(`"system_id":"([a-z0-9]+)"`)

// BenchmarkAPI measures API latency with 1,000 machines: list all, read one, allocate
// one (released again outside the timer).
func BenchmarkAPI(b *testing.B) {
	env := regiontest.Start(b)
	env.ImportDefaultStream(b)
	c := newSignedClient(b, env)
	const n = 1000
	sids := make([]string, 0, n)
	for i := range n {
		out := c.form(b, "POST", "/MAAS/api/2.0/machines/", url.Values{"architecture": {"amd64/generic"}, "commission": {"false"},
			"hostname": {fmt.Sprintf("m%04d", i)}, "mac_addresses": {fmt.Sprintf("52:54:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)}})
		sids = append(sids, sidRE.FindStringSubmatch(string(out))[1])
	}
	b.Run("list", func(b *testing.B) {
		for b.Loop() {
			out := c.do(b, "GET", "/MAAS/api/2.0/machines/", nil, "", 0)
			if len(out) < n*100 {
				b.Fatalf("list too short: %d bytes", len(out))
			}
		}
	})
	b.Run("read", func(b *testing.B) {
		i := 0
		for b.Loop() {
			c.do(b, "GET", "/MAAS/api/2.0/machines/"+sids[i%n]+"/", nil, "", 0)
			i++
		}
	})
	b.Run("allocate", func(b *testing.B) {
		i := 0
		for b.Loop() {
			sid := sids[i%n]
			c.form(b, "POST", "/MAAS/api/2.0/machines/?op=allocate", url.Values{"system_id": {sid}})
			b.StopTimer()
			c.form(b, "POST", "/MAAS/api/2.0/machines/"+sid+"/?op=release", url.Values{})
			b.StartTimer()
			i++
		}
	})
}

// genContent yields size bytes made of a fixed 4 MiB random-looking block with the
// chunk index and seed stamped at the start of every chunk.
type genContent struct {
	block []byte
	seed  uint64
}

func newGen(seed uint64) *genContent {
	block := make([]byte, regiontest.ChunkSize)
	x := uint64(0x9e3779b97f4a7c15) ^ seed
	for i := 0; i < len(block); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(block[i:], x)
	}
	return &genContent{block: block, seed: seed}
}

func (g *genContent) chunk(i int) []byte {
	binary.LittleEndian.PutUint64(g.block[0:], uint64(i))
	binary.LittleEndian.PutUint64(g.block[8:], g.seed)
	return g.block
}

// ddSpeed runs dd's sequential write with fdatasync in dir and returns MB/s (10^6 B/s).
func ddSpeed(b *testing.B, dir string) float64 {
	f := dir + "/dd.bench"
	defer os.Remove(f)
	out, err := exec.Command("dd", "if=/dev/zero", "of="+f, "bs=4M", "count=256", "conv=fdatasync").CombinedOutput()
	if err != nil {
		b.Skipf("dd: %v (%s)", err, out)
	}
	m := regexp.MustCompile(`(\d+) bytes .* copied, ([0-9.]+) s`).FindSubmatch(out)
	if m == nil {
		b.Fatalf("cannot parse dd output: %s", out)
	}
	bytes, _ := strconv.ParseFloat(string(m[1]), 64)
	secs, _ := strconv.ParseFloat(string(m[2]), 64)
	return bytes / secs / 1e6
}

// BenchmarkUpload1GiB uploads 1 GiB through the chunked API (4 MiB PUTs, as the maas CLI)
// and, in the same run, measures dd's sequential write speed on the state directory's
// filesystem. Target: the upload at no less than half of dd's speed. Set
// MAASEMU_BENCH_DIR to put the state directory elsewhere.
func BenchmarkUpload1GiB(b *testing.B) {
	opts := regiontest.Options{}
	if d := os.Getenv("MAASEMU_BENCH_DIR"); d != "" {
		dir, err := os.MkdirTemp(d, "region-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		opts.StateDir = dir
	}
	env := regiontest.Start(b, opts)
	env.ImportDefaultStream(b)
	c := newSignedClient(b, env)
	const chunks = 256 // 1 GiB
	size := int64(chunks * regiontest.ChunkSize)
	dd := ddSpeed(b, env.StateDir)
	b.SetBytes(size)
	iter := 0
	var elapsed time.Duration
	for b.Loop() {
		b.StopTimer()
		g := newGen(uint64(iter))
		h := sha256.New()
		for i := range chunks {
			h.Write(g.chunk(i))
		}
		digest := hex.EncodeToString(h.Sum(nil))
		out := c.do(b, "POST", "/MAAS/api/2.0/boot-resources/", strings.NewReader(url.Values{"name": {fmt.Sprintf("big%d", iter)},
			"architecture": {"amd64/generic"}, "filetype": {"ddraw"}, "sha256": {digest}, "size": {strconv.FormatInt(size, 10)}}.Encode()),
			"application/x-www-form-urlencoded", 0)
		uri, _, err := regiontest.NewestUploadURI(out)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		b.StartTimer()
		for i := range chunks {
			c.do(b, "PUT", uri, bytes.NewReader(g.chunk(i)), "application/octet-stream", regiontest.ChunkSize)
		}
		b.StopTimer()
		elapsed += time.Since(start)
		if _, err := env.Region.OpenImage(b.Context(), digest[:7]); err != nil {
			b.Fatalf("upload not complete: %v", err)
		}
		iter++
		b.StartTimer()
	}
	upload := float64(size) * float64(iter) / elapsed.Seconds() / 1e6
	b.ReportMetric(upload, "upload-MB/s")
	b.ReportMetric(dd, "dd-MB/s")
	b.ReportMetric(upload/dd, "upload/dd")
}
