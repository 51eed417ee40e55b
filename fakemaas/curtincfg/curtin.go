package curtincfg

import (
	"fmt"
	"slices"
	"strings"

	"github.com/maasemu/maasemu/fakemaas/curtincfg/pyyaml"
)

// Document is one curtin configuration document, in the order MAAS packs them
// (configs/config-000.cfg, config-001.cfg, ...); later ones are merged over earlier ones.
type Document struct {
	// Name says which MAAS composer produced it: storage, apt, reporter, network, swap,
	// kernel, verbose, cloudconfig, kernel-crash-dumps, main.
	Name string
	YAML string
}

// Curtin is the curtin configuration for one deployment and the source argument of
// `curtin install` (get_curtin_yaml_config and get_curtin_installer_url).
type Curtin struct {
	Documents []Document
	Source    string
}

// Configs returns the documents' YAML texts in order.
func (c *Curtin) Configs() []string {
	out := make([]string, len(c.Documents))
	for i, d := range c.Documents {
		out[i] = d.YAML
	}
	return out
}

// Document returns the named document.
func (c *Curtin) Document(name string) (Document, bool) {
	for _, d := range c.Documents {
		if d.Name == name {
			return d, true
		}
	}
	return Document{}, false
}

// RenderError is what a deploy request gets when the curtin configuration cannot be
// rendered; its text is MAAS's HTTP 400 body "Failed to render preseed: <reason>".
type RenderError struct{ Err error }

func (e *RenderError) Error() string { return "Failed to render preseed: " + e.Err.Error() }

// Unwrap returns the reason.
func (e *RenderError) Unwrap() error { return e.Err }

// CheckDeploy renders the curtin configuration as MAAS does before accepting a deploy
// (api/machines.py deploy -> get_curtin_merged_config) and returns a *RenderError when
// it fails. Ephemeral deployments are not checked, as in MAAS. Unlike MAAS, the check
// also resolves the source URL, so an image that cannot be installed is refused at
// deploy time rather than when the installer is fetched.
func CheckDeploy(in *Input) error {
	if in.Deployment.Ephemeral {
		return nil
	}
	if _, err := CurtinConfig(in); err != nil {
		return &RenderError{Err: err}
	}
	return nil
}

var knownOSystems = []string{OSUbuntu, OSCustom, OSCentOS, OSRHEL, OSOL, OSSUSE, OSWindows, OSESXi, OSUbuntuCore}

// linuxBaseOSystems are the OSes a custom image may name as its base
// (BootResourceForm: LINUX_OSYSTEMS).
var linuxBaseOSystems = []string{OSUbuntu, OSCentOS, OSRHEL, OSOL}

// baseOSSeries is get_base_osystem_series: a custom image's base image, otherwise the
// node's own OS and series.
func (in *Input) baseOSSeries() (string, string, error) {
	d := &in.Deployment
	if !slices.Contains(knownOSystems, d.OSystem) {
		return "", "", bad("deployment.osystem", d.OSystem, "must be one of %v", knownOSystems)
	}
	if d.Series == "" {
		return "", "", bad("deployment.series", "", "must name the release (or the custom image)")
	}
	if d.OSystem != OSCustom {
		return d.OSystem, d.Series, nil
	}
	if d.BaseImage == "" {
		cos, cseries := in.Settings.commissioning()
		return "", "", bad("deployment.base_image", "", "custom image %q has no base image: custom images require a base image <osystem>/<series>, e.g. ubuntu/jammy or rhel/9 (MAAS's upload form defaults it to the commissioning release, %s/%s)", d.Series, cos, cseries)
	}
	osys, series, ok := strings.Cut(d.BaseImage, "/")
	if !ok || osys == "" || series == "" || strings.Contains(series, "/") {
		return "", "", bad("deployment.base_image", d.BaseImage, "a base image must follow the format: <osystem>/<series>")
	}
	if !slices.Contains(linuxBaseOSystems, osys) {
		return "", "", bad("deployment.base_image", d.BaseImage, "custom images require a valid non-custom OS type base image (one of %v)", linuxBaseOSystems)
	}
	return osys, series, nil
}

// CurtinConfig renders the curtin configuration documents in the order
// get_curtin_yaml_config returns them (storage, apt, reporter, network, swap, kernel,
// verbose, cloudconfig, kernel-crash-dumps, main), each as yaml.safe_dump renders it,
// and the source argument of `curtin install`.
func CurtinConfig(in *Input) (*Curtin, error) {
	if err := in.validateNode(); err != nil {
		return nil, err
	}
	baseOS, baseSeries, err := in.baseOSSeries()
	if err != nil {
		return nil, err
	}
	source, err := in.Source()
	if err != nil {
		return nil, err
	}
	c := &Curtin{Source: source}
	add := func(name string, v any) error {
		s, err := pyyaml.Dump(v)
		if err != nil {
			return fmt.Errorf("rendering the %s document: %w", name, err)
		}
		c.Documents = append(c.Documents, Document{Name: name, YAML: s})
		return nil
	}

	storage, err := in.storageDocument()
	if err != nil {
		return nil, err
	}
	network, err := in.networkDocument(baseOS, baseSeries)
	if err != nil {
		return nil, err
	}
	mainDoc, err := in.mainConfig(baseOS, baseSeries)
	if err != nil {
		return nil, err
	}
	if err := add("storage", storage); err != nil {
		return nil, err
	}
	if baseOS == OSUbuntu || baseOS == OSCustom {
		if err := add("apt", in.archiveConfig(false)); err != nil {
			return nil, err
		}
	}
	if err := add("reporter", in.reporterConfig()); err != nil {
		return nil, err
	}
	if err := add("network", network); err != nil {
		return nil, err
	}
	if swap := in.swapConfig(); swap != nil {
		if err := add("swap", swap); err != nil {
			return nil, err
		}
	}
	if in.Deployment.OSystem != OSCustom && in.Deployment.KernelPackage != "" {
		if err := add("kernel", pyyaml.M("kernel", pyyaml.M("package", in.Deployment.KernelPackage, "mapping", pyyaml.NewMap()))); err != nil {
			return nil, err
		}
	}
	if !in.Settings.CurtinQuiet {
		if err := add("verbose", pyyaml.M("verbosity", 3, "showtrace", true)); err != nil {
			return nil, err
		}
	}
	cloud, err := in.cloudConfig()
	if err != nil {
		return nil, err
	}
	if err := add("cloudconfig", cloud); err != nil {
		return nil, err
	}
	if err := add("kernel-crash-dumps", pyyaml.M("kernel-crash-dumps", pyyaml.M("enabled", in.Deployment.EnableKernelCrashDump))); err != nil {
		return nil, err
	}
	if err := add("main", mainDoc); err != nil {
		return nil, err
	}
	return c, nil
}

const (
	curtinInstallLog   = "/tmp/install.log"
	curtinErrorTarfile = "/tmp/curtin-logs.tar"
)

// reporterConfig is curtin_maas_reporter with webhook events (every curtin MAAS 3.7
// ships supports them).
func (in *Input) reporterConfig() *pyyaml.Map {
	r := in.cloudInitReporting()
	r.Set("install", pyyaml.M(
		"log_file", curtinInstallLog,
		"error_tarfile", curtinErrorTarfile,
		"post_files", pyyaml.L(curtinInstallLog, curtinErrorTarfile),
	))
	return r
}

// swapConfig is compose_curtin_swap_preseed.
func (in *Input) swapConfig() *pyyaml.Map {
	if in.Deployment.OSystem == OSCustom {
		return nil // leave the decision to curtin
	}
	if in.Deployment.SwapSize != nil {
		return pyyaml.M("swap", pyyaml.M("size", fmt.Sprintf("%dB", *in.Deployment.SwapSize)))
	}
	if in.storageHasSwap() {
		return pyyaml.M("swap", pyyaml.M("size", "0B"))
	}
	return nil
}

// cloudConfig is get_curtin_cloud_config: cloud-init configuration curtin writes into
// the target (curtin names the files 95-cloudconfig-<key>.cfg, ignoring path).
func (in *Input) cloudConfig() (*pyyaml.Map, error) {
	c := in.Credentials
	ds, err := pyyaml.Dump(pyyaml.M("datasource", pyyaml.M("MAAS", pyyaml.M(
		"consumer_key", c.ConsumerKey,
		"token_key", c.TokenKey,
		"token_secret", c.TokenSecret,
		"metadata_url", in.rackURL()+routeMetadata,
	))))
	if err != nil {
		return nil, err
	}
	rep, err := pyyaml.Dump(in.cloudInitReporting())
	if err != nil {
		return nil, err
	}
	cfg := pyyaml.M(
		"maas-datasource", pyyaml.M("path", "/etc/cloud/cloud.cfg.d/90_maas_datasource.cfg", "content", "datasource_list: [ MAAS ]"),
		"maas-cloud-config", pyyaml.M("path", "/etc/cloud/cloud.cfg.d/90_maas_cloud_config.cfg", "content", cloudConfigHeader+ds),
	)
	if in.Machine.OwnerEmail != "" {
		sso, err := pyyaml.Dump(pyyaml.M("snap", pyyaml.M("email", in.Machine.OwnerEmail)))
		if err != nil {
			return nil, err
		}
		cfg.Set("maas-ubuntu-sso", pyyaml.M("path", "/etc/cloud/cloud.cfg.d/90_maas_ubuntu_sso.cfg", "content", cloudConfigHeader+sso))
	}
	cfg.Set("maas-reporting", pyyaml.M("path", "/etc/cloud/cloud.cfg.d/90_maas_cloud_init_reporting.cfg", "content", cloudConfigHeader+rep))
	return pyyaml.M("cloudconfig", cfg), nil
}

// customImageDeps is preseed.DEPS_PER_OS: what a custom image of each base OS must contain.
var customImageDeps = map[string][][]string{
	OSUbuntu: {{"cloud-init", "--version"}, {"netplan", "info"}},
	OSCentOS: {{"cloud-init", "--version"}},
	OSRHEL:   {{"cloud-init", "--version"}},
	OSSUSE:   {{"cloud-init", "--version"}},
	OSOL:     {{"cloud-init", "--version"}},
}

// mainConfig renders the curtin_userdata* template for the node's OS, then applies
// get_curtin_config's post-processing (grub2 debconf, s390x reipl, yum proxy, the
// custom-image dependency checks).
func (in *Input) mainConfig(baseOS, baseSeries string) (*pyyaml.Map, error) {
	debconf, err := in.debconfPreseed()
	if err != nil {
		return nil, err
	}
	disablePXE := in.rackURL() + "/MAAS/metadata/latest/by-id/" + in.Machine.SystemID + "/"
	cfg := pyyaml.M("debconf_selections", pyyaml.M("maas", debconf+"\n"))
	switch in.Deployment.OSystem {
	case OSCustom, OSOL, OSSUSE, OSWindows:
		// curtin_userdata_custom / _ol / _suse / _windows: debconf and netboot_off only.
	case OSCentOS:
		cfg.Set("early_commands", pyyaml.M("centos70_xfs_lp1958433", pyyaml.L("/bin/sh", "-c",
			`if [ "`+baseSeries+`" = "centos70" ] && mkfs.xfs 2>&1 | grep -q "reflink=0|1"; then WRAPPER=/usr/local/sbin/mkfs.xfs; echo "#!/bin/sh" >$WRAPPER && echo "exec $(which mkfs.xfs) -m reflink=0 \"\$@\"" >>$WRAPPER && chmod +x $WRAPPER && echo "Wrapper: $WRAPPER" && cat $WRAPPER; fi`)))
	default:
		// curtin_userdata (ubuntu, and every OS without a template of its own). No
		// third-party driver ever matches here (they need commissioning modaliases).
		cfg.Set("early_commands", pyyaml.M("driver_00", pyyaml.L("sh", "-c", "echo third party drivers not installed or necessary.")))
	}
	late := pyyaml.M("maas", pyyaml.L("wget", "--no-proxy", disablePXE, "--post-data", "op=netboot_off", "-O", "/dev/null"))
	cfg.Set("late_commands", late)
	if in.Deployment.OSystem == OSWindows {
		// The template renders "license_key: {{node.get_effective_license_key()}}";
		// no key renders as an empty (null) value.
		cfg.Set("license_key", nil)
	}
	if baseSeries == "precise" {
		cfg.Set("power_state", pyyaml.M("mode", "reboot"))
	}
	sel, _ := cfg.Get("debconf_selections")
	sel.(*pyyaml.Map).Set("grub2", "grub2   grub2/update_nvram  boolean false")

	if strings.Contains(in.Machine.Arch, "s390x") {
		boot, err := in.bootDisk()
		if err != nil {
			return nil, err
		}
		late.Set("maas_00", "chreipl node /dev/"+boot.Name)
	}
	if baseOS == OSCentOS || baseOS == OSRHEL || baseOS == OSOL {
		// get_preseed_context's http_proxy names the rack as the requesting machine
		// sees it (the internal-domain name on MAAS-managed subnets): RackName when set.
		host := in.URLs.RackName
		if host == "" {
			host = wrapHost(in.URLs.RackIP)
		}
		if proxy := in.aptProxy(host); proxy != "" {
			late.Set("yum_proxy", pyyaml.L("curtin", "in-target", "--", "bash", "-c",
				`echo -e "\n# Proxy configured by MAAS\nproxy=`+proxy+`\n" >> /etc/yum.conf`))
		}
	}
	if in.Deployment.OSystem == OSCustom {
		deps, ok := customImageDeps[baseOS]
		if !ok {
			return nil, bad("deployment.base_image", in.Deployment.BaseImage, "MAAS has no custom-image dependency checks for base OS %q", baseOS)
		}
		for i, dep := range deps {
			name := dep[0]
			check := fmt.Sprintf(`%s || (echo "%s not detected, MAAS will not be able to configure this machine properly" && exit 1)`, strings.Join(dep, " "), name)
			late.Set(fmt.Sprintf("%d-validate-custom-image-has-%s", 98+i, name), pyyaml.L("curtin", "in-target", "--", "bash", "-c", check))
		}
	}
	return cfg, nil
}

// Boot resource file types: the stored forms, the curtin source type each maps to
// (maascommon/osystem _get_image_filetypes), and the upload names (BootResourceForm).
var (
	xinstallTypes = map[string]string{
		"squashfs": "squashfs",
		"root-tgz": "tgz", "root-txz": "txz", "root-tbz": "tbz",
		"root.tgz": "tgz", "root.txz": "txz", "root.tbz": "tbz",
		"root-dd": "dd-tgz", "root-dd.tar": "dd-tar", "root-dd.raw": "dd-raw",
		"root-dd.bz2": "dd-bz2", "root-dd.gz": "dd-gz", "root-dd.xz": "dd-xz",
		"root-dd.tar.bz2": "dd-tbz", "root-dd.tar.xz": "dd-txz",
	}
	uploadFiletypes = map[string]string{
		"tgz": "root-tgz", "tbz": "root-tbz", "txz": "root-txz",
		"ddtgz": "root-dd", "ddtbz": "root-dd.tar.bz2", "ddtxz": "root-dd.tar.xz",
		"ddtar": "root-dd.tar", "ddbz2": "root-dd.bz2", "ddgz": "root-dd.gz",
		"ddxz": "root-dd.xz", "ddraw": "root-dd.raw",
	}
)

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// osAllows says which image kinds an OS can install (get_image_filetypes).
func osAllows(osys, xinstall string) bool {
	dd := strings.HasPrefix(xinstall, "dd-")
	tgz := xinstall == "tgz" || xinstall == "txz" || xinstall == "tbz"
	squash := xinstall == "squashfs"
	switch osys {
	case OSCustom:
		return true
	case OSUbuntu:
		return tgz || squash
	case OSWindows, OSESXi, OSUbuntuCore:
		return dd
	default:
		return tgz
	}
}

// Source is the `curtin install` source argument (get_curtin_installer_url): the image
// URL on the rack, plain for tarballs, prefixed "<dd-type>:" for disk images, and
// cp:///media/root-ro for a synced squashfs (curtin copies the booted ephemeral).
func (in *Input) Source() (string, error) {
	d := &in.Deployment
	img := &d.Image
	ft := img.Filetype
	if up, ok := uploadFiletypes[ft]; ok {
		ft = up
	}
	xinstall, ok := xinstallTypes[ft]
	if !ok {
		return "", bad("deployment.image.filetype", img.Filetype, "unknown filetype: must be one of %v or an upload filetype %v", sortedKeys(xinstallTypes), sortedKeys(uploadFiletypes))
	}
	if !osAllows(d.OSystem, xinstall) {
		return "", bad("deployment.image.filetype", img.Filetype,
			"%s cannot install a %s image: no image could be found for the given selection: os=%s, arch=%s, subarch=%s, series=%s, purpose=xinstall",
			d.OSystem, xinstall, d.OSystem, in.Machine.Arch, in.imageSubarch(), d.Series)
	}
	precise := d.OSystem == OSUbuntu && d.Series == "precise"
	prefix := ""
	switch {
	case xinstall == "squashfs" && !precise:
		return "cp:///media/root-ro", nil
	case xinstall == "squashfs":
		prefix = "fsimage:"
	case xinstall == "tgz" || xinstall == "txz" || xinstall == "tbz":
	default:
		prefix = xinstall + ":"
	}
	if img.FilenameOnDisk == "" || strings.ContainsAny(img.FilenameOnDisk, "/?#") {
		return "", bad("deployment.image.filename_on_disk", img.FilenameOnDisk, "must be the file's name on the rack (its sha256 prefix, at least 7 hex digits)")
	}
	name := img.Filename
	if name == "" {
		switch ft {
		case "root-tgz":
			name = "root.tgz"
		case "root-txz":
			name = "root.txz"
		case "root-tbz":
			name = "root.tbz"
		default:
			name = ft
		}
	}
	label := img.Label
	if label == "" {
		label = "stable"
		if d.OSystem == OSCustom {
			label = "uploaded"
		}
	}
	platform := in.imageSubarch()
	if precise {
		platform = "generic"
	}
	return prefix + in.rackURL() + "/images/" + strings.Join([]string{
		img.FilenameOnDisk, d.OSystem, in.Machine.Arch, platform, d.Series, label, name,
	}, "/"), nil
}

// imageSubarch is the subarch ("platform") get_curtin_installer_url finds the image
// under: the resource's, else the node's hwe_kernel (which synced Ubuntu resources list
// among their subarches; uploaded custom ones do not), else the machine's subarch.
func (in *Input) imageSubarch() string {
	d := &in.Deployment
	switch {
	case d.Image.Subarch != "":
		return d.Image.Subarch
	case d.HWEKernel != "" && d.OSystem != OSCustom:
		return d.HWEKernel
	}
	return in.Machine.subarch()
}
