package installer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/maasemu/maasemu/harness/installer/storage"
)

// uefi reports whether the machine booted with UEFI.
func (r *run) uefi() bool {
	if r.opts.UEFI != nil {
		return *r.opts.UEFI
	}
	_, err := os.Stat("/sys/firmware/efi")
	return err == nil
}

func (r *run) cmdline() string {
	if r.opts.ProcCmdline != "" {
		return r.opts.ProcCmdline
	}
	b, _ := os.ReadFile("/proc/cmdline")
	return strings.TrimSpace(string(b))
}

var carryDrop = regexp.MustCompile(`^(BOOTIF=.*|initrd=.*|BOOT_IMAGE=.*)$`)

// CarryoverParams is install_grub.get_carryover_params: console= tokens before the
// separator plus everything after " --- " (or " -- "), without BOOTIF=, initrd= and
// BOOT_IMAGE=; redhat also gets rd.auto=1.
func CarryoverParams(cmdline, family string) []string {
	var lead, extra string
	switch {
	case strings.Contains(cmdline, " --- "):
		secs := strings.Split(cmdline, " --- ")
		lead, extra = secs[0], strings.Join(secs[1:], " ")
	case strings.Contains(cmdline, " -- "):
		secs := strings.Split(cmdline, " -- ")
		lead, extra = secs[0], strings.Join(secs[1:], " ")
	default:
		lead = cmdline
	}
	var carryExtra []string
	for _, t := range strings.Fields(extra) {
		if carryDrop.MatchString(t) {
			continue
		}
		carryExtra = append(carryExtra, t)
	}
	var carryLead []string
	for _, t := range strings.Fields(lead) {
		dup := false
		for _, e := range carryExtra {
			if e == t {
				dup = true
			}
		}
		if !dup && strings.HasPrefix(t, "console=") {
			carryLead = append(carryLead, t)
		}
	}
	if family == "redhat" {
		carryExtra = append(carryExtra, "rd.auto=1")
	}
	return append(carryLead, carryExtra...)
}

// setupBoot is curthooks.setup_boot → setup_grub → install_grub (x86).
func (c *cmdEnv) setupBoot(ctx context.Context, di DistroInfo) error {
	boot := mapOf(c.cfg["boot"])
	grubCfg := mapOf(c.cfg["grub"])
	bootloaders := []string{"grub"}
	if bl, ok := boot["bootloaders"].([]any); ok {
		bootloaders = strList(bl)
	}
	has := false
	for _, b := range bootloaders {
		if b == "grub" {
			has = true
		}
	}
	if !has {
		return nil
	}
	return c.withStack(ctx, c.prefix+"/install-grub", "installing grub to target devices", func() error {
		return c.setupGrub(ctx, di, boot, grubCfg)
	})
}

func (c *cmdEnv) setupGrub(ctx context.Context, di DistroInfo, boot, grubCfg map[string]any) error {
	uefi := c.r.uefi()
	be := c.r.opts.Backend
	sc, _ := c.storageConfig()
	var ids []string
	if sc != nil {
		if uefi {
			ids = uefiGrubDeviceIDs(sc)
		} else {
			ids = sc.GrubDevices()
		}
	}
	// install_devices: boot.install_devices (new schema) or grub.install_devices.
	var cfgDevs []string
	devsSet, devsNull := false, false
	for _, m := range []map[string]any{grubCfg, boot} {
		if v, ok := m["install_devices"]; ok {
			devsSet = true
			devsNull = v == nil
			cfgDevs = strList(v)
		}
	}
	replaceDefault := true
	for _, m := range []map[string]any{grubCfg, boot} {
		if v, ok := m["replace_linux_default"]; ok {
			replaceDefault = storage.Boolean(v)
		}
	}
	probeOS := false
	terminal := "console"
	for _, m := range []map[string]any{grubCfg, boot} {
		if v, ok := m["probe_additional_os"]; ok {
			probeOS = storage.Boolean(v)
		}
		if v, ok := m["terminal"]; ok {
			terminal = strOf(v)
		}
	}
	var devs []string
	if len(ids) > 0 {
		if devsSet && len(cfgDevs) > 0 {
			c.logf("Storage Config grub device config takes precedence over grub 'install_devices' value, ignoring: %v", cfgDevs)
		}
		for _, id := range ids {
			d, err := be.DevicePath(ctx, sc, id)
			if err != nil {
				return err
			}
			devs = append(devs, d)
		}
	} else if devsSet {
		if devsNull {
			c.logf("grub installation disabled by config")
			return nil
		}
		devs = cfgDevs
	} else {
		d, err := be.TargetDisks(ctx, c.target)
		if err != nil {
			return err
		}
		devs = d
	}
	if len(devs) == 0 {
		devs = []string{"none"}
	}

	// write_grub_config
	confFile := "/etc/default/grub"
	if di.Family == "debian" {
		confFile = "/etc/default/grub.d/50-curtin-settings.cfg"
	}
	gc := filepath.Join(c.target, confFile)
	if err := os.MkdirAll(filepath.Dir(gc), 0o755); err != nil {
		return err
	}
	ci := filepath.Join(filepath.Dir(gc), "50-cloudimg-settings.cfg")
	if _, err := os.Stat(ci); err == nil {
		_ = os.Rename(ci, ci+".disabled")
	}
	if replaceDefault {
		params := CarryoverParams(c.r.cmdline(), di.Family)
		if err := replaceCmdlineLinuxDefault(c.target, params); err != nil {
			return err
		}
	}
	var app strings.Builder
	if !probeOS {
		app.WriteString("# Curtin disable grub os prober that might find other OS installs.\nGRUB_DISABLE_OS_PROBER=\"true\"\n")
	}
	if strings.ToLower(terminal) != "unmodified" {
		fmt.Fprintf(&app, "# Curtin configured GRUB_TERMINAL value\nGRUB_TERMINAL=\"%s\"", terminal)
	}
	f, err := os.OpenFile(gc, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(app.String())
	f.Close()
	if err != nil {
		return err
	}

	cmds := grubCommands(di, uefi, devs, c.target)
	ge, emulated := be.(GrubEmulator)
	if di.Family == "debian" && devs[0] != "none" {
		// configure_grub_debconf: by-id links of the devices (a simulated machine's
		// devices have none on this host).
		key := "grub-pc/install_devices"
		if uefi {
			key = "grub-efi/install_devices"
		}
		links := devs
		if !emulated {
			links = byIDLinks(devs)
		}
		sel := fmt.Sprintf("grub-pc %s multiselect %s\n", key, strings.Join(links, ", "))
		if inTargetWhich(c.target, "debconf-set-selections") {
			if _, err := InTarget(ctx, c.target, []string{"debconf-set-selections"}, c.env, strings.NewReader(sel), c.out, c.out); err != nil {
				return err
			}
		}
	}
	if emulated {
		for _, cmd := range cmds {
			c.logf("simulated in-target: %s", strings.Join(cmd, " "))
		}
		return ge.EmulateGrub(ctx, storage.GrubRequest{Target: c.target, UEFI: uefi, Family: di.Family, Variant: di.Variant, DeviceIDs: ids, Config: sc, Commands: cmds}, c.out)
	}
	env := copyEnv(c.env)
	env["DEBIAN_FRONTEND"] = "noninteractive"
	for _, cmd := range cmds {
		var out strings.Builder
		w := &tailWriter{b: &out, max: 64 << 10}
		rc, err := InTarget(ctx, c.target, cmd, env, nil, w, w)
		c.out.Write([]byte(out.String()))
		if err != nil {
			return err
		}
		if rc != 0 {
			return &ProcessExecutionError{Cmd: cmdRepr(cmd, ""), ExitCode: rc, Stdout: out.String()}
		}
	}
	return nil
}

// uefiGrubDeviceIDs is curthooks.uefi_find_grub_device_ids: ESP partitions (flag boot,
// formatted vfat) on grub_device disks, else any ESP mounted at /boot/efi.
func uefiGrubDeviceIDs(sc *storage.Config) []string {
	var out []string
	primary := ""
	for _, it := range sc.Items {
		if it.Type == "partition" && it.Flag == "boot" {
			for _, f := range sc.Items {
				if f.Type == "format" && f.Volume == it.ID && storage.FSFamily(f.Fstype) == "fat" {
					disk, _ := sc.Get(it.Device)
					if it.GrubDevice || (disk != nil && disk.GrubDevice) {
						out = append(out, it.ID)
					}
					for _, m := range sc.Items {
						if m.Type == "mount" && m.Device == f.ID && m.MountPath == "/boot/efi" {
							primary = it.ID
						}
					}
				}
			}
		}
	}
	if len(out) == 0 && primary != "" {
		out = []string{primary}
	}
	return out
}

// grubCommands is install_grub's gen_install_commands / gen_uefi_install_commands for x86.
func grubCommands(di DistroInfo, uefi bool, devs []string, target string) [][]string {
	var cmds [][]string
	bootid := di.Variant
	switch {
	case uefi:
		cmds = append(cmds, []string{"efibootmgr", "-v"})
		grubCmd := "grub-install"
		if di.Family == "debian" {
			cmds = append(cmds, []string{"dpkg-reconfigure", "grub-efi-amd64"}, []string{"update-grub"})
			if _, err := os.Stat(filepath.Join(target, "usr/lib/grub/grub-multi-install")); err == nil {
				cmds = append(cmds, []string{"/usr/lib/grub/grub-multi-install"}, []string{"efibootmgr", "-v"})
				return cmds
			}
			cmds = append(cmds, []string{grubCmd, "--target=x86_64-efi", "--efi-directory=/boot/efi", "--bootloader-id=" + bootid, "--recheck", "--no-nvram"})
		} else {
			if bootid == "rhel" || bootid == "ol" {
				bootid = "redhat"
			}
			if _, err := os.Stat(filepath.Join(target, "boot/efi/EFI", bootid, "shimx64.efi")); err == nil {
				return append(cmds, []string{"grub2-mkconfig", "-o", "/boot/efi/EFI/" + bootid + "/grub.cfg"}, []string{"efibootmgr", "-v"})
			}
			cmds = append(cmds, []string{"grub2-install", "--target=x86_64-efi", "--efi-directory=/boot/efi", "--bootloader-id=" + bootid, "--recheck", "--no-nvram"},
				[]string{"grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"})
		}
		cmds = append(cmds, []string{"efibootmgr", "-v"})
	default:
		grubCmd := "grub-install"
		var post [][]string
		switch di.Family {
		case "debian":
			cmds = append(cmds, []string{"dpkg-reconfigure", "grub-pc"}, []string{"update-grub"})
		default:
			grubCmd = "grub2-install"
			post = append(post, []string{"grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"})
		}
		for _, d := range devs {
			cmds = append(cmds, []string{grubCmd, d})
		}
		cmds = append(cmds, post...)
	}
	return cmds
}

// replaceCmdlineLinuxDefault is install_grub.replace_grub_cmdline_linux_default.
func replaceCmdlineLinuxDefault(target string, params []string) error {
	line := fmt.Sprintf(`GRUB_CMDLINE_LINUX_DEFAULT="%s"`, strings.Join(params, " "))
	p := filepath.Join(target, "etc/default/grub")
	content := ""
	if b, err := os.ReadFile(p); err == nil {
		content = string(b)
	}
	re := regexp.MustCompile(`(?m)GRUB_CMDLINE_LINUX_DEFAULT=.*`)
	if loc := re.FindStringIndex(content); loc != nil {
		content = content[:loc[0]] + line + content[loc[1]:]
	} else {
		content += line + "\n"
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(content), 0o644)
}

// byIDLinks is block.disk_to_byid_path for each device (the device itself when it has no
// /dev/disk/by-id link).
func byIDLinks(devs []string) []string {
	out := make([]string, 0, len(devs))
	ents, _ := os.ReadDir("/dev/disk/by-id")
	for _, d := range devs {
		link := ""
		for _, e := range ents {
			p := filepath.Join("/dev/disk/by-id", e.Name())
			if r, err := filepath.EvalSymlinks(p); err == nil && r == d && (link == "" || len(e.Name()) < len(filepath.Base(link))) {
				link = p
			}
		}
		if link == "" {
			link = d
		}
		out = append(out, link)
	}
	return out
}
