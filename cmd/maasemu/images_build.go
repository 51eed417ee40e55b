package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/maasemu/maasemu/harness/images"
)

func init() {
	registerImages(command{
		name:    "build",
		summary: "build the test ephemeral and/or the test images from Debian packages (build [test|ephemeral|all] [--out DIR])",
		run:     runImagesBuild,
	})
}

// findAgent picks the maasemu-agent binary: --agent, else the one next to this executable
// (make build puts both in bin/), else built from the source tree in the working directory.
func findAgent(ctx context.Context, flagAgent, cache string) (string, error) {
	if flagAgent != "" {
		if _, err := os.Stat(flagAgent); err != nil {
			return "", fmt.Errorf("--agent: %w", err)
		}
		return flagAgent, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "maasemu-agent")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	wd, _ := os.Getwd()
	for d := wd; d != "/" && d != "."; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/maasemu/maasemu\n") {
			return images.BuildAgent(ctx, d, filepath.Join(cache, "agent"))
		}
	}
	return "", errors.New("no maasemu-agent found: pass --agent PATH, put maasemu-agent next to maasemu, or run from the maasemu source tree")
}

func runImagesBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("images build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "publish into this directory (default $MAASEMU_CACHE/published): ephemeral/ holds the SimpleStreams tree, test/ the test images and manifest.json")
	agent := fs.String("agent", "", "the static maasemu-agent binary to install (default: next to maasemu, or built from the source tree)")
	cache := fs.String("cache", "", "cache directory (default $MAASEMU_CACHE or ~/.cache/maasemu)")
	verbose := fs.Bool("v", false, "log build steps")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: maasemu images build [test|ephemeral|all] [--out DIR] [--agent PATH]")
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{code: 2}
	}
	what := "all"
	if len(pos) > 1 {
		fs.Usage()
		return &exitError{code: 2, err: fmt.Errorf("too many arguments: %q", pos)}
	}
	if len(pos) == 1 {
		what = pos[0]
	}
	if what != "test" && what != "ephemeral" && what != "all" {
		fs.Usage()
		return &exitError{code: 2, err: fmt.Errorf("unknown image set %q (test, ephemeral or all)", what)}
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	b := &images.Builder{Cache: *cache, Log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))}
	if b.Cache == "" {
		b.Cache = images.DefaultCache()
	}
	if b.Agent, err = findAgent(ctx, *agent, b.Cache); err != nil {
		return err
	}
	if *out == "" {
		*out = filepath.Join(b.Cache, "published")
	}
	if what == "ephemeral" || what == "all" {
		e, err := b.Ephemeral(ctx)
		if err != nil {
			return err
		}
		s, err := b.PublishEphemeral(ctx, e, filepath.Join(*out, "ephemeral"))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "ephemeral: kernel %s, version %s\n", e.KernelVersion, e.Version)
		fmt.Fprintf(stdout, "ephemeral: SimpleStreams tree %s (maasemu images import --source %s)\n", s.Dir, s.Dir)
		for _, p := range s.Products {
			fmt.Fprintf(stdout, "  %s\n", p)
		}
	}
	if what == "test" || what == "all" {
		m, err := b.TestImages(ctx, filepath.Join(*out, "test"))
		if err != nil {
			return err
		}
		dir := filepath.Join(*out, "test")
		fmt.Fprintf(stdout, "test images: %s (manifest.json)\n", dir)
		for _, im := range m.Images {
			fmt.Fprintf(stdout, "  %-22s %-6s %-17s %s\n", im.Name, im.Filetype, im.Expected, im.File)
		}
	}
	return nil
}
