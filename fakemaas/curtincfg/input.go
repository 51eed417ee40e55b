package curtincfg

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Input is everything the generator needs about one machine and its deployment. The
// region maps its records to it; zero values mean MAAS's defaults where one exists.
type Input struct {
	Machine     Machine
	Deployment  Deployment
	Storage     Storage
	Network     Network
	Credentials Credentials
	URLs        URLs
	Settings    Settings
}

// Machine is the hardware and identity of a machine.
type Machine struct {
	SystemID string // e.g. "xyz123"
	Hostname string
	Domain   string // default "maas"
	Arch     string // "amd64", "arm64", "ppc64el", "s390x", "i386", "armhf"
	Subarch  string // default "generic"
	// Firmware is "bios" (MAAS bios_boot_method "pxe", the default) or "uefi". MAAS's
	// other boot methods ("powernv", "powerkvm", "s390x", ...) are accepted as given.
	Firmware string

	BlockDevices []BlockDevice // physical disks, in MAAS id order
	// BootDisk names the boot disk; empty means MAAS's fallback: the first disk of at
	// least 512 MiB.
	BootDisk string

	Interfaces []Interface
	// BootInterface names the interface the machine PXE boots from; empty means the
	// first physical interface.
	BootInterface string

	// Owner details, for the vendor-data's default user (generate_system_info).
	OwnerUsername string // node.default_user; empty: no system_info
	OwnerFullName string
	OwnerEmail    string // adds the maas-ubuntu-sso cloudconfig entry when set

	// State flags MAAS keeps on the node and that change the preseeds.
	EnableSSH              bool // commissioning/testing with SSH: no power_state
	PoweredOnBeforeTesting bool // testing started from a powered-on machine: reboot, not poweroff
}

// BlockDevice is a physical disk.
type BlockDevice struct {
	ID        int    // MAAS block device id; informational (order is the slice order)
	Name      string // "sda"
	IDPath    string // "/dev/disk/by-id/wwn-0x..."; used when model or serial is empty
	Model     string
	Serial    string
	Size      int64 // bytes
	BlockSize int   // bytes, default 512
}

// Interface types.
const (
	IfacePhysical = "physical"
	IfaceBond     = "bond"
	IfaceVLAN     = "vlan"
	IfaceBridge   = "bridge"
)

// Interface is a network interface as MAAS models it.
type Interface struct {
	ID      int    // MAAS interface id, the last tie-break when choosing the default gateway; default position+1
	Type    string // physical, bond, vlan, bridge
	Name    string
	MAC     string // aa:bb:cc:dd:ee:ff
	MTU     int    // effective MTU of the interface's VLAN or params; default 1500
	Parents []string
	VID     int // vlan interfaces: the VLAN id
	// Params are MAAS interface params: bond_mode, bond_miimon, bond_lacp_rate,
	// bond_xmit_hash_policy, bond_num_grat_arp, bridge_type, bridge_stp, bridge_fd,
	// accept-ra, ... Values are strings, ints or bools.
	Params map[string]any
	Links  []Link
	// Disconnected means the interface is on no VLAN (netplan "optional: true").
	Disconnected bool
	Disabled     bool
}

// Link modes (MAAS link_subnet modes).
const (
	LinkAuto   = "auto"
	LinkStatic = "static"
	LinkDHCP   = "dhcp"
	LinkUp     = "link_up"
)

// Link is an address configuration on an interface.
type Link struct {
	Mode   string // auto, static, dhcp, link_up
	Subnet string // CIDR of a subnet in Network.Subnets; may be empty for dhcp and link_up
	IP     string // the address (static; auto once MAAS assigned it)
}

// Network holds the subnets and routes the links refer to and the DNS facts MAAS
// derives from its own state.
type Network struct {
	Subnets []Subnet
	Routes  []Route
	// SearchDomains are MAAS's authoritative domains (get_dns_search_paths); the
	// machine's domain always comes first. Default: the machine's domain only.
	SearchDomains []string
	// MAASDNSServers are the addresses of MAAS's DNS reachable from this machine (the
	// routable rack addresses, then the region's). Default: the rack address.
	MAASDNSServers []string
	// DefaultDNSServers, when set, is used as node.get_default_dns_servers() instead of
	// deriving it from the default gateway's subnet and MAASDNSServers.
	DefaultDNSServers []string
}

// Subnet is a MAAS subnet.
type Subnet struct {
	CIDR       string
	Gateway    string
	DNSServers []string
	// DisallowDNS is MAAS's allow_dns=false: MAAS's own DNS is not offered on this subnet.
	DisallowDNS bool
	// Managed means MAAS serves DHCP on the subnet's VLAN (vlan.dhcp_on): its gateway is
	// preferred as the default gateway.
	Managed bool
	// RackAddresses are the primary/secondary rack controllers' addresses on the
	// subnet's VLAN, offered as name servers when DNS is allowed.
	RackAddresses []string
}

// Route is a MAAS static route.
type Route struct {
	Source      string // subnet CIDR the route applies to
	Destination string // CIDR
	Gateway     string
	Metric      int
}

// Operating systems MAAS knows.
const (
	OSUbuntu     = "ubuntu"
	OSCustom     = "custom"
	OSCentOS     = "centos"
	OSRHEL       = "rhel"
	OSOL         = "ol"
	OSSUSE       = "suse"
	OSWindows    = "windows"
	OSESXi       = "esxi"
	OSUbuntuCore = "ubuntu-core"
)

// Deployment is what the user asked MAAS to deploy.
type Deployment struct {
	OSystem string // "ubuntu", "custom", "centos", "rhel", ...
	Series  string // distro_series: "noble", or the custom image's name
	// BaseImage is a custom image's base_image, "<osystem>/<series>" (e.g.
	// "ubuntu/jammy", "rhel/9"). Required for custom images.
	BaseImage string
	Image     Image

	// HWEKernel is node.hwe_kernel, e.g. "ga-24.04": the image subarch in the source
	// URL of synced (non-custom) images when Image.Subarch is not given.
	HWEKernel string
	// KernelPackage is the kpackage MAAS found for the node's kernel (e.g.
	// "linux-generic"); empty leaves the kernel choice to curtin (no kernel document).
	KernelPackage string
	// SwapSize is node.swap_size in bytes: nil leaves it to curtin, 0 disables the swap file.
	SwapSize *int64

	Ephemeral             bool   // deploy to memory
	EnableKernelCrashDump bool   // enable_kernel_crash_dump
	KernelOpts            string // effective kernel options (vendor-data overlayroot size fix)
}

// Image is the boot resource file curtin installs (the xinstall image).
type Image struct {
	// Filetype is the boot resource file type: the stored form ("root-tgz", "root-txz",
	// "root-tbz", "root-dd", "root-dd.gz", "root-dd.xz", "root-dd.bz2", "root-dd.raw",
	// "root-dd.tar", "root-dd.tar.xz", "root-dd.tar.bz2", "squashfs") or the upload form
	// ("tgz", "ddgz", ...).
	Filetype string
	// Filename is the boot resource file name; default root.tgz/root.txz/root.tbz for
	// tarballs, otherwise the stored filetype.
	Filename       string
	FilenameOnDisk string // sha256 prefix naming the file on the rack, e.g. "87b8187"
	Subarch        string // the subarch the image was found under (URL slot); see Input.Source
	Label          string // resource set label: "uploaded" (default), "stable", ...
}

// Storage selects the storage layout.
type Storage struct {
	// Layout is "flat" (MAAS's default), "lvm" or "custom".
	Layout     string
	BootSize   int64  // optional separate /boot partition, bytes
	RootSize   int64  // root partition size, bytes; 0: the rest of the disk
	RootDevice string // disk for the root partition; default the boot disk
	VGName     string // lvm: default "vgroot"
	LVName     string // lvm: default "lvroot"
	LVSize     int64  // lvm: default the whole volume group
	// Custom is a curtin storage configuration (layout "custom"), passed through: a
	// YAML mapping with a "storage" key, or the {version, config} mapping itself.
	Custom string
	// UUIDs fixes the UUIDs of storage items by their storage id ("sda-part2",
	// "sda-part2_format", "vgroot", "vgroot-lvroot"). Missing ones are derived from the
	// system_id and the id (UUID version 5), so output stays deterministic.
	UUIDs map[string]string
}

// Credentials are the node's OAuth token (NodeKey); the consumer secret is empty in MAAS.
type Credentials struct {
	ConsumerKey string
	TokenKey    string
	TokenSecret string
}

// URLs says how machines reach MAAS through the rack.
type URLs struct {
	// RackIP is the rack address the machine boots from (node.boot_cluster_ip): every
	// URL a deploying machine gets is http://<RackIP>:5248/...
	RackIP string
	// RackName, when set, replaces RackIP in the enlistment preseed's URLs: MAAS uses
	// "<subnet-as-name>.<maas_internal_domain>" there when the rack serves DNS on the
	// machine's subnet (see InternalName).
	RackName string
}

// InternalName is the name MAAS gives a rack on a subnet in its internal domain, e.g.
// InternalName("10.0.0.0/24", "maas-internal") == "10-0-0-0--24.maas-internal".
func InternalName(cidr, internalDomain string) string {
	if internalDomain == "" {
		internalDomain = "maas-internal"
	}
	r := strings.NewReplacer("/", "--", ":", "-", ".", "-")
	return r.Replace(cidr) + "." + internalDomain
}

// Settings are the MAAS configuration values the documents depend on. The zero value is
// MAAS's default configuration.
type Settings struct {
	// Proxy (get_apt_proxy). By default MAAS points apt and snap at the rack's proxy,
	// http://<rack>:8000/.
	HTTPProxyDisabled bool   // enable_http_proxy=false
	HTTPProxy         string // http_proxy: an external proxy
	UsePeerProxy      bool   // use_peer_proxy
	RackProxyDisabled bool   // use_rack_proxy=false: the proxy URL names the region (RegionHost)
	ProxyPort         int    // maas_proxy_port, default 8000
	RegionHost        string // the region's maas-facing address, for RackProxyDisabled

	// Archive (PackageRepository defaults).
	MainArchive        string // default http://archive.ubuntu.com/ubuntu (amd64, i386)
	PortsArchive       string // default http://ports.ubuntu.com/ubuntu-ports (other arches)
	ArchiveKey         string
	DisabledPockets    []string // of updates, security, backports
	DisabledComponents []string // of restricted, universe, multiverse
	ArchiveSources     bool     // disable_sources=false: deb-src lines enabled

	// Syslog.
	RemoteSyslog string // remote_syslog "host:port"
	SyslogPort   int    // maas_syslog_port, default 5247

	ForceV1NetworkYAML bool // force_v1_network_yaml
	CurtinQuiet        bool // curtin_verbose=false: no verbosity document

	CommissioningOS     string // commissioning_osystem, default "ubuntu"
	CommissioningSeries string // commissioning_distro_series, default "noble"

	NTPServers      []string // ntp_servers, default ["ntp.ubuntu.com"]
	NTPExternalOnly bool     // ntp_external_only
}

// ErrInvalidInput is wrapped by every error about bad input.
var ErrInvalidInput = errors.New("invalid input")

// InputError names the input that broke a rule.
type InputError struct {
	Field string // e.g. "deployment.image.filetype"
	Value string
	Rule  string
}

func (e *InputError) Error() string {
	return fmt.Sprintf("invalid input: %s %q: %s", e.Field, e.Value, e.Rule)
}

// Unwrap makes errors.Is(err, ErrInvalidInput) true.
func (e *InputError) Unwrap() error { return ErrInvalidInput }

func bad(field, value, rule string, args ...any) error {
	return &InputError{Field: field, Value: value, Rule: fmt.Sprintf(rule, args...)}
}

func (m *Machine) domain() string {
	if m.Domain == "" {
		return "maas"
	}
	return m.Domain
}

func (m *Machine) subarch() string {
	if m.Subarch == "" {
		return "generic"
	}
	return m.Subarch
}

// biosBootMethod maps Firmware to MAAS's bios_boot_method.
func (m *Machine) biosBootMethod() string {
	switch m.Firmware {
	case "", "bios", "pxe":
		return "pxe"
	default:
		return m.Firmware
	}
}

func (s *Settings) commissioning() (string, string) {
	osys, series := s.CommissioningOS, s.CommissioningSeries
	if osys == "" {
		osys = OSUbuntu
	}
	if series == "" {
		series = "noble"
	}
	return osys, series
}

var knownBootMethods = map[string]bool{
	"pxe": true, "uefi": true, "powernv": true, "powerkvm": true, "s390x": true,
	"s390x_partition": true, "ipxe": true, "windows": true, "onie": true,
}

// validateNode checks what every node-specific document needs.
func (in *Input) validateNode() error {
	m := &in.Machine
	if m.SystemID == "" {
		return bad("machine.system_id", "", "must not be empty")
	}
	if strings.ContainsAny(m.SystemID, "/ ?#") {
		return bad("machine.system_id", m.SystemID, "must be a MAAS system_id (letters, digits, '-' or '_')")
	}
	if m.Hostname == "" {
		return bad("machine.hostname", "", "must not be empty")
	}
	if m.Arch == "" {
		return bad("machine.arch", "", "must name an architecture such as amd64")
	}
	if !knownBootMethods[m.biosBootMethod()] {
		return bad("machine.firmware", m.Firmware, "must be bios or uefi (or a MAAS bios_boot_method)")
	}
	if _, err := netip.ParseAddr(in.URLs.RackIP); err != nil {
		return bad("urls.rack_ip", in.URLs.RackIP, "must be the rack IP address the machine boots from")
	}
	c := in.Credentials
	if c.ConsumerKey == "" || c.TokenKey == "" || c.TokenSecret == "" {
		return bad("credentials", c.ConsumerKey+":"+c.TokenKey, "consumer_key, token_key and token_secret are all required")
	}
	return nil
}

// wrapHost puts IPv6 addresses in brackets for URLs (_wrap_ipv6_address).
func wrapHost(h string) string {
	if a, err := netip.ParseAddr(h); err == nil && a.Is6() && !a.Is4In6() {
		return "[" + h + "]"
	}
	return h
}

// rackURL is http://<rack>:5248 for a deploying machine (build_metadata_url with a
// node that has a boot_cluster_ip).
func (in *Input) rackURL() string {
	return "http://" + wrapHost(in.URLs.RackIP) + ":5248"
}
