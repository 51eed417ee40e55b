// Package regiontest starts a fake MAAS region on a temporary state directory behind a
// loopback HTTP server for tests, with an authenticated gomaasclient, a test power driver,
// a generated SimpleStreams tree and the maas CLI's chunked upload.
package regiontest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canonical/gomaasclient/client"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/fakemaas/curtincfg"
	"github.com/maasemu/maasemu/trace"
)

// Env is a running region for one test.
type Env struct {
	Region   *fakemaas.Region
	Server   *httptest.Server
	URL      string // http://127.0.0.1:port/MAAS/
	APIKey   string // consumer_key:token_key:token_secret
	StateDir string
	Client   *client.Client
	Events   *trace.Recorder
	Power    *PowerDriver // registered as power type "test"
}

// Options tune Start.
type Options struct {
	StateDir string // default t.TempDir()
	Logger   *slog.Logger
	// Region options: the deploy timeout and the monitor interval, the curtin packer,
	// the clock.
	DeployTimeout   time.Duration
	MonitorInterval time.Duration
	Packer          interface {
		Pack(ctx context.Context, spec curtincfg.InstallerSpec) ([]byte, error)
	}
	Now func() time.Time
}

// Start creates a region on a temporary state directory, serves it on a loopback
// httptest server, registers the "test" power type and logs in with gomaasclient using
// the admin key. Everything is closed when the test ends.
func Start(t testing.TB, opts ...Options) *Env {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.StateDir == "" {
		o.StateDir = t.TempDir()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	rec := trace.NewRecorder(nil)
	ctx, cancel := context.WithCancel(context.Background())
	r, err := fakemaas.New(ctx, fakemaas.Options{StateDir: o.StateDir, Events: rec, Logger: o.Logger,
		DeployTimeout: o.DeployTimeout, MonitorInterval: o.MonitorInterval, Packer: o.Packer, Now: o.Now})
	if err != nil {
		cancel()
		t.Fatalf("regiontest: starting region: %v", err)
	}
	power := NewPowerDriver()
	r.RegisterPowerType("test", power)
	srv := httptest.NewServer(r.Handler())
	env := &Env{Region: r, Server: srv, URL: srv.URL + "/MAAS/", APIKey: r.AdminAPIKey(), StateDir: o.StateDir, Events: rec, Power: power}
	t.Cleanup(func() {
		srv.Close()
		cancel()
		if err := r.Close(); err != nil {
			t.Errorf("regiontest: closing region: %v", err)
		}
	})
	env.Client = env.NewClient(t, env.APIKey)
	return env
}

// NewClient returns a gomaasclient logged in with key.
func (e *Env) NewClient(t testing.TB, key string) *client.Client {
	t.Helper()
	c, err := client.GetClient(e.URL, key, "2.0")
	if err != nil {
		t.Fatalf("regiontest: gomaasclient: %v", err)
	}
	return c
}

// PowerDriver is a test power driver: it records actions, keeps a power state per
// power_id (or "" when the machine has none) and fails when told to.
type PowerDriver struct {
	mu      sync.Mutex
	state   map[string]string
	calls   []string
	failOn  map[string]error
	OnPower func(action string, params fakemaas.PowerParams) // optional hook
}

// NewPowerDriver returns a driver with every machine off.
func NewPowerDriver() *PowerDriver {
	return &PowerDriver{state: map[string]string{}, failOn: map[string]error{}}
}

// Fail makes action ("on", "off", "query") fail with err (nil to stop failing).
func (p *PowerDriver) Fail(action string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		delete(p.failOn, action)
		return
	}
	p.failOn[action] = err
}

// Calls returns the actions so far, as "on <power_id>", "off <power_id>", "query <power_id>".
func (p *PowerDriver) Calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.calls...)
}

// State returns the power state of power_id.
func (p *PowerDriver) State(id string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := p.state[id]; ok {
		return s
	}
	return "off"
}

func (p *PowerDriver) act(action string, params fakemaas.PowerParams) error {
	p.mu.Lock()
	id := params["power_id"]
	p.calls = append(p.calls, strings.TrimSpace(action+" "+id))
	err := p.failOn[action]
	if err == nil && action != "query" {
		p.state[id] = action
	}
	hook := p.OnPower
	p.mu.Unlock()
	if hook != nil && err == nil {
		hook(action, params)
	}
	return err
}

// PowerOn implements fakemaas.PowerDriver.
func (p *PowerDriver) PowerOn(_ context.Context, params fakemaas.PowerParams) error {
	return p.act("on", params)
}

// PowerOff implements fakemaas.PowerDriver.
func (p *PowerDriver) PowerOff(_ context.Context, params fakemaas.PowerParams) error {
	return p.act("off", params)
}

// PowerQuery implements fakemaas.PowerDriver.
func (p *PowerDriver) PowerQuery(_ context.Context, params fakemaas.PowerParams) (string, error) {
	if err := p.act("query", params); err != nil {
		return "error", err
	}
	return p.State(params["power_id"]), nil
}

// ImportDefaultStream writes DefaultStream into a temporary directory and imports it, so
// that amd64/generic is a usable architecture (machines can be created and custom images
// uploaded) and the pxe and uefi bootloaders exist. It returns the stream.
func (e *Env) ImportDefaultStream(t testing.TB) *Stream {
	t.Helper()
	s := DefaultStream(t.TempDir())
	if err := s.Write(); err != nil {
		t.Fatalf("regiontest: writing stream: %v", err)
	}
	if _, err := e.Region.Import(context.Background(), s.Dir, nil); err != nil {
		t.Fatalf("regiontest: importing stream: %v", err)
	}
	return s
}

// StartRack serves the region on port 5248 of a random loopback address (127.x.y.z),
// where a rack's HTTP server would forward /MAAS/ to the region, and returns the
// address. URLs the region hands machines (http://<rack>:5248/MAAS/metadata/...) then
// reach it; pass the address as BootRequest.LocalIP so the machine's boot_cluster_ip is
// the rack. The listener is closed when the test ends. The test is skipped when no
// loopback address can be bound.
func (e *Env) StartRack(t testing.TB) string {
	t.Helper()
	var ln net.Listener
	var ip string
	for range 50 {
		ip = fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(254), rand.IntN(256), 1+rand.IntN(254))
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "5248"))
		if err == nil {
			ln = l
			break
		}
	}
	if ln == nil {
		t.Skip("regiontest: rack: needs a free 127.x.y.z:5248 on the loopback interface")
	}
	srv := &http.Server{Handler: e.Region.Handler(), ReadHeaderTimeout: 30 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ip
}
