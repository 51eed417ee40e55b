package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/maasemu/maasemu/harness/installer/ephemeral"
	"github.com/maasemu/maasemu/harness/installer/imagedisk"
)

// Exit codes of sim-ephemeral that carry the power_state action to the sim driver.
const (
	exitSimReboot   = 40
	exitSimPoweroff = 41
	exitSimHalt     = 42
)

// simEphemeralMain is the ephemeral of a simulated machine: the same work as `ephemeral`,
// against disk-image files, in a mount namespace of its own (the sim driver starts it so)
// whose /dev holds no block device of the host, with the machine's network reached
// through the sim's proxy into its virtual NIC. Image code (curtin hooks, in-target
// commands) therefore cannot touch the host's disks.
func simEphemeralMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sim-ephemeral", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cmdline := fs.String("cmdline", "", "the kernel command line the bootloader gave")
	proxy := fs.String("proxy", "", "the `URL` of the machine's HTTP proxy into its virtual NIC")
	root := fs.String("root", "", "the ephemeral's root `DIR` (etc/cloud, tmp)")
	curtinDir := fs.String("curtin", "", "a real curtin source `DIR` for hooks that import curtin")
	uefi := fs.Bool("uefi", false, "the machine booted with UEFI")
	var disks multi
	fs.Var(&disks, "image-disk", "a disk image `PATH[,name=/dev/vda][,serial=S]` (repeat)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cmdline == "" || *proxy == "" || *root == "" || len(disks) == 0 {
		fmt.Fprintln(stderr, "maasemu-agent sim-ephemeral: --cmdline, --proxy, --root and --image-disk are required")
		return 2
	}
	pu, err := url.Parse(*proxy)
	if err != nil || pu.Scheme != "http" {
		fmt.Fprintf(stderr, "maasemu-agent sim-ephemeral: --proxy %q: want an http:// URL\n", *proxy)
		return 2
	}
	if err := sandboxDev(*uefi); err != nil {
		fmt.Fprintf(stderr, "maasemu-agent sim-ephemeral: refusing to run image code without a sandbox: %v\n", err)
		return 1
	}
	dl, err := imageDisks(disks)
	if err != nil {
		fmt.Fprintf(stderr, "maasemu-agent: %v\n", err)
		return 2
	}
	if err := mountEphemeralRoot(*root, dl); err != nil {
		fmt.Fprintf(stderr, "maasemu-agent sim-ephemeral: %v\n", err)
		return 1
	}
	backend, err := imagedisk.New(dl...)
	if err != nil {
		fmt.Fprintf(stderr, "maasemu-agent: %v\n", err)
		return 1
	}
	exe, _ := os.Executable()
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	var mode string
	o := ephemeral.Options{
		Cmdline: *cmdline, Root: *root, HTTPClient: hc, Backend: backend, Console: stdout,
		WorkDir: filepath.Join(*root, "tmp"), CurtinDir: *curtinDir, AgentPath: exe, UEFI: uefi,
		Logger: logger(stderr),
		Env:    map[string]string{"http_proxy": *proxy, "HTTP_PROXY": *proxy, "no_proxy": "", "MAASEMU_SIM": "1"},
		Intercept: func(ctx context.Context, argv []string, shell string, env map[string]string, out io.Writer) (int, bool, error) {
			return simWget(ctx, argv, *proxy, env, out)
		},
		Power: func(_ context.Context, m string) error { mode = m; return nil },
	}
	res, err := ephemeral.Run(ctx, o)
	if err != nil {
		fmt.Fprintf(stdout, "maasemu-agent: %v\n", err)
	}
	if res.PowerMode != "" {
		mode = res.PowerMode
	}
	switch mode {
	case "reboot":
		return exitSimReboot
	case "poweroff":
		return exitSimPoweroff
	case "halt":
		return exitSimHalt
	}
	if err != nil {
		return exitFor(err, stderr)
	}
	return 0
}

// simWget runs MAAS's late command `wget --no-proxy URL --post-data op=netboot_off ...`
// through the machine's proxy: on a simulated machine the proxy is its network, so
// --no-proxy (which means "straight to the rack" on a real machine) must not bypass it.
func simWget(ctx context.Context, argv []string, proxy string, env map[string]string, out io.Writer) (int, bool, error) {
	if len(argv) == 0 || filepath.Base(argv[0]) != "wget" {
		return 0, false, nil
	}
	args := []string{"-e", "use_proxy=on", "-e", "http_proxy=" + proxy}
	for _, a := range argv[1:] {
		if a != "--no-proxy" {
			args = append(args, a)
		}
	}
	fmt.Fprintf(out, "maasemu sim: running %s through the machine's virtual NIC\n", strings.Join(argv, " "))
	cmd := exec.CommandContext(ctx, "wget", args...)
	var envl []string
	for k, v := range env {
		envl = append(envl, k+"="+v)
	}
	cmd.Env = envl
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), true, nil
	}
	if err != nil {
		return -1, true, err
	}
	return 0, true, nil
}

// sandboxDev gives this process (alone in its mount namespace) a /dev with only the
// character devices programs need: no disk of the host is reachable from image code.
func sandboxDev(uefi bool) error {
	self, err1 := os.Readlink("/proc/self/ns/mnt")
	parent, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
	if err1 != nil || err2 != nil {
		return fmt.Errorf("cannot read mount namespaces: %v %v", err1, err2)
	}
	if self == parent {
		return errors.New("not in a mount namespace of its own (the sim driver starts sim-ephemeral with CLONE_NEWNS)")
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	old, err := os.MkdirTemp("", "maasemu-hostdev-")
	if err != nil {
		return err
	}
	if err := unix.Mount("/dev", old, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("keeping the host's /dev: %w", err)
	}
	if err := unix.Mount("maasemu-sim-dev", "/dev", "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=1m"); err != nil {
		return fmt.Errorf("mounting a private /dev: %w", err)
	}
	for _, n := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		p := filepath.Join("/dev", n)
		if err := os.WriteFile(p, nil, 0o666); err != nil {
			return err
		}
		if err := unix.Mount(filepath.Join(old, n), p, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding /dev/%s: %w", n, err)
		}
	}
	for link, to := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(to, filepath.Join("/dev", link)); err != nil {
			return err
		}
	}
	if err := os.Mkdir("/dev/shm", 0o1777); err != nil {
		return err
	}
	// Scripts tell the firmware by /sys/firmware/efi: show the machine's, not the host's.
	if err := unix.Mount("maasemu-sim-firmware", "/sys/firmware", "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
		return fmt.Errorf("mounting /sys/firmware: %w", err)
	}
	if uefi {
		if err := os.MkdirAll("/sys/firmware/efi/efivars", 0o755); err != nil {
			return err
		}
	}
	if err := unix.Unmount(old, unix.MNT_DETACH); err != nil {
		return err
	}
	_ = os.Remove(old)
	return nil
}

// mountEphemeralRoot puts the ephemeral's root (its /tmp, and the install target staged
// there) on a tmpfs of this mount namespace, as MAAS's ephemeral runs from RAM: files
// staged and deleted by the hundred per install are never written to the host's disk, and
// the tmpfs vanishes with the namespace. Its size is the machine's disks plus 64 MiB, so
// an image too big for the disks fails here as it would on them.
func mountEphemeralRoot(root string, disks []imagedisk.Disk) error {
	size := int64(64 << 20)
	for _, d := range disks {
		st, err := os.Stat(d.Path)
		if err != nil {
			return err
		}
		size += st.Size()
	}
	if err := unix.Mount("maasemu-ephemeral", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("mode=0755,size=%d", size)); err != nil {
		return fmt.Errorf("mounting a tmpfs for the ephemeral's root %s: %w", root, err)
	}
	return nil
}
