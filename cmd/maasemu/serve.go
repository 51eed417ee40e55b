package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/maasemu/maasemu/fakemaas"
)

// serveConfig is what "maasemu serve" runs. The rack flags (--tftp, --http,
// --dhcp-interface) are added as fields here and started next to the region in
// runServe's errgroup-like service list.
type serveConfig struct {
	listen   string
	stateDir string
	logLevel string
}

func (c *serveConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.listen, "listen", "127.0.0.1:5240", "address of the region API (MAAS listens on :5240)")
	fs.StringVar(&c.stateDir, "state", defaultStateDir(), "state directory (database, images, admin.apikey)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
}

func defaultStateDir() string {
	if d := os.Getenv("MAASEMU_STATE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "maasemu-state"
	}
	return filepath.Join(home, ".local", "state", "maasemu")
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func init() {
	register(command{
		name:    "serve",
		summary: "run the fake MAAS region (API 2.0) on a state directory",
		run:     runServe,
	})
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.flags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{code: 2, err: err}
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("unexpected arguments: %v", fs.Args())}
	}
	log, err := newLogger(stderr, cfg.logLevel)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	region, err := fakemaas.New(ctx, fakemaas.Options{StateDir: cfg.stateDir, Logger: log})
	if err != nil {
		return err
	}
	defer region.Close()
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.listen, err)
	}
	srv := &http.Server{Handler: region.Handler(), ReadHeaderTimeout: 20 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "maasemu region listening on http://%s/MAAS/ (state %s, API key in %s)\n",
		ln.Addr(), cfg.stateDir, region.APIKeyPath())
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-errc
	return nil
}
