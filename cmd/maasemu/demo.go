package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/maasemu/maasemu/harness/images"
	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/harness/report"
)

func init() {
	register(command{
		name:    "demo",
		summary: "build a small test image and deploy it on a BIOS VM (simulated where libvirt cannot run)",
		run:     runDemo,
	})
}

// runDemo is the README's main job: everything from Debian packages to a Deployed VM.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f deployFlags
	f.register(fs)
	imageName := fs.String("test-image", "good-tgz", "which test image to deploy (see maasemu images build test)")
	firmware := fs.String("firmware", "bios", "bios or uefi")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	if f.cache == "" {
		f.cache = images.DefaultCache()
	}
	if f.out == "" {
		f.out = filepath.Join("maasemu-out", "demo-"+time.Now().Format("20060102-150405"))
	}
	agent, err := findAgent(ctx, f.agent, f.cache)
	if err != nil {
		return &exitError{code: exitHarness, err: err}
	}
	f.agent = agent
	fmt.Fprintln(stderr, "maasemu demo: building the test images (from Debian packages once, then cached)...")
	b := &images.Builder{Cache: f.cache, Agent: agent}
	dir := filepath.Join(f.cache, "published", "test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return &exitError{code: exitHarness, err: err}
	}
	man, err := b.TestImages(ctx, dir)
	if err != nil {
		return &exitError{code: exitHarness, err: fmt.Errorf("building the test images: %w", err)}
	}
	im, ok := man.Image(*imageName)
	if !ok {
		return &exitError{code: exitUsage, err: fmt.Errorf("--test-image %q: no such test image", *imageName)}
	}
	f.image, f.filetype = filepath.Join(dir, im.File), im.Filetype
	fmt.Fprintf(stderr, "maasemu demo: %s — %s\n", im.Name, im.Reproduces)
	env, err := prepare(ctx, &f, stderr)
	if err != nil {
		return err
	}
	fw := machine.Firmware(*firmware)
	run := report.Run{Tool: "maasemu", Version: version, Command: "demo", Image: f.image, Filetype: f.filetype, Started: time.Now()}
	res, herr := env.deploy(ctx, cellSpec{name: string(fw), firmware: fw, layout: "flat"}, f.out, stderr)
	run.Results, run.Finished, run.Passed = []report.Result{res}, time.Now(), res.Passed
	if err := writeRun(f.out, run); err != nil {
		fmt.Fprintf(stderr, "maasemu demo: writing the report: %v\n", err)
	}
	fmt.Fprintf(stdout, "%s on a %s %s machine: %s\n", im.Name, env.driver, fw, res.Summary())
	fmt.Fprintf(stdout, "report: %s\n", filepath.Join(f.out, report.FileHTML))
	switch {
	case herr != nil && !res.Passed:
		return &exitError{code: exitHarness, err: herr}
	case !res.Passed:
		return &exitError{code: exitFailed}
	}
	return nil
}
