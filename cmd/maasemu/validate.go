package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/maasemu/maasemu/harness/images/lint"
	"github.com/maasemu/maasemu/harness/lab"
	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/harness/report"
)

func init() {
	register(command{
		name:    "validate",
		summary: "the CI gate: lint an image, deploy it across a firmware x layout matrix, one verdict",
		run:     runValidate,
	})
}

func runValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f deployFlags
	f.register(fs)
	firmwares := fs.String("firmware", "bios,uefi", "comma-separated firmwares to deploy with")
	layouts := fs.String("layout", "flat", "comma-separated storage layouts: flat, lvm")
	junit := fs.String("junit", "", "also write the JUnit XML to `FILE`")
	parallel := fs.Int("parallel", 0, "cells deployed at once (default: the number of CPUs)")
	deployAnyway := fs.Bool("deploy-anyway", false, "deploy even when lint finds errors (to see how the failure shows)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: maasemu validate IMAGE --filetype T [--firmware bios,uefi] [--layout flat,lvm] [--junit FILE] [--out DIR]")
		fmt.Fprintln(stderr, "\nLints IMAGE, then deploys it on a fresh machine for every firmware x layout cell. Exits 0 only")
		fmt.Fprintln(stderr, "when every cell reaches Deployed (1: a cell failed or lint found errors, 2: usage, 3: the harness")
		fmt.Fprintln(stderr, "could not run).")
		fs.PrintDefaults()
	}
	// The image may come before or after the flags.
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		f.image, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	if f.image == "" && fs.NArg() == 1 {
		f.image = fs.Arg(0)
	} else if fs.NArg() != 0 {
		fs.Usage()
		return &exitError{code: exitUsage}
	}
	if f.image == "" || f.filetype == "" {
		fs.Usage()
		return &exitError{code: exitUsage}
	}
	var cells []cellSpec
	for _, fw := range splitList(*firmwares) {
		if fw != string(machine.BIOS) && fw != string(machine.UEFI) {
			return &exitError{code: exitUsage, err: fmt.Errorf("--firmware %q: want bios and/or uefi", fw)}
		}
		for _, ly := range splitList(*layouts) {
			if ly != "flat" && ly != "lvm" {
				return &exitError{code: exitUsage, err: fmt.Errorf("--layout %q: want flat and/or lvm", ly)}
			}
			cells = append(cells, cellSpec{name: fw + "-" + ly, firmware: machine.Firmware(fw), layout: ly})
		}
	}
	if len(cells) == 0 {
		return &exitError{code: exitUsage, err: fmt.Errorf("no firmware x layout cells to run")}
	}
	if !validFiletype(f.filetype) {
		return &exitError{code: exitUsage, err: fmt.Errorf("--filetype %q: want one of %s", f.filetype, strings.Join(filetypes, " "))}
	}
	if f.out == "" {
		f.out = filepath.Join("maasemu-out", lab.ImageName(f.image)+"-validate-"+time.Now().Format("20060102-150405"))
	}
	run := report.Run{Tool: "maasemu", Version: version, Command: "validate", Image: f.image, Filetype: f.filetype, Started: time.Now()}

	// Lint first: it costs seconds and explains the commonest failures before any boot.
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return &exitError{code: exitHarness, err: err}
	}
	lr, err := lint.Lint(ctx, f.image, f.filetype, lint.Options{})
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("lint: %w", err)}
	}
	lintErrors := 0
	for _, fd := range lr.Findings {
		msg := fd.Message
		if fd.Predicts != "" {
			msg += " (predicts: " + fd.Predicts + ")"
		}
		run.Lint = append(run.Lint, report.Lint{ID: fd.ID, Severity: fd.Severity, Message: msg})
		fmt.Fprintf(stderr, "lint %s %s: %s\n", strings.ToUpper(fd.Severity), fd.ID, msg)
		if fd.Severity == "error" {
			lintErrors++
		}
	}
	if lintErrors > 0 && !*deployAnyway {
		fmt.Fprintf(stderr, "lint found %d error(s); not deploying (use --deploy-anyway to deploy regardless)\n", lintErrors)
		run.Finished = time.Now()
		if err := finishRun(f.out, *junit, run); err != nil {
			fmt.Fprintf(stderr, "maasemu validate: writing the report: %v\n", err)
		}
		fmt.Fprintf(stdout, "%s: FAIL (lint: %d error(s))\nreport: %s\n", filepath.Base(f.image), lintErrors, filepath.Join(f.out, report.FileHTML))
		return &exitError{code: exitFailed}
	}

	env, err := prepare(ctx, &f, stderr)
	if err != nil {
		return err
	}
	n := *parallel
	if n <= 0 {
		n = runtime.NumCPU()
	}
	results := make([]report.Result, len(cells))
	harnessErrs := make([]error, len(cells))
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i, c := range cells {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			res, err := env.deploy(ctx, c, filepath.Join(f.out, c.name), stderr)
			res.Dir = c.name
			results[i], harnessErrs[i] = res, err
		}()
	}
	wg.Wait()
	run.Results = results
	run.Finished = time.Now()
	run.Passed = lintErrors == 0
	for _, r := range results {
		run.Passed = run.Passed && r.Passed
	}
	if err := finishRun(f.out, *junit, run); err != nil {
		fmt.Fprintf(stderr, "maasemu validate: writing the report: %v\n", err)
	}
	verdict := "PASS"
	if !run.Passed {
		verdict = "FAIL"
	}
	fmt.Fprintf(stdout, "%s: %s\n", filepath.Base(f.image), verdict)
	for _, r := range results {
		fmt.Fprintf(stdout, "  %-12s %s\n", r.Name, r.Summary())
	}
	fmt.Fprintf(stdout, "report: %s\n", filepath.Join(f.out, report.FileHTML))
	if run.Passed {
		return nil
	}
	for i, r := range results {
		if harnessErrs[i] != nil && r.Error != "" && !r.Passed && r.Status == "error" {
			return &exitError{code: exitHarness, err: harnessErrs[i]}
		}
	}
	return &exitError{code: exitFailed}
}

// finishRun writes the run's reports, and the JUnit XML to junitPath too when given.
func finishRun(dir, junitPath string, run report.Run) error {
	if err := writeRun(dir, run); err != nil {
		return err
	}
	if junitPath == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, report.FileJUnit))
	if err != nil {
		return err
	}
	return os.WriteFile(junitPath, b, 0o644)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
