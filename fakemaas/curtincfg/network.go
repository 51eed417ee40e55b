package curtincfg

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/maasemu/maasemu/fakemaas/curtincfg/pyyaml"
)

// networkVersion is get_network_yaml_settings: netplan (v2) with source routing for
// Ubuntu >= 18.04, v2 without for 16.04 and ubuntu-core, v1 for everything else and
// whenever force_v1_network_yaml is set.
func (in *Input) networkVersion(osys, series string) (version int, sourceRouting bool) {
	if in.Settings.ForceV1NetworkYAML {
		return 1, false
	}
	switch osys {
	case OSUbuntu:
		y, m, ok := ubuntuVersion(series)
		switch {
		case ok && (y > 18 || (y == 18 && m >= 4)):
			return 2, true
		case ok && (y > 16 || (y == 16 && m >= 4)):
			return 2, false
		}
	case OSUbuntuCore:
		return 2, false
	}
	return 1, false
}

// networkDocument is compose_curtin_network_config.
func (in *Input) networkDocument(osys, series string) (*pyyaml.Map, error) {
	version, sr := in.networkVersion(osys, series)
	net, err := in.networkConfig(version, sr)
	if err != nil {
		return nil, err
	}
	doc := pyyaml.M("network_commands", pyyaml.M("builtin", pyyaml.L("curtin", "net-meta", "custom")))
	doc.Update(net)
	return doc, nil
}

// Static IP allocation types MAAS gives each link mode (IPADDRESS_TYPE).
const (
	allocAuto   = 0
	allocSticky = 1
	allocDHCP   = 5
)

type nAddr struct {
	mode   string
	alloc  int
	subnet *nSubnet // nil when the link names none
	ip     string   // "" when not (yet) assigned
}

type nSubnet struct {
	Subnet
	prefix netip.Prefix
}

func (s *nSubnet) family() int {
	if s.prefix.Addr().Is4() {
		return 4
	}
	return 6
}

type nIface struct {
	Interface
	id       int
	parents  []*nIface
	children []*nIface
	addrs    []nAddr
}

type nRoute struct {
	Route
	id int
}

type gateway struct {
	ifaceID int
	subnet  *nSubnet
	ip      string
}

// netGen is NodeNetworkConfiguration with its InterfaceConfiguration helpers.
type netGen struct {
	in            *Input
	version       int
	sourceRouting bool
	ifaces        []*nIface
	byName        map[string]*nIface
	subnets       map[string]*nSubnet
	routes        []*nRoute
	boot          *nIface
	gw4, gw6      *gateway
	allGateways   []gateway
	gw4Set        bool
	gw6Set        bool
	nextTable     int
	familyPresent map[int]bool
	searchList    []string
}

var macRE = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)

// prepareNetwork validates the interfaces, links, subnets and routes and links them up.
func (in *Input) prepareNetwork() (*netGen, error) {
	g := &netGen{in: in, byName: map[string]*nIface{}, subnets: map[string]*nSubnet{}, nextTable: 1, familyPresent: map[int]bool{}}
	for i, s := range in.Network.Subnets {
		f := fmt.Sprintf("network.subnets[%d]", i)
		p, err := netip.ParsePrefix(s.CIDR)
		if err != nil {
			return nil, bad(f+".cidr", s.CIDR, "must be a CIDR such as 10.0.0.0/24")
		}
		if p.Masked() != p {
			return nil, bad(f+".cidr", s.CIDR, "has host bits set; MAAS stores the network address (%s)", p.Masked())
		}
		if g.subnets[p.String()] != nil {
			return nil, bad(f+".cidr", s.CIDR, "is defined twice")
		}
		if s.Gateway != "" {
			a, err := netip.ParseAddr(s.Gateway)
			if err != nil || a.Is4() != p.Addr().Is4() {
				return nil, bad(f+".gateway", s.Gateway, "must be an address of the subnet's family")
			}
		}
		for _, a := range append(slices.Clone(s.DNSServers), s.RackAddresses...) {
			if _, err := netip.ParseAddr(a); err != nil {
				return nil, bad(f, a, "dns_servers and rack_addresses must be IP addresses")
			}
		}
		g.subnets[p.String()] = &nSubnet{Subnet: s, prefix: p}
	}
	for i, r := range in.Network.Routes {
		f := fmt.Sprintf("network.routes[%d]", i)
		if g.subnet(r.Source) == nil {
			return nil, bad(f+".source", r.Source, "names no subnet in network.subnets")
		}
		if _, err := netip.ParsePrefix(r.Destination); err != nil {
			return nil, bad(f+".destination", r.Destination, "must be a CIDR")
		}
		if _, err := netip.ParseAddr(r.Gateway); err != nil {
			return nil, bad(f+".gateway", r.Gateway, "must be an IP address")
		}
		g.routes = append(g.routes, &nRoute{Route: r, id: i + 1})
	}
	ids := map[int]bool{}
	for i := range in.Machine.Interfaces {
		iface := in.Machine.Interfaces[i]
		f := fmt.Sprintf("machine.interfaces[%d]", i)
		if iface.Name == "" {
			return nil, bad(f+".name", "", "must not be empty")
		}
		if g.byName[iface.Name] != nil {
			return nil, bad(f+".name", iface.Name, "is used by two interfaces")
		}
		switch iface.Type {
		case IfacePhysical, IfaceBond, IfaceVLAN, IfaceBridge:
		default:
			return nil, bad(f+".type", iface.Type, "must be physical, bond, vlan or bridge")
		}
		iface.MAC = strings.ToLower(iface.MAC)
		if iface.MAC != "" && !macRE.MatchString(iface.MAC) {
			return nil, bad(f+".mac", iface.MAC, "must be a MAC address aa:bb:cc:dd:ee:ff")
		}
		if iface.Type == IfacePhysical && iface.MAC == "" {
			return nil, bad(f+".mac", "", "a physical interface needs its MAC address")
		}
		id := iface.ID
		if id == 0 {
			id = i + 1
		}
		if ids[id] {
			return nil, bad(f+".id", strconv.Itoa(id), "is used by two interfaces")
		}
		ids[id] = true
		for k, v := range iface.Params {
			switch x := v.(type) {
			case string, bool, int:
			case float64: // from JSON
				if x != math.Trunc(x) {
					return nil, bad(f+".params."+k, fmt.Sprint(v), "must be a string, an integer or a boolean")
				}
			default:
				return nil, bad(f+".params."+k, fmt.Sprint(v), "must be a string, an integer or a boolean")
			}
		}
		n := &nIface{Interface: iface, id: id}
		for j, l := range iface.Links {
			lf := fmt.Sprintf("%s.links[%d]", f, j)
			a := nAddr{mode: l.Mode}
			switch l.Mode {
			case LinkAuto:
				a.alloc = allocAuto
			case LinkStatic:
				a.alloc = allocSticky
			case LinkDHCP:
				a.alloc = allocDHCP
			case LinkUp:
				a.alloc = allocSticky
			default:
				return nil, bad(lf+".mode", l.Mode, "must be auto, static, dhcp or link_up")
			}
			if l.Subnet != "" {
				if a.subnet = g.subnet(l.Subnet); a.subnet == nil {
					return nil, bad(lf+".subnet", l.Subnet, "names no subnet in network.subnets")
				}
			} else if l.Mode == LinkAuto || l.Mode == LinkStatic {
				return nil, bad(lf+".subnet", "", "a %s link needs a subnet", l.Mode)
			}
			if l.IP != "" {
				if l.Mode == LinkDHCP || l.Mode == LinkUp {
					return nil, bad(lf+".ip", l.IP, "a %s link has no address", l.Mode)
				}
				ip, err := netip.ParseAddr(l.IP)
				if err != nil || !a.subnet.prefix.Contains(ip) {
					return nil, bad(lf+".ip", l.IP, "must be an address in subnet %s", a.subnet.prefix)
				}
				a.ip = ip.String()
			} else if l.Mode == LinkStatic {
				return nil, bad(lf+".ip", "", "a static link needs an address")
			}
			n.addrs = append(n.addrs, a)
		}
		g.ifaces = append(g.ifaces, n)
		g.byName[iface.Name] = n
	}
	for i, n := range g.ifaces {
		f := fmt.Sprintf("machine.interfaces[%d]", i)
		for _, pn := range n.Parents {
			p := g.byName[pn]
			if p == nil {
				return nil, bad(f+".parents", pn, "names no interface of the machine")
			}
			if p == n {
				return nil, bad(f+".parents", pn, "an interface cannot be its own parent")
			}
			n.parents = append(n.parents, p)
			p.children = append(p.children, n)
		}
		switch n.Type {
		case IfacePhysical:
			if len(n.parents) > 0 {
				return nil, bad(f+".parents", strings.Join(n.Parents, ","), "a physical interface has no parents")
			}
		case IfaceVLAN:
			if len(n.parents) != 1 {
				return nil, bad(f+".parents", strings.Join(n.Parents, ","), "a vlan interface has exactly one parent")
			}
			if n.VID < 1 || n.VID > 4094 {
				return nil, bad(f+".vid", strconv.Itoa(n.VID), "a vlan interface needs a VLAN id from 1 to 4094")
			}
		default:
			if len(n.parents) == 0 {
				return nil, bad(f+".parents", "", "a %s needs at least one parent", n.Type)
			}
			if n.MAC == "" {
				n.MAC = n.parents[0].MAC // MAAS gives a bond or bridge its first parent's MAC
			}
		}
	}
	if err := g.orderParentsFirst(); err != nil {
		return nil, err
	}
	for _, n := range g.ifaces {
		if n.Type != IfacePhysical {
			continue
		}
		if in.Machine.BootInterface == "" || n.Name == in.Machine.BootInterface {
			g.boot = n
			break
		}
	}
	if g.boot == nil {
		if in.Machine.BootInterface != "" {
			return nil, bad("machine.boot_interface", in.Machine.BootInterface, "names no physical interface of the machine")
		}
		return nil, bad("machine.interfaces", "", "the machine has no boot interface: it needs a physical interface to PXE boot from")
	}
	g.findGateways()
	dom := in.Machine.domain()
	g.searchList = []string{dom}
	search := slices.Clone(in.Network.SearchDomains)
	slices.Sort(search)
	for _, d := range slices.Compact(search) {
		if d != "" && d != dom {
			g.searchList = append(g.searchList, d)
		}
	}
	return g, nil
}

func (g *netGen) subnet(cidr string) *nSubnet {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil
	}
	return g.subnets[p.String()]
}

// orderParentsFirst is Interface.objects.all_interfaces_parents_first: roots by name,
// each followed by the children whose parents are all known, children visited by name.
func (g *netGen) orderParentsFirst() error {
	byName := slices.Clone(g.ifaces)
	sort.SliceStable(byName, func(i, j int) bool { return byName[i].Name < byName[j].Name })
	var roots, unresolved []*nIface
	for _, n := range byName {
		if len(n.parents) == 0 {
			roots = append(roots, n)
		} else {
			unresolved = append(unresolved, n)
		}
	}
	resolved := map[*nIface]bool{}
	var out []*nIface
	for _, r := range roots {
		out = append(out, r)
		resolved[r] = true
		for more := true; more; {
			more = false
			var still []*nIface
			for _, n := range unresolved {
				ok := true
				for _, p := range n.parents {
					ok = ok && resolved[p]
				}
				if ok {
					out = append(out, n)
					resolved[n] = true
					more = true
				} else {
					still = append(still, n)
				}
			}
			unresolved = still
		}
	}
	if len(unresolved) > 0 {
		return bad("machine.interfaces", unresolved[0].Name, "its parents form a cycle or never resolve to a physical interface")
	}
	g.ifaces = out
	return nil
}

// findGateways is Node.get_gateways_by_priority and get_default_gateways (without an
// explicit gateway_link): managed subnets first, then bonds and bridges, the boot
// interface, other physical interfaces, VLANs; sticky before auto; then interface id.
func (g *netGen) findGateways() {
	type cand struct {
		gateway
		family, managed, typeRank, allocRank int
	}
	var cs []cand
	for _, n := range g.ifaces {
		for _, a := range n.addrs {
			if a.alloc == allocDHCP || a.subnet == nil || a.subnet.Gateway == "" {
				continue
			}
			c := cand{gateway: gateway{ifaceID: n.id, subnet: a.subnet, ip: a.subnet.Gateway}, family: a.subnet.family()}
			if !a.subnet.Managed {
				c.managed = 1
			}
			switch {
			case n.Type == IfaceBond || n.Type == IfaceBridge:
				c.typeRank = 1
			case n.Type == IfacePhysical && n == g.boot:
				c.typeRank = 2
			case n.Type == IfacePhysical:
				c.typeRank = 3
			default:
				c.typeRank = 4
			}
			if a.alloc == allocSticky {
				c.allocRank = 1
			} else {
				c.allocRank = 3
			}
			cs = append(cs, c)
		}
	}
	sort.SliceStable(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		return cmpInts(a.family, b.family, a.managed, b.managed, a.typeRank, b.typeRank, a.allocRank, b.allocRank, a.ifaceID, b.ifaceID) < 0
	})
	for _, c := range cs {
		g.allGateways = append(g.allGateways, c.gateway)
		if c.family == 4 && g.gw4 == nil {
			gw := c.gateway
			g.gw4 = &gw
		}
		if c.family == 6 && g.gw6 == nil {
			gw := c.gateway
			g.gw6 = &gw
		}
	}
}

func cmpInts(pairs ...int) int {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i] != pairs[i+1] {
			if pairs[i] < pairs[i+1] {
				return -1
			}
			return 1
		}
	}
	return 0
}

func (n *nIface) enabled() bool {
	switch n.Type {
	case IfacePhysical:
		return !n.Disabled
	case IfaceVLAN:
		return n.parents[0].enabled()
	default:
		for _, p := range n.parents {
			if p.enabled() {
				return true
			}
		}
		return false
	}
}

// effectiveMTU is Interface.get_effective_mtu: the params' mtu, else the VLAN's, else
// 1500; never less than a child's.
func (n *nIface) effectiveMTU() int {
	mtu := n.MTU
	if v, ok := n.Params["mtu"]; ok {
		if i, ok := intParam(v); ok {
			mtu = i
		}
	}
	if mtu == 0 {
		mtu = 1500
	}
	for _, c := range n.children {
		mtu = max(mtu, c.effectiveMTU())
	}
	return mtu
}

func intParam(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case float64:
		return int(x), true
	}
	return 0, false
}

// paramValue is _get_param_value: v1 YAML wants 0/1 for booleans.
func paramValue(v any, version int) any {
	switch x := v.(type) {
	case bool:
		if version == 1 {
			if x {
				return 1
			}
			return 0
		}
		return x
	case float64:
		return int(x)
	}
	return v
}

func sortedParamKeys(p map[string]any) []string {
	ks := make([]string, 0, len(p))
	for k := range p {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// networkConfig renders {"network": ...} for the machine.
func (in *Input) networkConfig(version int, sourceRouting bool) (*pyyaml.Map, error) {
	g, err := in.prepareNetwork()
	if err != nil {
		return nil, err
	}
	g.version, g.sourceRouting = version, sourceRouting
	return g.render()
}

// ifaceGen is one InterfaceConfiguration.
type ifaceGen struct {
	g              *netGen
	n              *nIface
	config         *pyyaml.Map
	tableID        int
	matching       map[*nRoute]bool
	secondaryRts   []any
	secondaryPols  []any
	v1ConfigSubnet []any
}

func (g *netGen) render() (*pyyaml.Map, error) {
	var v1 []any
	// Plain dicts in MAAS: emitted sorted, iterated in insertion order.
	eth, vlans, bonds, bridges := pyyaml.NewMap(), pyyaml.NewMap(), pyyaml.NewMap(), pyyaml.NewMap()
	for _, n := range g.ifaces {
		if !n.enabled() {
			continue
		}
		ig := &ifaceGen{g: g, n: n, matching: map[*nRoute]bool{}}
		if err := ig.generate(); err != nil {
			return nil, err
		}
		if g.version == 1 {
			v1 = append(v1, ig.config)
			continue
		}
		switch n.Type {
		case IfacePhysical:
			eth.Set(n.Name, ig.config)
		case IfaceVLAN:
			vlans.Set(n.Name, ig.config)
		case IfaceBond:
			bonds.Set(n.Name, ig.config)
		case IfaceBridge:
			bridges.Set(n.Name, ig.config)
		}
	}
	if !g.familyPresent[6] {
		g.familyPresent[4] = true
	}
	dns := g.defaultDNSServers(g.familyPresent[4], g.familyPresent[6])
	dhcpOnly := true
	for _, c := range v1 {
		subnets, _ := c.(*pyyaml.Map).Get("subnets")
		l, _ := subnets.([]any)
		for _, s := range l {
			t, _ := s.(*pyyaml.Map).Get("type")
			if !slices.Contains([]any{"manual", "dhcp", "dhcp4", "dhcp6"}, t) {
				dhcpOnly = false
			}
		}
	}
	if len(dns) > 0 && !dhcpOnly {
		v1 = append(v1, pyyaml.M("type", "nameserver", "address", pyyaml.Strings(dns), "search", pyyaml.Strings(g.searchList)))
	}
	if g.version == 1 {
		if v1 == nil {
			v1 = []any{}
		}
		return pyyaml.M("network", pyyaml.M("version", 1, "config", v1)), nil
	}
	net := pyyaml.NewOrderedMap().Set("version", 2)
	for _, s := range []struct {
		key string
		m   *pyyaml.Map
	}{{"ethernets", eth}, {"vlans", vlans}, {"bonds", bonds}, {"bridges", bridges}} {
		if s.m.Len() > 0 {
			net.Set(s.key, s.m)
		}
	}
	g.setV2DefaultDNS(dns, eth, vlans, bonds, bridges)
	return pyyaml.M("network", net), nil
}

// setV2DefaultDNS gives interfaces with static addresses but no name servers the default
// ones (set_v2_default_dns). As in MAAS, the first such interface with an address on a
// subnet that disallows DNS stops the whole pass.
func (g *netGen) setV2DefaultDNS(dns []string, sections ...*pyyaml.Map) {
	if len(dns) == 0 {
		return
	}
	ns := pyyaml.NewMap()
	if len(g.searchList) > 0 {
		ns.Set("search", pyyaml.Strings(g.searchList))
	}
	ns.Set("addresses", pyyaml.Strings(dns))
	for _, sec := range sections {
		for _, name := range sec.InsertionKeys() {
			v, _ := sec.Get(name)
			cfg := v.(*pyyaml.Map)
			if cfg.Has("nameservers") || !cfg.Has("addresses") {
				continue
			}
			for _, a := range g.byName[name].addrs {
				if a.subnet != nil && a.subnet.DisallowDNS {
					return
				}
			}
			cfg.Set("nameservers", ns.Copy())
		}
	}
}

// defaultDNSServers is Node.get_default_dns_servers, with MAAS's own DNS addresses
// given as Network.MAASDNSServers (default: the rack).
func (g *netGen) defaultDNSServers(ipv4, ipv6 bool) []string {
	if d := g.in.Network.DefaultDNSServers; len(d) > 0 {
		return slices.Clone(d)
	}
	maas := g.in.Network.MAASDNSServers
	if len(maas) == 0 {
		maas = []string{g.in.URLs.RackIP}
	}
	ofFamily := func(addrs []string, v4 bool) []string {
		var out []string
		for _, a := range addrs {
			ip, err := netip.ParseAddr(a)
			if err != nil || ip.IsLoopback() || ip.Is4() != v4 {
				continue
			}
			out = append(out, ip.String())
		}
		return out
	}
	for _, c := range []struct {
		want bool
		gw   *gateway
		v4   bool
	}{{ipv4, g.gw4, true}, {ipv6, g.gw6, false}} {
		if !c.want || c.gw == nil || len(c.gw.subnet.DNSServers) == 0 {
			continue
		}
		if c.gw.subnet.DisallowDNS {
			return slices.Clone(c.gw.subnet.DNSServers)
		}
		return dedupe(append(ofFamily(maas, c.v4), c.gw.subnet.DNSServers...))
	}
	var out []string
	for _, a := range maas {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			continue
		}
		if g.gw4 == nil && g.gw6 == nil {
			if (ipv4 && ip.Is4()) || (ipv6 && !ip.Is4()) {
				out = append(out, ip.String())
			}
		} else if (ipv4 && g.gw4 != nil && ip.Is4()) || (ipv6 && g.gw6 != nil && !ip.Is4()) {
			out = append(out, ip.String())
		}
	}
	return dedupe(out)
}

func dedupe(ss []string) []string {
	var out []string
	for _, s := range ss {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func (ig *ifaceGen) generate() error {
	n, g := ig.n, ig.g
	addrs, err := ig.addresses()
	if err != nil {
		return err
	}
	cfg := ig.initialParams()
	sortedParents := func() []any {
		names := make([]string, len(n.parents))
		for i, p := range n.parents {
			names[i] = p.Name
		}
		slices.Sort(names)
		return pyyaml.Strings(names)
	}
	switch {
	case n.Type == IfacePhysical && g.version == 1:
		cfg.Set("id", n.Name).Set("type", "physical").Set("name", n.Name).Set("mac_address", n.MAC)
	case n.Type == IfacePhysical:
		cfg.Set("match", pyyaml.M("macaddress", n.MAC)).Set("set-name", n.Name)
	case n.Type == IfaceVLAN && g.version == 1:
		cfg.Set("id", n.Name).Set("type", "vlan").Set("name", n.Name).Set("vlan_link", n.parents[0].Name).Set("vlan_id", n.VID)
	case n.Type == IfaceVLAN:
		cfg.Set("id", n.VID).Set("link", n.parents[0].Name)
	case n.Type == IfaceBond && g.version == 1:
		cfg.Set("id", n.Name).Set("type", "bond").Set("name", n.Name).Set("mac_address", n.MAC).
			Set("bond_interfaces", sortedParents()).Set("params", ig.bondParams())
	case n.Type == IfaceBond:
		cfg.Set("macaddress", n.MAC).Set("interfaces", sortedParents())
		if p := netplanBondParams(ig.bondParams()); p.Len() > 0 {
			cfg.Set("parameters", p)
		}
	case n.Type == IfaceBridge && g.version == 1:
		cfg.Set("id", n.Name).Set("type", "bridge").Set("name", n.Name).Set("mac_address", n.MAC).
			Set("bridge_interfaces", sortedParents()).Set("params", ig.bridgeParams())
	case n.Type == IfaceBridge:
		cfg.Set("macaddress", n.MAC).Set("interfaces", sortedParents())
		if len(n.Params) > 0 {
			if t, _ := n.Params["bridge_type"].(string); t == "ovs" {
				cfg.Set("openvswitch", pyyaml.NewMap()).Set("optional", false)
			}
		}
		if p := netplanBridgeParams(ig.bridgeParams()); p.Len() > 0 {
			cfg.Set("parameters", p)
		}
	}
	if g.version == 1 {
		if subnets := ig.v1ConfigSubnet; len(subnets) > 0 {
			cfg.Set("subnets", subnets)
		}
	} else {
		cfg.Update(addrs)
		if n.Disconnected {
			cfg.Set("optional", true)
		}
		var routes []any
		if ig.tableID == 0 {
			routes = ig.routeOps(ig.matching)
		} else {
			routes = ig.secondaryRts
		}
		if len(routes) > 0 {
			cfg.Set("routes", routes)
		}
		if len(ig.secondaryPols) > 0 {
			cfg.Set("routing-policy", ig.secondaryPols)
		}
	}
	ig.config = cfg
	return nil
}

// initialParams is _get_initial_params: params other than bond_*, bridge_* and mtu, then
// the effective MTU.
func (ig *ifaceGen) initialParams() *pyyaml.Map {
	p := pyyaml.NewMap()
	for _, k := range sortedParamKeys(ig.n.Params) {
		if strings.HasPrefix(k, "bond_") || strings.HasPrefix(k, "bridge_") || k == "mtu" {
			continue
		}
		p.Set(k, paramValue(ig.n.Params[k], ig.g.version))
	}
	p.Set("mtu", ig.n.effectiveMTU())
	return p
}

// bondParams is _get_bond_params: bond_* params with "-" separators, and the mode rules
// of LP:1730626 and LP:1730991.
func (ig *ifaceGen) bondParams() *pyyaml.Map {
	p := pyyaml.NewOrderedMap()
	for _, k := range sortedParamKeys(ig.n.Params) {
		if strings.HasPrefix(k, "bond_") {
			p.Set(strings.ReplaceAll(k, "_", "-"), paramValue(ig.n.Params[k], ig.g.version))
		}
	}
	if mode, ok := p.Get("bond-mode"); ok {
		if mode != "802.3ad" {
			p.Delete("bond-lacp-rate")
		}
		if mode != "active-backup" {
			p.Delete("bond-num-grat-arp")
			p.Delete("bond-num-unsol-na")
		}
	}
	p.Ordered = false
	return p
}

// bridgeParams is _get_bridge_params: bridge_* params except bridge_type.
func (ig *ifaceGen) bridgeParams() *pyyaml.Map {
	p := pyyaml.NewMap()
	for _, k := range sortedParamKeys(ig.n.Params) {
		if strings.HasPrefix(k, "bridge_") && k != "bridge_type" {
			p.Set(k, paramValue(ig.n.Params[k], ig.g.version))
		}
	}
	return p
}

// Netplan names for ifenslave bond options and bridge-utils bridge options
// (provisioningserver/utils/netplan.py); options without an equivalent are dropped.
var (
	netplanBondNames = map[string]string{
		"bond-ad-select": "ad-select", "bond-arp-interval": "arp-interval",
		"bond-arp-ip-target": "arp-ip-targets", "bond-arp-validate": "arp-validate",
		"bond-downdelay": "down-delay", "bond-give-a-chance": "up-delay",
		"bond-lacp-rate": "lacp-rate", "bond-miimon": "mii-monitor-interval",
		"bond-mode": "mode", "bond-num-grat-arp": "gratuitious-arp", // sic, LP:1827238
		"bond-num-unsol-na": "gratuitious-arp", "bond-primary-reselect": "primary-reselect-policy",
		"bond-updelay": "up-delay", "bond-xmit-hash-policy": "transmit-hash-policy",
		"bond-packets-per-slave": "packets-per-slave", "bond-all-slaves-active": "all-slaves-active",
		"bond-arp-all-targets": "arp-all-targets", "bond-fail-over-mac-policy": "fail-over-mac-policy",
		"bond-learn-packet-interval": "learn-packet-interval", "bond-min-links": "min-links",
	}
	netplanBridgeNames = map[string]string{
		"bridge_ageing": "ageing-time", "bridge_bridgeprio": "priority", "bridge_fd": "forward-delay",
		"bridge_hello": "hello-time", "bridge_maxage": "max-age", "bridge_pathcost": "path-cost",
		"bridge_stp": "stp",
	}
)

func netplanBondParams(p *pyyaml.Map) *pyyaml.Map {
	out := pyyaml.NewMap()
	for _, k := range p.Keys() {
		name, ok := netplanBondNames[k]
		if !ok {
			continue
		}
		v, _ := p.Get(k)
		if name == "arp-ip-targets" {
			if s, ok := v.(string); ok {
				v = pyyaml.Strings(strings.Fields(s))
			}
		}
		out.Set(name, v)
	}
	return out
}

func netplanBridgeParams(p *pyyaml.Map) *pyyaml.Map {
	out := pyyaml.NewMap()
	for _, k := range p.Keys() {
		if name, ok := netplanBridgeNames[k]; ok {
			v, _ := p.Get(k)
			out.Set(name, v)
		}
	}
	return out
}

func (ig *ifaceGen) routeOps(set map[*nRoute]bool) []any {
	var rs []*nRoute
	for r := range set {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].id < rs[j].id })
	var out []any
	for _, r := range rs {
		if ig.g.version == 1 {
			out = append(out, pyyaml.M("destination", r.Destination, "gateway", r.Gateway, "metric", r.Metric))
		} else {
			out = append(out, pyyaml.M("to", r.Destination, "via", r.Gateway, "metric", r.Metric))
		}
	}
	return out
}

// dhcpType is _get_dhcp_type.
func (ig *ifaceGen) dhcpType() string {
	var v4, v6 bool
	for _, a := range ig.n.addrs {
		if a.alloc != allocDHCP {
			continue
		}
		if a.subnet == nil {
			v4, v6 = true, true
			ig.g.familyPresent[4], ig.g.familyPresent[6] = true, true
		} else if a.subnet.family() == 4 {
			v4 = true
		} else {
			v6 = true
		}
	}
	switch {
	case v4 && v6:
		ig.g.familyPresent[4], ig.g.familyPresent[6] = true, true
		return "dhcp"
	case v4:
		ig.g.familyPresent[4] = true
		return "dhcp4"
	case v6:
		ig.g.familyPresent[6] = true
		return "dhcp6"
	}
	return ""
}

// addresses is _generate_addresses: it fills ig.v1ConfigSubnet and returns the v2
// address settings.
func (ig *ifaceGen) addresses() (*pyyaml.Map, error) {
	g := ig.g
	var addresses []nAddr
	for _, a := range ig.n.addrs {
		if a.alloc != allocDHCP {
			addresses = append(addresses, a)
		}
	}
	dhcp := ig.dhcpType()
	v2 := pyyaml.NewMap()
	linkUp := len(addresses) == 0 || (len(addresses) == 1 && addresses[0].alloc == allocSticky && addresses[0].ip == "")
	if linkUp && dhcp == "" {
		if g.version == 1 {
			ig.v1ConfigSubnet = append(ig.v1ConfigSubnet, pyyaml.M("type", "manual"))
		}
		return v2, nil
	}
	var v2cidrs []any
	v2ns := pyyaml.NewMap()
	for _, a := range addresses {
		s := a.subnet
		if s == nil {
			continue
		}
		ip := a.ip
		if ip == "" {
			ip = "None" // MAAS formats the not-yet-assigned address as Python's None
		}
		cidr := fmt.Sprintf("%s/%d", ip, s.prefix.Bits())
		op := pyyaml.M("type", "static", "address", cidr)
		if a.ip != "" {
			v2cidrs = append(v2cidrs, cidr)
			v2.Set("addresses", v2cidrs)
		}
		ig.v1ConfigSubnet = append(ig.v1ConfigSubnet, op)
		g.familyPresent[s.family()] = true
		subnetRoutes := map[*nRoute]bool{}
		for _, r := range g.routes {
			if g.subnet(r.Source) == s {
				subnetRoutes[r] = true
				ig.matching[r] = true
			}
		}
		target := v2
		if g.version == 1 {
			target = op
		}
		if err := ig.setDefaultGateway(s, target); err != nil {
			return nil, err
		}
		var v1dns []any
		if !v2.Has("nameservers") {
			v2.Set("nameservers", v2ns)
			if !v2ns.Has("addresses") {
				v2ns.Set("addresses", []any{})
			}
		}
		nsAddrs := func() []any { v, _ := v2ns.Get("addresses"); return v.([]any) }
		addNS := func(ip string) {
			v1dns = append(v1dns, ip)
			v2ns.Set("addresses", append(nsAddrs(), ip))
		}
		if !s.DisallowDNS {
			op.Set("dns_search", pyyaml.Strings(g.searchList))
			v2ns.Set("search", pyyaml.Strings(g.searchList))
			for _, ra := range s.RackAddresses {
				rip, _ := netip.ParseAddr(ra)
				if slices.Contains(nsAddrs(), any(rip.String())) {
					continue
				}
				if rip.Is4() != s.prefix.Addr().Is4() {
					continue
				}
				if s.Gateway == "" && !s.prefix.Contains(rip) {
					continue // without a gateway, only in-subnet rack addresses
				}
				addNS(rip.String())
			}
		}
		for _, d := range s.DNSServers {
			if slices.Contains(nsAddrs(), any(d)) {
				continue
			}
			addNS(d)
		}
		if len(subnetRoutes) > 0 && g.version == 1 {
			op.Set("routes", ig.routeOps(subnetRoutes))
		}
		if len(v1dns) == 0 {
			op.Delete("dns_search")
		} else {
			op.Set("dns_nameservers", v1dns)
		}
		if len(nsAddrs()) == 0 {
			v2.Delete("nameservers")
		}
	}
	if dhcp != "" {
		ig.v1ConfigSubnet = append(ig.v1ConfigSubnet, pyyaml.M("type", dhcp))
		switch dhcp {
		case "dhcp":
			v2.Set("dhcp4", true).Set("dhcp6", true)
		case "dhcp4":
			v2.Set("dhcp4", true)
		case "dhcp6":
			v2.Set("dhcp6", true)
		}
	}
	return v2, nil
}

// setDefaultGateway is _set_default_gateway: the default gateway goes on the v1 subnet
// or the v2 interface; with source routing, other gateways get a routing table each.
func (ig *ifaceGen) setDefaultGateway(s *nSubnet, cfg *pyyaml.Map) error {
	g := ig.g
	fam := s.family()
	if !g.sourceRouting && ((fam == 4 && g.gw4Set) || (fam == 6 && g.gw6Set)) {
		return nil
	}
	if gw := ig.defaultGateway(s, false); gw != "" {
		if g.version == 1 {
			cfg.Set("gateway", gw)
		}
		if fam == 4 {
			g.gw4Set = true
			if g.version == 2 {
				cfg.Set("gateway4", gw)
			}
		} else {
			g.gw6Set = true
			if g.version == 2 {
				cfg.Set("gateway6", gw)
			}
		}
		return nil
	}
	if g.version == 2 && g.sourceRouting {
		if gw := ig.defaultGateway(s, true); gw != "" {
			return ig.setPolicyRouting(s, gw)
		}
	}
	return nil
}

func sameIP(a, b string) bool {
	x, err1 := netip.ParseAddr(a)
	y, err2 := netip.ParseAddr(b)
	return err1 == nil && err2 == nil && x == y
}

func (ig *ifaceGen) defaultGateway(s *nSubnet, includeSecondary bool) string {
	if s.Gateway == "" {
		return ""
	}
	for _, gw := range []*gateway{ig.g.gw4, ig.g.gw6} {
		if gw != nil && gw.ifaceID == ig.n.id && gw.subnet == s && sameIP(gw.ip, s.Gateway) {
			return s.Gateway
		}
	}
	if includeSecondary {
		for _, gw := range ig.g.allGateways {
			if gw.ifaceID == ig.n.id && gw.ip != "" {
				return s.Gateway
			}
		}
	}
	return ""
}

func (ig *ifaceGen) setPolicyRouting(s *nSubnet, gw string) error {
	g := ig.g
	table := g.nextTable
	g.nextTable++
	if table >= 253 {
		return fmt.Errorf("source routing for %s: maximum number of routing tables exceeded", ig.n.Name)
	}
	ig.tableID = table
	network := s.prefix.String()
	ig.secondaryRts = append(ig.secondaryRts, pyyaml.M("to", "0.0.0.0/0", "via", gw, "table", table))
	ig.secondaryPols = append(ig.secondaryPols,
		pyyaml.M("from", network, "table", table, "priority", 1000),
		pyyaml.M("from", network, "to", network, "table", 254))
	var rs []*nRoute
	for r := range ig.matching {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].id < rs[j].id })
	for _, r := range rs {
		ig.secondaryPols = append(ig.secondaryPols, pyyaml.M("from", "0.0.0.0/0", "to", r.Destination, "table", table, "priority", 1000))
		ig.secondaryRts = append(ig.secondaryRts, pyyaml.M("to", r.Destination, "via", r.Gateway, "metric", r.Metric, "table", table))
	}
	return nil
}
