package sim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"

	"github.com/maasemu/maasemu/harness/installer/firstboot"
	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/harness/sim/bootscript"
	"github.com/maasemu/maasemu/harness/vnet"
)

// ephemeral is the booted ephemeral: the initramfs's DHCP and root fetch, then the agent's
// work (cloud-init and curtin) done in-process against the disk-image files.
func (m *Machine) ephemeral(ctx context.Context, fw *firmware, act bootscript.Action) nextStep {
	con := fw.con
	if err := fw.loadKernel(ctx, act); err != nil {
		con.say("%v", err)
		return bootRetry
	}
	con.say("sim: booting the ephemeral kernel: %s", act.Cmdline)
	fw.step("kernel", "ephemeral kernel started", map[string]any{"cmdline": act.Cmdline})
	if !strings.Contains(act.Cmdline, "BOOTIF=") {
		con.say("maasemu-initramfs: no BOOTIF= on the command line: cannot tell which NIC to bring up")
		return bootIdle
	}
	// The initramfs configures BOOTIF with DHCP before it can fetch its root.
	if err := resetNIC(fw.nic); err != nil {
		con.say("maasemu-initramfs: %v", err)
		return bootIdle
	}
	if _, err := fw.dhcp(ctx, false); err != nil {
		con.say("maasemu-initramfs: %v", err)
		return bootIdle
	}
	root := cmdParam(act.Cmdline, "root")
	if u, ok := strings.CutPrefix(root, "squash:"); ok {
		if err := fw.checkSquashfs(ctx, u); err != nil {
			con.say("maasemu-initramfs: cannot mount root %s: %v", root, err)
			con.say("Kernel panic - not syncing: VFS: Unable to mount root fs")
			return bootIdle
		}
		con.say("maasemu-initramfs: root %s is a squashfs (sim: its first 4 KiB were read, not the whole image)", u)
	} else if root != "" {
		con.say("sim: root=%s is not a squash: URL; the simulated ephemeral only knows MAAS's squashfs roots", root)
	}
	mode, err := m.runAgent(ctx, fw, act.Cmdline)
	if ctx.Err() != nil {
		return bootIdle
	}
	if err != nil {
		con.say("sim: %v", err)
	}
	switch mode {
	case "reboot":
		con.say("sim: rebooting")
		fw.step("reboot", "the ephemeral rebooted", nil)
		return bootAgain
	case "poweroff", "halt":
		con.say("sim: powering off")
		return bootHalt
	}
	return bootIdle
}

// runAgent runs the ephemeral's work: maasemu-agent sim-ephemeral, in a mount namespace
// of its own whose /dev holds none of the host's disks, reaching the rack through a proxy
// into this machine's virtual NIC. It returns the power_state action taken.
func (m *Machine) runAgent(ctx context.Context, fw *firmware, cmdline string) (string, error) {
	agent := m.d.cfg.AgentPath
	if agent == "" {
		return "", errors.New("no maasemu-agent binary to run the ephemeral (sim.Config.AgentPath)")
	}
	select {
	case m.d.installs <- struct{}{}:
	default:
		fw.con.say("sim: %d simulated installs are running; waiting for one to finish", cap(m.d.installs))
		select {
		case m.d.installs <- struct{}{}:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	defer func() { <-m.d.installs }()
	eroot, err := os.MkdirTemp(m.dir, "ephemeral-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(eroot)
	px, err := startProxy(fw.dial)
	if err != nil {
		return "", err
	}
	defer px.close()
	args := []string{"sim-ephemeral", "--cmdline", cmdline, "--proxy", px.URL(), "--root", eroot}
	for i, p := range m.disks {
		name, byID := machine.KernelName(m.spec.Disks[i], i)
		args = append(args, "--image-disk", fmt.Sprintf("%s,name=/dev/%s,serial=%s,alias=%s", p, name, m.spec.Disks[i].Serial, byID))
	}
	if m.spec.Firmware == machine.UEFI {
		args = append(args, "--uefi")
	}
	if m.d.cfg.CurtinDir != "" {
		args = append(args, "--curtin", m.d.cfg.CurtinDir)
	}
	cmd := exec.CommandContext(ctx, agent, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if uid := os.Getuid(); uid != 0 {
		// Without root, a user namespace makes the mount namespace possible.
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
		cmd.SysProcAttr.GidMappingsEnableSetgroups = false
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.Env = ephemeralEnv(os.Environ())
	cmd.Stdout, cmd.Stderr = fw.con, fw.con
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		switch ee.ExitCode() {
		case 40:
			return "reboot", nil
		case 41:
			return "poweroff", nil
		case 42:
			return "halt", nil
		}
		return "", fmt.Errorf("the ephemeral's agent exited %d", ee.ExitCode())
	}
	return "", err
}

// ephemeralPath is the PATH of MAAS's Ubuntu ephemeral, in which curtin and its hooks run.
const ephemeralPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ephemeralEnv is the host's environment as an ephemeral would see it: the ephemeral's
// PATH, and nothing of the host's Python set-up (pyenv shims, virtualenvs, PYTHONPATH),
// so that an image's hooks find the system's python3 as they would on a real machine.
func ephemeralEnv(host []string) []string {
	out := []string{"PATH=" + ephemeralPath}
	for _, kv := range host {
		k, _, _ := strings.Cut(kv, "=")
		if k == "PATH" || k == "VIRTUAL_ENV" || strings.HasPrefix(k, "PYENV") || strings.HasPrefix(k, "PYTHON") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func (fw *firmware) checkSquashfs(ctx context.Context, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Range", "bytes=0-4095")
	resp, err := fw.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent && resp.StatusCode != http.StatusOK {
		return &httpError{url: u, status: resp.StatusCode}
	}
	head := make([]byte, 4)
	if _, err := resp.Body.Read(head); err != nil {
		return err
	}
	if string(head) != "hsqs" {
		return fmt.Errorf("%s is not a squashfs (magic %q)", u, head)
	}
	return nil
}

func resetNIC(nic *vnet.Stack) error {
	for _, p := range nic.Addrs() {
		if err := nic.RemoveAddress(p.Addr()); err != nil {
			return err
		}
	}
	return nic.SetGateway(netip.Addr{})
}

// firstBoot is the installed system booting: the kernel finds its root, systemd mounts
// fstab, and cloud-init (the probe's model of it) talks to MAAS.
func (m *Machine) firstBoot(ctx context.Context, fw *firmware, d *disks, lin bootscript.Action) nextStep {
	con := fw.con
	if lin.Initrd == "" {
		con.say("sim: the installed GRUB loads no initrd; the kernel must find its root by itself")
	}
	con.say("sim: booting the installed kernel %s%s: %s", lin.Device, lin.Kernel, lin.Cmdline)
	fw.step("firstboot", "installed kernel started", map[string]any{"cmdline": lin.Cmdline})
	img, rootFS, err := d.rootFS(lin.Cmdline)
	if err != nil {
		con.say("maasemu sim: %v", err)
		con.say("Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)")
		return bootIdle
	}
	root := firstboot.DiskRoot{Image: img, FS: rootFS}
	// systemd waits for every fstab device that is not nofail.
	if fstab, err := root.ReadFile("etc/fstab"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(fstab))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 4 || strings.HasPrefix(f[0], "#") || f[1] == "none" || f[2] == "swap" || strings.Contains(f[3], "nofail") {
				continue
			}
			if strings.Contains(f[0], "=") || strings.HasPrefix(f[0], "/dev/") {
				if !d.device(f[0]) {
					con.say("[ TIME ] Timed out waiting for device %s.", strings.TrimPrefix(f[0], ""))
					con.say("[DEPEND] Dependency failed for %s.", f[1])
					con.say("You are in emergency mode. After logging in, type \"journalctl -xb\" to view system logs.")
					return bootIdle
				}
			}
		}
	}
	if err := resetNIC(fw.nic); err != nil {
		con.say("sim: %v", err)
		return bootIdle
	}
	// A new kernel: nothing of the firmware's connections survives.
	fw.http.CloseIdleConnections()
	fw.http = &http.Client{Transport: &http.Transport{DialContext: fw.dial}}
	_, err = firstboot.Run(ctx, firstboot.Options{
		Root:       root,
		HTTPClient: fw.http,
		Network:    &simNet{fw: fw},
		Console:    con,
		Logger:     m.d.log,
	})
	if err != nil && ctx.Err() == nil {
		con.say("maasemu-probe: %v", err)
	}
	return bootIdle
}

// simNet brings up the simulated NIC as the installed OS's network config says.
type simNet struct{ fw *firmware }

func (n *simNet) Up(ctx context.Context, nc firstboot.NetConfig) ([]firstboot.Link, error) {
	mac := strings.ToLower(n.fw.m.mac().String())
	if nc.Disabled {
		return nil, fmt.Errorf("network configuration is disabled (network: {config: disabled}): no interface comes up")
	}
	ifaces := nc.Ifaces
	if nc.Fallback {
		ifaces = []firstboot.Iface{{Name: "eth0", MatchMAC: mac, DHCP4: true}}
	}
	// The configured interfaces that carry this NIC's untagged traffic: the ethernet that
	// matches it, then the bonds and bridges built on those (which take their first
	// member's MAC). VLANs are tagged, which the simulated wire does not carry.
	on := map[string]bool{}
	var links []firstboot.Link
	for _, ifc := range ifaces {
		switch ifc.Kind {
		case firstboot.KindEthernet:
			if ifc.MatchMAC != "" && ifc.MatchMAC != mac {
				continue
			}
			if ifc.MatchMAC == "" && ifc.MatchName != "" && ifc.MatchName != "eth0" && ifc.MatchName != "ens3" && ifc.MatchName != "enp0s3" {
				continue
			}
		case firstboot.KindBond, firstboot.KindBridge:
			if !slices.ContainsFunc(ifc.Members, func(m string) bool { return on[m] }) {
				continue
			}
		default:
			continue
		}
		on[ifc.Name] = true
		link := firstboot.Link{Name: ifc.Name, MAC: mac}
		if ifc.DHCP4 {
			ack, err := n.fw.dhcp(ctx, false)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ifc.Name, err)
			}
			ones, _ := ack.SubnetMask().Size()
			ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
			link.Addresses = append(link.Addresses, netip.PrefixFrom(ip, ones))
		}
		for _, a := range ifc.Addresses {
			if err := n.fw.nic.AddAddress(a); err != nil {
				return nil, fmt.Errorf("%s: %w", ifc.Name, err)
			}
			link.Addresses = append(link.Addresses, a)
		}
		if ifc.Gateway4.IsValid() {
			if err := n.fw.nic.SetGateway(ifc.Gateway4); err != nil {
				return nil, err
			}
			link.Gateway = ifc.Gateway4
		}
		links = append(links, link)
	}
	if len(links) > 0 {
		return links, nil
	}
	return nil, fmt.Errorf("no interface in the network configuration matches this machine's NIC %s", mac)
}
