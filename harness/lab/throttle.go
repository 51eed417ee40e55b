package lab

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"weak"
)

// HTTPThrottle limits the rate at which a handler's responses are written, shared by
// every response (one rate for the whole server, as a slow uplink would be). Rate 0 is
// unlimited. It is safe for concurrent use; SetRate applies to bytes written from then on.
type HTTPThrottle struct {
	rate  atomic.Int64 // bytes per second; 0 = unlimited
	wired atomic.Bool

	mu   sync.Mutex
	next time.Time // when the budget allows the next byte

	// sleep waits d or until ctx is done (tests replace it).
	sleep func(ctx context.Context, d time.Duration) error
	now   func() time.Time
}

// SetRate sets the rate in bytes per second; 0 removes the limit.
func (t *HTTPThrottle) SetRate(bytesPerSecond int64) {
	if bytesPerSecond < 0 {
		bytesPerSecond = 0
	}
	t.rate.Store(bytesPerSecond)
}

// Rate returns the current rate (0: unlimited).
func (t *HTTPThrottle) Rate() int64 { return t.rate.Load() }

// Wrap returns h with its response bodies throttled.
func (t *HTTPThrottle) Wrap(h http.Handler) http.Handler {
	t.wired.Store(true)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&throttledWriter{ResponseWriter: w, t: t, ctx: r.Context()}, r)
	})
}

// chunk is the most written between two waits: small enough that a cut or a rate
// change takes effect quickly at low rates.
const throttleChunk = 16 << 10

// wait blocks until n more bytes fit in the rate.
func (t *HTTPThrottle) wait(ctx context.Context, n int) error {
	rate := t.rate.Load()
	if rate <= 0 {
		return nil
	}
	now := t.clock()
	t.mu.Lock()
	if t.next.Before(now) {
		t.next = now
	}
	start := t.next
	t.next = t.next.Add(time.Duration(float64(n) / float64(rate) * float64(time.Second)))
	t.mu.Unlock()
	if d := start.Sub(now); d > 0 {
		return t.doSleep(ctx, d)
	}
	return nil
}

func (t *HTTPThrottle) clock() time.Time {
	if t.now != nil {
		return t.now()
	}
	return time.Now()
}

func (t *HTTPThrottle) doSleep(ctx context.Context, d time.Duration) error {
	if t.sleep != nil {
		return t.sleep(ctx, d)
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type throttledWriter struct {
	http.ResponseWriter
	t   *HTTPThrottle
	ctx context.Context
}

func (w *throttledWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := len(p)
		if w.t.rate.Load() > 0 && n > throttleChunk {
			n = throttleChunk
		}
		if err := w.t.wait(w.ctx, n); err != nil {
			return written, err
		}
		m, err := w.ResponseWriter.Write(p[:n])
		written += m
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// ReadFrom keeps io.Copy (http.ServeContent) going through Write, so that sendfile
// cannot bypass the throttle.
func (w *throttledWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.CopyBuffer(writerOnly{w}, r, make([]byte, throttleChunk))
}

func (w *throttledWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *throttledWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type writerOnly struct{ io.Writer }

// throttles holds each lab's rack HTTP throttle (Lab has no field for it), keyed weakly
// so that a closed lab's entry goes with it.
var throttles sync.Map // weak.Pointer[Lab] -> *HTTPThrottle

// HTTPThrottle returns the lab's throttle for the rack's HTTP boot service (port 5248:
// kernels, initrds, squashfs, custom images; the region's metadata behind it too).
// Start wraps the rack's handler with it when it has the hook (see SetHTTPRate).
func (l *Lab) HTTPThrottle() *HTTPThrottle {
	key := weak.Make(l)
	t, loaded := throttles.LoadOrStore(key, &HTTPThrottle{})
	if !loaded {
		runtime.AddCleanup(l, func(k weak.Pointer[Lab]) { throttles.Delete(k) }, key)
	}
	return t.(*HTTPThrottle)
}

// ErrNoHTTPHook is returned by SetHTTPRate when the lab's rack HTTP handler was not
// wrapped with its HTTPThrottle when the lab started.
var ErrNoHTTPHook = errors.New("lab: the rack's HTTP handler is not wrapped with the lab's HTTPThrottle (lab.Start must serve port 5248 through l.HTTPThrottle().Wrap)")

// SetHTTPRate limits the rack's HTTP responses to bytesPerSecond (0: unlimited).
func (l *Lab) SetHTTPRate(bytesPerSecond int64) error {
	t := l.HTTPThrottle()
	if !t.wired.Load() {
		return ErrNoHTTPHook
	}
	t.SetRate(bytesPerSecond)
	return nil
}
