package installer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/maasemu/maasemu/harness/installer/storage"
)

// osFamilies is distro.OS_FAMILIES inverted.
var osFamilies = map[string]string{
	"debian": "debian", "ubuntu": "debian",
	"centos": "redhat", "fedora": "redhat", "ol": "redhat", "redhat": "redhat", "rhel": "redhat",
	"rocky": "redhat", "almalinux": "redhat", "mariner": "redhat",
	"gentoo": "gentoo", "freebsd": "freebsd", "opensuse": "suse", "sles": "suse", "suse": "suse", "arch": "arch",
}

// DistroInfo is distro.get_distroinfo of a target.
type DistroInfo struct {
	Variant, Family string
	OSRelease       map[string]string
}

// GetDistroInfo reads <target>/etc/os-release (or usr/lib/os-release): ID, else ID_LIKE.
func GetDistroInfo(target string) (DistroInfo, error) {
	osr := map[string]string{}
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		f, err := os.Open(filepath.Join(target, p))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
			if !ok || strings.HasPrefix(k, "#") {
				continue
			}
			if uq, err := strconv.Unquote(v); err == nil {
				v = uq
			} else {
				v = strings.Trim(v, `'"`)
			}
			osr[k] = v
		}
		f.Close()
		break
	}
	id := osr["ID"]
	if fam, ok := osFamilies[id]; ok {
		return DistroInfo{Variant: id, Family: fam, OSRelease: osr}, nil
	}
	for _, like := range strings.Fields(osr["ID_LIKE"]) {
		if fam, ok := osFamilies[like]; ok {
			return DistroInfo{Variant: like, Family: fam, OSRelease: osr}, nil
		}
	}
	return DistroInfo{OSRelease: osr}, fmt.Errorf("Unknown distro: %s", id)
}

// isUbuntuCore is distro.is_ubuntu_core.
func isUbuntuCore(target string) bool {
	for _, p := range []string{"system-data/var/lib/snapd", "snaps"} {
		if st, err := os.Stat(filepath.Join(target, p)); err == nil && st.IsDir() {
			return true
		}
	}
	return false
}

// curthooks is `curtin curthooks`.
func (c *cmdEnv) curthooks(ctx context.Context, args []string) error {
	for i := 0; i < len(args); i++ {
		if (args[i] == "-t" || args[i] == "--target") && i+1 < len(args) {
			c.target = args[i+1]
			i++
		}
	}
	if c.target == "" {
		fmt.Fprintln(c.out, "Unable to find target.  Use --target or set TARGET_MOUNT_POINT")
		return exitCode(2)
	}
	mode := strOf(mapOf(c.cfg["curthooks"])["mode"])
	if mode == "" {
		mode = "auto"
	}
	if isUbuntuCore(c.target) {
		c.logf("Detected Ubuntu-Core image, running hooks")
		return c.withStack(ctx, c.prefix, "Configuring Ubuntu-Core for first boot", func() error {
			return c.ubuntuCoreCurthooks()
		})
	}
	if mode == "auto" || mode == "target" {
		ran, err := c.runHookIfExists(ctx, "curtin-hooks")
		if err != nil {
			return err
		}
		if ran {
			if be, ok := c.r.opts.Backend.(BootloaderEnsurer); ok {
				_, err = be.EnsureBootloader(ctx, c.target, c.r.uefi(), c.out)
			}
			return err
		}
	}
	return c.builtinCurthooks(ctx)
}

func (c *cmdEnv) ubuntuCoreCurthooks() error {
	base := filepath.Join(c.target, "system-data/etc/cloud/cloud.cfg.d")
	if st, err := os.Stat(filepath.Join(c.target, "snaps")); err == nil && st.IsDir() {
		base = filepath.Join(c.target, "data/etc/cloud/cloud.cfg.d")
	}
	if cc := mapOf(c.cfg["cloudconfig"]); cc != nil {
		if err := handleCloudconfig(cc, base, c); err != nil {
			return err
		}
	}
	if nc, ok := c.cfg["network"]; ok && nc != nil {
		s, err := DumpYAML(map[string]any{"network": nc})
		if err != nil {
			return err
		}
		if err := os.MkdirAll(base, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(base, "50-curtin-networking.cfg"), []byte(s), 0o644); err != nil {
			return err
		}
	}
	_ = os.Remove(filepath.Join(c.target, "system-data/etc/cloud/cloud-init.disabled"))
	return nil
}

// builtinCurthooks is curthooks.builtin_curthooks, in its order and with its event names.
func (c *cmdEnv) builtinCurthooks(ctx context.Context) error {
	c.logf("Running curtin builtin curthooks")
	di, err := GetDistroInfo(c.target)
	if err != nil {
		return err
	}
	c.logf("Configuring target system for distro: %s osfamily: %s", di.Variant, di.Family)
	p := c.prefix
	step := func(name, desc string, fn func() error) error {
		return c.withStack(ctx, p+"/"+name, desc, fn)
	}
	if di.Family == "debian" {
		if err := step("writing-apt-config", "configuring apt configuring apt", func() error { return c.aptConfig(ctx) }); err != nil {
			return err
		}
	}
	if err := step("installing-missing-packages", "installing missing packages", func() error { return c.missingPackages() }); err != nil {
		return err
	}
	for _, s := range [][2]string{{"configuring-iscsi-service", "configuring iscsi service"}, {"configuring-mdadm-service", "configuring raid (mdadm) service"}, {"configuring-nvme-over-tcp", "configuring NVMe over TCP"}} {
		if err := step(s[0], s[1], func() error { return nil }); err != nil {
			return err
		}
	}
	if di.Family == "debian" {
		if err := step("installing-kernel", "installing kernel", func() error { return c.installKernel() }); err != nil {
			return err
		}
	}
	if err := step("setting-up-swap", "setting up swap", func() error { return c.addSwap(ctx) }); err != nil {
		return err
	}
	if di.Family == "debian" || di.Family == "suse" || di.Family == "redhat" {
		if cc := mapOf(c.cfg["cloudconfig"]); cc != nil {
			if err := handleCloudconfig(cc, filepath.Join(c.target, "etc/cloud/cloud.cfg.d"), c); err != nil {
				return err
			}
		}
	}
	if err := step("apply-networking-config", "apply networking config", func() error { return c.applyNetworking(ctx) }); err != nil {
		return err
	}
	if err := step("writing-etc-fstab", "writing etc/fstab", func() error { return c.copyFstab() }); err != nil {
		return err
	}
	if err := step("configuring-multipath", "configuring multipath", func() error { return nil }); err != nil {
		return err
	}
	if err := step("system-upgrade", "updating packages on target system", func() error {
		if storage.Boolean(mapOf(c.cfg["system_upgrade"])["enabled"]) {
			return errors.New("system_upgrade needs a package archive, which maasemu does not provide")
		}
		return nil
	}); err != nil {
		return err
	}
	if di.Family == "redhat" {
		if err := step("enabling-selinux-autorelabel", "enabling selinux autorelabel mode", func() error {
			return os.WriteFile(filepath.Join(c.target, ".autorelabel"), nil, 0o644)
		}); err != nil {
			return err
		}
	}
	if err := step("pollinate-user-agent", "configuring pollinate user-agent on target", func() error { return nil }); err != nil {
		return err
	}
	if err := c.copyDnameRules(); err != nil {
		return err
	}
	if err := step("configuring-kernel-crash-dumps", "configuring kernel crash dumps settings", func() error { return nil }); err != nil {
		return err
	}
	if err := step("final-kernel-configuration", "final kernel configuration", func() error { return c.finalKernel(ctx, di) }); err != nil {
		return err
	}
	if err := step("configuring-bootloader", "configuring target system bootloader", func() error { return c.setupBoot(ctx, di) }); err != nil {
		return err
	}
	return step("copy-cdrom-metadata", "copying metadata from /cdrom", func() error { return nil })
}

// aptConfig applies debconf_selections (apt_config.apply_debconf_selections): the
// selections go through debconf-set-selections in the target, then cloud-init's dpkg
// config files are removed and the package reconfigured, which writes 90_dpkg*.cfg.
func (c *cmdEnv) aptConfig(ctx context.Context) error {
	sel := mapOf(c.cfg["debconf_selections"])
	if len(sel) == 0 {
		c.logf("debconf_selections was not set in config")
		return nil
	}
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var all strings.Builder
	pkgs := map[string]bool{}
	for _, k := range keys {
		s := strOf(sel[k])
		all.WriteString(s)
		if !strings.HasSuffix(s, "\n") {
			all.WriteString("\n")
		}
		for _, line := range strings.Split(s, "\n") {
			if f := strings.Fields(line); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
				pkgs[f[0]] = true
			}
		}
	}
	if !inTargetWhich(c.target, "debconf-set-selections") {
		c.logf("Target has no debconf-set-selections; debconf_selections not applied")
		return nil
	}
	rc, err := InTarget(ctx, c.target, []string{"debconf-set-selections"}, c.env, strings.NewReader(all.String()), c.out, c.out)
	if err != nil {
		return err
	}
	if rc != 0 {
		return &ProcessExecutionError{Cmd: "['debconf-set-selections']", ExitCode: rc}
	}
	var reconf []string
	for _, p := range []string{"cloud-init", "cloud-init-base"} {
		if pkgs[p] && dpkgInstalled(c.target, p) {
			reconf = append(reconf, p)
		}
	}
	if len(reconf) == 0 {
		return nil
	}
	// apt_config.clean_cloud_init
	matches, _ := filepath.Glob(filepath.Join(c.target, "etc/cloud/cloud.cfg.d/*dpkg*"))
	for _, m := range matches {
		os.Remove(m)
	}
	argv := append([]string{"dpkg-reconfigure", "--frontend=noninteractive"}, reconf...)
	rc, err = InTarget(ctx, c.target, argv, c.env, nil, c.out, c.out)
	if err != nil {
		return err
	}
	if rc != 0 {
		return &ProcessExecutionError{Cmd: cmdRepr(argv, ""), ExitCode: rc}
	}
	return nil
}

func dpkgInstalled(target, pkg string) bool {
	f, err := os.Open(filepath.Join(target, "var/lib/dpkg/status"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	in := false
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "Package: ") {
			in = strings.TrimPrefix(l, "Package: ") == pkg
		}
		if in && strings.HasPrefix(l, "Status: ") {
			return strings.HasSuffix(l, " installed")
		}
	}
	return false
}

func (c *cmdEnv) missingPackages() error {
	sc, _ := c.storageConfig()
	if sc == nil {
		return nil
	}
	for _, it := range sc.Items {
		if it.Type == "lvm_volgroup" && !inTargetWhich(c.target, "lvm") {
			c.logf("Skipping install of [lvm2]: the target lacks it and maasemu has no package archive")
			break
		}
	}
	return nil
}

func (c *cmdEnv) installKernel() error {
	kc, ok := c.cfg["kernel"]
	if ok && kc == nil {
		return nil
	}
	if m, _ := filepath.Glob(filepath.Join(c.target, "boot/vmlinu*")); len(m) > 0 {
		c.logf("Kernel already installed in target: %s", filepath.Base(m[0]))
		return nil
	}
	if pkg := strOf(mapOf(kc)["package"]); pkg != "" {
		return fmt.Errorf("kernel package %s is not installed in the target and maasemu has no package archive to install it from", pkg)
	}
	c.logf("No kernel in the target and no kernel package configured")
	return nil
}

// addSwap is curthooks.add_swap / swap.setup_swapfile.
func (c *cmdEnv) addSwap(ctx context.Context) error {
	sw, present := c.cfg["swap"]
	if present && !storage.Boolean(sw) {
		c.logf("disabling 'add_swap' due to config")
		return nil
	}
	swcfg := mapOf(sw)
	fname := strOf(swcfg["filename"])
	var size, maxsize int64 = -1, -1
	if v := swcfg["size"]; v != nil && storage.Boolean(v) {
		b, err := storage.HumanToBytes(strOf(v))
		if err != nil {
			return err
		}
		size = b
	} else if v != nil {
		size = 0
	}
	if v := swcfg["maxsize"]; v != nil && storage.Boolean(v) {
		b, err := storage.HumanToBytes(strOf(v))
		if err != nil {
			return err
		}
		maxsize = b
	}
	if fname == "" {
		fname = "/swap.img"
	}
	if !strings.HasPrefix(fname, "/") {
		fname = "/" + fname
	}
	fstype, avail, err := c.targetFS(ctx, filepath.Dir(fname))
	if err != nil {
		c.logf("Failed to query %s fstype: %v", filepath.Dir(fname), err)
		return nil
	}
	if size < 0 {
		size = suggestedSwapsize(c.r.memory(), maxsize, avail)
	}
	if size == 0 {
		c.logf("Not creating swapfile: suggested size was 0")
		return nil
	}
	if fstype == "" || fstype == "zfs" {
		c.logf("Not creating swapfile")
		return nil
	}
	mb := size >> 20
	c.logf("creating swapfile '%s' of %dMB", fname, mb)
	p := filepath.Join(c.target, fname)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	_ = os.Remove(p)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, mb<<20); err != nil {
		if terr := f.Truncate(mb << 20); terr != nil {
			f.Close()
			return terr
		}
	}
	f.Close()
	if err := writeSwapHeader(p, mb<<20); err != nil {
		os.Remove(p)
		return err
	}
	line := strings.Join([]string{fname, "none", "swap", "sw", "0", "0"}, "\t") + "\n"
	fh, err := os.OpenFile(c.env["OUTPUT_FSTAB"], os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		os.Remove(p)
		return err
	}
	_, err = fh.WriteString(line)
	fh.Close()
	return err
}

// writeSwapHeader runs mkswap on the file.
func writeSwapHeader(path string, _ int64) error {
	return runQuiet("mkswap", path)
}

func (c *cmdEnv) targetFS(ctx context.Context, dir string) (string, int64, error) {
	if se, ok := c.r.opts.Backend.(SwapEmulator); ok {
		return se.TargetFS(ctx, c.target, dir)
	}
	var st syscall.Statfs_t
	p := filepath.Join(c.target, dir)
	if err := syscall.Statfs(p, &st); err != nil {
		return "", 0, err
	}
	return fsTypeName(st.Type), int64(st.Bavail) * int64(st.Bsize), nil
}

func fsTypeName(t int64) string {
	switch t {
	case 0xEF53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x01021994:
		return "tmpfs"
	case 0x2fc12fc1:
		return "zfs"
	case 0x794c7630:
		return "overlay"
	case 0x4d44:
		return "vfat"
	}
	return fmt.Sprintf("0x%x", t)
}

// suggestedSwapsize is swap.suggested_swapsize with avail known.
func suggestedSwapsize(memsize, maxsize, avail int64) int64 {
	const gb = int64(1) << 30
	sugg := 8 * gb
	if maxsize < 0 {
		maxsize = min(avail/4, sugg)
	} else if float64(maxsize) > float64(avail)*0.9 {
		maxsize = int64(float64(avail) * 0.9)
	}
	formulas := []struct {
		top int64
		f   func(int64) int64
	}{
		{1 * gb, func(x int64) int64 { return x * 2 }},
		{2 * gb, func(int64) int64 { return 2 * gb }},
		{4 * gb, func(x int64) int64 { return x }},
		{16 * gb, func(int64) int64 { return 4 * gb }},
		{64 * gb, func(x int64) int64 { return x / 2 }},
	}
	for _, fm := range formulas {
		if memsize <= fm.top {
			size := min(fm.f(memsize), maxsize)
			if size < memsize/2 && size < 4*gb {
				return 0
			}
			return size
		}
	}
	return maxsize
}

func (r *run) memory() int64 {
	if r.opts.MemoryBytes > 0 {
		return r.opts.MemoryBytes
	}
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 1 << 30
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n << 10
		}
	}
	return 1 << 30
}

// handleCloudconfig is curthooks.handle_cloudconfig: 95-cloudconfig-<key>.cfg, path
// ignored.
func handleCloudconfig(cc map[string]any, base string, c *cmdEnv) error {
	files := map[string]any{}
	for k, v := range cc {
		m := mapOf(v)
		if m == nil {
			return errors.New("cloudconfig configuration is not in dict format")
		}
		if _, ok := m["path"]; ok {
			c.logf("cloudconfig ignoring 'path' key in config")
		}
		nm := make(map[string]any, len(m))
		for kk, vv := range m {
			nm[kk] = vv
		}
		nm["path"] = fmt.Sprintf("95-cloudconfig-%s.cfg", k)
		files[k] = nm
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return err
	}
	return writeFiles(files, base)
}

// copyFstab is curthooks.copy_fstab.
func (c *cmdEnv) copyFstab() error {
	fstab := c.env["OUTPUT_FSTAB"]
	if fstab == "" {
		c.logf("fstab variable not in state, not copying fstab")
		return nil
	}
	b, err := os.ReadFile(fstab)
	if err != nil {
		return err
	}
	dst := filepath.Join(c.target, "etc/fstab")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, []byte(FstabHeader+"\n"+string(b)), 0o644)
}

// FstabHeader is distro.fstab_header().
const FstabHeader = `# /etc/fstab: static file system information.
#
# Use 'blkid' to print the universally unique identifier for a
# device; this may be used with UUID= as a more robust way to name devices
# that works even if disks are added and removed. See fstab(5).
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>`

func (c *cmdEnv) copyDnameRules() error {
	src := filepath.Join(c.env["WORKING_DIR"], "rules.d")
	ents, err := os.ReadDir(src)
	if err != nil {
		return nil
	}
	dst := filepath.Join(c.target, "etc/udev/rules.d")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// finalKernel: debian reconfigures installed kernels (update-initramfs) when the tools
// exist in the target; redhat regenerates the initramfs with dracut for lvm storage.
func (c *cmdEnv) finalKernel(ctx context.Context, di DistroInfo) error {
	switch di.Family {
	case "debian":
		kernels, _ := filepath.Glob(filepath.Join(c.target, "boot/vmlinuz-*"))
		if len(kernels) == 0 || !inTargetWhich(c.target, "update-initramfs") {
			c.logf("No kernel or update-initramfs in target; skipping initramfs update")
			return nil
		}
		argv := []string{"update-initramfs", "-u", "-k", "all"}
		rc, err := InTarget(ctx, c.target, argv, c.env, nil, c.out, c.out)
		if err != nil {
			return err
		}
		if rc != 0 {
			return &ProcessExecutionError{Cmd: cmdRepr(argv, ""), ExitCode: rc}
		}
	case "redhat":
		sc, _ := c.storageConfig()
		lvm := false
		if sc != nil {
			for _, it := range sc.Items {
				if it.Type == "lvm_volgroup" || it.Type == "raid" {
					lvm = true
				}
			}
		}
		if !lvm {
			return nil
		}
		conf := filepath.Join(c.target, "etc/dracut.conf.d/50-curtin-storage.conf")
		_ = os.MkdirAll(filepath.Dir(conf), 0o755)
		if err := os.WriteFile(conf, []byte("# Written by curtin for multi-device installations\nadd_dracutmodules+=\" lvm \"\n"), 0o644); err != nil {
			return err
		}
		kernels, _ := filepath.Glob(filepath.Join(c.target, "boot/vmlinuz-*"))
		if len(kernels) == 0 || !inTargetWhich(c.target, "dracut") {
			return nil
		}
		for _, k := range kernels {
			kver := strings.TrimPrefix(filepath.Base(k), "vmlinuz-")
			if strings.Contains(kver, "rescue") {
				continue
			}
			argv := []string{"dracut", "-f", "/boot/initramfs-" + kver + ".img", kver}
			rc, err := InTarget(ctx, c.target, argv, c.env, nil, c.out, c.out)
			if err != nil {
				return err
			}
			if rc != 0 {
				return &ProcessExecutionError{Cmd: cmdRepr(argv, ""), ExitCode: rc}
			}
		}
	}
	return nil
}

func runQuiet(name string, args ...string) error {
	cmd := execCommand(name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return &ProcessExecutionError{Cmd: cmdRepr(append([]string{name}, args...), ""), ExitCode: exitOf(err), Stderr: strings.TrimSpace(string(out))}
	}
	return nil
}
