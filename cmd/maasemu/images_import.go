package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/maasemu/maasemu/fakemaas"
)

func init() {
	registerImages(command{
		name:    "import",
		summary: "import a SimpleStreams tree (directory or URL) into a region state directory",
		run:     runImagesImport,
	})
}

func runImagesImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("images import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	source := fs.String("source", "", "SimpleStreams tree: a directory, file:// or http(s):// URL (required)")
	state := fs.String("state", defaultStateDir(), "region state directory")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{code: 2, err: err}
	}
	if *source == "" || fs.NArg() > 0 {
		fs.Usage()
		return &exitError{code: 2, err: errors.New("--source is required and no arguments are taken")}
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	region, err := fakemaas.New(ctx, fakemaas.Options{StateDir: *state, Logger: log})
	if err != nil {
		return err
	}
	defer region.Close()
	res, err := region.Import(ctx, *source, nil)
	if err != nil {
		return fmt.Errorf("importing %s: %w", *source, err)
	}
	for _, p := range res.Products {
		fmt.Fprintln(stdout, p)
	}
	fmt.Fprintf(stdout, "imported %d products from %s (%d files downloaded, %d already present)\n",
		len(res.Products), *source, res.Downloaded, res.AlreadyHave)
	return nil
}
