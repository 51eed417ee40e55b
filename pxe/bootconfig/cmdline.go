package bootconfig

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/maasemu/maasemu/fakemaas"
)

// DefaultLogPort is the syslog port MAAS puts on the command line when the region sends none
// (KernelParameters.__new__ in kernel_opts.py falls back to 5247).
const DefaultLogPort = 5247

// CmdlineSeparator separates the ephemeral options from the options curtin copies into the
// installed system's GRUB config: curtin.KERNEL_CMDLINE_COPY_TO_INSTALL_SEP (kernel_opts.py
// get_curtin_kernel_cmdline_sep; LP: #1402042 explains "---" versus "--").
const CmdlineSeparator = "---"

// ubuntuBeforeJammy lists the Ubuntu codenames that precede jammy in distro-info's
// ubuntu.csv (UbuntuDistroInfo().get_all() order). compose_apparmor_opts adds apparmor=0 for
// these (LP: #1677336).
var ubuntuBeforeJammy = []string{
	"warty", "hoary", "breezy", "dapper", "edgy", "feisty", "gutsy", "hardy", "intrepid",
	"jaunty", "karmic", "lucid", "maverick", "natty", "oneiric", "precise", "quantal", "raring",
	"saucy", "trusty", "utopic", "vivid", "wily", "xenial", "yakkety", "zesty", "artful",
	"bionic", "cosmic", "disco", "eoan", "focal", "groovy", "hirsute", "impish",
}

// archKernelOptions is MAAS's ArchitectureRegistry kernel_options
// (src/provisioningserver/drivers/__init__.py builtin_architectures): used when the region
// sends no KernelOptions.
var archKernelOptions = map[string]string{
	"armhf/highbank":  "console=ttyAMA0",
	"armhf/generic":   "console=ttyAMA0",
	"ppc64el/generic": "rootdelay=60",
}

// isIPv6 reports whether host is an IPv6 address (netaddr.IPAddress(host).version == 6).
func isIPv6(host string) bool {
	a, err := netip.ParseAddr(host)
	return err == nil && a.Is6() && !a.Is4In6()
}

// hostForURI brackets an IPv6 address (convert_host_to_uri_str).
func hostForURI(host string) string {
	if isIPv6(host) {
		return "[" + host + "]"
	}
	return host
}

// FSHostURL is the "fs_host" template filter: the rack's image URL prefix,
// http://<fs_host>:5248/images/ (boot/__init__.py compose_template_namespace).
func FSHostURL(fsHost string) string {
	return "http://" + hostForURI(fsHost) + ":5248/images/"
}

// kernelPath, initrdPath and dtbPath mirror the template namespace helpers: a missing file
// (the region found no image) renders as the bare default name.
func kernelPath(p fakemaas.KernelParams) string {
	if p.Kernel == "" {
		return "boot-kernel"
	}
	return p.Kernel
}

func initrdPath(p fakemaas.KernelParams) string {
	if p.Initrd == "" {
		return "boot-initrd"
	}
	return p.Initrd
}

// kernelName is the last segment of the kernel path (iPXE's imgargs name).
func kernelName(p fakemaas.KernelParams) string {
	k := kernelPath(p)
	return k[strings.LastIndex(k, "/")+1:]
}

// dtbSubarches need a device tree (dtb_subarchs in compose_template_namespace).
var dtbSubarches = []string{"xgene-uboot-mustang"}

func dtbPath(p fakemaas.KernelParams) string {
	if !slices.Contains(dtbSubarches, p.Subarch) {
		return "" // tempita renders Python None as an empty string
	}
	if p.BootDTB == "" {
		return "boot-dtb"
	}
	return p.BootDTB
}

// purposeOptions is compose_purpose_opts.
func purposeOptions(p fakemaas.KernelParams) []string {
	v6 := isIPv6(p.FSHost)
	image := p.XInstallPath
	if image == "" {
		image = "squashfs"
	}
	imageType := "squash"
	if strings.HasSuffix(image, ".tgz") || strings.HasSuffix(image, ".txz") {
		imageType = "tar"
	}
	opts := []string{
		fmt.Sprintf("root=%s:http://%s:5248/images/%s", imageType, hostForURI(p.FSHost), image),
	}
	if v6 {
		opts = append(opts, "ip=off", "ip6=dhcp")
	} else {
		opts = append(opts, "ip=::::"+p.Hostname+":BOOTIF:dhcp", "ip6=off")
	}
	opts = append(opts,
		"cc:{'datasource_list': ['MAAS']}end_cc",
		"cloud-config-url="+p.PreseedURL,
	)
	if imageType == "squash" {
		opts = append(opts, "ro", "overlayroot=tmpfs", "overlayroot_cfgdisk=disabled")
	}
	return opts
}

// apparmorOptions is compose_apparmor_opts.
func apparmorOptions(p fakemaas.KernelParams) []string {
	if p.OSystem == "ubuntu" && slices.Contains(ubuntuBeforeJammy, p.Release) {
		return []string{"apparmor=0"}
	}
	return nil
}

// archOptions is compose_arch_opts: the region's KernelOptions when it sent any, else MAAS's
// architecture table.
func archOptions(p fakemaas.KernelParams) []string {
	if p.KernelOptions != "" {
		return []string{p.KernelOptions}
	}
	if o, ok := archKernelOptions[p.Arch+"/"+p.Subarch]; ok {
		return []string{o}
	}
	return nil
}

// CommandLine composes the kernel command line exactly as MAAS's
// kernel_opts.compose_kernel_command_line does, in its order:
//
//	nomodeset root=squash:http://<fs_host>:5248/images/<xinstall_path>
//	ip=::::<hostname>:BOOTIF:dhcp ip6=off cc:{'datasource_list': ['MAAS']}end_cc
//	cloud-config-url=<preseed_url> ro overlayroot=tmpfs overlayroot_cfgdisk=disabled
//	[apparmor=0] log_host=<h> log_port=<p> [arch options] [ephemeral options] [--- extra]
//
// An empty FSHost must have been filled in by the caller (the rack uses its local address, as
// MAAS's get_config does with local_ip); an empty LogHost falls back to FSHost and a zero
// LogPort to 5247.
func CommandLine(p fakemaas.KernelParams) string {
	p = withDefaults(p)
	opts := []string{"nomodeset"}
	opts = append(opts, purposeOptions(p)...)
	opts = append(opts, apparmorOptions(p)...)
	opts = append(opts, fmt.Sprintf("log_host=%s", p.LogHost), fmt.Sprintf("log_port=%d", p.LogPort))
	opts = append(opts, archOptions(p)...)
	if p.EphemeralOpts != "" {
		opts = append(opts, p.EphemeralOpts)
	}
	if p.ExtraOpts != "" {
		opts = append(opts, CmdlineSeparator, p.ExtraOpts)
	}
	return strings.Join(opts, " ")
}

func withDefaults(p fakemaas.KernelParams) fakemaas.KernelParams {
	if p.LogHost == "" {
		p.LogHost = p.FSHost
	}
	if p.LogPort == 0 {
		p.LogPort = DefaultLogPort
	}
	return p
}

// grubEscape escapes the braces of the cc:{...}end_cc cloud-config for GRUB only, as
// grub.py's kernel_command does with re.sub(r"cc:{(?P<inner>[^}]*)}end_cc", ...)
// (Bug#1651452).
func grubEscape(cmdline string) string {
	var b strings.Builder
	rest := cmdline
	for {
		i := strings.Index(rest, "cc:{")
		if i < 0 {
			b.WriteString(rest)
			return b.String()
		}
		inner := rest[i+len("cc:{"):]
		j := strings.IndexByte(inner, '}')
		if j < 0 || !strings.HasPrefix(inner[j:], "}end_cc") {
			// No match at this position: keep the text and continue after "cc:{".
			b.WriteString(rest[:i+len("cc:{")])
			rest = inner
			continue
		}
		b.WriteString(rest[:i])
		b.WriteString(`cc:\{`)
		b.WriteString(inner[:j])
		b.WriteString(`\}end_cc`)
		rest = inner[j+len("}end_cc"):]
	}
}
