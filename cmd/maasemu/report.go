package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/maasemu/maasemu/harness/report"
)

func init() {
	register(command{
		name:    "report",
		summary: "write an HTML report of a run directory (from deploy, validate or run --out)",
		run:     runReport,
	})
}

func runReport(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "write the page here (default DIR/report.html)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: maasemu report [-o FILE] DIR")
		fmt.Fprintln(stderr, "\nDIR is a run directory holding report.json and each machine's console.log, events.jsonl,")
		fmt.Fprintln(stderr, "network.pcap and curtin-install.log.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2, err: err}
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return &exitError{code: 2}
	}
	dir := fs.Arg(0)
	run, err := report.ReadRun(filepath.Join(dir, report.FileReport))
	if err != nil {
		return err
	}
	var page bytes.Buffer
	if err := report.HTML(&page, dir, run); err != nil {
		return err
	}
	path := *out
	if path == "" {
		path = filepath.Join(dir, report.FileHTML)
	}
	if err := os.WriteFile(path, page.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintln(stdout, path)
	return nil
}
