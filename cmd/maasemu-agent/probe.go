package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/maasemu/maasemu/harness/installer/cloudinit"
	"github.com/maasemu/maasemu/harness/installer/firstboot"
)

// cloudInitMain is the probe's "cloud-init": what MAAS's custom-image checks and the first
// boot need, every message naming the maasemu probe.
func cloudInitMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: cloud-init {--version,features,init,modules,status} (maasemu probe standing in for cloud-init)")
		return 2
	}
	switch args[0] {
	case "--version", "-v", "version":
		fmt.Fprintf(stdout, "/usr/bin/cloud-init %s\n", cloudinit.Version)
		return 0
	case "features":
		fmt.Fprintln(stdout, "NETWORK_CONFIG_V1")
		fmt.Fprintln(stdout, "NETWORK_CONFIG_V2")
		return 0
	case "status":
		fmt.Fprintln(stdout, "status: done (maasemu probe)")
		return 0
	case "init", "boot":
		for _, a := range args[1:] {
			if a == "--local" || a == "-l" {
				fmt.Fprintln(stdout, firstboot.Prefix+"init --local: nothing to do before the network stage")
				return 0
			}
		}
		_, err := firstboot.Run(ctx, firstboot.Options{Root: os.DirFS("/"), Network: firstboot.Netlink{}, Console: stdout, Logger: logger(stderr)})
		if err != nil {
			fmt.Fprintf(stderr, "%s%v\n", firstboot.Prefix, err)
			return 1
		}
		return 0
	case "modules", "single":
		fmt.Fprintf(stdout, "%scloud-init %s: the probe runs every stage in 'cloud-init init'\n", firstboot.Prefix, args[0])
		return 0
	}
	fmt.Fprintf(stderr, "%scloud-init %s is not implemented by the maasemu probe\n", firstboot.Prefix, args[0])
	return 2
}

// netplanMain is the probe's "netplan": `netplan info` answers MAAS's custom-image check.
func netplanMain(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "info" {
		fmt.Fprint(stdout, `netplan.io:
  website: "https://netplan.io/"
  maasemu-probe: "this is the maasemu probe standing in for netplan; it renders nothing"
  features:
    - dhcp-use-domains
    - ipv6-mtu
    - default-routes
`)
		return 0
	}
	switch args[0] {
	case "generate", "apply":
		fmt.Fprintf(stdout, "%snetplan %s: nothing to render (the probe configures the network itself at first boot)\n", firstboot.Prefix, args[0])
		return 0
	}
	fmt.Fprintf(stderr, "%snetplan %s is not implemented by the maasemu probe\n", firstboot.Prefix, args[0])
	return 2
}
