// Command maasemu-agent is the installer inside the test ephemeral and the first-boot probe
// of the test images.
//
// It is multi-call: run as "curtin" it is curtin's command line (in-target for hooks and
// late commands), as "cloud-init" and "netplan" it is the first-boot probe that stands in
// for them in test images; otherwise the first argument picks a mode:
//
//	maasemu-agent ephemeral [--curtin DIR]          what cloud-init + curtin do in MAAS's ephemeral
//	maasemu-agent install --config FILE... SOURCE   curtin install (local runs and tests)
//	maasemu-agent sim-ephemeral ...                 a simulated machine's ephemeral (started by the sim driver)
//	maasemu-agent firstboot                          cloud-init's first boot (same as cloud-init init)
//	maasemu-agent curtin|cloud-init|netplan ARGS     the multi-call entries by name
//	maasemu-agent version
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Main runs the agent with argv (argv[0] included) and returns the exit status.
func Main(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	name := filepath.Base(argv[0])
	args := argv[1:]
	switch name {
	case "curtin":
		return curtinMain(ctx, args, stdout, stderr)
	case "cloud-init":
		return cloudInitMain(ctx, args, stdout, stderr)
	case "netplan":
		return netplanMain(ctx, args, stdout, stderr)
	}
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "ephemeral":
		return ephemeralMain(ctx, args[1:], stdout, stderr)
	case "install":
		return installMain(ctx, args[1:], stdout, stderr)
	case "sim-ephemeral":
		return simEphemeralMain(ctx, args[1:], stdout, stderr)
	case "firstboot":
		return cloudInitMain(ctx, []string{"init"}, stdout, stderr)
	case "curtin":
		return curtinMain(ctx, args[1:], stdout, stderr)
	case "cloud-init":
		return cloudInitMain(ctx, args[1:], stdout, stderr)
	case "netplan":
		return netplanMain(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "maasemu-agent", version)
		return 0
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "maasemu-agent: unknown mode %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, strings.TrimLeft(`
usage: maasemu-agent MODE [flags] [args]

modes:
  ephemeral [--curtin DIR]            fetch the preseed named on /proc/cmdline, read the MAAS
                                      datasource, install with curtin's semantics, reboot
  install --config FILE... SOURCE...  curtin install onto this machine's disks (or --image-disk)
  firstboot                           first boot of an installed test image (cloud-init init)
  curtin ARGS                         curtin's command line (in-target); also as argv[0] "curtin"
  cloud-init ARGS                     the first-boot probe; also as argv[0] "cloud-init"
  netplan ARGS                        netplan info of the probe; also as argv[0] "netplan"
  version
`, "\n"))
}
