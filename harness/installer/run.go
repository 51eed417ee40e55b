package installer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/maasemu/maasemu/harness/installer/oauth"
	"github.com/maasemu/maasemu/trace"
)

// Messages curtin writes to stdout and the install log (install.py).
const (
	MsgStarted  = "curtin: Installation started. (%s)"
	MsgFinished = "curtin: Installation finished."
	MsgFailed   = "curtin: Installation failed with exception: %s"
)

// Options configure one `curtin install`.
type Options struct {
	// Configs are YAML documents merged in order over curtin's builtin config
	// (--config FILE... of curtin install).
	Configs []string
	// Args are the positional sources; each becomes sources: {"NN_cmdline": ...}.
	Args []string
	// Backend holds the storage. Required.
	Backend Backend
	// HTTPClient fetches sources and posts webhook events (nil: http.DefaultClient).
	HTTPClient *http.Client
	// Reporter observes every event in-process, besides the config's reporting handlers.
	Reporter Reporter
	// Log receives what curtin prints to stdout (stage output included); nil discards it.
	Log io.Writer
	// WorkDir is where the working directory (state/, scratch/, target/) is created;
	// empty means os.TempDir().
	WorkDir string
	// HostRoot stands for "/" for the installer's own files (install log, error tarfile,
	// post_files). Empty means the real root (the VM's ephemeral); a simulated machine
	// passes a directory of its own.
	HostRoot string
	// CurtinDir is a real curtin source tree (containing curtin/__init__.py) put on
	// PYTHONPATH for hooks that import curtin, as MAAS's pack does. Empty: python3-curtin
	// on the host is used when present.
	CurtinDir string
	// AgentPath is a maasemu-agent binary that provides `curtin in-target` to shell
	// commands and hooks; empty means this executable when it is the agent, else a shell
	// shim implementing in-target.
	AgentPath string
	// Intercept, when set, sees every stage command before it runs (argv for a list
	// command, shell for a string one). If it handles the command it returns handled and
	// the exit status; otherwise the command runs normally. A simulated machine uses it
	// for commands that must reach the region through its virtual NIC, e.g. MAAS's
	// `wget --no-proxy .../?op=netboot_off` late command.
	Intercept func(ctx context.Context, argv []string, shell string, env map[string]string, out io.Writer) (rc int, handled bool, err error)
	// Env adds variables to every stage command's environment (e.g. http_proxy for a
	// simulated machine whose region is reachable only through its virtual NIC).
	Env map[string]string
	// ProcCmdline is the kernel command line (for grub's carried-over parameters); empty
	// reads /proc/cmdline.
	ProcCmdline string
	// MemoryBytes sizes the swap file like curtin; 0 reads /proc/meminfo.
	MemoryBytes int64
	// UEFI says the machine booted with UEFI; nil checks /sys/firmware/efi.
	UEFI *bool
	// Trace receives installer events (nil: dropped). Machine labels them.
	Trace   trace.Sink
	Machine string
	// Logger for warnings (nil: discard).
	Logger *slog.Logger
	// Now is the clock for event timestamps (nil: time.Now).
	Now func() time.Time
}

// Result describes a finished install.
type Result struct {
	// Config is the merged configuration (sources included).
	Config map[string]any
	// Sources are the sanitized sources in sorted key order.
	Sources []Source
	// InstallLog is the host path of the install log.
	InstallLog string
	// PowerState is the config's power_state, for the caller to honour.
	PowerState map[string]any
	// HookRan lists the in-image hooks that ran (curtin-hooks, network-config, finalize).
	HookRan []string
}

// InstallError is a failed install: Message is curtin's exception text, ExitCode what
// `curtin install` exits with (3), Diagnosis a one-line explanation when one is known.
type InstallError struct {
	Message   string
	ExitCode  int
	Diagnosis string
	Err       error
}

func (e *InstallError) Error() string {
	s := fmt.Sprintf(MsgFailed, e.Message)
	if e.Diagnosis != "" {
		s += "\n" + e.Diagnosis
	}
	return s
}

func (e *InstallError) Unwrap() error { return e.Err }

// run is the state of one install.
type run struct {
	opts     Options
	reporter Reporter
	now      func() time.Time
	log      *slog.Logger
	out      io.Writer // stdout + install log
	logPath  string    // host path of the install log
	logMu    sync.Mutex
	logFile  *os.File
	wd       *workingDir
	hooksRan []string
	diag     string
	binDir   string
}

// Run performs `curtin install` with opts.
func Run(ctx context.Context, opts Options) (Result, error) {
	if opts.Backend == nil {
		return Result{}, errors.New("installer: Options.Backend is required")
	}
	r := &run{opts: opts, now: opts.Now, log: opts.Logger}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if opts.Log == nil {
		opts.Log = io.Discard
		r.opts.Log = io.Discard
	}
	cfg, err := MergeConfigs(opts.Configs)
	if err != nil {
		return Result{}, err
	}
	srcs := mapOf(cfg["sources"])
	if srcs == nil {
		srcs = map[string]any{}
		cfg["sources"] = srcs
	}
	for _, a := range opts.Args {
		s, err := SanitizeSource(a)
		if err != nil {
			return Result{}, err
		}
		srcs[fmt.Sprintf("%02d_cmdline", len(srcs))] = s.sourceMap()
	}
	// Reporting handlers from the config, plus the in-process observer.
	r.reporter = Reporters(r.configuredReporters(cfg), opts.Reporter, TraceReporter(opts.Trace, opts.Machine))
	res := Result{Config: cfg, PowerState: mapOf(cfg["power_state"])}
	res.Sources, _ = sortedSources(cfg)

	top := newStack(r.reporter, r.now, nil, "cmd-install", "curtin command install", "DEBUG")
	top.enter(ctx)
	err = r.install(ctx, cfg, top)
	res.InstallLog = r.logPath
	res.HookRan = r.hooksRan
	top.exit(ctx, err != nil)
	if r.logFile != nil {
		r.logFile.Close()
	}
	if err != nil {
		ie := &InstallError{Message: err.Error(), ExitCode: 3, Diagnosis: r.diag, Err: err}
		return res, ie
	}
	return res, nil
}

func (r *run) hostPath(p string) string {
	if r.opts.HostRoot == "" || p == "" {
		return p
	}
	return filepath.Join(r.opts.HostRoot, p)
}

func (r *run) install(ctx context.Context, cfg map[string]any, top *reportStack) (err error) {
	inst := mapOf(cfg["install"])
	if inst == nil {
		inst = map[string]any{}
		cfg["install"] = inst
	}
	logfile := strOf(inst["log_file"])
	errorTar := strOf(inst["error_tarfile"])
	var postFiles []string
	if pf, ok := inst["post_files"].([]any); ok {
		for _, p := range pf {
			postFiles = append(postFiles, strOf(p))
		}
	} else {
		postFiles = []string{logfile}
	}
	for _, p := range postFiles {
		top.postFiles = append(top.postFiles, postFile{path: p, host: r.hostPath(p)})
	}

	// The saved config goes into the target through write_files (extract stage).
	if dump, ok := inst["save_install_config"]; !ok || (dump != nil && dump != false && strOf(dump) != "") {
		path := SaveInstallConfig
		if s, ok := dump.(string); ok && s != "" {
			path = s
		}
		content, derr := DumpYAML(cfg)
		if derr != nil {
			return derr
		}
		wf := mapOf(cfg["write_files"])
		if wf == nil {
			wf = map[string]any{}
		}
		wf["curtin_install_cfg"] = map[string]any{"path": path, "permissions": "0400", "owner": "root:root", "content": content}
		cfg["write_files"] = wf
	}

	r.logPath = r.hostPath(logfile)
	if logfile != "" {
		if err := os.MkdirAll(filepath.Dir(r.logPath), 0o755); err == nil {
			flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
			if !storageBool(inst["log_file_append"]) {
				flags |= os.O_TRUNC
			}
			if f, err := os.OpenFile(r.logPath, flags, 0o644); err == nil {
				r.logFile = f
			}
		}
	}
	r.out = writerFunc(func(p []byte) (int, error) {
		r.logMu.Lock()
		defer r.logMu.Unlock()
		_, _ = r.opts.Log.Write(p)
		if r.logFile != nil {
			_, _ = r.logFile.Write(p)
		}
		return len(p), nil
	})
	startMsg := fmt.Sprintf(MsgStarted, VersionString)
	fmt.Fprintln(r.out, startMsg)
	r.emit(trace.LevelInfo, startMsg, nil)

	defer func() {
		if err != nil {
			msg := fmt.Sprintf(MsgFailed, err.Error())
			r.logMu.Lock()
			if r.logFile != nil {
				fmt.Fprintln(r.logFile, msg)
			}
			r.logMu.Unlock()
			fmt.Fprintln(r.opts.Log, msg)
			if r.diag != "" {
				fmt.Fprintln(r.out, r.diag)
			}
			r.emit(trace.LevelError, msg, map[string]any{"diagnosis": r.diag})
			if errorTar != "" {
				if terr := createErrorTarfile(r.hostPath(errorTar), r.logPath, cfg); terr != nil {
					r.log.Warn("creating error tarfile", "path", errorTar, "err", terr)
				}
			}
		}
		r.finish(ctx, inst, logfile)
	}()

	wd, err := createWorkingDir(r.opts.WorkDir, cfg)
	if err != nil {
		return err
	}
	r.wd = wd
	if dd := ddImages(cfg); len(dd) > 1 {
		return errors.New("You may not use more than one disk image")
	}
	if err := r.setupBin(); err != nil {
		return err
	}
	env := r.baseEnv(cfg)
	stages, _ := cfg["stages"].([]any)
	for _, s := range stages {
		name := strOf(s)
		desc := stageDescriptions[name]
		if desc == "" {
			desc = "stage " + name
		}
		st := newStack(r.reporter, r.now, top, "stage-"+name, desc, "INFO")
		env["CURTIN_REPORTSTACK"] = st.fullname
		st.enter(ctx)
		r.emitKind(trace.KindMachineStep, trace.LevelInfo, "curtin stage "+name+": "+desc, map[string]any{"step": "curtin/stage-" + name})
		serr := r.runStage(ctx, name, mapOf(cfg[name+"_commands"]), env, st)
		st.exit(ctx, serr != nil)
		if serr != nil {
			return serr
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	fmt.Fprintln(r.out, MsgFinished)
	r.emit(trace.LevelInfo, MsgFinished, nil)
	return nil
}

// finish copies the log into the target, unmounts and removes the working directory.
func (r *run) finish(ctx context.Context, inst map[string]any, logfile string) {
	if r.wd == nil {
		return
	}
	save, ok := inst["save_install_log"]
	dst := SaveInstallLog
	if ok {
		dst = strOf(save)
		if save == false || save == nil {
			dst = ""
		}
	}
	if dst != "" && logfile != "" {
		r.logMu.Lock()
		if r.logFile != nil {
			_ = r.logFile.Sync()
		}
		r.logMu.Unlock()
		if b, err := os.ReadFile(r.logPath); err == nil {
			p := filepath.Join(r.wd.target, dst)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				_ = os.Remove(p)
				if err := os.WriteFile(p, b, 0o400); err != nil {
					r.log.Warn("copying install log to target", "err", err)
				}
			}
		} else {
			r.log.Warn(fmt.Sprintf("Cannot copy curtin install log \"%s\" to target.  file does not exist.", logfile))
		}
	}
	if strOf(inst["unmount"]) != "disabled" {
		if err := r.opts.Backend.Unmount(context.WithoutCancel(ctx), r.wd.target, r.out); err != nil {
			fmt.Fprintf(r.out, "unmounting target %s: %v\n", r.wd.target, err)
			r.log.Warn("unmount target", "err", err)
		}
		_ = os.RemoveAll(r.wd.top)
	}
}

// configuredReporters builds the config's reporting handlers (curtin's
// update_configuration): webhook handlers post, log/print ones write to the log.
func (r *run) configuredReporters(cfg map[string]any) Reporter {
	rep := mapOf(cfg["reporting"])
	names := make([]string, 0, len(rep))
	for k := range rep {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []Reporter
	for _, n := range names {
		h := mapOf(rep[n])
		if h == nil {
			continue
		}
		switch strOf(h["type"]) {
		case "webhook":
			ep := strOf(h["endpoint"])
			if ep == "" {
				r.log.Warn("reporting handler has no endpoint", "name", n)
				continue
			}
			creds := oauth.Credentials{ConsumerKey: strOf(h["consumer_key"]), ConsumerSecret: strOf(h["consumer_secret"]), TokenKey: strOf(h["token_key"]), TokenSecret: strOf(h["token_secret"])}
			out = append(out, NewWebhookReporter(ep, creds, r.opts.HTTPClient, "Curtin/"+Version, r.log))
		case "print":
			out = append(out, ReporterFunc(func(_ context.Context, e Event) {
				if r.out != nil {
					fmt.Fprintln(r.out, eventString(e))
				}
			}))
		}
	}
	return Reporters(out...)
}

func eventString(e Event) string {
	if e.EventType == EventFinish {
		return fmt.Sprintf("%s: %s: %s: %s", e.EventType, e.Name, e.Result, e.Description)
	}
	return fmt.Sprintf("%s: %s: %s", e.EventType, e.Name, e.Description)
}

// emit sends curtin's own messages (started, finished, failed) as console lines of the
// machine: they are what curtin prints.
func (r *run) emit(level, msg string, attrs map[string]any) {
	r.emitKind(trace.KindConsoleLine, level, msg, attrs)
}

func (r *run) emitKind(kind, level, msg string, attrs map[string]any) {
	if r.opts.Trace == nil {
		return
	}
	r.opts.Trace.Emit(trace.Event{Source: trace.SourceInstaller, Kind: kind, Level: level, Machine: r.opts.Machine, Message: msg, Attrs: attrs})
}

// workingDir is install.py's WorkingDir.
type workingDir struct {
	top, target, scratch, state                      string
	fstab, interfaces, netconf, netstate, configFile string
}

func createWorkingDir(parent string, cfg map[string]any) (*workingDir, error) {
	if parent != "" {
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return nil, err
		}
	}
	top, err := os.MkdirTemp(parent, "tmp")
	if err != nil {
		return nil, fmt.Errorf("creating working directory: %w", err)
	}
	w := &workingDir{top: top, state: filepath.Join(top, "state"), scratch: filepath.Join(top, "scratch")}
	for _, d := range []string{w.state, w.scratch} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	w.target = strOf(mapOf(cfg["install"])["target"])
	if w.target == "" {
		w.target = filepath.Join(top, "target")
	}
	if err := os.MkdirAll(w.target, 0o755); err != nil {
		return nil, fmt.Errorf("Unable to create target directory '%s': %v", w.target, err)
	}
	if ents, _ := os.ReadDir(w.target); len(ents) != 0 {
		return nil, fmt.Errorf("Provided target dir '%s' was not empty.", w.target)
	}
	w.netconf = filepath.Join(w.state, "network_config")
	w.netstate = filepath.Join(w.state, "network_state")
	w.interfaces = filepath.Join(w.state, "interfaces")
	w.configFile = filepath.Join(w.state, "config")
	w.fstab = filepath.Join(w.state, "fstab")
	b, err := dumpJSON(cfg)
	if err != nil {
		return nil, fmt.Errorf("writing config: %w", err)
	}
	if err := os.WriteFile(w.configFile, b, 0o644); err != nil {
		return nil, err
	}
	for _, f := range []string{w.fstab, w.netconf, w.netstate} {
		fh, err := os.OpenFile(f, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		fh.Close()
	}
	return w, nil
}

// env is WorkingDir.env().
func (w *workingDir) env() map[string]string {
	return map[string]string{
		"WORKING_DIR":           w.scratch,
		"OUTPUT_FSTAB":          w.fstab,
		"OUTPUT_INTERFACES":     w.interfaces,
		"OUTPUT_NETWORK_CONFIG": w.netconf,
		"OUTPUT_NETWORK_STATE":  w.netstate,
		"TARGET_MOUNT_POINT":    w.target,
		"CONFIG":                w.configFile,
	}
}

// baseEnv is os.environ plus the working dir variables, curtin's PATH additions and
// PYTHONPATH for a real curtin.
func (r *run) baseEnv(cfg map[string]any) map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	for k, v := range r.wd.env() {
		env[k] = v
	}
	if env["PATH"] == "" {
		env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	env["PATH"] = r.binDir + ":" + env["PATH"]
	env["CURTIN_STACKTRACE"] = "0"
	if v, ok := cfg["showtrace"]; ok && storageBool(v) {
		env["CURTIN_STACKTRACE"] = "1"
	}
	env["CURTIN_VERBOSITY"] = "0"
	if v, ok := cfg["verbosity"]; ok {
		env["CURTIN_VERBOSITY"] = strOf(v)
	}
	if cd := r.curtinDir(); cd != "" {
		if p := env["PYTHONPATH"]; p != "" {
			env["PYTHONPATH"] = cd + ":" + p
		} else {
			env["PYTHONPATH"] = cd
		}
	}
	for k, v := range r.opts.Env {
		env[k] = v
	}
	if px := mapOf(cfg["proxy"]); px != nil {
		for _, k := range []string{"http_proxy", "https_proxy", "no_proxy"} {
			if v := strOf(px[k]); v != "" {
				env[k] = v
			}
		}
	}
	return env
}

// curtinDir returns the tree to put on PYTHONPATH for `import curtin`, or "".
func (r *run) curtinDir() string {
	if r.opts.CurtinDir != "" {
		return r.opts.CurtinDir
	}
	for _, d := range []string{"/usr/lib/python3/dist-packages"} {
		if st, err := os.Stat(filepath.Join(d, "curtin", "__init__.py")); err == nil && st.Mode().IsRegular() {
			return "" // already importable by python3: nothing to add
		}
	}
	return ""
}

// curtinAvailable reports whether hooks can import a real curtin.
func (r *run) curtinAvailable() bool {
	if r.opts.CurtinDir != "" {
		_, err := os.Stat(filepath.Join(r.opts.CurtinDir, "curtin", "__init__.py"))
		return err == nil
	}
	_, err := os.Stat("/usr/lib/python3/dist-packages/curtin/__init__.py")
	return err == nil
}

// setupBin creates scratch/../bin with a `curtin` entry (helpers on PATH as curtin does).
func (r *run) setupBin() error {
	r.binDir = filepath.Join(r.wd.top, "bin")
	if err := os.MkdirAll(r.binDir, 0o755); err != nil {
		return err
	}
	dst := filepath.Join(r.binDir, "curtin")
	agent := r.opts.AgentPath
	if agent == "" {
		if exe, err := os.Executable(); err == nil && strings.HasPrefix(filepath.Base(exe), "maasemu-agent") {
			agent = exe
		}
	}
	if agent != "" {
		return os.Symlink(agent, dst)
	}
	return os.WriteFile(dst, []byte(curtinShim), 0o755)
}

// curtinShim implements `curtin in-target` for shell commands when no agent binary is at
// hand (simulated machines in a test binary); the agent's `curtin` entry is preferred.
const curtinShim = `#!/bin/sh
# maasemu curtin shim: only 'curtin in-target' is provided here.
sub="$1"
case "$sub" in
  in-target) shift ;;
  *) echo "maasemu: curtin $sub is not available in this environment; only 'curtin in-target' is (maasemu-agent provides more)" >&2; exit 2 ;;
esac
target="$TARGET_MOUNT_POINT"
while [ $# -gt 0 ]; do
  case "$1" in
    -t|--target) target="$2"; shift 2 ;;
    --target=*) target="${1#--target=}"; shift ;;
    -a|--allow-daemons|-i|--interactive|--capture) shift ;;
    --) shift; break ;;
    *) break ;;
  esac
done
if [ -z "$target" ]; then echo "Unable to find target.  Use --target or set TARGET_MOUNT_POINT" >&2; exit 2; fi
exec chroot "$target" "$@"
`

// runStage is install.py Stage.run.
func (r *run) runStage(ctx context.Context, stage string, cmds map[string]any, env map[string]string, st *reportStack) error {
	keys := make([]string, 0, len(cmds))
	for k := range cmds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c := cmds[k]
		var argv []string
		shell := ""
		switch x := c.(type) {
		case nil:
			continue
		case []any:
			if len(x) == 0 {
				continue
			}
			for _, a := range x {
				argv = append(argv, strOf(a))
			}
		case string:
			if x == "" {
				continue
			}
			shell = x
		default:
			return fmt.Errorf("%s_commands/%s: command must be a list or a string, got %T", stage, k, c)
		}
		desc := "running '" + strings.Join(argv, " ") + "'"
		if shell != "" {
			// Python's ' '.join(cmd) of a string joins its characters; curtin's event
			// description for a shell command is spelled that way.
			desc = "running '" + strings.Join(strings.Split(shell, ""), " ") + "'"
		}
		cs := newStack(r.reporter, r.now, st, k, desc, "DEBUG")
		cenv := copyEnv(env)
		cenv["CURTIN_REPORTSTACK"] = cs.fullname
		cs.enter(ctx)
		var out bytes.Buffer
		w := io.MultiWriter(r.out, &out)
		var rc int
		var err error
		handled := false
		if r.opts.Intercept != nil {
			rc, handled, err = r.opts.Intercept(ctx, argv, shell, cenv, w)
		}
		switch {
		case handled || err != nil:
		case shell == "" && argv[0] == "curtin":
			rc = r.curtinMain(ctx, cenv, argv[1:], w)
		default:
			rc, err = r.execCommand(ctx, cenv, argv, shell, w)
		}
		failed := err != nil || rc != 0
		cs.exit(ctx, failed)
		if err != nil {
			return &ProcessExecutionError{Cmd: cmdRepr(argv, shell), Reason: err.Error(), ExitCode: -1}
		}
		if rc != 0 {
			return &ProcessExecutionError{Cmd: cmdRepr(argv, shell), ExitCode: rc, Stdout: out.String()}
		}
	}
	return nil
}

func (r *run) execCommand(ctx context.Context, env map[string]string, argv []string, shell string, w io.Writer) (int, error) {
	var cmd *exec.Cmd
	if shell != "" {
		cmd = exec.CommandContext(ctx, "/bin/sh", "-c", shell)
	} else {
		path := argv[0]
		if !strings.Contains(path, "/") {
			lp, err := lookPath(path, env["PATH"])
			if err != nil {
				return -1, err
			}
			path = lp
		}
		cmd = exec.CommandContext(ctx, path, argv[1:]...)
		cmd.Args[0] = argv[0]
	}
	cmd.Env = envList(env)
	cmd.Stdout = w
	cmd.Stderr = w
	cmd.Dir = "/"
	setProcessGroup(cmd)
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, err
	}
	return 0, nil
}

// lookPath finds a program on a PATH string (the stage's PATH, not the agent's).
func lookPath(name, path string) (string, error) {
	for _, d := range filepath.SplitList(path) {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("[Errno 2] No such file or directory: '%s'", name)
}

func copyEnv(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func envList(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func storageBool(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case int:
		return x != 0
	case string:
		switch x {
		case "0", "False", "false", "None", "none", "":
			return false
		}
	}
	return true
}
