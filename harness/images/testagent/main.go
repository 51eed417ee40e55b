// Command testagent stands in for maasemu-agent in image boot tests: it answers as
// cloud-init, netplan and the ephemeral agent, prints a marker on the console, and in
// ephemeral mode (where it is PID 1) powers the machine off.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Markers the boot tests look for.
const (
	MarkerEphemeral = "maasemu-testagent: ephemeral agent running"
	MarkerFirstBoot = "maasemu-testagent: cloud-init init"
)

func console(s string) {
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		fmt.Fprintln(f, s)
		f.Close()
		return
	}
	fmt.Println(s)
}

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if name == "maasemu-agent" && len(args) > 0 {
		name, args = args[0], args[1:]
	}
	switch name {
	case "cloud-init":
		if len(args) > 0 && args[0] == "--version" {
			fmt.Println("/usr/bin/cloud-init 22.4.2 (maasemu testagent)")
			return
		}
		console(MarkerFirstBoot)
	case "netplan":
		fmt.Println("netplan.io:\n  website: https://netplan.io/\n  features: [dhcp-use-domains]")
	case "ephemeral":
		hn, _ := os.Hostname()
		console(MarkerEphemeral + " on " + hn)
		if os.Getpid() == 1 {
			syscall.Sync()
			syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
		}
	default:
		fmt.Fprintf(os.Stderr, "testagent: unknown personality %q\n", name)
		os.Exit(2)
	}
}
