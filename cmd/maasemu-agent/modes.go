package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"

	"github.com/maasemu/maasemu/harness/installer"
	"github.com/maasemu/maasemu/harness/installer/blockdev"
	"github.com/maasemu/maasemu/harness/installer/ephemeral"
	"github.com/maasemu/maasemu/harness/installer/imagedisk"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func logger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// curtinMain is the "curtin" entry: in-target for hooks and late commands, and the other
// subcommands curtin install runs (with this machine's block devices).
func curtinMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "version") {
		fmt.Fprintf(stdout, "%s (maasemu-agent %s)\n", installer.VersionString, version)
		return 0
	}
	if len(args) > 0 && args[0] == "features" {
		for _, f := range []string{"CENTOS_APPLY_NETWORK_CONFIG", "NETWORK_CONFIG_V1", "NETWORK_CONFIG_V2", "REPORTING_EVENTS_WEBHOOK", "STORAGE_CONFIG_V1", "HAS_VERSION_MODULE"} {
			fmt.Fprintln(stdout, f)
		}
		return 0
	}
	return installer.RunCommand(ctx, args, installer.CommandOptions{Out: stdout, Backend: blockdev.New(), Logger: logger(stderr)})
}

// imageDisks parses --image-disk PATH[,name=/dev/vda][,serial=S][,wwn=W][,alias=P]...
func imageDisks(specs []string) ([]imagedisk.Disk, error) {
	var out []imagedisk.Disk
	for _, s := range specs {
		parts := strings.Split(s, ",")
		d := imagedisk.Disk{Path: parts[0]}
		for _, p := range parts[1:] {
			k, v, ok := strings.Cut(p, "=")
			switch {
			case ok && k == "name":
				d.Name = v
			case ok && k == "serial":
				d.Serial = v
			case ok && k == "wwn":
				d.WWN = v
			case ok && k == "alias":
				d.Aliases = append(d.Aliases, v)
			default:
				return nil, fmt.Errorf("--image-disk %q: %q is not name=, serial=, wwn= or alias=", s, p)
			}
		}
		out = append(out, d)
	}
	return out, nil
}

func installMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var configs, disks, images multi
	fs.Var(&configs, "config", "curtin configuration `FILE` (repeatable, merged in order)")
	fs.Var(&configs, "c", "same as --config")
	fs.Var(&disks, "disk", "install only on this block `DEVICE` (repeatable)")
	fs.Var(&images, "image-disk", "install into a disk-image file: `PATH[,name=/dev/vda][,serial=S]` (repeatable)")
	curtinDir := fs.String("curtin", "", "a real curtin source `DIR` for hooks that import curtin")
	workDir := fs.String("workdir", "", "parent `DIR` of curtin's working directory")
	hostRoot := fs.String("host-root", "", "`DIR` standing for / for the install log and error tarfile")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 && len(configs) == 0 {
		fmt.Fprintln(stderr, "maasemu-agent install: give --config FILE... and the SOURCE (e.g. dd-gz:http://.../root-dd.gz)")
		return 2
	}
	var docs []string
	for _, c := range configs {
		b, err := os.ReadFile(c)
		if err != nil {
			fmt.Fprintf(stderr, "maasemu-agent install: --config %s: %v\n", c, err)
			return 2
		}
		docs = append(docs, string(b))
	}
	var be installer.Backend
	if len(images) > 0 {
		ds, err := imageDisks(images)
		if err == nil {
			be, err = imagedisk.New(ds...)
		}
		if err != nil {
			fmt.Fprintf(stderr, "maasemu-agent install: %v\n", err)
			return 2
		}
	} else {
		b := blockdev.New()
		b.Disks = disks
		be = b
	}
	exe, _ := os.Executable()
	_, err := installer.Run(ctx, installer.Options{
		Configs: docs, Args: fs.Args(), Backend: be, Log: stdout, WorkDir: *workDir, HostRoot: *hostRoot,
		CurtinDir: *curtinDir, AgentPath: exe, Logger: logger(stderr),
	})
	return exitFor(err, stderr)
}

// exitFor prints an install error as curtin's main does and returns its exit status.
func exitFor(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ie *installer.InstallError
	if errors.As(err, &ie) {
		fmt.Fprintf(stderr, "%s\n", ie.Message)
		if ie.Diagnosis != "" {
			fmt.Fprintln(stderr, ie.Diagnosis)
		}
		return ie.ExitCode
	}
	fmt.Fprintf(stderr, "maasemu-agent: %v\n", err)
	return 1
}

func ephemeralMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ephemeral", flag.ContinueOnError)
	fs.SetOutput(stderr)
	curtinDir := fs.String("curtin", "", "a real curtin source `DIR` for hooks that import curtin")
	cmdline := fs.String("cmdline", "", "kernel command line to use instead of /proc/cmdline")
	noPower := fs.Bool("no-power", false, "do not reboot or power off at the end")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	exe, _ := os.Executable()
	console := io.MultiWriter(stdout)
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil && os.Getpid() != 1 {
		defer f.Close()
		console = io.MultiWriter(stdout, f)
	}
	o := ephemeral.Options{
		Cmdline: *cmdline, Root: "/", Backend: blockdev.New(), Console: console, CurtinDir: *curtinDir,
		AgentPath: exe, Logger: logger(stderr),
	}
	if !*noPower {
		o.Power = power
	}
	res, err := ephemeral.Run(ctx, o)
	code := 0
	if err != nil {
		fmt.Fprintf(console, "maasemu-agent: %v\n", err)
		code = exitFor(err, stderr)
	}
	if o.Power != nil && os.Getpid() == 1 && (err != nil || res.PowerMode == "") {
		// As PID 1 there is nobody to return to (the kernel would panic): power off so
		// the harness sees the end.
		fmt.Fprintln(console, "maasemu-agent: powering off")
		_ = power(ctx, "poweroff")
	}
	return code
}

// power performs power_state's action.
func power(_ context.Context, mode string) error {
	syscall.Sync()
	cmd := syscall.LINUX_REBOOT_CMD_RESTART
	switch mode {
	case "poweroff":
		cmd = syscall.LINUX_REBOOT_CMD_POWER_OFF
	case "halt":
		cmd = syscall.LINUX_REBOOT_CMD_HALT
	}
	return syscall.Reboot(cmd)
}
