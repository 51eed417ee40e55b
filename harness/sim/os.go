package sim

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/maasemu/maasemu/harness/installer/ephemeral"
	"github.com/maasemu/maasemu/harness/installer/firstboot"
	"github.com/maasemu/maasemu/harness/installer/imagedisk"
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
	eroot, err := os.MkdirTemp(m.dir, "ephemeral-")
	if err != nil {
		con.say("sim: %v", err)
		return bootIdle
	}
	defer os.RemoveAll(eroot)
	var disks []imagedisk.Disk
	for i, p := range m.disks {
		disks = append(disks, imagedisk.Disk{Path: p, Serial: m.spec.Disks[i].Serial})
	}
	backend, err := imagedisk.New(disks...)
	if err != nil {
		con.say("sim: %v", err)
		return bootIdle
	}
	uefi := m.spec.Firmware == machine.UEFI
	var mode string
	res, err := ephemeral.Run(ctx, ephemeral.Options{
		Cmdline:    act.Cmdline,
		Root:       eroot,
		HTTPClient: fw.http,
		Backend:    backend,
		Console:    con,
		WorkDir:    filepath.Join(eroot, "tmp"),
		CurtinDir:  m.d.cfg.CurtinDir,
		AgentPath:  m.d.cfg.AgentPath,
		UEFI:       &uefi,
		Logger:     m.d.log,
		Power: func(_ context.Context, pm string) error {
			mode = pm
			return nil
		},
	})
	if ctx.Err() != nil {
		return bootIdle
	}
	if err != nil {
		con.say("maasemu-agent: %v", err)
	}
	if res.PowerMode != "" {
		mode = res.PowerMode
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
	for _, ifc := range ifaces {
		if ifc.MatchMAC != "" && ifc.MatchMAC != mac {
			continue
		}
		if ifc.MatchMAC == "" && ifc.MatchName != "" && ifc.MatchName != "eth0" && ifc.MatchName != "ens3" && ifc.MatchName != "enp0s3" {
			continue
		}
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
		if n.fw.http == nil {
			n.fw.http = &http.Client{Transport: &http.Transport{DialContext: n.fw.nic.DialContext}}
		}
		return []firstboot.Link{link}, nil
	}
	return nil, fmt.Errorf("no interface in the network configuration matches this machine's NIC %s", mac)
}
