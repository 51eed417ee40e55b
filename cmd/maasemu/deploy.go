package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/maasemu/maasemu/harness/images"
	"github.com/maasemu/maasemu/harness/lab"
	"github.com/maasemu/maasemu/harness/libvirt"
	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/harness/report"
	"github.com/maasemu/maasemu/harness/timeline"
)

func init() {
	register(command{
		name:    "deploy",
		summary: "deploy one image on one machine (VM or simulated) and report the verdict",
		run:     runDeploy,
	})
}

// Exit codes of deploy and validate.
const (
	exitDeployed = 0
	exitFailed   = 1
	exitUsage    = 2
	exitHarness  = 3
)

// deployFlags are the flags deploy and validate share.
type deployFlags struct {
	image, filetype, name, baseImage string
	driver, libvirtURI               string
	out                              string
	diskSize                         string
	diskBus, nicModel                string
	memory                           int
	curtin, agent, streams, cache    string
	userData                         string
	timeout                          time.Duration
	verbose                          bool
}

func (f *deployFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.filetype, "filetype", "", "MAAS filetype of the image: tgz tbz txz ddtgz ddtbz ddtxz ddtar ddbz2 ddgz ddxz ddraw (required)")
	fs.StringVar(&f.name, "name", "", "boot resource name to upload as (default: from the file name)")
	fs.StringVar(&f.baseImage, "base-image", "ubuntu/jammy", "the custom image's base_image (selects the ephemeral and MAAS's checks)")
	fs.StringVar(&f.driver, "driver", "auto", "machines: libvirt (VMs with real firmware), sim (simulated), or auto (libvirt when it runs here, else sim)")
	fs.StringVar(&f.libvirtURI, "libvirt-uri", "", "libvirt URI (default qemu:///system)")
	fs.StringVar(&f.out, "out", "", "directory for report.json, junit.xml, report.html, console.log, network.pcap, events.jsonl, curtin-install.log (default maasemu-out/NAME-TIME)")
	fs.StringVar(&f.diskSize, "disk-size", "8G", "size of the machine's disk")
	fs.StringVar(&f.diskBus, "disk-bus", "virtio", "disk bus: virtio sata scsi nvme")
	fs.StringVar(&f.nicModel, "nic-model", "virtio", "NIC model: virtio e1000 e1000e rtl8139")
	fs.IntVar(&f.memory, "memory", 2048, "VM memory in MiB")
	fs.StringVar(&f.curtin, "curtin", "", "a real curtin source `DIR` for curtin hooks that import curtin (as MAAS packs its own)")
	fs.StringVar(&f.agent, "agent", "", "the static maasemu-agent binary (default: next to maasemu, or built from the source tree)")
	fs.StringVar(&f.streams, "streams", "", "a SimpleStreams tree of the ephemeral to boot (default: the test ephemeral, built and cached)")
	fs.StringVar(&f.cache, "cache", "", "cache directory (default $MAASEMU_CACHE or ~/.cache/maasemu)")
	fs.StringVar(&f.userData, "user-data", "", "a `FILE` of user-data for the installed OS")
	fs.DurationVar(&f.timeout, "timeout", 45*time.Minute, "give up on the whole run after this long")
	fs.BoolVar(&f.verbose, "v", false, "log what the harness does")
}

func runDeploy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("deploy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f deployFlags
	fs.StringVar(&f.image, "image", "", "the custom image `FILE` to deploy (required)")
	f.register(fs)
	firmware := fs.String("firmware", "bios", "bios or uefi")
	layout := fs.String("layout", "flat", "storage layout: flat or lvm")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: maasemu deploy --image FILE --filetype T [--driver libvirt|sim] [--firmware bios|uefi] [--out DIR]")
		fmt.Fprintln(stderr, "\nDeploys the image as MAAS would and exits 0 only when the machine reaches Deployed (1: failed")
		fmt.Fprintln(stderr, "deployment, 2: usage, 3: the harness could not run).")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	if f.image == "" || f.filetype == "" || fs.NArg() != 0 {
		fs.Usage()
		return &exitError{code: exitUsage}
	}
	fw := machine.Firmware(*firmware)
	if fw != machine.BIOS && fw != machine.UEFI {
		return &exitError{code: exitUsage, err: fmt.Errorf("--firmware %q: want bios or uefi", *firmware)}
	}
	env, err := prepare(ctx, &f, stderr)
	if err != nil {
		return err
	}
	cell := cellSpec{name: string(fw), firmware: fw, layout: *layout}
	run := report.Run{Tool: "maasemu", Version: version, Command: "deploy", Image: f.image, Filetype: f.filetype, Started: time.Now()}
	res, herr := env.deploy(ctx, cell, f.out, stderr)
	run.Results = []report.Result{res}
	run.Finished = time.Now()
	run.Passed = res.Passed
	if err := writeRun(f.out, run); err != nil {
		fmt.Fprintf(stderr, "maasemu deploy: writing the report: %v\n", err)
	}
	fmt.Fprintf(stdout, "%s: %s\n", filepath.Base(f.image), res.Summary())
	fmt.Fprintf(stdout, "report: %s\n", filepath.Join(f.out, report.FileHTML))
	switch {
	case herr != nil && !res.Passed:
		return &exitError{code: exitHarness, err: herr}
	case !res.Passed:
		return &exitError{code: exitFailed}
	}
	return nil
}

// runEnv is what every deployment of a run shares: the binaries, the boot stream, the driver.
type runEnv struct {
	f       *deployFlags
	driver  string
	agent   string
	streams string
	disk    int64
	log     *slog.Logger
	mu      sync.Mutex // serialises live progress lines of parallel cells
}

// prepare checks the flags, picks the driver, finds the agent and the boot stream.
func prepare(ctx context.Context, f *deployFlags, stderr io.Writer) (*runEnv, error) {
	env := &runEnv{f: f, log: slog.New(slog.DiscardHandler)}
	if f.verbose {
		env.log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if _, err := os.Stat(f.image); err != nil {
		return nil, &exitError{code: exitUsage, err: fmt.Errorf("--image: %w", err)}
	}
	if !validFiletype(f.filetype) {
		return nil, &exitError{code: exitUsage, err: fmt.Errorf("--filetype %q: want one of %s", f.filetype, strings.Join(filetypes, " "))}
	}
	size, err := parseSize(f.diskSize)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: fmt.Errorf("--disk-size: %w", err)}
	}
	env.disk = size
	switch f.driver {
	case lab.DriverSim, lab.DriverLibvirt:
		env.driver = f.driver
	case "auto":
		if err := libvirt.EnsureDaemons(ctx); err != nil {
			fmt.Fprintf(stderr, "maasemu: libvirt cannot run here (%v); using simulated machines (--driver sim)\n", err)
			env.driver = lab.DriverSim
		} else {
			env.driver = lab.DriverLibvirt
		}
	default:
		return nil, &exitError{code: exitUsage, err: fmt.Errorf("--driver %q: want libvirt, sim or auto", f.driver)}
	}
	if f.cache == "" {
		f.cache = images.DefaultCache()
	}
	if f.out == "" {
		f.out = filepath.Join("maasemu-out", lab.ImageName(f.image)+"-"+time.Now().Format("20060102-150405"))
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return nil, &exitError{code: exitHarness, err: err}
	}
	if env.agent, err = findAgent(ctx, f.agent, f.cache); err != nil {
		return nil, &exitError{code: exitHarness, err: err}
	}
	env.streams = f.streams
	if env.streams == "" {
		fmt.Fprintln(stderr, "maasemu: preparing the test ephemeral (built from Debian packages once, then cached)...")
		b := &images.Builder{Cache: f.cache, Agent: env.agent, Log: env.log}
		if env.streams, err = b.PublishedEphemeral(ctx); err != nil {
			return nil, &exitError{code: exitHarness, err: fmt.Errorf("building the test ephemeral: %w", err)}
		}
	}
	return env, nil
}

// cellSpec is one machine configuration of a run.
type cellSpec struct {
	name     string
	firmware machine.Firmware
	layout   string
}

// deploy runs one cell into dir, printing phases as they happen.
func (e *runEnv) deploy(ctx context.Context, c cellSpec, dir string, stderr io.Writer) (report.Result, error) {
	var userData []byte
	if e.f.userData != "" {
		b, err := os.ReadFile(e.f.userData)
		if err != nil {
			return report.Result{Name: c.name, Error: err.Error()}, err
		}
		userData = b
	}
	ctx, cancel := context.WithTimeout(ctx, e.f.timeout)
	defer cancel()
	prefix := ""
	if c.name != "" {
		prefix = "[" + c.name + "] "
	}
	onPhase := func(s timeline.Span) {
		e.mu.Lock()
		defer e.mu.Unlock()
		switch s.State {
		case timeline.StateRunning:
			fmt.Fprintf(stderr, "%s  ... %s\n", prefix, s.Title)
		case timeline.StateDone:
			fmt.Fprintf(stderr, "%s  ok  %-22s %6.1fs\n", prefix, s.Title, s.Duration().Seconds())
		case timeline.StateFailed, timeline.StateStalled:
			fmt.Fprintf(stderr, "%s  !!  %-22s %6.1fs %s\n", prefix, s.Title, s.Duration().Seconds(), s.State)
		}
	}
	fmt.Fprintf(stderr, "%sdeploying %s (%s) on a %s %s machine\n", prefix, filepath.Base(e.f.image), e.f.filetype, e.driver, c.firmware)
	res, err := lab.RunDeploy(ctx, lab.RunSpec{
		Name: c.name, Dir: dir, Driver: e.driver, LibvirtURI: e.f.libvirtURI, AgentPath: e.agent, CurtinDir: e.f.curtin,
		Streams: e.streams, Image: e.f.image, Filetype: e.f.filetype, ImageName: e.f.name, BaseImage: e.f.baseImage,
		Machine: lab.MachineSpec{Name: "machine-1", Firmware: c.firmware, MemoryMiB: e.f.memory, NICModel: e.f.nicModel,
			Disks: []machine.Disk{{SizeBytes: e.disk, Bus: e.f.diskBus}}},
		Layout: c.layout, UserData: userData, OnPhase: onPhase, Logger: e.log,
	})
	e.mu.Lock()
	fmt.Fprintf(stderr, "%s%s\n", prefix, res.Summary())
	if p := primaryHint(res); p != "" {
		fmt.Fprintf(stderr, "%s  %s\n", prefix, p)
	}
	e.mu.Unlock()
	return res, err
}

func primaryHint(r report.Result) string {
	for _, f := range r.Diagnosis {
		if f.Severity == "error" && f.Hint != "" {
			return "hint: " + f.Hint
		}
	}
	return ""
}

// writeRun writes report.json, junit.xml and report.html into dir.
func writeRun(dir string, run report.Run) error {
	if err := report.WriteJSON(filepath.Join(dir, report.FileReport), run); err != nil {
		return err
	}
	var junit bytes.Buffer
	if err := report.JUnit(&junit, run); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, report.FileJUnit), junit.Bytes(), 0o644); err != nil {
		return err
	}
	var page bytes.Buffer
	if err := report.HTML(&page, dir, run); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, report.FileHTML), page.Bytes(), 0o644)
}

var filetypes = []string{"tgz", "tbz", "txz", "ddtgz", "ddtbz", "ddtxz", "ddtar", "ddbz2", "ddgz", "ddxz", "ddraw"}

func validFiletype(t string) bool {
	for _, f := range filetypes {
		if f == t {
			return true
		}
	}
	return false
}

// parseSize reads sizes such as 8G, 512M, 1073741824.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "T"):
		mult, s = 1<<40, strings.TrimSuffix(s, "T")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size like 8G or 512M", s)
	}
	return n * mult, nil
}
