package sim

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// proxy is how a simulated machine's ephemeral (the agent process, and the curtin hooks
// and late commands it runs, such as MAAS's `wget ... op=netboot_off`) reaches the virtual
// network: host processes have no route to it, so they get an HTTP proxy on the host's
// loopback that sends their requests out of the machine's own virtual NIC.
type proxy struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

func startProxy(dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{DialContext: dial, Proxy: nil, MaxIdleConnsPerHost: 2, ResponseHeaderTimeout: 2 * time.Minute}
	p := &proxy{ln: ln, done: make(chan struct{})}
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
	go func() {
		defer close(p.done)
		_ = p.srv.Serve(ln)
		tr.CloseIdleConnections()
	}()
	return p, nil
}

// URL is the proxy's address for http_proxy.
func (p *proxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *proxy) close() error {
	err := p.srv.Close()
	<-p.done
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
