package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/maasemu/maasemu/harness/images"
	"github.com/maasemu/maasemu/harness/lab"
	"github.com/maasemu/maasemu/harness/scenario"
)

func init() {
	register(command{
		name:    "run",
		summary: "run scenario scripts (.txtar): labs, deployments, faults and assertions; PASS/FAIL per script",
		run:     runScenarios,
	})
}

func runScenarios(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	verbose := fs.Bool("v", false, "print every script's log, not only the failing ones'")
	match := fs.String("run", "", "run only the scripts whose name (file name without .txtar) matches `REGEX`")
	driver := fs.String("driver", lab.DriverSim, "machines of `lab` without -driver: sim or libvirt")
	junit := fs.String("junit", "", "also write the results as JUnit XML to `FILE`")
	parallel := fs.Int("parallel", 0, "scripts run at once (default: the number of CPUs)")
	agent := fs.String("agent", "", "the static maasemu-agent binary (default: next to maasemu)")
	cache := fs.String("cache", "", "cache directory (default $MAASEMU_CACHE or ~/.cache/maasemu)")
	curtin := fs.String("curtin", "", "a real curtin source `DIR` for curtin hooks that import curtin")
	libvirtURI := fs.String("libvirt-uri", "", "libvirt URI (default qemu:///system)")
	timeout := fs.Duration("timeout", time.Hour, "give up on each script after this long")
	debug := fs.Bool("debug", false, "log what the labs do (to stderr)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: maasemu run [-v] [-run REGEX] [-driver sim|libvirt] [--junit FILE] FILE|DIR...")
		fmt.Fprintln(stderr, "\nRuns scenario scripts (testscript .txtar files; a directory means its *.txtar) with maasemu's")
		fmt.Fprintln(stderr, "scenario commands, as `go test ./scenarios/...` does. Exits 0 only when no script fails")
		fmt.Fprintln(stderr, "(1: a script failed, 2: usage, 3: the harness could not run).")
		fmt.Fprintln(stderr, "\nscenario commands:")
		for _, u := range scenario.Usage() {
			fmt.Fprintf(stderr, "  %s\n", u)
		}
		fmt.Fprintln(stderr, "\nconditions: [libvirt] [kvm] [root] [uefi] [sim] [long], and testscript's own ([exec:prog], [linux], ...)")
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{code: exitUsage}
	}
	if len(pos) == 0 {
		fs.Usage()
		return &exitError{code: exitUsage, err: errors.New("no scenario files given")}
	}
	if *driver != lab.DriverSim && *driver != lab.DriverLibvirt {
		return &exitError{code: exitUsage, err: fmt.Errorf("-driver %q: want sim or libvirt", *driver)}
	}
	var re *regexp.Regexp
	if *match != "" {
		if re, err = regexp.Compile(*match); err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("-run %q: %w", *match, err)}
		}
	}
	files, err := scenarioFiles(pos)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	if *cache == "" {
		*cache = images.DefaultCache()
	}
	agentPath, err := findAgent(ctx, *agent, *cache)
	if err != nil {
		return &exitError{code: exitHarness, err: err}
	}
	shared, err := os.MkdirTemp("", "maasemu-run-")
	if err != nil {
		return &exitError{code: exitHarness, err: err}
	}
	defer os.RemoveAll(shared)
	logger := slog.New(slog.DiscardHandler)
	if *debug {
		logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	p := scenario.Params(scenario.Options{AgentPath: agentPath, Driver: *driver, LibvirtURI: *libvirtURI,
		CurtinDir: *curtin, Cache: *cache, SharedDir: shared, ScriptTimeout: *timeout, Logger: logger, Context: ctx})
	started := time.Now()
	results := scenario.Run(p, files, scenario.RunOptions{Verbose: *verbose, Match: re, Parallel: *parallel, Progress: stdout})
	elapsed := time.Since(started)
	if len(results) == 0 {
		return &exitError{code: exitUsage, err: fmt.Errorf("no script matches -run %q among %d file(s)", *match, len(files))}
	}
	counts := map[string]int{}
	for _, r := range results {
		counts[r.Status]++
	}
	fmt.Fprintf(stdout, "%d passed, %d failed, %d skipped in %.1fs\n", counts[scenario.Pass], counts[scenario.Fail], counts[scenario.Skip], elapsed.Seconds())
	if *junit != "" {
		var b bytes.Buffer
		if err := scenario.JUnit(&b, "scenarios", results, started, elapsed); err != nil {
			return &exitError{code: exitHarness, err: err}
		}
		if err := os.WriteFile(*junit, b.Bytes(), 0o644); err != nil {
			return &exitError{code: exitHarness, err: fmt.Errorf("--junit: %w", err)}
		}
	}
	if ctx.Err() != nil {
		return &exitError{code: exitHarness, err: fmt.Errorf("interrupted: %w", ctx.Err())}
	}
	if counts[scenario.Fail] > 0 {
		return &exitError{code: exitFailed}
	}
	return nil
}

// scenarioFiles expands directories to their *.txtar files (sorted) and checks that every
// file exists and is a txtar script.
func scenarioFiles(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if st.IsDir() {
			m, err := filepath.Glob(filepath.Join(a, "*.txtar"))
			if err != nil {
				return nil, err
			}
			if len(m) == 0 {
				return nil, fmt.Errorf("%s: no *.txtar scenario files", a)
			}
			sort.Strings(m)
			out = append(out, m...)
			continue
		}
		if !strings.HasSuffix(a, ".txtar") && !strings.HasSuffix(a, ".txt") {
			return nil, fmt.Errorf("%s: a scenario file ends in .txtar (or .txt)", a)
		}
		out = append(out, a)
	}
	return out, nil
}
