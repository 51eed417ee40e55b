package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// proxy is how the programs a simulated machine runs (curtin hooks, late commands such as
// MAAS's `wget ... op=netboot_off`) reach the virtual network: they run as host processes,
// which have no route to it, so they get an HTTP proxy on the host's loopback that sends
// their requests out of the machine's own virtual NIC.
type proxy struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
	// bin holds the wget wrapper that makes MAAS's `wget --no-proxy` use the proxy.
	bin string
}

func startProxy(dial func(ctx context.Context, network, addr string) (net.Conn, error), dir string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{DialContext: dial, Proxy: nil, MaxIdleConnsPerHost: 2, ResponseHeaderTimeout: 2 * time.Minute}
	p := &proxy{ln: ln, done: make(chan struct{}), bin: filepath.Join(dir, "sim-bin")}
	p.srv = &http.Server{
		ReadHeaderTimeout: 30 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodConnect || r.URL.Scheme != "http" || r.URL.Host == "" {
				http.Error(w, "maasemu sim proxy: only plain http:// requests in absolute form are forwarded", http.StatusBadRequest)
				return
			}
			out := r.Clone(r.Context())
			out.RequestURI = ""
			out.Header.Del("Proxy-Connection")
			out.Header.Del("Proxy-Authorization")
			resp, err := tr.RoundTrip(out)
			if err != nil {
				http.Error(w, "maasemu sim proxy: "+err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			for k, vs := range resp.Header {
				for _, v := range vs {
					w.Header().Add(k, v)
				}
			}
			w.WriteHeader(resp.StatusCode)
			_, _ = io.Copy(w, resp.Body)
		}),
	}
	if err := os.MkdirAll(p.bin, 0o755); err != nil {
		ln.Close()
		return nil, err
	}
	wget, err := findWget()
	if err != nil {
		ln.Close()
		return nil, err
	}
	wrapper := fmt.Sprintf(`#!/bin/sh
# maasemu sim: this machine's programs run on the host, where the virtual network is
# reachable only through the machine's proxy; --no-proxy would bypass it, so it is dropped.
for a in "$@"; do shift; [ "$a" = "--no-proxy" ] || set -- "$@" "$a"; done
exec %s -e use_proxy=on -e http_proxy=%s "$@"
`, wget, p.URL())
	if err := os.WriteFile(filepath.Join(p.bin, "wget"), []byte(wrapper), 0o755); err != nil {
		ln.Close()
		return nil, err
	}
	go func() {
		defer close(p.done)
		_ = p.srv.Serve(ln)
		tr.CloseIdleConnections()
	}()
	return p, nil
}

// URL is the proxy's address for http_proxy.
func (p *proxy) URL() string { return "http://" + p.ln.Addr().String() }

// Env is what the machine's programs need: the proxy and the wrapper first on PATH.
func (p *proxy) Env() map[string]string {
	return map[string]string{"http_proxy": p.URL(), "HTTP_PROXY": p.URL(), "no_proxy": "", "MAASEMU_SIM": "1"}
}

func (p *proxy) close() error {
	err := p.srv.Close()
	<-p.done
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, os.RemoveAll(p.bin))
}

func findWget() (string, error) {
	for _, d := range []string{"/usr/bin", "/bin", "/usr/local/bin"} {
		p := filepath.Join(d, "wget")
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("sim: wget is not installed on this host; MAAS's late commands need it (apt-get install wget)")
}
