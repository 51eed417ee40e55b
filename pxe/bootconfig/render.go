package bootconfig

import (
	"errors"
	"fmt"
	"strings"

	"github.com/maasemu/maasemu/fakemaas"
)

// Protocol is how the bootloader asking for a config was itself loaded: GRUB configs point at
// the kernel differently for each (grub.py get_reader).
type Protocol string

// Protocols.
const (
	TFTP Protocol = "tftp"
	HTTP Protocol = "http"
)

// Options change rendering where MAAS has a switch.
type Options struct {
	// Debug adds `set debug="all"` to GRUB configs, as MAAS does when debug logging is on
	// (the {{if debug}} line of templates/uefi/*).
	Debug bool
}

// Config is a rendered boot config.
type Config struct {
	Template string // the MAAS template file it follows, e.g. "config.xinstall.template"
	Data     []byte
}

// ErrNoTemplate means MAAS has no template for the purpose/architecture combination (MAAS
// raises "No PXE template found" and the rack answers with an error).
var ErrNoTemplate = errors.New("no boot config template")

// templateNames is gen_template_filenames: config.<purpose>.<arch>.<subarch>.template, then
// without subarch, then without arch, then config.template.
func templateNames(purpose, arch, subarch string) []string {
	elems := []string{purpose, arch, subarch}
	var names []string
	for len(elems) >= 1 {
		names = append(names, "config."+strings.Join(elems, ".")+".template")
		elems = elems[:len(elems)-1]
	}
	return append(names, "config.template")
}

// lookup returns the first template name that exists in set.
func lookup[T any](set map[string]T, purpose, arch, subarch string) (string, T, bool) {
	for _, n := range templateNames(purpose, arch, subarch) {
		if t, ok := set[n]; ok {
			return n, t, true
		}
	}
	var zero T
	return "", zero, false
}

// Render renders the config for format f from p, as MAAS's boot method get_reader does.
// p.FSHost must be set (the rack's address).
func Render(f Format, p fakemaas.KernelParams, proto Protocol, o Options) (Config, error) {
	if p.FSHost == "" {
		return Config{}, errors.New("render boot config: kernel params have no fs_host (rack address)")
	}
	subarch := p.Subarch
	if subarch == "" {
		subarch = "generic"
	}
	var (
		name string
		fn   func(fakemaas.KernelParams, Protocol, Options) string
		ok   bool
	)
	switch f {
	case PXELinux:
		name, fn, ok = lookup(pxeTemplates, p.Purpose, p.Arch, subarch)
	case GRUB:
		name, fn, ok = lookup(uefiTemplates, p.Purpose, p.Arch, subarch)
	case IPXE:
		name, fn, ok = lookup(ipxeTemplates, p.Purpose, p.Arch, subarch)
	default:
		return Config{}, fmt.Errorf("render boot config: unknown format %d", f)
	}
	if !ok {
		return Config{}, fmt.Errorf("render %s config for purpose %q arch %q subarch %q: %w",
			f, p.Purpose, p.Arch, subarch, ErrNoTemplate)
	}
	return Config{Template: name, Data: []byte(fn(p, proto, o))}, nil
}

// ---- pxelinux (templates/pxe) ------------------------------------------------------------
//
// Each body below is the output of the MAAS template named in its comment after tempita
// substitution. Symlinked templates share a body. A "{{# comment }}" line keeps its
// indentation and newline ("  \n"), which tempita does not trim.

type pxeBody = func(fakemaas.KernelParams, Protocol, Options) string

var pxeTemplates = map[string]pxeBody{
	"config.commissioning.template":                           pxeEphemeral,
	"config.install.template":                                 pxeEphemeral,
	"config.xinstall.template":                                pxeEphemeral,
	"config.commissioning.arm64.template":                     pxeUBoot, // -> config.install.armhf.template
	"config.commissioning.armhf.template":                     pxeUBoot,
	"config.install.arm64.template":                           pxeUBoot,
	"config.install.armhf.template":                           pxeUBoot,
	"config.xinstall.arm64.template":                          pxeUBoot,
	"config.xinstall.armhf.template":                          pxeUBoot,
	"config.commissioning.arm64.xgene-uboot-mustang.template": pxeUBootDTB,
	"config.install.arm64.xgene-uboot-mustang.template":       pxeUBootDTB,
	"config.xinstall.arm64.xgene-uboot-mustang.template":      pxeUBootDTB,
	"config.commissioning.ppc64el.template":                   pxePPC64EL,
	"config.install.ppc64el.template":                         pxePPC64EL,
	"config.xinstall.ppc64el.template":                        pxePPC64EL,
	"config.commissioning.s390x.template":                     pxeS390X,
	"config.install.s390x.template":                           pxeS390X,
	"config.xinstall.s390x.template":                          pxeS390X,
	"config.enlist.template":                                  pxeEnlist,
	"config.local.amd64.template":                             pxeLocalChain, // -> config.local.i386.template
	"config.local.i386.template":                              pxeLocalChain,
	"config.local.template":                                   pxeLocalBoot,
	"config.poweroff.template":                                pxePoweroff,
}

// pxeEphemeral is config.{commissioning,install,xinstall}.template.
func pxeEphemeral(p fakemaas.KernelParams, _ Protocol, _ Options) string {
	cmd := CommandLine(p)
	fs := FSHostURL(p.FSHost)
	return "DEFAULT execute\n\nLABEL execute\n" +
		"  SAY Booting under MAAS direction...\n" +
		"  SAY " + cmd + "\n" +
		"  KERNEL " + fs + kernelPath(p) + "\n" +
		"  INITRD " + fs + initrdPath(p) + "\n" +
		"  APPEND " + cmd + "\n" +
		"  IPAPPEND 2\n"
}

// pxeUBoot is config.install.armhf.template ("SAY is not implemented in U-Boot"; paths are
// relative to the path-prefix, no fs_host).
func pxeUBoot(p fakemaas.KernelParams, _ Protocol, _ Options) string {
	return "DEFAULT execute\n\nLABEL execute\n" +
		"  \n" +
		"  KERNEL " + kernelPath(p) + "\n" +
		"  INITRD " + initrdPath(p) + "\n" +
		"  APPEND " + CommandLine(p) + "\n" +
		"  IPAPPEND 2\n"
}

// pxeUBootDTB is config.*.arm64.xgene-uboot-mustang.template (adds the device tree).
func pxeUBootDTB(p fakemaas.KernelParams, _ Protocol, _ Options) string {
	return "DEFAULT execute\n\nLABEL execute\n" +
		"  \n" +
		"  KERNEL " + kernelPath(p) + "\n" +
		"  INITRD " + initrdPath(p) + "\n" +
		"  FDT " + dtbPath(p) + "\n" +
		"  APPEND " + CommandLine(p) + "\n" +
		"  IPAPPEND 2\n"
}

// pxePPC64EL is config.install.ppc64el.template (PowerNV's petitboot: no SAY, no IPAPPEND).
func pxePPC64EL(p fakemaas.KernelParams, _ Protocol, _ Options) string {
	fs := FSHostURL(p.FSHost)
	return "DEFAULT execute\n\nLABEL execute\n" +
		"  KERNEL " + fs + kernelPath(p) + "\n" +
		"  INITRD " + fs + initrdPath(p) + "\n" +
		"  APPEND " + CommandLine(p) + "\n"
}

// pxeS390X is config.install.s390x.template.
func pxeS390X(p fakemaas.KernelParams, _ Protocol, _ Options) string {
	return "DEFAULT execute\n\nLABEL execute\n" +
		"  KERNEL " + kernelPath(p) + "\n" +
		"  INITRD " + initrdPath(p) + "\n" +
		"  APPEND " + CommandLine(p) + "\n"
}

// pxeEnlist is config.enlist.template: ifcpu64.c32 picks amd64 or i386. kernel_params(arch=X)
// changes only the architecture, which changes only the architecture kernel options.
func pxeEnlist(p fakemaas.KernelParams, _ Protocol, _ Options) string {
	fs := FSHostURL(p.FSHost)
	forArch := func(arch string) fakemaas.KernelParams {
		q := p
		if q.Arch != arch {
			q.Arch = arch
			q.KernelOptions = "" // the region's options were for p.Arch; MAAS recomputes per arch
		}
		return q
	}
	amd64, i386 := forArch("amd64"), forArch("i386")
	return "DEFAULT execute\n\n" +
		"SAY Booting under MAAS direction...\n" +
		"SAY " + CommandLine(p) + "\n\n" +
		"LABEL execute\n" +
		"  KERNEL ifcpu64.c32\n" +
		"  APPEND amd64 -- i386\n\n" +
		"LABEL amd64\n" +
		"  KERNEL " + fs + kernelPath(amd64) + "\n" +
		"  INITRD " + fs + initrdPath(amd64) + "\n" +
		"  APPEND " + CommandLine(amd64) + "\n" +
		"  IPAPPEND 2\n\n" +
		"LABEL i386\n" +
		"  KERNEL " + fs + kernelPath(i386) + "\n" +
		"  INITRD " + fs + initrdPath(i386) + "\n" +
		"  APPEND " + CommandLine(i386) + "\n"
}

// pxeLocalChain is config.local.i386.template (amd64 links to it): chain to the first disk.
func pxeLocalChain(fakemaas.KernelParams, Protocol, Options) string {
	return "DEFAULT local\n\nLABEL local\n" +
		"  SAY Booting local disk ...\n" +
		"  KERNEL chain.c32\n" +
		"  APPEND hd0\n"
}

// pxeLocalBoot is config.local.template.
func pxeLocalBoot(fakemaas.KernelParams, Protocol, Options) string {
	return "DEFAULT local\n\nLABEL local\n  LOCALBOOT 0\n"
}

// pxePoweroff follows config.poweroff.template. That template's second line is
// "{{poweroff}}", a name MAAS never defines (tempita raises NameError, so real MAAS fails the
// request); MAAS never sends the poweroff purpose to the rack for machines
// (get_final_boot_purpose turns it into commissioning). We render the syslinux module that
// does what the label says.
func pxePoweroff(fakemaas.KernelParams, Protocol, Options) string {
	return "DEFAULT poweroff\n\nLABEL poweroff\n  KERNEL poweroff.c32\n"
}

// ---- GRUB (templates/uefi) ---------------------------------------------------------------
//
// grub.py's get_reader strips the output (no leading newline from an empty debug line, no
// trailing newline) and escapes the braces of cc:{...}end_cc.

var uefiTemplates = map[string]pxeBody{
	"config.commissioning.template": uefiEphemeral,
	"config.enlist.template":        uefiEphemeral, // -> config.commissioning.template
	"config.xinstall.template":      uefiEphemeral, // -> config.commissioning.template
	"config.local.amd64.template":   uefiStatic(uefiLocalAMD64),
	"config.local.arm64.template":   uefiStatic(uefiLocalARM64),
	"config.local.ppc64el.template": uefiStatic(uefiLocalPPC64EL),
	"config.poweroff.template":      uefiStatic(uefiPoweroff),
}

// EFIHost is the "fs_efihost" GRUB prefix: GRUB's own HTTP client when GRUB came over TFTP
// (TFTP is slow), the firmware's HTTP stack (/images/) when it came over HTTP.
func EFIHost(fsHost string, proto Protocol) string {
	if proto == TFTP {
		return "(http," + hostForURI(fsHost) + ":5248)/images/"
	}
	return "/images/"
}

func grubDebug(o Options) string {
	if o.Debug {
		return `set debug="all"` + "\n"
	}
	return ""
}

// uefiEphemeral is config.commissioning.template.
func uefiEphemeral(p fakemaas.KernelParams, proto Protocol, o Options) string {
	host := EFIHost(p.FSHost, proto)
	return strings.TrimSpace(grubDebug(o) +
		"set default=\"0\"\nset timeout=0\n\n" +
		"menuentry 'Ephemeral' {\n" +
		"    echo   'Booting under MAAS direction...'\n" +
		"    linux  " + host + kernelPath(p) + " " + grubEscape(CommandLine(p)) + " BOOTIF=01-${net_default_mac}\n" +
		"    initrd " + host + initrdPath(p) + "\n" +
		"}\n")
}

func uefiStatic(body string) pxeBody {
	return func(_ fakemaas.KernelParams, _ Protocol, o Options) string {
		return strings.TrimSpace(grubDebug(o) + body)
	}
}

// uefiLocalAMD64 is config.local.amd64.template (after its debug line).
const uefiLocalAMD64 = `set default="0"
set timeout=0

menuentry 'Local' {
    echo 'Booting local disk...'
    # The bootloader paths list for secure boot is shortened because of LP:2022084
    for bootloader in \
            boot/bootx64.efi \
            ubuntu/shimx64.efi \
            ubuntu/grubx64.efi \
            Microsoft/Boot/bootmgfw.efi; do
        search --set=root --file /efi/$bootloader
        if [ $? -eq 0 ]; then
            chainloader /efi/$bootloader
            boot
        fi
    done

    if [ "${shim_lock}" != "y" ]; then
        echo 'Secure boot is disabled, trying chainloader...'
        for bootloader in \
                centos/shimx64.efi \
                centos/grubx64.efi \
                redhat/shimx64.efi \
                redhat/grubx64.efi \
                rhel/shimx64.efi \
                rhel/grubx64.efi \
                rocky/shimx64.efi \
                rocky/grubx64.efi \
                suse/shim.efi \
                suse/grubx64.efi \
                ol/shim.efi \
                ol/grubx64.efi \
                red/grubx64.efi; do
            search --set=root --file /efi/$bootloader
            if [ $? -eq 0 ]; then
                chainloader /efi/$bootloader
                boot
            fi
        done
    fi

    # If no bootloader is found exit and allow the next device to boot.
    exit 1
}
`

// uefiLocalARM64 is config.local.arm64.template.
const uefiLocalARM64 = `set default="0"
set timeout=0

menuentry 'Local' {
    echo 'Booting local disk...'
    search --set=root --file /efi/ubuntu/grubaa64.efi
    if [ $? -eq 0 ]; then
        chainloader /efi/ubuntu/grubaa64.efi
        boot
    fi
    # This is the default bootloader location according to the UEFI spec.
    search --set=root --file /efi/boot/bootaa64.efi
    if [ $? -eq 0 ]; then
        chainloader /efi/boot/bootaa64.efi
        boot
    fi
    # If no bootloader is found exit and allow the next device to boot.
    exit
}
`

// uefiLocalPPC64EL is config.local.ppc64el.template.
const uefiLocalPPC64EL = `set default="0"
set timeout=0

menuentry 'Local' {
    echo 'Booting local disk...'
    search --set=root --file /boot/grub/grub.cfg
    configfile /boot/grub/grub.cfg
}
`

// uefiPoweroff is config.poweroff.template.
const uefiPoweroff = `set default="0"
set timeout=0

menuentry 'Power Off' {
    echo 'Powering off...'
    halt
}
`

// ---- iPXE (templates/ipxe) ---------------------------------------------------------------

var ipxeTemplates = map[string]pxeBody{
	"config.install.template":       ipxeInstall,
	"config.commissioning.template": ipxeInstall, // -> config.install.template
	"config.enlist.template":        ipxeInstall, // -> config.install.template
	"config.xinstall.template":      ipxeInstall, // -> config.install.template
	"config.local.template":         ipxeLocal,
	"config.poweroff.template":      ipxePoweroff,
}

// ipxeInstall is config.install.template.
func ipxeInstall(p fakemaas.KernelParams, _ Protocol, _ Options) string {
	fs := FSHostURL(p.FSHost)
	return "#!ipxe\n" +
		"kernel " + fs + kernelPath(p) + "\n" +
		"imgargs " + kernelName(p) + " " + CommandLine(p) + " BOOTIF=01-${mac}\n" +
		"initrd " + fs + initrdPath(p) + "\n" +
		"boot\n"
}

// ipxeLocal is config.local.template.
func ipxeLocal(fakemaas.KernelParams, Protocol, Options) string {
	return `#!ipxe
# Boot the locally attached hard drives. On failure try the next locally
# attached hard drive. Fail on the last hard drive, if booting fails.
sanboot --no-describe --drive 0x80 ||
sanboot --no-describe --drive 0x81 ||
sanboot --no-describe --drive 0x82 ||
sanboot --no-describe --drive 0x83
`
}

// ipxePoweroff is config.poweroff.template (which ends with an empty line).
func ipxePoweroff(fakemaas.KernelParams, Protocol, Options) string {
	return "#!ipxe\npoweroff\n\n"
}
