package curtincfg

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/maasemu/maasemu/fakemaas/curtincfg/pyyaml"
)

// Purpose is the node state a preseed is rendered for (MAAS decides it from the node's
// status and flags in get_preseed / get_preseed_type_for).
type Purpose string

// Preseed purposes.
const (
	// PurposeDeploy: status Deploying, installing to disk with curtin
	// (compose_curtin_preseed): metadata_url .../MAAS/metadata/curtin, power_state reboot.
	// With Deployment.Ephemeral set it renders PurposeEphemeralDeploy, as MAAS does.
	PurposeDeploy Purpose = "deploy"
	// PurposeEphemeralDeploy: status Deploying with ephemeral_deploy (deploy to memory):
	// the commissioning preseed shape without power_state.
	PurposeEphemeralDeploy Purpose = "ephemeral-deploy"
	// PurposeCommissioning, PurposeTesting, PurposeDiskErasing, PurposeRescue: the
	// commissioning preseed (power_state poweroff, except as noted by MAAS).
	PurposeCommissioning Purpose = "commissioning"
	PurposeTesting       Purpose = "testing"
	PurposeDiskErasing   Purpose = "disk-erasing"
	PurposeRescue        Purpose = "rescue" // entering rescue mode: no power_state
	// PurposeEnlist: an unknown machine booting the enlistment environment; only URLs
	// and Settings are used.
	PurposeEnlist Purpose = "enlist"
)

const (
	rsyslogPort       = 5247
	defaultProxyPort  = 8000
	mainArchiveURL    = "http://archive.ubuntu.com/ubuntu"
	portsArchiveURL   = "http://ports.ubuntu.com/ubuntu-ports"
	routeMetadata     = "/MAAS/metadata/"
	routeCurtinMeta   = "/MAAS/metadata/curtin"
	cloudConfigHeader = "#cloud-config\n"
)

var (
	knownComponents    = []string{"main", "restricted", "universe", "multiverse"}
	componentsDisable  = []string{"restricted", "universe", "multiverse"}
	pocketsToDisable   = []string{"updates", "security", "backports"}
	mainArchiveArches  = []string{"amd64", "i386"}
	commissioningLike  = map[Purpose]bool{PurposeCommissioning: true, PurposeTesting: true, PurposeDiskErasing: true, PurposeRescue: true}
	deployingPurposes  = map[Purpose]bool{PurposeDeploy: true, PurposeEphemeralDeploy: true}
	preseedKnownValues = []Purpose{PurposeDeploy, PurposeEphemeralDeploy, PurposeCommissioning, PurposeTesting, PurposeDiskErasing, PurposeRescue, PurposeEnlist}
)

// Preseed renders the cloud-config MAAS serves at
// /MAAS/metadata/latest/by-id/<system_id>/?op=get_preseed (or, for PurposeEnlist, at
// /MAAS/metadata/latest/enlist-preseed/?op=get_enlist_preseed). It starts with
// "#cloud-config" and is, key for key and byte for byte, what compose_preseed.py renders.
func Preseed(in *Input, p Purpose) (string, error) {
	switch p {
	case PurposeEnlist:
		return enlistPreseed(in)
	case PurposeDeploy:
		if err := in.validateNode(); err != nil {
			return "", err
		}
		if in.Deployment.Ephemeral {
			// get_preseed: an ephemeral deployment gets the commissioning preseed.
			return in.cloudInitPreseed(PurposeEphemeralDeploy, in.rackURL()+routeMetadata)
		}
		return in.cloudInitPreseed(p, in.rackURL()+routeCurtinMeta)
	case PurposeEphemeralDeploy, PurposeCommissioning, PurposeTesting, PurposeDiskErasing, PurposeRescue:
		if err := in.validateNode(); err != nil {
			return "", err
		}
		return in.cloudInitPreseed(p, in.rackURL()+routeMetadata)
	default:
		return "", bad("purpose", string(p), "must be one of %v", preseedKnownValues)
	}
}

// cloudInitPreseed is _compose_cloud_init_preseed.
func (in *Input) cloudInitPreseed(p Purpose, metadataURL string) (string, error) {
	cfg := basePreseed(p)
	cfg.Set("datasource", pyyaml.M("MAAS", pyyaml.M(
		"metadata_url", metadataURL,
		"consumer_key", in.Credentials.ConsumerKey,
		"token_key", in.Credentials.TokenKey,
		"token_secret", in.Credentials.TokenSecret,
	)))
	cfg.Set("rsyslog", pyyaml.M("remotes", pyyaml.M("maas", in.rsyslogHostPort())))
	cfg.Update(in.cloudInitReporting())
	// MAAS adds the legacy apt keys only for trusty, which no supported ephemeral runs.
	cfg.Update(in.archiveConfig(false))
	if proxy := in.aptProxy(wrapHost(in.URLs.RackIP)); proxy != "" {
		cfg.Set("snap", pyyaml.M("commands", pyyaml.L(snapProxyCommand(proxy))))
	}
	enableSSH := (p == PurposeCommissioning || p == PurposeTesting) && in.Machine.EnableSSH
	if p != PurposeRescue && !enableSSH && p != PurposeEphemeralDeploy {
		testingReboot := p == PurposeTesting && in.Machine.PoweredOnBeforeTesting
		if p == PurposeDeploy || testingReboot {
			cfg.Set("power_state", pyyaml.M("delay", "now", "mode", "reboot", "timeout", 1800,
				"condition", "test ! -e /tmp/block-reboot"))
		} else {
			timeout := 3600 // one hour
			if p == PurposeDiskErasing {
				timeout = 7 * 24 * 3600 // one week
			}
			cfg.Set("power_state", pyyaml.M("delay", "now", "mode", "poweroff", "timeout", timeout,
				"condition", "test ! -e /tmp/block-poweroff"))
		}
	}
	body, err := pyyaml.Dump(cfg)
	if err != nil {
		return "", err
	}
	return cloudConfigHeader + body, nil
}

// basePreseed is get_base_preseed.
func basePreseed(p Purpose) *pyyaml.Map {
	cfg := pyyaml.M("manage_etc_hosts", true)
	if deployingPurposes[p] {
		cfg.Set("packages", pyyaml.L("python3-packaging"))
	}
	if p == PurposeEnlist || commissioningLike[p] {
		pkgs := pyyaml.L("python3-yaml", "python3-oauthlib")
		if p == PurposeDiskErasing {
			pkgs = append(pkgs, "nvme-cli")
		}
		cfg.Set("packages", pkgs)
	}
	return cfg
}

func snapProxyCommand(proxy string) string {
	return fmt.Sprintf(`snap set system proxy.http="%s" proxy.https="%s"`, proxy, proxy)
}

// rsyslogHostPort is get_rsyslog_host_port for a node: remote_syslog, or the node's
// boot_cluster_ip (not bracketed, as MAAS writes it) and the MAAS syslog port.
func (in *Input) rsyslogHostPort() string {
	if in.Settings.RemoteSyslog != "" {
		return in.Settings.RemoteSyslog
	}
	return in.URLs.RackIP + ":" + strconv.Itoa(in.Settings.syslogPort())
}

func (s *Settings) syslogPort() int {
	if s.SyslogPort == 0 {
		return rsyslogPort
	}
	return s.SyslogPort
}

// aptProxy is get_apt_proxy: rackHost is how the machine names the rack.
func (in *Input) aptProxy(rackHost string) string {
	s := &in.Settings
	if s.HTTPProxyDisabled {
		return ""
	}
	if p := strings.TrimSpace(s.HTTPProxy); p != "" && !s.UsePeerProxy {
		return p
	}
	port := s.ProxyPort
	if port == 0 {
		port = defaultProxyPort
	}
	host := rackHost
	if s.RackProxyDisabled || host == "" {
		host = wrapHost(s.RegionHost)
		if s.RegionHost == "" {
			host = wrapHost(in.URLs.RackIP)
		}
	}
	return fmt.Sprintf("http://%s:%d/", host, port)
}

// cloudInitReporting is get_cloud_init_reporting.
func (in *Input) cloudInitReporting() *pyyaml.Map {
	return pyyaml.M("reporting", pyyaml.M("maas", pyyaml.M(
		"type", "webhook",
		"endpoint", in.rackURL()+"/MAAS/metadata/status/"+in.Machine.SystemID,
		"consumer_key", in.Credentials.ConsumerKey,
		"token_key", in.Credentials.TokenKey,
		"token_secret", in.Credentials.TokenSecret,
	)))
}

func (s *Settings) archiveFor(arch string) string {
	if slices.Contains(mainArchiveArches, arch) {
		if s.MainArchive != "" {
			return s.MainArchive
		}
		return mainArchiveURL
	}
	if s.PortsArchive != "" {
		return s.PortsArchive
	}
	return portsArchiveURL
}

func (s *Settings) components() []string {
	var out []string
	for _, c := range knownComponents {
		if slices.Contains(s.DisabledComponents, c) && slices.Contains(componentsDisable, c) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// archiveConfig is get_archive_config: the apt document (curtin) and the apt key of the
// ephemeral preseed. The deb822 format is chosen from the node's own osystem/series, so
// a custom image gets the one-line format even on an Ubuntu 24.04 base.
func (in *Input) archiveConfig(preserveSources bool) *pyyaml.Map {
	s := &in.Settings
	archive := s.archiveFor(in.Machine.Arch)
	components := strings.Join(s.components(), " ")
	apt := pyyaml.M("preserve_sources_list", preserveSources, "sources", pyyaml.NewMap())
	if in.Deployment.OSystem == OSUbuntu && ubuntuAtLeast2404(in.Deployment.Series) {
		types := "deb deb-src"
		if !s.ArchiveSources {
			types = "deb"
		}
		suites := []string{"$RELEASE"}
		for _, p := range pocketsToDisable {
			if !slices.Contains(s.DisabledPockets, p) {
				suites = append(suites, "$RELEASE-"+p)
			}
		}
		var b strings.Builder
		fmt.Fprintf(&b, "Types: %s\nURIs: %s\nSuites: %s\nComponents: %s\n", types, archive, strings.Join(suites, " "), components)
		if s.ArchiveKey == "" {
			b.WriteString("Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg\n")
		}
		apt.Set("sources_list", b.String())
	} else {
		var b strings.Builder
		src := func(suite string) {
			fmt.Fprintf(&b, "deb %s %s %s\n", archive, suite, components)
			if !s.ArchiveSources {
				b.WriteString("# ")
			}
			fmt.Fprintf(&b, "deb-src %s %s %s\n", archive, suite, components)
		}
		src("$RELEASE")
		for _, p := range pocketsToDisable {
			if !slices.Contains(s.DisabledPockets, p) {
				src("$RELEASE-" + p)
			}
		}
		apt.Set("sources_list", b.String())
	}
	if proxy := in.aptProxy(wrapHost(in.URLs.RackIP)); proxy != "" {
		apt.Set("proxy", proxy)
	}
	if s.ArchiveKey != "" {
		apt.Set("sources", pyyaml.M("archive_key", pyyaml.M("key", s.ArchiveKey)))
	}
	return pyyaml.M("apt", apt)
}

// debconfPreseed is compose_debconf_cloud_init_preseed: the debconf lines that configure
// cloud-init (and cloud-init-base) in the installed system for MAAS.
func (in *Input) debconfPreseed() (string, error) {
	c := in.Credentials
	// urlencode of a dict keeps insertion order and quotes with quote_plus.
	creds := "oauth_consumer_key=" + url.QueryEscape(c.ConsumerKey) +
		"&oauth_token_key=" + url.QueryEscape(c.TokenKey) +
		"&oauth_token_secret=" + url.QueryEscape(c.TokenSecret)
	cfg := basePreseed(PurposeDeploy)
	cfg.Set("manual_cache_clean", true)
	cfg.Update(in.cloudInitReporting())
	local, err := pyyaml.Dump(cfg)
	if err != nil {
		return "", err
	}
	local = strings.ReplaceAll(local, `\`, `\\`)
	local = strings.ReplaceAll(local, "\n", `\n`)
	items := [][3]string{
		{"datasources", "multiselect", "MAAS"},
		{"maas-metadata-url", "string", in.rackURL() + routeMetadata},
		{"maas-metadata-credentials", "string", creds},
		{"local-cloud-config", "string", local},
	}
	lines := make([]string, 0, 2*len(items))
	for _, it := range items {
		lines = append(lines,
			fmt.Sprintf("cloud-init   cloud-init/%s  %s %s", it[0], it[1], it[2]),
			fmt.Sprintf("cloud-init-base   cloud-init-base/%s  %s %s", it[0], it[1], it[2]))
	}
	return strings.Join(lines, "\n"), nil
}

// enlistPreseed is compose_enlistment_preseed.
func enlistPreseed(in *Input) (string, error) {
	host := in.URLs.RackName
	if host == "" {
		if in.URLs.RackIP == "" {
			return "", bad("urls.rack_ip", "", "the enlistment preseed needs the rack address (rack_ip or rack_name)")
		}
		host = wrapHost(in.URLs.RackIP)
	}
	server := in.URLs.RackIP
	if server == "" {
		server = in.URLs.RackName
	}
	syslog := in.Settings.RemoteSyslog
	if syslog == "" {
		syslog = server + ":" + strconv.Itoa(in.Settings.syslogPort())
	}
	cfg := basePreseed(PurposeEnlist)
	cfg.Set("datasource", pyyaml.M("MAAS", pyyaml.M("metadata_url", "http://"+host+":5248"+routeMetadata)))
	cfg.Set("rsyslog", pyyaml.M("remotes", pyyaml.M("maas", syslog)))
	cfg.Set("power_state", pyyaml.M("delay", "now", "mode", "poweroff", "timeout", 1800,
		"condition", "test ! -e /tmp/block-poweroff"))
	cfg.Update(in.enlistArchiveConfig(in.aptProxy(host)))
	body, err := pyyaml.Dump(cfg)
	if err != nil {
		return "", err
	}
	return cloudConfigHeader + body, nil
}

// enlistArchiveConfig is get_enlist_archive_config. MAAS joins the enabled components
// from a Python set, whose order varies between processes; this uses MAAS's
// KNOWN_COMPONENTS order.
func (in *Input) enlistArchiveConfig(proxy string) *pyyaml.Map {
	s := &in.Settings
	main, ports := s.archiveFor("amd64"), s.archiveFor("arm64")
	apt := pyyaml.M(
		"preserve_sources_list", false,
		"primary", pyyaml.L(pyyaml.M("arches", pyyaml.L("amd64", "i386"), "uri", main), pyyaml.M("arches", pyyaml.L("default"), "uri", ports)),
		"security", pyyaml.L(pyyaml.M("arches", pyyaml.L("amd64", "i386"), "uri", main), pyyaml.M("arches", pyyaml.L("default"), "uri", ports)),
	)
	if proxy != "" {
		apt.Set("proxy", proxy)
	}
	if s.ArchiveKey != "" {
		// ArchiveKey signs both archives: MAAS sets default_key, then overwrites the
		// whole sources with ports_key.
		apt.Set("sources", pyyaml.M("ports_key", pyyaml.M("key", s.ArchiveKey)))
	}
	var comps []string
	for _, c := range knownComponents {
		if !slices.Contains(s.DisabledComponents, c) {
			comps = append(comps, c)
		}
	}
	components := strings.Join(comps, " ")
	var b strings.Builder
	line := func(format string, args ...any) {
		fmt.Fprintf(&b, format, args...)
	}
	line("deb $PRIMARY $RELEASE %s\n", components)
	if !s.ArchiveSources {
		b.WriteString("# ")
	}
	line("deb-src $PRIMARY $RELEASE %s\n", components)
	for _, suite := range []string{"updates", "backports"} {
		if !slices.Contains(s.DisabledPockets, suite) {
			line("deb $PRIMARY $RELEASE-%s %s\n", suite, components)
			if !s.ArchiveSources {
				b.WriteString("# ")
			}
			line("deb-src $PRIMARY $RELEASE-%s %s\n", suite, components)
		}
	}
	if !slices.Contains(s.DisabledPockets, "security") {
		line("deb $SECURITY $RELEASE-security %s\n", components)
		if !s.ArchiveSources {
			b.WriteString("# ")
		}
		line("deb-src $SECURITY $RELEASE-security %s\n", components)
	}
	apt.Set("sources_list", b.String())
	return pyyaml.M("apt", apt)
}
