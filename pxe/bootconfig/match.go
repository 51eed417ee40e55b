package bootconfig

import (
	"regexp"
	"strings"
)

// Format is the config language a bootloader reads.
type Format int

// Config formats.
const (
	PXELinux Format = iota + 1 // pxelinux.cfg/* (templates/pxe)
	GRUB                       // grub/grub.cfg-* (templates/uefi)
	IPXE                       // ipxe.cfg-* (templates/ipxe)
)

func (f Format) String() string {
	switch f {
	case PXELinux:
		return "pxelinux"
	case GRUB:
		return "grub"
	case IPXE:
		return "ipxe"
	}
	return "unknown"
}

// Boot methods' bios_boot_method, as the rack reports them to the region
// (src/maascommon/bootmethods.py): the first method whose regex matches names the method.
const (
	MethodPXE  = "pxe"
	MethodUEFI = "uefi"
	MethodIPXE = "ipxe"
)

// Match is what a config file name tells the rack.
type Match struct {
	Format     Format
	Bootloader string // MethodPXE, MethodUEFI or MethodIPXE
	MAC        string // aa:bb:cc:dd:ee:ff lowercase, or ""
	UUID       string // hardware UUID from pxelinux.cfg/<uuid>, or ""
	Arch       string // MAAS (Debian) architecture name, or ""
	Subarch    string // or ""
}

// The regexes are those of pxe.py, grub.py and ipxe.py (leading slashes optional; \w is
// [A-Za-z0-9_] in both Python's ASCII-bytes mode and Go).
var (
	// pxe.py re_config_file: 01-<mac with dashes, lowercase> | <uuid> | default[[.-]arch[-subarch]]
	rePXELinux = regexp.MustCompile(`^/*pxelinux[.]cfg/(?:01-(?P<mac>[0-9a-f]{2}(?:-[0-9a-f]{2}){5})` +
		`|(?P<uuid>[a-fA-F0-9]{8}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{12})` +
		`|default(?:[.-](?P<arch>\w+)(?:-(?P<subarch>\w+))?)?)$`)
	// grub.py re_config_file: grub/grub.cfg-<mac, each separator ':' or '-'> | default[-arch[-subarch]]
	reGRUB = regexp.MustCompile(`^/*grub/grub[.]cfg-(?:(?P<mac>[0-9a-f]{2}(?:[:-][0-9a-f]{2}){5})` +
		`|default(?:[-](?P<arch>\w+)(?:-(?P<subarch>\w+))?)?)$`)
	// ipxe.py re_config_file: ipxe.cfg-<mac with colons> | default[-arch[-subarch]]
	reIPXE = regexp.MustCompile(`^/*ipxe[.]cfg-(?:(?P<mac>[0-9a-f]{2}(?::[0-9a-f]{2}){5})` +
		`|default(?:[-](?P<arch>\w+)(?:-(?P<subarch>\w+))?)?)$`)
)

// pxeAliases maps pxelinux architecture names to MAAS's (ArchitectureRegistry.get_by_pxealias:
// the first registered architecture with the alias, arm64/generic for "arm").
var pxeAliases = map[string]string{"arm": "arm64"}

// grubArches maps GRUB's ${grub_cpu} to MAAS's architecture names (grub.py match_path).
var grubArches = map[string]string{
	"x86_64":  "amd64",
	"powerpc": "ppc64el",
	"ppc64":   "ppc64el",
	"ppc64le": "ppc64el",
}

// MatchPath reports whether name (slashes already normalised) is a config file a boot method
// renders, trying the methods in MAAS's registry order (ipxe, pxe, uefi...).
func MatchPath(name string) (Match, bool) {
	if m, ok := match(reIPXE, name); ok {
		m.Format, m.Bootloader = IPXE, MethodIPXE
		return m, true
	}
	if m, ok := match(rePXELinux, name); ok {
		m.Format, m.Bootloader = PXELinux, MethodPXE
		return m, true
	}
	if m, ok := match(reGRUB, name); ok {
		m.Format, m.Bootloader = GRUB, MethodUEFI
		if a, ok := grubArches[m.Arch]; ok {
			m.Arch = a
		}
		return m, true
	}
	return Match{}, false
}

func match(re *regexp.Regexp, name string) (Match, bool) {
	sub := re.FindStringSubmatch(name)
	if sub == nil {
		return Match{}, false
	}
	var m Match
	for i, n := range re.SubexpNames() {
		switch n {
		case "mac":
			m.MAC = strings.NewReplacer("-", ":").Replace(sub[i])
		case "uuid":
			m.UUID = sub[i]
		case "arch":
			m.Arch = sub[i]
		case "subarch":
			m.Subarch = sub[i]
		}
	}
	if a, ok := pxeAliases[m.Arch]; ok {
		m.Arch = a
	}
	return m, true
}

// GRUBPreloader is grub/grub.cfg, which MAAS writes into the TFTP root (grub.py CONFIG_FILE).
// It names no protocol, so GRUB keeps the one it was loaded with.
const GRUBPreloader = `
# MAAS GRUB2 pre-loader configuration file

# Load based on MAC address first.
configfile /grub/grub.cfg-${net_default_mac}

# Failed to load based on MAC address. Load based on the CPU
# architecture.
configfile /grub/grub.cfg-default-${grub_cpu}
`

// IPXEPreloader is ipxe.cfg, which MAAS writes into the TFTP root (ipxe.py CONFIG_FILE); DHCP
// hands it to iPXE as http://<rack>:5248/ipxe.cfg.
const IPXEPreloader = `#!ipxe
# MAAS iPXE pre-loader configuration file

# Load based on MAC address first.
chain http://${next-server}:5248/ipxe.cfg-${mac} ||

# Failed to load based on MAC address.
chain http://${next-server}:5248/ipxe.cfg-default-amd64
`
