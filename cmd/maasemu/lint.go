package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/maasemu/maasemu/harness/images/lint"
)

func init() {
	register(command{
		name:    "lint",
		summary: "check a custom image before any boot (lint IMAGE --filetype T)",
		run:     runLint,
	})
}

// parseInterleaved parses flags that may come before or after positional arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func runLint(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	filetype := fs.String("filetype", "", "the filetype the image will be uploaded as (tgz, tbz, txz, ddtgz, ddtbz, ddtxz, ddtar, ddgz, ddxz, ddbz2, ddraw)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	tmp := fs.String("tmpdir", "", "directory for the sparse spool of a dd image's disk (default $TMPDIR)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: maasemu lint IMAGE --filetype T [--json]")
		fmt.Fprintln(stderr, "exit status: 0 no error findings, 1 error findings, 2 usage")
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{code: 2}
	}
	if len(pos) != 1 || *filetype == "" {
		fs.Usage()
		return &exitError{code: 2, err: errors.New("need exactly one IMAGE and --filetype")}
	}
	r, err := lint.Lint(ctx, pos[0], *filetype, lint.Options{TempDir: *tmp})
	if err != nil {
		if errors.Is(err, lint.ErrUsage) {
			return &exitError{code: 2, err: err}
		}
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "%s: declared %s, content: %s\n", r.Image, r.Filetype, r.Content)
		if len(r.Findings) == 0 {
			fmt.Fprintln(stdout, "no findings")
		}
		for _, f := range r.Findings {
			fmt.Fprintf(stdout, "%-7s %s: %s\n", strings.ToUpper(f.Severity), f.ID, f.Message)
			if f.Predicts != "" {
				fmt.Fprintf(stdout, "        predicts: %s\n", f.Predicts)
			}
		}
	}
	if r.Errors() > 0 {
		return &exitError{code: 1}
	}
	return nil
}
