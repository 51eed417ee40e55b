// Package httpboot is the rack's HTTP boot service (MAAS's port 5248) as an http.Handler:
// images by hash under /images/, bootloaders by name, the same boot configs as TFTP at the
// same paths, and /MAAS/ forwarded to the region, so a machine reaches the metadata service
// and the status webhook at the rack address.
package httpboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/maasemu/maasemu/pxe/bootconfig"
	"github.com/maasemu/maasemu/pxe/bootfiles"
	"github.com/maasemu/maasemu/trace"
)

// Tree is the served tree (bootfiles.Tree).
type Tree interface {
	Open(ctx context.Context, req bootfiles.Request) (bootfiles.File, error)
	OpenImage(ctx context.Context, req bootfiles.Request) (bootfiles.File, error)
}

// Config configures the handler.
type Config struct {
	Tree Tree
	// Region serves /MAAS/... (metadata, webhook, API); nil answers 404 there.
	Region http.Handler
	// LocalIP is the rack address when the listener's address is unspecified.
	LocalIP netip.Addr
	Sink    trace.Sink
	Logger  *slog.Logger
}

// Handler serves the rack's HTTP boot port.
type Handler struct {
	cfg  Config
	sink trace.Sink
	log  *slog.Logger
}

// New returns the handler.
func New(cfg Config) *Handler {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, sink: trace.OrNop(cfg.Sink), log: log}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	path := r.URL.Path
	if path == "/MAAS" || strings.HasPrefix(path, "/MAAS/") {
		h.forward(rec, r, start)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.fail(rec, r, start, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed: the boot service is read-only", r.Method))
		return
	}
	req := bootfiles.Request{Protocol: bootconfig.HTTP, LocalIP: h.localIP(r), RemoteIP: remoteIP(r)}
	var (
		f   bootfiles.File
		err error
	)
	if rest, ok := strings.CutPrefix(path, "/images/"); ok {
		req.Name = rest
		f, err = h.cfg.Tree.OpenImage(r.Context(), req)
	} else {
		req.Name = path
		f, err = h.cfg.Tree.Open(r.Context(), req)
	}
	if err != nil {
		var re *bootfiles.RefusedError
		switch {
		case errors.As(err, &re):
			h.fail(rec, r, start, http.StatusBadRequest, "refused: "+re.Reason)
		case errors.Is(err, bootfiles.ErrNotFound):
			h.fail(rec, r, start, http.StatusNotFound, err.Error())
		default:
			h.fail(rec, r, start, http.StatusInternalServerError, err.Error())
		}
		return
	}
	defer f.Close()
	switch f.Kind {
	case bootfiles.KindConfig, bootfiles.KindStatic, bootfiles.KindEmpty:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	if f.SHA256 != "" {
		w.Header().Set("ETag", `"`+f.SHA256+`"`)
	}
	// Hand ServeContent the *os.File itself when there is one, so the kernel copies it
	// (sendfile) as nginx does.
	var content io.ReadSeeker = f
	if of, ok := f.ReadSeekCloser.(*os.File); ok {
		content = of
	}
	http.ServeContent(rec, r, f.Name, f.ModTime, content)
	if rec.status == http.StatusRequestedRangeNotSatisfiable {
		h.event(rec, r, start, trace.KindHTTPError, trace.LevelWarn,
			fmt.Sprintf("refused Range %q for %s: malformed or not satisfiable for %d bytes", r.Header.Get("Range"), path, f.Size), f)
		return
	}
	h.event(rec, r, start, trace.KindHTTPGet, trace.LevelInfo, "", f)
}

// forward hands /MAAS/... to the region.
func (h *Handler) forward(rec *recorder, r *http.Request, start time.Time) {
	if h.cfg.Region == nil {
		h.fail(rec, r, start, http.StatusNotFound, "no region handler for /MAAS/")
		return
	}
	h.cfg.Region.ServeHTTP(rec, r)
	level := trace.LevelDebug // the region reports its own requests
	kind := trace.KindHTTPGet
	if rec.status >= 500 {
		kind, level = trace.KindHTTPError, trace.LevelWarn
	}
	h.event(rec, r, start, kind, level, "", bootfiles.File{Kind: "region"})
}

func (h *Handler) fail(rec *recorder, r *http.Request, start time.Time, status int, reason string) {
	http.Error(rec, reason, status)
	level := trace.LevelWarn
	if status == http.StatusNotFound {
		level = trace.LevelInfo
	}
	if status >= 500 {
		level = trace.LevelError
	}
	h.event(rec, r, start, trace.KindHTTPError, level, reason, bootfiles.File{})
}

func (h *Handler) event(rec *recorder, r *http.Request, start time.Time, kind, level, reason string, f bootfiles.File) {
	d := time.Since(start)
	attrs := map[string]any{
		"path": r.URL.Path, "method": r.Method, "status": rec.status, "bytes": rec.bytes,
		"duration_ms": d.Milliseconds(), "remote": r.RemoteAddr,
	}
	if rg := r.Header.Get("Range"); rg != "" {
		attrs["range"] = rg
	}
	if f.Kind != "" {
		attrs["kind"] = f.Kind
	}
	if reason != "" {
		attrs["reason"] = reason
	}
	msg := fmt.Sprintf("%s %s %d (%d bytes)", r.Method, r.URL.Path, rec.status, rec.bytes)
	if reason != "" {
		msg += ": " + reason
	}
	h.sink.Emit(trace.Event{Source: trace.SourceHTTP, Kind: kind, Level: level, MAC: macOf(r.URL.Path), Message: msg, Attrs: attrs})
	lv := slog.LevelInfo
	switch level {
	case trace.LevelDebug:
		lv = slog.LevelDebug
	case trace.LevelWarn:
		lv = slog.LevelWarn
	case trace.LevelError:
		lv = slog.LevelError
	}
	h.log.Log(r.Context(), lv, "http: "+msg, "remote", r.RemoteAddr, "range", r.Header.Get("Range"), "duration", d)
}

func (h *Handler) localIP(r *http.Request) netip.Addr {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil && !ap.Addr().IsUnspecified() {
			return ap.Addr().Unmap()
		}
	}
	return h.cfg.LocalIP
}

func remoteIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func macOf(path string) string {
	if m, ok := bootconfig.MatchPath(strings.TrimLeft(path, "/")); ok {
		return m.MAC
	}
	return ""
}

// recorder captures the status and byte count, and keeps the writer's ReadFrom (sendfile).
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wroteHeader = true
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// ReadFrom lets io.Copy reach the connection's sendfile path.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	r.wroteHeader = true
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(src)
		r.bytes += n
		return n, err
	}
	n, err := io.Copy(writerOnly{r.ResponseWriter}, src)
	r.bytes += n
	return n, err
}

// Flush passes through for streaming region responses.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

type writerOnly struct{ io.Writer }
