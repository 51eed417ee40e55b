package fakemaas

import (
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/maasemu/maasemu/fakemaas/curtincfg"
	"github.com/maasemu/maasemu/fakemaas/nodestatus"
)

// This file maps the region's records onto curtincfg.Input, the one place the preseeds,
// the curtin configuration and the vendor-data are generated from.

// requestHost is the address a client reached the region on, the fallback for a machine
// that has not PXE-booted yet (MAAS builds URLs from the request then).
func requestHost(hr *http.Request) string {
	if hr == nil {
		return ""
	}
	host := hr.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if net.ParseIP(host) != nil {
		return host
	}
	if hr.URL != nil {
		if ip := net.ParseIP(strings.Trim(hr.URL.Hostname(), "[]")); ip != nil {
			return ip.String()
		}
	}
	return "127.0.0.1"
}

// machineInput builds the generator input for m (r.mu held): its hardware, the applied
// storage layout, its deployment, the node key creds, the rack it boots from (its
// boot_cluster_ip, else rackFallback) and the region's settings.
func (r *Region) machineInput(m *machine, creds *token, rackFallback string) *curtincfg.Input {
	arch, sub := m.archParts()
	firmware := "bios"
	if m.BiosBootMethod == "uefi" {
		firmware = "uefi"
	}
	in := &curtincfg.Input{}
	in.Machine = curtincfg.Machine{SystemID: m.SystemID, Hostname: m.Hostname, Domain: m.Domain, Arch: arch,
		Subarch: sub, Firmware: firmware, EnableSSH: m.EnableSSH}
	for _, d := range m.BlockDevices {
		in.Machine.BlockDevices = append(in.Machine.BlockDevices, curtincfg.BlockDevice{ID: d.ID, Name: d.Name,
			IDPath: d.IDPath, Model: d.Model, Serial: d.Serial, Size: d.Size, BlockSize: d.BlockSize})
	}
	in.Machine.Interfaces, in.Network.Subnets = r.networkInput(m)
	if boot := m.bootInterface(); boot != nil {
		in.Machine.BootInterface = boot.Name
	}
	in.Deployment = curtincfg.Deployment{OSystem: m.OSystem, Series: m.DistroSeries, HWEKernel: m.HWEKernel,
		Ephemeral: m.EphemeralDeploy, EnableKernelCrashDump: r.configValue("enable_kernel_crash_dump") == true,
		KernelOpts: r.configString("kernel_opts")}
	if res, set, f := r.installImage(m); f != nil {
		in.Deployment.BaseImage = res.BaseImage
		_, rsub := res.arch()
		in.Deployment.Image = curtincfg.Image{Filetype: f.Filetype, Filename: f.Filename, FilenameOnDisk: f.FilenameOnDisk,
			Subarch: rsub, Label: set.Label}
	}
	st := m.Storage
	in.Storage = curtincfg.Storage{Layout: st.Layout, BootSize: st.BootSize, RootSize: st.RootSize,
		RootDevice: st.RootDevice, VGName: st.VGName, LVName: st.LVName, LVSize: st.LVSize, Custom: st.Custom}
	if creds != nil {
		in.Credentials = curtincfg.Credentials{ConsumerKey: creds.ConsumerKey, TokenKey: creds.Key, TokenSecret: creds.Secret}
	}
	rack := m.BootClusterIP
	if rack == "" {
		rack = rackFallback
	}
	in.URLs = curtincfg.URLs{RackIP: rack}
	in.Settings = r.generatorSettings()
	return in
}

// generatorSettings maps the MAAS settings the documents depend on (r.mu held).
func (r *Region) generatorSettings() curtincfg.Settings {
	s := curtincfg.Settings{
		HTTPProxyDisabled:   r.configValue("enable_http_proxy") == false,
		HTTPProxy:           r.configString("http_proxy"),
		UsePeerProxy:        r.configValue("use_peer_proxy") == true,
		RackProxyDisabled:   r.configValue("use_rack_proxy") == false,
		MainArchive:         r.configString("main_archive"),
		PortsArchive:        r.configString("ports_archive"),
		RemoteSyslog:        r.configString("remote_syslog"),
		SyslogPort:          r.configInt("maas_syslog_port"),
		ForceV1NetworkYAML:  r.configValue("force_v1_network_yaml") == true,
		CurtinQuiet:         r.configValue("curtin_verbose") == false,
		CommissioningOS:     r.configString("commissioning_osystem"),
		CommissioningSeries: r.configString("commissioning_distro_series"),
		NTPExternalOnly:     r.configValue("ntp_external_only") == true,
	}
	s.NTPServers = strings.FieldsFunc(r.configString("ntp_servers"), func(c rune) bool { return c == ',' || c == ' ' })
	return s
}

// installImage finds the boot resource file m's deployment installs (get_curtin_image):
// a custom image by name, or the synced image of os/series for the machine's kernel
// subarch; the latest complete set (r.mu held).
func (r *Region) installImage(m *machine) (*resource, *resourceSet, *resourceFile) {
	if m.OSystem == "" || m.DistroSeries == "" {
		return nil, nil, nil
	}
	arch, _ := m.archParts()
	var cands []*resource
	for _, id := range sortedIntKeys(r.resources) {
		res := r.resources[id]
		if res.BootloaderType != "" || !strings.HasPrefix(res.Architecture, arch+"/") {
			continue
		}
		switch {
		case m.OSystem == "custom" && res.Type == rtypeUploaded && (res.Name == m.DistroSeries || res.Name == "custom/"+m.DistroSeries):
			cands = append(cands, res)
		case res.Name == m.OSystem+"/"+m.DistroSeries:
			cands = append(cands, res)
		}
	}
	if len(cands) == 0 {
		return nil, nil, nil
	}
	pick := cands[0]
	if len(cands) > 1 && m.OSystem != "custom" {
		_, _, _, _, sub := r.bootOS(m, PurposeXInstall)
		for _, c := range cands {
			if _, s := c.arch(); s == sub {
				pick = c
			}
		}
	}
	set := pick.latestComplete()
	if set == nil {
		return pick, nil, nil
	}
	for _, t := range []string{"root-tgz", "root-tbz", "root-txz", "root-dd", "root-dd.tar", "root-dd.raw", "root-dd.gz",
		"root-dd.xz", "root-dd.bz2", "root-dd.tar.xz", "root-dd.tar.bz2", "squashfs"} {
		if f := set.file(t); f != nil {
			return pick, set, f
		}
	}
	return pick, set, nil
}

// bootInterface is the interface the machine boots from (Node.get_boot_interface): the
// physical interface with the MAC it PXE-booted with, else its first physical interface.
func (m *machine) bootInterface() *Interface {
	var first *Interface
	for i := range m.Interfaces {
		x := &m.Interfaces[i]
		if x.kind() != ifacePhysical {
			continue
		}
		if m.BootMAC != "" && x.MAC == m.BootMAC {
			return x
		}
		if first == nil || x.ID < first.ID {
			first = x
		}
	}
	return first
}

// preseedPurpose is get_preseed's choice: the commissioning preseed for
// commissioning-like statuses (by kind) and ephemeral deployments, the curtin preseed
// otherwise.
func (m *machine) preseedPurpose() curtincfg.Purpose {
	switch {
	case m.EphemeralDeploy && (m.Status == nodestatus.Deploying || m.Status == nodestatus.Deployed):
		return curtincfg.PurposeDeploy // rendered as the ephemeral-deploy preseed
	case m.Status == nodestatus.Testing:
		return curtincfg.PurposeTesting
	case m.Status == nodestatus.DiskErasing:
		return curtincfg.PurposeDiskErasing
	case m.Status == nodestatus.EnteringRescueMode || m.Status == nodestatus.RescueMode:
		return curtincfg.PurposeRescue
	case nodestatus.CommissioningLike(m.Status):
		return curtincfg.PurposeCommissioning
	}
	return curtincfg.PurposeDeploy
}

// networkInput maps a machine's interfaces, their links and the subnets those link to onto
// the generator's input, as NodeNetworkConfiguration reads them: type, name, MAC, the
// VLAN's MTU and VID, parents, params (bond_*, bridge_*, mtu, accept-ra), the links with
// their subnets' CIDRs and addresses; an interface on no VLAN is "disconnected"
// (netplan optional). Subnets carry their gateway, DNS servers, allow_dns, whether MAAS
// serves DHCP on their VLAN, and the rack's addresses on that VLAN (r.mu held).
func (r *Region) networkInput(m *machine) ([]curtincfg.Interface, []curtincfg.Subnet) {
	n := r.net
	var ifaces []curtincfg.Interface
	used := map[int]bool{}
	for x := range m.Interfaces {
		i := &m.Interfaces[x]
		ci := curtincfg.Interface{ID: i.ID, Type: i.kind(), Name: i.Name, MAC: i.MAC, Disconnected: i.VLAN == 0,
			Disabled: i.Disabled}
		if v := n.vlan(i.VLAN); v != nil {
			ci.MTU = v.MTU
			if i.kind() == ifaceVLAN {
				ci.VID = v.VID
			}
		}
		for _, p := range m.parents(i) {
			ci.Parents = append(ci.Parents, p.Name)
		}
		if len(i.Params) > 0 {
			ci.Params = map[string]any{}
			for k, v := range i.Params {
				ci.Params[k] = v
			}
		}
		for _, l := range i.Links {
			cl := curtincfg.Link{Mode: l.Mode, IP: l.IP}
			if s := n.subnet(l.Subnet); s != nil {
				cl.Subnet = s.CIDR
				used[s.ID] = true
			}
			ci.Links = append(ci.Links, cl)
		}
		ifaces = append(ifaces, ci)
	}
	var subnets []curtincfg.Subnet
	for _, s := range n.Subnets {
		if !used[s.ID] {
			continue
		}
		subnets = append(subnets, curtincfg.Subnet{CIDR: s.CIDR, Gateway: s.Gateway, DNSServers: slices.Clone(s.DNSServers),
			DisallowDNS: !s.AllowDNS, Managed: n.dhcpOn(s), RackAddresses: n.rackAddressesOnVLAN(s.VLAN)})
	}
	return ifaces, subnets
}
