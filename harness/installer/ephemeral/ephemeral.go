// Package ephemeral does what cloud-init and curtin do in MAAS's ephemeral environment:
// fetch the preseed named on the kernel command line, read the MAAS datasource, report
// cloud-init's stages, fetch and run the curtin install, and honour power_state.
package ephemeral

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/maasemu/maasemu/harness/installer"
	"github.com/maasemu/maasemu/harness/installer/cloudinit"
	"github.com/maasemu/maasemu/harness/installer/oauth"
	"github.com/maasemu/maasemu/trace"
)

// Options configure one ephemeral boot.
type Options struct {
	// Cmdline is the kernel command line; empty reads /proc/cmdline.
	Cmdline string
	// Root is where /etc/cloud and /tmp are (the machine's root: "/"; tests use a
	// directory).
	Root string
	// HTTPClient reaches the rack (nil: http.DefaultClient).
	HTTPClient *http.Client
	// Backend holds the storage for the install. Required.
	Backend installer.Backend
	// Console receives what the agent prints (stage output included).
	Console io.Writer
	// WorkDir, HostRoot, CurtinDir, AgentPath and UEFI are passed to installer.Run;
	// HostRoot defaults to Root.
	WorkDir, HostRoot, CurtinDir, AgentPath string
	UEFI                                    *bool
	// Env and Intercept are passed to installer.Run: a simulated machine uses them so that
	// stage commands reach the region through its virtual NIC.
	Env       map[string]string
	Intercept func(ctx context.Context, argv []string, shell string, env map[string]string, out io.Writer) (rc int, handled bool, err error)
	// Reporter observes every event (cloud-init's and curtin's) in-process.
	Reporter installer.Reporter
	// Power performs power_state ("reboot", "poweroff", "halt"); nil does nothing.
	Power func(ctx context.Context, mode string) error
	// Trace receives the installer's and cloud-init's events (nil: dropped); Machine
	// labels them.
	Trace   trace.Sink
	Machine string
	// Logger for warnings (nil: discard).
	Logger *slog.Logger
	Now    func() time.Time
}

// Result describes the boot.
type Result struct {
	Cmdline   cloudinit.Cmdline
	Config    map[string]any // merged cloud-init config
	MetaData  cloudinit.MetaData
	Install   installer.Result
	PowerMode string // the power_state action taken, "" when none
}

// InstallerConfig is the body of the project route cloudinit.InstallerPath.
type InstallerConfig struct {
	Configs []string `json:"configs"`
	Args    []string `json:"args"`
}

// Run performs the ephemeral boot's work. The install error, if any, is returned after
// cloud-init's modules-final finish event has been sent with result FAIL.
func Run(ctx context.Context, o Options) (Result, error) {
	var res Result
	if o.Backend == nil {
		return res, errors.New("ephemeral: Options.Backend is required")
	}
	if o.Root == "" {
		o.Root = "/"
	}
	if o.HostRoot == "" && o.Root != "/" {
		o.HostRoot = o.Root
	}
	if o.Console == nil {
		o.Console = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	say := func(format string, args ...any) { fmt.Fprintf(o.Console, "maasemu-agent: "+format+"\n", args...) }
	raw := o.Cmdline
	if raw == "" {
		b, err := os.ReadFile("/proc/cmdline")
		if err != nil {
			return res, fmt.Errorf("reading /proc/cmdline: %w", err)
		}
		raw = string(b)
	}
	cl, err := cloudinit.ParseCmdline(raw)
	if err != nil {
		return res, err
	}
	res.Cmdline = cl
	if cl.CloudConfigURL == "" {
		return res, errors.New("kernel command line has no cloud-config-url=: nothing tells this machine what to do (MAAS puts ?op=get_preseed there)")
	}
	// attempt_cmdline_url: the body must start with #cloud-config.
	body, err := oauth.NewClient(o.HTTPClient, oauth.Credentials{}).Get(ctx, cl.CloudConfigURL)
	if err != nil {
		return res, fmt.Errorf("cloud-config-url: %w", err)
	}
	if !strings.HasPrefix(string(body), "#cloud-config") {
		return res, fmt.Errorf("contents of '%s' did not start with #cloud-config", cl.CloudConfigURL)
	}
	cfgPath := filepath.Join(o.Root, "etc/cloud/cloud.cfg.d/91_kernel_cmdline_url.cfg")
	if err := os.MkdirAll(filepath.Dir(cfgPath), 0o755); err != nil {
		return res, err
	}
	if err := os.WriteFile(cfgPath, body, 0o600); err != nil {
		return res, err
	}
	if err := os.Chmod(cfgPath, 0o600); err != nil {
		return res, err
	}
	say("wrote /etc/cloud/cloud.cfg.d/91_kernel_cmdline_url.cfg from cloud-config-url=%s", cl.CloudConfigURL)
	cfg, _, err := cloudinit.LoadConfig(os.DirFS(o.Root))
	if err != nil {
		return res, err
	}
	if cl.CC != nil {
		cloudinit.Merge(cfg, cl.CC)
	}
	res.Config = cfg
	rep := installer.Reporters(cloudinit.Reporters(cfg, o.HTTPClient, o.Logger), o.Reporter, installer.TraceReporter(o.Trace, o.Machine))

	local := cloudinit.NewStack(rep, o.Now, nil, "init-local", "searching for local datasources")
	local.Start(ctx)
	local.Finish(ctx, installer.ResultSuccess)

	network := cloudinit.NewStack(rep, o.Now, nil, "init-network", "searching for network datasources")
	network.Start(ctx)
	search := cloudinit.NewStack(rep, o.Now, network, "search-MAAS", "searching for network data from DataSourceMAAS")
	search.Start(ctx)
	ds, err := cloudinit.MAASDatasource(cfg)
	var md cloudinit.MetaData
	var client *oauth.Client
	if err == nil {
		client = oauth.NewClient(o.HTTPClient, ds.Creds)
		md, err = cloudinit.ReadMetadata(ctx, client, ds.MetadataURL)
	}
	if err != nil {
		search.Message = "no network data found from DataSourceMAAS"
		search.Finish(ctx, installer.ResultSuccess)
		network.Finish(ctx, installer.ResultFail)
		return res, fmt.Errorf("MAAS datasource: %w", err)
	}
	res.MetaData = md
	search.Message = "found network data from DataSourceMAAS"
	search.Finish(ctx, installer.ResultSuccess)
	network.Finish(ctx, installer.ResultSuccess)
	say("MAAS datasource: instance-id %s, hostname %s", md.InstanceID, md.LocalHostname)

	mc := cloudinit.NewStack(rep, o.Now, nil, "modules-config", "running modules for config")
	mc.Start(ctx)
	mc.Finish(ctx, installer.ResultSuccess)

	final := cloudinit.NewStack(rep, o.Now, nil, "modules-final", "running modules for final")
	final.Start(ctx)
	scripts := cloudinit.NewStack(rep, o.Now, final, "config-scripts-user", "running config-scripts-user with frequency once-per-instance")
	scripts.Start(ctx)
	ir, ierr := install(ctx, o, client, ds, rep)
	res.Install = ir
	if ierr != nil {
		scripts.Finish(ctx, installer.ResultFail)
		final.Finish(ctx, installer.ResultFail)
		return res, ierr
	}
	scripts.Finish(ctx, installer.ResultSuccess)
	ps := cloudinit.NewStack(rep, o.Now, final, "config-power_state_change", "running config-power_state_change with frequency once-per-instance")
	ps.Start(ctx)
	mode, perr := powerState(ctx, o, cfg)
	res.PowerMode = mode
	if perr != nil {
		ps.Finish(ctx, installer.ResultWarn)
	} else {
		ps.Finish(ctx, installer.ResultSuccess)
	}
	// This finish is what tells MAAS netboot finished.
	final.Finish(ctx, installer.ResultSuccess)
	if mode != "" && o.Power != nil {
		say("power_state: %s", mode)
		if err := o.Power(ctx, mode); err != nil {
			return res, fmt.Errorf("power_state %s: %w", mode, err)
		}
	}
	return res, perr
}

// install fetches the curtin configuration and runs curtin install.
func install(ctx context.Context, o Options, client *oauth.Client, ds cloudinit.Datasource, rep installer.Reporter) (installer.Result, error) {
	u := strings.TrimSuffix(ds.MetadataURL, "/") + "/" + cloudinit.InstallerPath
	b, err := client.Get(ctx, u)
	if err != nil {
		return installer.Result{}, fmt.Errorf("fetching the curtin configuration: %w", err)
	}
	var ic InstallerConfig
	if err := json.Unmarshal(b, &ic); err != nil {
		return installer.Result{}, fmt.Errorf("curtin configuration from %s is not JSON {\"configs\": [...], \"args\": [...]}: %w", u, err)
	}
	if len(ic.Args) == 0 {
		return installer.Result{}, fmt.Errorf("curtin configuration from %s has no install source in \"args\"", u)
	}
	fmt.Fprintf(o.Console, "maasemu-agent: curtin install with %d config documents, source %s\n", len(ic.Configs), strings.Join(ic.Args, " "))
	cmdline := o.Cmdline
	return installer.Run(ctx, installer.Options{
		Configs: ic.Configs, Args: ic.Args, Backend: o.Backend, HTTPClient: o.HTTPClient,
		Reporter: o.Reporter, Log: o.Console, WorkDir: o.WorkDir, HostRoot: o.HostRoot,
		CurtinDir: o.CurtinDir, AgentPath: o.AgentPath, UEFI: o.UEFI, ProcCmdline: cmdline,
		Logger: o.Logger, Now: o.Now, Trace: o.Trace, Machine: o.Machine, Env: o.Env, Intercept: o.Intercept,
	})
}

// powerState is cloud-init's power_state_change: the mode when the condition holds.
func powerState(ctx context.Context, o Options, cfg map[string]any) (string, error) {
	ps, _ := cfg["power_state"].(map[string]any)
	if ps == nil {
		return "", nil
	}
	mode := fmt.Sprint(ps["mode"])
	switch mode {
	case "reboot", "poweroff", "halt":
	default:
		return "", fmt.Errorf("power_state: mode %q is not one of reboot, poweroff, halt", mode)
	}
	switch c := ps["condition"].(type) {
	case nil:
	case bool:
		if !c {
			return "", nil
		}
	case string:
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", c)
		cmd.Dir = o.Root
		if o.Root != "/" {
			// the condition names machine paths (test ! -e /tmp/block-reboot)
			cmd = exec.CommandContext(ctx, "/bin/sh", "-c", strings.ReplaceAll(c, " /", " "+strings.TrimSuffix(o.Root, "/")+"/"))
		}
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(o.Console, "maasemu-agent: power_state condition %q is false; not %sing\n", c, mode)
			return "", nil
		}
	case []any:
		var argv []string
		for _, a := range c {
			argv = append(argv, fmt.Sprint(a))
		}
		if len(argv) > 0 && exec.CommandContext(ctx, argv[0], argv[1:]...).Run() != nil {
			return "", nil
		}
	}
	return mode, nil
}

// ParsePreseed decodes a #cloud-config preseed (for callers that want its fields).
func ParsePreseed(b []byte) (map[string]any, error) {
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}
