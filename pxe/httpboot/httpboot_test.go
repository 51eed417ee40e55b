package httpboot

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maasemu/maasemu/pxe/bootconfig"
	"github.com/maasemu/maasemu/pxe/bootfiles"
	"github.com/maasemu/maasemu/pxe/bootloader"
	"github.com/maasemu/maasemu/pxe/internal/pxetest"
	"github.com/maasemu/maasemu/trace"
)

type fixture struct {
	url    string
	region *pxetest.Region
	rec    *trace.Recorder
	image  []byte // a 1 MiB image
	hash   string
	maas   []string // requests the region handler saw
}

func start(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{region: pxetest.NewRegion(), rec: trace.NewRecorder(nil)}
	f.image = make([]byte, 1<<20)
	for i := range f.image {
		f.image[i] = byte(i % 251)
	}
	f.hash = f.region.AddImage(f.image)
	f.region.Bootloaders["uefi/amd64/bootx64.efi"] = []byte("shim from the region")
	f.region.Bootloaders["uefi/amd64/grubx64.efi"] = []byte("grub from the region")
	f.region.Bootloaders["pxe/i386/lpxelinux.0"] = []byte("lpxelinux from the region")
	host := bootloader.Host{PXELinuxDir: t.TempDir(), SyslinuxBIOS: t.TempDir(), ShimDir: t.TempDir(), GRUBModules: t.TempDir(), CacheDir: t.TempDir()}
	if err := os.WriteFile(filepath.Join(host.SyslinuxBIOS, "ldlinux.c32"), []byte("ldlinux from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	tree := bootfiles.New(bootfiles.Config{Region: f.region, Bootloader: bootloader.New(f.region, host, nil), Sink: f.rec})
	regionHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.maas = append(f.maas, r.Method+" "+r.URL.RequestURI()+" "+string(body))
		if strings.HasPrefix(r.URL.Path, "/MAAS/metadata/status/") {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		fmt.Fprint(w, "#cloud-config\n")
	})
	srv := httptest.NewServer(New(Config{Tree: tree, Region: regionHandler, Sink: f.rec}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func get(t *testing.T, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestServesTree(t *testing.T) {
	f := start(t)
	p := f.region.Machine(pxetest.MAC)
	p.FSHost = "127.0.0.1"
	render := func(fm bootconfig.Format) string {
		c, err := bootconfig.Render(fm, p, bootconfig.HTTP, bootconfig.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return string(c.Data)
	}
	cases := []struct{ path, want string }{
		{"/pxelinux.cfg/01-52-54-00-12-34-56", render(bootconfig.PXELinux)}, // lpxelinux over HTTP (option 210)
		{"/grub/grub.cfg-52:54:00:12:34:56", render(bootconfig.GRUB)},       // fs_efihost /images/ over HTTP
		{"/ipxe.cfg", bootconfig.IPXEPreloader},                             // DHCP filename for iPXE
		{"/ipxe.cfg-52:54:00:12:34:56", render(bootconfig.IPXE)},
		{"/grub/grub.cfg", bootconfig.GRUBPreloader},
		{"/images/bootx64.efi", "shim from the region"}, // UEFI HTTP boot filename
		{"/images/grubx64.efi", "grub from the region"}, // shim fetches it next to itself
		{"/lpxelinux.0", "lpxelinux from the region"},
		{"/ldlinux.c32", "ldlinux from the host"}, // lpxelinux with path-prefix http://<rack>:5248/
		{"/images/" + p.Kernel, "kernel image bytes"},
		{"/grub/x86_64-efi/fs.lst", ""},
	}
	for _, c := range cases {
		resp, body := get(t, f.url+c.path, nil)
		if resp.StatusCode != http.StatusOK || string(body) != c.want {
			t.Errorf("GET %s: %d %q, want 200 %q", c.path, resp.StatusCode, body, c.want)
		}
	}
	if r := f.region.Requests[1]; r.Bootloader != "uefi" || r.LocalIP != "127.0.0.1" || r.RemoteIP != "127.0.0.1" {
		t.Errorf("GRUB config request: %+v", r)
	}
}

func TestImageConditionalAndRange(t *testing.T) {
	f := start(t)
	url := f.url + "/images/" + f.hash[:7] + "/ubuntu/amd64/ga-24.04/noble/stable/squashfs"

	resp, body := get(t, url, nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, f.image) {
		t.Fatalf("GET: %d, %d bytes", resp.StatusCode, len(body))
	}
	etag := resp.Header.Get("ETag")
	if etag != `"`+f.hash+`"` || resp.Header.Get("Accept-Ranges") != "bytes" || resp.Header.Get("Last-Modified") == "" {
		t.Errorf("headers: %v", resp.Header)
	}
	if resp, _ := get(t, url, map[string]string{"If-None-Match": etag}); resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d", resp.StatusCode)
	}
	if resp, _ := get(t, url, map[string]string{"If-Modified-Since": "Sat, 01 Jan 2028 00:00:00 GMT"}); resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-Modified-Since: %d", resp.StatusCode)
	}
	resp, body = get(t, url, map[string]string{"Range": "bytes=1000-1999"})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, f.image[1000:2000]) ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 1000-1999/%d", len(f.image)) {
		t.Errorf("Range: %d %q %d bytes", resp.StatusCode, resp.Header.Get("Content-Range"), len(body))
	}
	resp, body = get(t, url, map[string]string{"Range": "bytes=-10"})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, f.image[len(f.image)-10:]) {
		t.Errorf("suffix Range: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodHead, url, nil)
	hr, err := http.DefaultClient.Do(req)
	if err != nil || hr.StatusCode != 200 || hr.ContentLength != int64(len(f.image)) {
		t.Errorf("HEAD: %v %v", hr, err)
	}
	hr.Body.Close()

	var ranged *trace.Event
	for _, e := range f.rec.Events() {
		if e.Kind == trace.KindHTTPGet && e.Attrs["range"] == "bytes=1000-1999" {
			ranged = &e
		}
	}
	if ranged == nil || ranged.Attrs["status"] != 206 || ranged.Attrs["bytes"] != int64(1000) || ranged.Attrs["kind"] != "image" {
		t.Errorf("http.get event for the range: %+v", ranged)
	}
}

func TestCurlRange(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("needs curl (make deps installs it)")
	}
	f := start(t)
	url := f.url + "/images/" + f.hash[:7] + "/custom/amd64/generic/myimage/uploaded/root.tgz"
	for _, c := range []struct {
		rng  string
		want []byte
	}{
		{"", f.image},
		{"0-4095", f.image[:4096]},
		{"524288-", f.image[524288:]},
		{"-100", f.image[len(f.image)-100:]},
	} {
		out := filepath.Join(t.TempDir(), "out")
		args := []string{"-sS", "--fail", "-o", out}
		if c.rng != "" {
			args = append(args, "-r", c.rng)
		}
		if b, err := exec.Command(curl, append(args, url)...).CombinedOutput(); err != nil {
			t.Fatalf("curl -r %s: %v: %s", c.rng, err, b)
		}
		got, _ := os.ReadFile(out)
		if !bytes.Equal(got, c.want) {
			t.Errorf("curl -r %q: %d bytes, want %d", c.rng, len(got), len(c.want))
		}
	}
	// curl -C - resumes a partial download with a Range request.
	out := filepath.Join(t.TempDir(), "resume")
	os.WriteFile(out, f.image[:300000], 0o644)
	if b, err := exec.Command(curl, "-sS", "--fail", "-C", "-", "-o", out, url).CombinedOutput(); err != nil {
		t.Fatalf("curl -C -: %v: %s", err, b)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, f.image) {
		t.Errorf("resumed download differs (%d bytes)", len(got))
	}
}

func TestForwardsMAAS(t *testing.T) {
	f := start(t)
	resp, body := get(t, f.url+"/MAAS/metadata/latest/by-id/xyz8kp/?op=get_preseed", nil)
	if resp.StatusCode != 200 || string(body) != "#cloud-config\n" {
		t.Errorf("preseed: %d %q", resp.StatusCode, body)
	}
	pr, err := http.Post(f.url+"/MAAS/metadata/status/xyz8kp", "application/json", strings.NewReader(`{"name":"cmd-install"}`))
	if err != nil || pr.StatusCode != http.StatusNoContent {
		t.Fatalf("webhook: %v %v", pr, err)
	}
	pr.Body.Close()
	want := []string{
		"GET /MAAS/metadata/latest/by-id/xyz8kp/?op=get_preseed ",
		`POST /MAAS/metadata/status/xyz8kp {"name":"cmd-install"}`,
	}
	if strings.Join(f.maas, "\n") != strings.Join(want, "\n") {
		t.Errorf("region saw %q", f.maas)
	}
}

// rawGet sends a request line as written, bypassing client path handling.
func rawGet(t *testing.T, base, target string, headers ...string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: rack\r\nConnection: close\r\n", target)
	for _, h := range headers {
		fmt.Fprintf(c, "%s\r\n", h)
	}
	fmt.Fprint(c, "\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestBadRequests(t *testing.T) {
	f := start(t)
	img := "/images/" + f.hash[:7] + "/ubuntu/amd64/ga-24.04/noble/stable/squashfs"
	cases := []struct {
		name    string
		target  string
		headers []string
		status  int
		reason  string
	}{
		{"traversal", "/images/../../../etc/passwd", nil, 400, "'..' path segment"},
		{"traversal in root", "/pxelinux.cfg/../../etc/passwd", nil, 400, "'..' path segment"},
		{"encoded traversal", "/images/%2e%2e/%2e%2e/etc/passwd", nil, 400, "'..' path segment"},
		{"encoded backslash traversal", "/images/..%5c..%5cetc%5cpasswd", nil, 400, "'..' path segment"},
		{"NUL", "/lpxelinux.0%00.cfg", nil, 400, "control character U+0000"},
		{"1 KiB name", "/" + strings.Repeat("x", 1024), nil, 400, "longer than 255"},
		{"absolute host path is rooted in the tree", "//etc/passwd", nil, 404, "no such file"},
		{"unsatisfiable range", img, []string{"Range: bytes=99999999-"}, 416, "not satisfiable"},
		{"malformed range", img, []string{"Range: bytes=abc"}, 416, "malformed"},
		{"inverted range", img, []string{"Range: bytes=500-100"}, 416, "malformed"},
		{"unknown image", "/images/0123456/x", nil, 404, "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(f.rec.Events())
			status, body := rawGet(t, f.url, c.target, c.headers...)
			if status != c.status {
				t.Errorf("status %d, want %d (%s)", status, c.status, body)
			}
			var ev *trace.Event
			for _, e := range f.rec.Events()[before:] {
				if e.Kind == trace.KindHTTPError {
					ev = &e
				}
			}
			if ev == nil || !strings.Contains(ev.Message, c.reason) {
				t.Errorf("http.error event %+v does not give reason %q", ev, c.reason)
			}
			if strings.Contains(body, "root:") {
				t.Fatalf("served a host file: %q", body)
			}
			// The server keeps serving others.
			if resp, b := get(t, f.url+"/lpxelinux.0", nil); resp.StatusCode != 200 || string(b) != "lpxelinux from the region" {
				t.Fatalf("good request after %s: %d %q", c.name, resp.StatusCode, b)
			}
		})
	}
	resp, err := http.Post(f.url+"/images/bootx64.efi", "application/octet-stream", strings.NewReader("x"))
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestLocalIPFromListener(t *testing.T) {
	f := start(t)
	// httptest listens on 127.0.0.1: the rendered config carries that address.
	_, body := get(t, f.url+"/ipxe.cfg-52:54:00:12:34:56", nil)
	if !strings.Contains(string(body), "kernel http://127.0.0.1:5248/images/") {
		t.Errorf("config: %s", body)
	}
	h := New(Config{Tree: nil, LocalIP: netip.MustParseAddr("198.18.0.2")})
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	if got := h.localIP(r); got != netip.MustParseAddr("198.18.0.2") {
		t.Errorf("fallback local IP %v", got)
	}
}
