package pxe

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/pxe/bootloader"
	"github.com/maasemu/maasemu/pxe/dhcp4"
)

// fileRegion serves one file on disk as the image with hash prefix 0123456 (the benchmarks
// skip hashing a gigabyte; the rack does not verify content).
type fileRegion struct{ path string }

func (r fileRegion) BootConfig(context.Context, fakemaas.BootRequest) (fakemaas.KernelParams, error) {
	return fakemaas.KernelParams{}, fakemaas.ErrNoBootConfig
}

func (r fileRegion) OpenImage(_ context.Context, prefix string) (fakemaas.ImageFile, error) {
	if !strings.HasPrefix("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", prefix) {
		return fakemaas.ImageFile{}, fakemaas.ErrImageNotFound
	}
	f, err := os.Open(r.path)
	if err != nil {
		return fakemaas.ImageFile{}, err
	}
	st, _ := f.Stat()
	return fakemaas.ImageFile{ReadSeekCloser: f, Size: st.Size(), ModTime: st.ModTime(),
		SHA256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}, nil
}

func (r fileRegion) OpenBootloader(context.Context, string, string, string) (fakemaas.ImageFile, error) {
	return fakemaas.ImageFile{}, fakemaas.ErrImageNotFound
}

// benchFile writes size random bytes into a world-readable directory (tftpd-hpa chroots
// there and drops to nobody).
func benchFile(b *testing.B, size int64) (dir, name string) {
	b.Helper()
	dir = b.TempDir()
	os.Chmod(dir, 0o755)
	for d := filepath.Dir(dir); d != "/" && strings.HasPrefix(d, os.TempDir()) && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	name = "0123456"
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		b.Fatal(err)
	}
	f.Close()
	return dir, name
}

func freePort(b *testing.B, network string) int {
	b.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startProcess runs a foreground daemon until the benchmark ends.
func startProcess(b *testing.B, ready func() bool, name string, args ...string) {
	b.Helper()
	cmd := exec.Command(name, args...)
	out, _ := os.CreateTemp(b.TempDir(), "log")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	b.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for i := 0; i < 200 && !ready(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if !ready() {
		log, _ := os.ReadFile(out.Name())
		b.Fatalf("%s did not start: %s", name, log)
	}
}

// curlSpeed downloads url with curl and returns curl's average download speed (bytes/s).
func curlSpeed(b *testing.B, size int64, url string, args ...string) float64 {
	b.Helper()
	args = append(append([]string{"-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download} %{speed_download}"}, args...), url)
	out, err := exec.Command("curl", args...).CombinedOutput()
	if err != nil {
		b.Fatalf("curl %s: %v: %s", url, err, out)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 || f[0] != strconv.FormatInt(size, 10) {
		b.Fatalf("curl %s: %q, want %d bytes", url, out, size)
	}
	v, _ := strconv.ParseFloat(f[1], 64)
	return v
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func needBench(b *testing.B, tools ...string) {
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			b.Skipf("needs %s (make deps installs it)", t)
		}
	}
}

// BenchmarkCompareTFTP downloads the same 64 MiB file with curl (blksize 1468, tsize) from
// tftpd-hpa and from the rack's TFTP server on a host socket, by default (a new socket per
// transfer, as tftpd-hpa does) and in single-port mode (what the virtual network uses), in
// turn, and reports the medians and the ratios (target: >= 1.0).
func BenchmarkCompareTFTP(b *testing.B) {
	needBench(b, "curl", "in.tftpd")
	if os.Geteuid() != 0 {
		b.Skip("needs root: in.tftpd -s chroots into the served directory")
	}
	const size = 64 << 20
	dir, name := benchFile(b, size)

	hpaPort := freePort(b, "udp")
	startProcess(b, func() bool { return udpAnswers(fmt.Sprintf("127.0.0.1:%d", hpaPort)) },
		"in.tftpd", "-L", "-s", dir, "-a", fmt.Sprintf("127.0.0.1:%d", hpaPort))

	var addrs []string
	for _, single := range []bool{false, true} {
		rack, err := New(Config{Region: fileRegion{filepath.Join(dir, name)}, RackIP: netip.MustParseAddr("127.0.0.1"),
			BootloaderHost: bootloader.Host{CacheDir: b.TempDir()}, TFTPSinglePort: single})
		if err != nil {
			b.Fatal(err)
		}
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- rack.ServeTFTP(ctx, conn) }()
		defer func() { cancel(); <-done }()
		addrs = append(addrs, conn.LocalAddr().String())
	}

	var ours, single, theirs []float64
	for b.Loop() {
		theirs = append(theirs, curlSpeed(b, size, fmt.Sprintf("tftp://127.0.0.1:%d/%s", hpaPort, name), "--tftp-blksize", "1468"))
		ours = append(ours, curlSpeed(b, size, fmt.Sprintf("tftp://%s/%s", addrs[0], name), "--tftp-blksize", "1468"))
		single = append(single, curlSpeed(b, size, fmt.Sprintf("tftp://%s/%s", addrs[1], name), "--tftp-blksize", "1468"))
	}
	b.ReportMetric(median(theirs)/1e6, "MB/s-tftpd-hpa")
	b.ReportMetric(median(ours)/1e6, "MB/s-rack")
	b.ReportMetric(median(single)/1e6, "MB/s-rack-single-port")
	b.ReportMetric(median(ours)/median(theirs), "x-tftpd-hpa")
	b.ReportMetric(median(single)/median(theirs), "x-tftpd-hpa-single-port")
}

// udpAnswers reports whether a TFTP server answers a read request for a missing file
// (tftpd-hpa answers from a new port, so the socket is not connected).
func udpAnswers(addr string) bool {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return false
	}
	defer c.Close()
	ua, _ := net.ResolveUDPAddr("udp4", addr)
	c.WriteTo(append([]byte{0, 1}, "probe-missing\x00octet\x00"...), ua)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 512)
	_, _, err = c.ReadFrom(buf)
	return err == nil
}

// BenchmarkCompareHTTP downloads the same 1 GiB file with curl from nginx (sendfile, a temp
// config and prefix) and from the rack's HTTP service, alternating, and reports both medians
// and the ratio (target: >= 0.8).
func BenchmarkCompareHTTP(b *testing.B) {
	needBench(b, "curl", "nginx")
	const size = 1 << 30
	dir, name := benchFile(b, size)

	prefix := b.TempDir()
	port := freePort(b, "tcp")
	conf := filepath.Join(prefix, "nginx.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`daemon off;
master_process on;
worker_processes 1;
user root;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen 127.0.0.1:%[2]d;
    location /images/ { alias %[3]s/; }
  }
}
`, prefix, port, dir)), 0o644)
	startProcess(b, func() bool { return tcpAnswers(port) }, "nginx", "-c", conf, "-p", prefix)

	rack, err := New(Config{Region: fileRegion{filepath.Join(dir, name)}, RackIP: netip.MustParseAddr("127.0.0.1"),
		Subnets: []dhcp4.Subnet{rackSubnet}, BootloaderHost: bootloader.Host{CacheDir: b.TempDir()}})
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: rack.HTTPHandler()}
	go srv.Serve(l)
	defer srv.Close()

	var ours, theirs []float64
	for b.Loop() {
		theirs = append(theirs, curlSpeed(b, size, fmt.Sprintf("http://127.0.0.1:%d/images/%s", port, name)))
		ours = append(ours, curlSpeed(b, size, fmt.Sprintf("http://%s/images/%s/ubuntu/amd64/ga-24.04/noble/stable/squashfs", l.Addr(), name)))
	}
	b.ReportMetric(median(ours)/1e6, "MB/s-rack")
	b.ReportMetric(median(theirs)/1e6, "MB/s-nginx")
	b.ReportMetric(median(ours)/median(theirs), "x-nginx")
}

func tcpAnswers(port int) bool {
	c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), 50*time.Millisecond)
	if err != nil {
		return false
	}
	fmt.Fprint(c, "HEAD / HTTP/1.0\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(time.Second))
	_, err = bufio.NewReader(c).ReadString('\n')
	c.Close()
	return err == nil
}
