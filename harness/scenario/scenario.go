// Package scenario is the testscript command set that drives maasemu labs from .txtar
// scenarios: bring a lab up, upload images, create and deploy machines, inject faults, and
// assert on phases, diagnoses, events, consoles, captures and disks, the same way under
// go test (testscript.Run) and under `maasemu run` (testscript.RunT with Runner).
package scenario

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/maasemu/maasemu/harness/images"
	"github.com/maasemu/maasemu/harness/lab"
)

// Options configure the command set.
type Options struct {
	// AgentPath is the static maasemu-agent binary: simulated machines run it as their
	// ephemeral, and it goes into the test images and the test ephemeral. Required for
	// `lab`, `images` and deployments.
	AgentPath string
	// Driver is the machine driver of `lab` without -driver: lab.DriverSim (default) or
	// lab.DriverLibvirt.
	Driver     string
	LibvirtURI string
	// CurtinDir is a real curtin tree for hooks that import curtin ("" : none).
	CurtinDir string
	// Cache is the image cache (default images.DefaultCache()).
	Cache string
	// SharedDir holds what scripts share: the published test images and the sim boot
	// stream. The caller removes it. Empty: a directory under os.TempDir() is made on
	// first use (and left behind).
	SharedDir string
	// MaxLibvirtLabs bounds the libvirt labs up at once across scripts (each usually runs
	// one or two VMs); 0 means 2.
	MaxLibvirtLabs int
	// ScriptTimeout bounds one script's commands (default 30 minutes, or less when the
	// test deadline is nearer).
	ScriptTimeout time.Duration
	// Logger receives the labs' logs (nil: discarded).
	Logger *slog.Logger
	// Deadline is passed to testscript, and scripts' commands stop 30 s before it.
	Deadline time.Time
	// Context, when set, cancels every script's commands when it is done (Ctrl-C in
	// `maasemu run`); labs are still torn down.
	Context context.Context
}

// Params returns the testscript parameters holding every command and condition. The
// caller sets Dir or Files.
func Params(o Options) testscript.Params {
	s := newSuite(o)
	return testscript.Params{
		Setup:               s.setup,
		Cmds:                s.commands(),
		Condition:           s.condition,
		RequireExplicitExec: true,
		Deadline:            o.Deadline,
	}
}

// suite is what every script of one Params shares.
type suite struct {
	o   Options
	log *slog.Logger

	libvirtSlots chan struct{}

	sharedOnce sync.Once
	sharedDir  string
	sharedErr  error

	imagesMu  sync.Mutex
	imagesMan *images.TestManifest
	imagesDir string

	simMu     sync.Mutex
	simStream string

	ephMu     sync.Mutex
	ephStream string

	condMu    sync.Mutex
	condCache map[string]condResult
}

type condResult struct {
	ok  bool
	err error
}

func newSuite(o Options) *suite {
	if o.Driver == "" {
		o.Driver = lab.DriverSim
	}
	if o.Cache == "" {
		o.Cache = images.DefaultCache()
	}
	if o.MaxLibvirtLabs <= 0 {
		o.MaxLibvirtLabs = 2
	}
	if o.ScriptTimeout <= 0 {
		o.ScriptTimeout = 30 * time.Minute
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &suite{o: o, log: log, libvirtSlots: make(chan struct{}, o.MaxLibvirtLabs), condCache: map[string]condResult{}}
}

// shared returns the directory scripts share, made on first use.
func (s *suite) shared() (string, error) {
	s.sharedOnce.Do(func() {
		if s.o.SharedDir != "" {
			s.sharedDir, s.sharedErr = s.o.SharedDir, os.MkdirAll(s.o.SharedDir, 0o755)
			return
		}
		s.sharedDir, s.sharedErr = os.MkdirTemp("", "maasemu-scenarios-")
	})
	return s.sharedDir, s.sharedErr
}

// testImages builds (or finds in the cache) the test images once and publishes them into
// the shared directory.
func (s *suite) testImages(ctx context.Context) (*images.TestManifest, string, error) {
	s.imagesMu.Lock()
	defer s.imagesMu.Unlock()
	if s.imagesMan != nil {
		return s.imagesMan, s.imagesDir, nil
	}
	if s.o.AgentPath == "" {
		return nil, "", errors.New("the test images need the maasemu-agent binary (Options.AgentPath; maasemu run finds it next to maasemu)")
	}
	shared, err := s.shared()
	if err != nil {
		return nil, "", err
	}
	dir := filepath.Join(shared, "test-images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	b := &images.Builder{Cache: s.o.Cache, Agent: s.o.AgentPath, Log: s.log}
	man, err := b.TestImages(ctx, dir)
	if err != nil {
		return nil, "", fmt.Errorf("building the test images: %w", err)
	}
	s.imagesMan, s.imagesDir = man, dir
	return man, dir, nil
}

// simBootStream writes the sims' boot stream once.
func (s *suite) simBootStream(ctx context.Context) (string, error) {
	s.simMu.Lock()
	defer s.simMu.Unlock()
	if s.simStream != "" {
		return s.simStream, nil
	}
	shared, err := s.shared()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(shared, "sim-stream")
	_ = os.RemoveAll(dir)
	if err := lab.WriteSimStream(ctx, dir); err != nil {
		return "", err
	}
	s.simStream = dir
	return dir, nil
}

// ephemeralStream builds (or reuses from the cache) the test ephemeral that VMs boot and
// its SimpleStreams tree.
func (s *suite) ephemeralStream(ctx context.Context) (string, error) {
	s.ephMu.Lock()
	defer s.ephMu.Unlock()
	if s.ephStream != "" {
		return s.ephStream, nil
	}
	if s.o.AgentPath == "" {
		return "", errors.New("the test ephemeral needs the maasemu-agent binary (Options.AgentPath)")
	}
	b := &images.Builder{Cache: s.o.Cache, Agent: s.o.AgentPath, Log: s.log}
	out, err := b.PublishedEphemeral(ctx)
	if err != nil {
		return "", fmt.Errorf("the test ephemeral: %w", err)
	}
	s.ephStream = out
	return out, nil
}

// stateKey finds a script's state in ts.Value.
type stateKey struct{}

// script is one running script's state.
type script struct {
	s      *suite
	ctx    context.Context
	cancel context.CancelFunc
	work   string

	lab        *lab.Lab
	labRelease func()
	labDir     string

	mu       sync.Mutex
	machines map[string]*machineState
	faults   []func() // stop fault watchers
}

func (s *suite) setup(env *testscript.Env) error {
	parent := s.o.Context
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, s.o.ScriptTimeout)
	if !s.o.Deadline.IsZero() {
		ctx2, cancel2 := context.WithDeadline(ctx, s.o.Deadline.Add(-30*time.Second))
		prev := cancel
		ctx, cancel = ctx2, func() { cancel2(); prev() }
	}
	sc := &script{s: s, ctx: ctx, cancel: cancel, work: env.WorkDir, machines: map[string]*machineState{}}
	env.Values[stateKey{}] = sc
	env.Defer(sc.close)
	// Binaries next to maasemu (maasemu-agent) are found by `exec` in CLI mode too.
	if exe, err := os.Executable(); err == nil {
		env.Setenv("PATH", filepath.Dir(exe)+string(os.PathListSeparator)+env.Getenv("PATH"))
	}
	if s.o.AgentPath != "" {
		env.Setenv("MAASEMU_AGENT", s.o.AgentPath)
	}
	return nil
}

// close tears the script's lab down; it runs when the script ends, passed or failed.
func (sc *script) close() {
	sc.mu.Lock()
	stops := sc.faults
	sc.faults = nil
	sc.mu.Unlock()
	for _, f := range stops {
		f()
	}
	sc.cancel()
	sc.mu.Lock()
	ms := make([]*machineState, 0, len(sc.machines))
	for _, m := range sc.machines {
		ms = append(ms, m)
	}
	sc.mu.Unlock()
	for _, m := range ms {
		m.waitFollower()
	}
	if sc.lab != nil {
		if err := sc.lab.Close(); err != nil {
			sc.s.log.Warn("scenario: closing the lab", "err", err)
		}
		sc.lab = nil
	}
	if sc.labRelease != nil {
		sc.labRelease()
		sc.labRelease = nil
	}
}

func state(ts *testscript.TestScript) *script {
	sc, ok := ts.Value(stateKey{}).(*script)
	if !ok {
		ts.Fatalf("scenario: no script state (Params' Setup did not run)")
	}
	return sc
}

// needLab returns the script's lab, failing when `lab` has not run.
func (sc *script) needLab(ts *testscript.TestScript, cmd string) *lab.Lab {
	if sc.lab == nil {
		ts.Fatalf("%s: no lab: run `lab` first", cmd)
	}
	return sc.lab
}

// machine returns the named machine's state.
func (sc *script) machine(ts *testscript.TestScript, cmd, name string) *machineState {
	sc.needLab(ts, cmd)
	sc.mu.Lock()
	m, ok := sc.machines[name]
	names := make([]string, 0, len(sc.machines))
	for n := range sc.machines {
		names = append(names, n)
	}
	sc.mu.Unlock()
	if !ok {
		sort.Strings(names)
		ts.Fatalf("%s: no machine %q in this lab (machines: %s); create it with `machine %s`", cmd, name, strings.Join(names, ", "), name)
	}
	return m
}

// command is one scenario command: its usage line and its implementation.
type command struct {
	usage string
	// neg says what `!` means for the command; "" means `!` is refused.
	neg string
	run func(sc *script, ts *testscript.TestScript, neg bool, args []string)
}

func (s *suite) commands() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	out := map[string]func(ts *testscript.TestScript, neg bool, args []string){}
	for name, c := range commandTable() {
		out[name] = func(ts *testscript.TestScript, neg bool, args []string) {
			if neg && c.neg == "" {
				ts.Fatalf("unsupported: ! %s (usage: %s)", name, c.usage)
			}
			c.run(state(ts), ts, neg, args)
		}
	}
	return out
}

// Usage returns every command's usage line and what `!` means for it, sorted by name.
func Usage() []string {
	var out []string
	for _, c := range commandTable() {
		line := c.usage
		if c.neg != "" {
			line += "\n    ! " + c.neg
		}
		out = append(out, line)
	}
	sort.Strings(out)
	return out
}

func commandTable() map[string]command {
	return map[string]command{
		"lab":           {usage: "lab [-driver sim|libvirt] [-subnet CIDR] [-budget PHASE=DUR]...", run: cmdLab},
		"images":        {usage: "images", run: cmdImages},
		"upload":        {usage: "upload [-sha256 HEX] [-size N] [-chunk N] [-arch A] NAME FILE FILETYPE [BASE_IMAGE]", neg: "the region refuses the upload (its status and message go to stderr)", run: cmdUpload},
		"machine":       {usage: "machine NAME [-firmware bios|uefi] [-disk SIZE[:BUS[:SERIAL]]]... [-nics N] [-nic-model M] [-memory MiB] [-commission]", run: cmdMachine},
		"layout":        {usage: "layout MACHINE flat|lvm|custom|blank [FILE] [k=v]...", neg: "the region refuses the layout (message on stderr)", run: cmdLayout},
		"deploy":        {usage: "deploy MACHINE IMAGE [-user-data FILE] [-hwe-kernel K]", neg: "the region refuses the deployment (message on stderr)", run: cmdDeploy},
		"release":       {usage: "release MACHINE", neg: "the region refuses the release (message on stderr)", run: cmdRelease},
		"await":         {usage: "await MACHINE STATUS [-timeout DUR]", neg: "the deployment ended in another terminal status", run: cmdAwait},
		"await-event":   {usage: "await-event MACHINE KIND [REGEX] [-timeout DUR]", run: cmdAwaitEvent},
		"api":           {usage: "api [-export VAR=JSONPATH]... GET|POST|PUT|DELETE PATH [k=v | k@=FILE]...", neg: "the region answers an error status (status and body on stderr)", run: cmdAPI},
		"curtin-config": {usage: "curtin-config MACHINE", run: cmdCurtinConfig},
		"phase":         {usage: "phase MACHINE PHASE done|failed|stalled|skipped|running|pending", neg: "the phase ended in another state", run: cmdPhase},
		"diagnosis":     {usage: "diagnosis MACHINE ID [REGEX]", neg: "no finding with that ID (and REGEX)", run: cmdDiagnosis},
		"events":        {usage: "events [-count N | -min N] MACHINE KIND [REGEX]", neg: "no such event", run: cmdEvents},
		"console":       {usage: "console MACHINE REGEX", neg: "no console line matches", run: cmdConsole},
		"install-log":   {usage: "install-log MACHINE REGEX", neg: "the install log does not match", run: cmdInstallLog},
		"capture":       {usage: "capture dhcp-option MACHINE CODE [VALUE-REGEX] | capture fetched MACHINE FILE", neg: "the capture has no such option / fetch", run: cmdCapture},
		"disk":          {usage: "disk MACHINE [-disk N] ptable gpt|msdos | partitions N | fs [type=T] [label=L] [uuid=U] [part=N] | file PATH [REGEX] | ls DIR | root", neg: "the disk does not match (a missing file, another table, ...)", run: cmdDisk},
		"fsck":          {usage: "fsck MACHINE [-disk N]", neg: "some filesystem has errors", run: cmdFsck},
		"fault":         {usage: "fault [lab|rack|PORT|MACHINE] SPEC... (vnet faults: loss=10% delay=50ms ...; none clears)", run: cmdFault},
		"cut":           {usage: "cut [lab|rack|PORT|MACHINE] DUR", run: cmdCut},
		"power-cut":     {usage: "power-cut MACHINE [-at PHASE]", run: cmdPowerCut},
		"slow-http":     {usage: "slow-http RATE (bytes/s, e.g. 200K, 1M; 0 removes the limit)", run: cmdSlowHTTP},
	}
}

// parseArgs parses flags anywhere among args (flags may follow positional arguments, as
// in `machine m1 -firmware uefi`) and returns the positional arguments. A usage error
// fails the script with the command's usage.
func parseArgs(ts *testscript.TestScript, fs *flag.FlagSet, usage string, args []string) []string {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			ts.Fatalf("%s: %v\nusage: %s", fs.Name(), err, usage)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// wantArgs fails unless n is within [min, max] (max < 0: no limit).
func wantArgs(ts *testscript.TestScript, name, usage string, args []string, min, max int) {
	if len(args) < min || (max >= 0 && len(args) > max) {
		ts.Fatalf("%s: %d argument(s) %q\nusage: %s", name, len(args), args, usage)
	}
}
