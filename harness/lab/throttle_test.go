package lab

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeClock stands in for time: sleeping advances it and records the wait.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	slept []time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slept = append(c.slept, d)
	c.now = c.now.Add(d)
	return nil
}

func (c *fakeClock) total() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var t time.Duration
	for _, d := range c.slept {
		t += d
	}
	return t
}

func throttled(t *testing.T, rate int64, h http.Handler) (*HTTPThrottle, *fakeClock, *httptest.Server) {
	t.Helper()
	c := &fakeClock{now: time.Unix(1000, 0)}
	th := &HTTPThrottle{sleep: c.Sleep, now: c.Now}
	th.SetRate(rate)
	srv := httptest.NewServer(th.Wrap(h))
	t.Cleanup(srv.Close)
	return th, c, srv
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Bytes are paced at the rate: before each 16 KiB chunk the throttle waits until the
// bytes already written fit the rate, and the content arrives intact.
func TestHTTPThrottlePacesWrites(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 40960/16) // 40 KiB
	_, clock, srv := throttled(t, 1000, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	}))
	if got := get(t, srv.URL); !bytes.Equal(got, body) {
		t.Fatalf("got %d bytes, want the %d written", len(got), len(body))
	}
	// chunks of 16384, 16384, 8192 bytes: waits of 0, 16.384 s, 16.384 s at 1000 B/s
	if want := 32768 * time.Millisecond; clock.total() != want {
		t.Errorf("waited %v in total (%v), want %v", clock.total(), clock.slept, want)
	}
}

// http.ServeContent copies a file with ReadFrom; that path is paced too.
func TestHTTPThrottlePacesServeContent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "image")
	content := bytes.Repeat([]byte{7}, 100000)
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	_, clock, srv := throttled(t, 50000, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(p)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer f.Close()
		http.ServeContent(w, r, "image", time.Time{}, f)
	}))
	if got := get(t, srv.URL); !bytes.Equal(got, content) {
		t.Fatalf("got %d bytes, want %d", len(got), len(content))
	}
	// every byte but the last chunk's waited: at least (100000-16384)/50000 s
	if min := time.Duration(float64(100000-16384) / 50000 * float64(time.Second)); clock.total() < min {
		t.Errorf("waited %v, want at least %v (ServeContent bypassed the throttle?)", clock.total(), min)
	}
}

// Rate 0 is no limit; a rate set while serving applies to what follows.
func TestHTTPThrottleUnlimitedAndChange(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 50000)
	th, clock, srv := throttled(t, 0, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	}))
	get(t, srv.URL)
	if len(clock.slept) != 0 {
		t.Errorf("unlimited: waited %v", clock.slept)
	}
	th.SetRate(-5)
	if th.Rate() != 0 {
		t.Errorf("a negative rate: Rate() = %d, want 0 (unlimited)", th.Rate())
	}
	th.SetRate(10000)
	get(t, srv.URL)
	if clock.total() == 0 {
		t.Error("after SetRate(10000) nothing waited")
	}
}

// A client that goes away ends the wait with its context's error.
func TestHTTPThrottleCancelled(t *testing.T) {
	th := &HTTPThrottle{}
	th.SetRate(1) // one byte a second: the second chunk would wait hours
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := &throttledWriter{ResponseWriter: httptest.NewRecorder(), t: th, ctx: ctx}
	n, err := w.Write(bytes.Repeat([]byte("y"), 3*throttleChunk))
	if !errors.Is(err, context.Canceled) || n != throttleChunk {
		t.Errorf("Write = %d, %v; want %d bytes then context.Canceled", n, err, throttleChunk)
	}
}

// SetHTTPRate refuses to pretend: without the rack's handler wrapped, it says so.
func TestSetHTTPRateNeedsTheHook(t *testing.T) {
	l := &Lab{}
	if err := l.SetHTTPRate(1000); !errors.Is(err, ErrNoHTTPHook) {
		t.Fatalf("SetHTTPRate on a lab without the hook: %v, want ErrNoHTTPHook", err)
	}
	first, second := l.HTTPThrottle(), l.HTTPThrottle()
	if first != second {
		t.Fatal("HTTPThrottle returns a new throttle each time")
	}
	_ = l.HTTPThrottle().Wrap(http.NotFoundHandler())
	if err := l.SetHTTPRate(1000); err != nil {
		t.Fatalf("SetHTTPRate once wrapped: %v", err)
	}
	if r := l.HTTPThrottle().Rate(); r != 1000 {
		t.Errorf("rate %d, want 1000", r)
	}
	if (&Lab{}).HTTPThrottle() == l.HTTPThrottle() {
		t.Error("two labs share a throttle")
	}
}
