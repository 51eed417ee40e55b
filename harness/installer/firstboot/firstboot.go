// Package firstboot is the maasemu probe's first boot of an installed system: what
// cloud-init's MAAS datasource does (read cloud.cfg.d, bring the network up as
// 50-curtin-networking.cfg says, read meta-data and user-data with OAuth, report the
// stages), for test images without cloud-init and for simulated machines.
package firstboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/maasemu/maasemu/harness/installer"
	"github.com/maasemu/maasemu/harness/installer/cloudinit"
	"github.com/maasemu/maasemu/harness/installer/oauth"
	"github.com/maasemu/maasemu/trace"
)

// Prefix starts every console line, so that nobody mistakes the probe for cloud-init.
const Prefix = "maasemu-probe: "

// Iface is one interface the network config asks for.
type Iface struct {
	Name        string   // the name to give it (set-name, or the config key / v1 name)
	Kind        string   // KindEthernet (""), KindBond, KindVLAN or KindBridge
	MatchMAC    string   // lower-case aa:bb:.. when matched by MAC (ethernets)
	MatchName   string   // when matched by current name (ethernets)
	Members     []string // the interfaces a bond or bridge enslaves, by Name
	BondMode    string   // the bonding mode (balance-rr when unset, as the kernel's default)
	VLANLink    string   // the interface a VLAN rides on, by Name
	VLANID      int
	DHCP4       bool
	Addresses   []netip.Prefix
	Gateway4    netip.Addr
	Routes      []Route
	Nameservers []string
	Search      []string
	MTU         int
}

// The kinds of interface a network config creates besides ethernets.
const (
	KindEthernet = ""
	KindBond     = "bond"
	KindVLAN     = "vlan"
	KindBridge   = "bridge"
)

// Route is a static route.
type Route struct {
	To  netip.Prefix
	Via netip.Addr
}

// NetConfig is the network configuration the probe applies.
type NetConfig struct {
	Disabled bool // network: {config: disabled}
	Fallback bool // no network config: DHCP on the first connected NIC, as cloud-init does
	Version  int
	Ifaces   []Iface
}

// Link is an interface after bring-up.
type Link struct {
	Name      string
	MAC       string
	Addresses []netip.Prefix
	Gateway   netip.Addr
	DNS       []string
}

// Networker brings interfaces up. The probe inside a VM uses netlink and DHCP on the
// machine's NICs; a simulated machine supplies its own.
type Networker interface {
	Up(ctx context.Context, nc NetConfig) ([]Link, error)
}

// Options configure a first boot.
type Options struct {
	// Root is the installed system's files (os.DirFS("/") in a VM, DiskRoot for a sim).
	Root fs.FS
	// HTTPClient reaches the metadata service (nil: http.DefaultClient).
	HTTPClient *http.Client
	// Network brings the network up; nil skips it (the caller's network is already up).
	Network Networker
	// Reporter observes events in-process, besides the config's webhook.
	Reporter installer.Reporter
	// Console receives the probe's markers.
	Console io.Writer
	// Trace receives cloud-init's events and the console markers (nil: dropped); Machine
	// labels them.
	Trace   trace.Sink
	Machine string
	Logger  *slog.Logger
	Now     func() time.Time
}

// Result describes the first boot.
type Result struct {
	ConfigFiles []string
	Datasource  cloudinit.Datasource
	Network     NetConfig
	Links       []Link
	MetaData    cloudinit.MetaData
}

// Run performs the first boot.
func Run(ctx context.Context, o Options) (Result, error) {
	var res Result
	if o.Root == nil {
		return res, errors.New("firstboot: Options.Root is required")
	}
	if o.Console == nil {
		o.Console = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	sink := trace.OrNop(o.Trace)
	say := func(format string, args ...any) {
		line := fmt.Sprintf(Prefix+format, args...)
		fmt.Fprintln(o.Console, line)
		sink.Emit(trace.Event{Source: trace.SourceConsole, Kind: trace.KindConsoleLine, Machine: o.Machine, Message: line})
	}
	say("first boot (maasemu probe standing in for cloud-init %s)", cloudinit.Version)
	cfg, files, err := cloudinit.LoadConfig(o.Root)
	res.ConfigFiles = files
	if err != nil {
		say("reading cloud-init configuration failed: %v", err)
		return res, err
	}
	say("read %s", strings.Join(files, " "))
	rep := installer.Reporters(cloudinit.Reporters(cfg, o.HTTPClient, o.Logger), o.Reporter, installer.TraceReporter(o.Trace, o.Machine))

	nc, err := ParseNetwork(cfg["network"])
	if err != nil {
		say("network configuration is invalid: %v", err)
		return res, err
	}
	res.Network = nc

	local := cloudinit.NewStack(rep, o.Now, nil, "init-local", "searching for local datasources")
	local.Start(ctx)
	if nc.Disabled {
		say("network: {config: disabled}: not configuring the network")
	} else if o.Network != nil {
		links, err := o.Network.Up(ctx, nc)
		res.Links = links
		if err != nil {
			local.Finish(ctx, installer.ResultFail)
			say("network bring-up failed: %v", err)
			return res, fmt.Errorf("network: %w", err)
		}
		for _, l := range links {
			var addrs []string
			for _, a := range l.Addresses {
				addrs = append(addrs, a.String())
			}
			say("network up on %s %s", l.Name, strings.Join(addrs, " "))
		}
	}
	local.Finish(ctx, installer.ResultSuccess)

	network := cloudinit.NewStack(rep, o.Now, nil, "init-network", "searching for network datasources")
	network.Start(ctx)
	search := cloudinit.NewStack(rep, o.Now, network, "search-MAAS", "searching for network data from DataSourceMAAS")
	search.Start(ctx)
	ds, err := cloudinit.MAASDatasource(cfg)
	res.Datasource = ds
	if err == nil {
		var md cloudinit.MetaData
		md, err = cloudinit.ReadMetadata(ctx, oauth.NewClient(o.HTTPClient, ds.Creds), ds.MetadataURL)
		res.MetaData = md
	}
	if err != nil {
		search.Message = "no network data found from DataSourceMAAS"
		search.Finish(ctx, installer.ResultSuccess)
		network.Finish(ctx, installer.ResultFail)
		say("MAAS datasource not found: %v", err)
		return res, fmt.Errorf("MAAS datasource: %w", err)
	}
	search.Message = "found network data from DataSourceMAAS"
	search.Finish(ctx, installer.ResultSuccess)
	network.Finish(ctx, installer.ResultSuccess)
	say("meta-data read from %s: instance-id %s, hostname %s", ds.MetadataURL, res.MetaData.InstanceID, res.MetaData.LocalHostname)
	if res.MetaData.HasUserData {
		say("user-data read, deployed")
	} else {
		say("user-data read (none for this machine), deployed")
	}
	for _, st := range [][2]string{{"modules-config", "running modules for config"}, {"modules-final", "running modules for final"}} {
		s := cloudinit.NewStack(rep, o.Now, nil, st[0], st[1])
		s.Start(ctx)
		s.Finish(ctx, installer.ResultSuccess)
	}
	say("first boot done")
	return res, nil
}

// ParseNetwork reads the `network` key of the merged cloud-init config (v1 or v2).
func ParseNetwork(v any) (NetConfig, error) {
	if v == nil {
		return NetConfig{Fallback: true}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return NetConfig{}, fmt.Errorf("network must be a mapping, got %T", v)
	}
	if fmt.Sprint(m["config"]) == "disabled" {
		return NetConfig{Disabled: true}, nil
	}
	ver := 0
	fmt.Sscan(fmt.Sprint(m["version"]), &ver)
	nc := NetConfig{Version: ver}
	switch ver {
	case 2:
		// Netplan's sections, in the order an interface's dependencies come up.
		for _, sec := range []struct{ key, kind string }{{"ethernets", KindEthernet}, {"bonds", KindBond}, {"vlans", KindVLAN}, {"bridges", KindBridge}} {
			entries, _ := m[sec.key].(map[string]any)
			for _, n := range slices.Sorted(maps.Keys(entries)) {
				e, _ := entries[n].(map[string]any)
				ifc, err := parseV2(sec.key+"."+n, n, sec.kind, e)
				if err != nil {
					return nc, err
				}
				nc.Ifaces = append(nc.Ifaces, ifc)
			}
		}
	case 1:
		cfgs, _ := m["config"].([]any)
		var dns, search []string
		for _, c := range cfgs {
			cm, _ := c.(map[string]any)
			if str(cm["type"]) == "nameserver" {
				dns = append(dns, list(cm["address"])...)
				search = append(search, list(cm["search"])...)
			}
		}
		// physical first, then what is built on them, as in v2.
		for _, kind := range []string{"physical", KindBond, KindVLAN, KindBridge} {
			for _, c := range cfgs {
				cm, _ := c.(map[string]any)
				if str(cm["type"]) != kind {
					continue
				}
				ifc, err := parseV1(cm, dns, search)
				if err != nil {
					return nc, err
				}
				nc.Ifaces = append(nc.Ifaces, ifc)
			}
		}
	default:
		return nc, fmt.Errorf("network version %v: only 1 and 2 exist", m["version"])
	}
	return nc, nil
}

// parseV2 reads one netplan (v2) interface entry of kind at network.<where>.
func parseV2(where, n, kind string, e map[string]any) (Iface, error) {
	ifc := Iface{Name: n, Kind: kind}
	switch kind {
	case KindEthernet:
		if match, ok := e["match"].(map[string]any); ok {
			ifc.MatchMAC = strings.ToLower(str(match["macaddress"]))
			ifc.MatchName = str(match["name"])
		} else {
			ifc.MatchName = n
		}
		if sn := str(e["set-name"]); sn != "" {
			ifc.Name = sn
		}
	case KindBond, KindBridge:
		ifc.Members = list(e["interfaces"])
		if len(ifc.Members) == 0 {
			return ifc, fmt.Errorf("network.%s.interfaces: a %s needs member interfaces", where, kind)
		}
		if params, ok := e["parameters"].(map[string]any); ok && kind == KindBond {
			ifc.BondMode = str(params["mode"])
		}
	case KindVLAN:
		ifc.VLANLink = str(e["link"])
		if _, err := fmt.Sscan(str(e["id"]), &ifc.VLANID); err != nil || ifc.VLANLink == "" || ifc.VLANID < 1 || ifc.VLANID > 4094 {
			return ifc, fmt.Errorf("network.%s: a VLAN needs a link and an id in 1..4094 (link %q, id %q)", where, ifc.VLANLink, str(e["id"]))
		}
	}
	ifc.DHCP4 = e["dhcp4"] == true || str(e["dhcp4"]) == "true" || str(e["dhcp4"]) == "yes"
	for _, a := range list(e["addresses"]) {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return ifc, fmt.Errorf("network.%s.addresses: %q is not an address/prefix", where, a)
		}
		ifc.Addresses = append(ifc.Addresses, p)
	}
	if g := str(e["gateway4"]); g != "" {
		a, err := netip.ParseAddr(g)
		if err != nil {
			return ifc, fmt.Errorf("network.%s.gateway4: %q is not an address", where, g)
		}
		ifc.Gateway4 = a
	}
	if rs, ok := e["routes"].([]any); ok {
		for _, r := range rs {
			rm, _ := r.(map[string]any)
			to := str(rm["to"])
			if to == "default" || to == "0.0.0.0/0" {
				if via, err := netip.ParseAddr(str(rm["via"])); err == nil {
					ifc.Gateway4 = via
				}
				continue
			}
			tp, err1 := netip.ParsePrefix(to)
			via, err2 := netip.ParseAddr(str(rm["via"]))
			if err1 != nil || err2 != nil {
				return ifc, fmt.Errorf("network.%s.routes: bad route %v", where, rm)
			}
			ifc.Routes = append(ifc.Routes, Route{To: tp, Via: via})
		}
	}
	if ns, ok := e["nameservers"].(map[string]any); ok {
		ifc.Nameservers = list(ns["addresses"])
		ifc.Search = list(ns["search"])
	}
	if mtu := str(e["mtu"]); mtu != "" {
		fmt.Sscan(mtu, &ifc.MTU)
	}
	return ifc, nil
}

// parseV1 reads one v1 interface (physical, bond, vlan or bridge) with the config's
// global nameservers.
func parseV1(cm map[string]any, dns, search []string) (Iface, error) {
	ifc := Iface{Name: str(cm["name"]), Nameservers: append([]string(nil), dns...), Search: search}
	switch str(cm["type"]) {
	case "physical":
		ifc.MatchMAC = strings.ToLower(str(cm["mac_address"]))
		if ifc.MatchMAC == "" {
			ifc.MatchName = ifc.Name
		}
	case KindBond:
		ifc.Kind, ifc.Members = KindBond, list(cm["bond_interfaces"])
		if params, ok := cm["params"].(map[string]any); ok {
			ifc.BondMode = str(params["bond-mode"])
		}
	case KindBridge:
		ifc.Kind, ifc.Members = KindBridge, list(cm["bridge_interfaces"])
	case KindVLAN:
		ifc.Kind, ifc.VLANLink = KindVLAN, str(cm["vlan_link"])
		fmt.Sscan(str(cm["vlan_id"]), &ifc.VLANID)
	}
	if (ifc.Kind == KindBond || ifc.Kind == KindBridge) && len(ifc.Members) == 0 {
		return ifc, fmt.Errorf("network config %s: a %s needs member interfaces", ifc.Name, ifc.Kind)
	}
	if ifc.Kind == KindVLAN && (ifc.VLANLink == "" || ifc.VLANID < 1 || ifc.VLANID > 4094) {
		return ifc, fmt.Errorf("network config %s: a VLAN needs vlan_link and a vlan_id in 1..4094", ifc.Name)
	}
	if mtu := str(cm["mtu"]); mtu != "" {
		fmt.Sscan(mtu, &ifc.MTU)
	}
	subs, _ := cm["subnets"].([]any)
	for _, s := range subs {
		sm, _ := s.(map[string]any)
		switch str(sm["type"]) {
		case "dhcp", "dhcp4":
			ifc.DHCP4 = true
		case "static":
			a := str(sm["address"])
			if nm := str(sm["netmask"]); nm != "" && !strings.Contains(a, "/") {
				ones, _ := net.IPMask(net.ParseIP(nm).To4()).Size()
				a = fmt.Sprintf("%s/%d", a, ones)
			}
			p, err := netip.ParsePrefix(a)
			if err != nil {
				return ifc, fmt.Errorf("network config %s: static address %q: %w", ifc.Name, a, err)
			}
			ifc.Addresses = append(ifc.Addresses, p)
			if g, err := netip.ParseAddr(str(sm["gateway"])); err == nil {
				ifc.Gateway4 = g
			}
			ifc.Nameservers = append(ifc.Nameservers, list(sm["dns_nameservers"])...)
		}
	}
	return ifc, nil
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func list(v any) []string {
	switch x := v.(type) {
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, str(e))
		}
		return out
	case string:
		return strings.Fields(strings.ReplaceAll(x, ",", " "))
	}
	return nil
}
