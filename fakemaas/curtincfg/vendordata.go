package curtincfg

import (
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/maasemu/maasemu/fakemaas/curtincfg/pyyaml"
)

// VendorData renders meta-data/vendor-data as MAAS serves it (MetaDataHandler.vendor_data,
// Content-Type application/x-yaml): a YAML mapping whose "cloud-init" key holds the
// "#cloud-config" text get_vendor_data produces for the machine in state p.
//
// Modelled generators: system_info (default user), snap proxy, ntp, the ephemeral
// netplan lock removal, the ephemeral-deployment network and overlayroot size fix, and
// openvswitch for commissioning. Not modelled (they need state this package does not
// take): installing a rack controller or a KVM/LXD host, vCenter registration, and
// hardware sync.
func VendorData(in *Input, p Purpose) (string, error) {
	cfg, err := VendorDataConfig(in, p)
	if err != nil {
		return "", err
	}
	return pyyaml.Dump(pyyaml.M("cloud-init", cfg))
}

// VendorDataConfig is the "#cloud-config" text inside VendorData.
func VendorDataConfig(in *Input, p Purpose) (string, error) {
	if p == PurposeEnlist || !slices.Contains(preseedKnownValues, p) {
		return "", bad("purpose", string(p), "vendor-data is served to known machines: one of deploy, ephemeral-deploy, commissioning, testing, disk-erasing, rescue")
	}
	if err := in.validateNode(); err != nil {
		return "", err
	}
	vd := pyyaml.NewMap()
	var runcmd, packages, writeFiles []any
	m := &in.Machine
	if m.OwnerUsername != "" {
		vd.Set("system_info", pyyaml.M("default_user", pyyaml.M("name", m.OwnerUsername, "gecos", gecos(m.OwnerFullName))))
	}
	if proxy := in.aptProxy(wrapHost(in.URLs.RackIP)); proxy != "" {
		vd.Set("snap", pyyaml.M("commands", pyyaml.L(snapProxyCommand(proxy))))
	}
	if servers, pools := in.ntpServers(); len(servers)+len(pools) > 0 {
		vd.Set("ntp", pyyaml.M("servers", pyyaml.Strings(servers), "pools", pyyaml.Strings(pools)))
	}
	if commissioningLike[p] {
		runcmd = append(runcmd, "rm -rf /run/netplan")
	}
	if in.Deployment.Ephemeral {
		osys, series, err := in.baseOSSeries()
		if err != nil {
			return "", err
		}
		version, sr := in.networkVersion(osys, series)
		netcfg, err := in.networkConfig(version, sr)
		if err != nil {
			return "", err
		}
		content, err := pyyaml.Dump(netcfg)
		if err != nil {
			return "", err
		}
		writeFiles = append(writeFiles, pyyaml.M("content", content, "path", "/etc/netplan/50-maas.yaml", "permissions", "0600"))
		runcmd = append(runcmd, "rm -rf /run/netplan", "rm -rf /etc/netplan/50-cloud-init.yaml", "netplan apply --debug")
		if mm := overlayrootSize.FindStringSubmatch(in.Deployment.KernelOpts); mm != nil {
			runcmd = append(runcmd, "mountpoint -q /media/root-rw && mount -o remount,size="+mm[1]+" /media/root-rw || true")
		}
	}
	if commissioningLike[p] {
		for _, iface := range m.Interfaces {
			if t, _ := iface.Params["bridge_type"].(string); iface.Type == IfaceBridge && t == "ovs" {
				packages = append(packages, "openvswitch-switch")
				break
			}
		}
	}
	if runcmd != nil {
		vd.Set("runcmd", runcmd)
	}
	if packages != nil {
		vd.Set("packages", packages)
	}
	if writeFiles != nil {
		vd.Set("write_files", writeFiles)
	}
	body, err := pyyaml.Dump(vd)
	if err != nil {
		return "", err
	}
	return cloudConfigHeader + body, nil
}

var overlayrootSize = regexp.MustCompile(`overlayroot=tmpfs:size=([^\s]+)`)

// ntpServers is ntp.get_servers_for a machine: its rack's address, or the external
// servers when ntp_external_only; IP addresses become servers, names pools.
func (in *Input) ntpServers() (servers, pools []string) {
	src := []string{in.URLs.RackIP}
	if in.Settings.NTPExternalOnly {
		src = in.Settings.NTPServers
		if len(src) == 0 {
			src = []string{"ntp.ubuntu.com"}
		}
	}
	var addrs []netip.Addr
	for _, s := range src {
		for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			if a, err := netip.ParseAddr(f); err == nil {
				if !slices.Contains(addrs, a.Unmap()) {
					addrs = append(addrs, a.Unmap())
				}
			} else if !slices.Contains(pools, f) {
				pools = append(pools, f)
			}
		}
	}
	slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	for _, a := range addrs {
		servers = append(servers, a.String())
	}
	slices.Sort(pools)
	return servers, pools
}

// gecos is make_gecos_field(fullname): five comma-separated fields, ASCII only, with
// commas and colons replaced.
func gecos(fullname string) string {
	var b strings.Builder
	for _, r := range fullname {
		switch {
		case r == ',' || r == ':':
			b.WriteByte('_')
		case r > 127:
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return strings.TrimSpace(b.String()) + ",,,,"
}
