package fakemaas

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/maasemu/maasemu/fakemaas/nodestatus"
)

// Machine interfaces through nodes/<sid>/interfaces/ as MAAS's interface handler serves
// them (maasserver/api/interfaces.py, forms/interface.py, forms/interface_link.py,
// models/interface.py): physical interfaces, bonds, VLAN interfaces and bridges, and
// their links to subnets (AUTO, DHCP, STATIC, LINK_UP).

var ifaceNameRE = regexp.MustCompile(`^[\w\-_.:]{1,15}$`)

const ifaceNameMsg = "The interface name must be 1 to 15 characters long and can only contain alphanumeric characters, hyphens ('-'), underscores ('_'), periods ('.'), and colons (':')."

// Interface lookups ---------------------------------------------------------------------

func (m *machine) iface(id int) *Interface {
	for i := range m.Interfaces {
		if m.Interfaces[i].ID == id {
			return &m.Interfaces[i]
		}
	}
	return nil
}

func (m *machine) ifaceNamed(name string) *Interface {
	for i := range m.Interfaces {
		if m.Interfaces[i].Name == name {
			return &m.Interfaces[i]
		}
	}
	return nil
}

// children are the interfaces that have i as a parent, in id order.
func (m *machine) children(id int) []*Interface {
	var out []*Interface
	for k := range m.Interfaces {
		if slices.Contains(m.Interfaces[k].Parents, id) {
			out = append(out, &m.Interfaces[k])
		}
	}
	return out
}

func (m *machine) parents(i *Interface) []*Interface {
	var out []*Interface
	for _, id := range i.Parents {
		if p := m.iface(id); p != nil {
			out = append(out, p)
		}
	}
	return out
}

// enabled is Interface.is_enabled: a child is enabled when one of its parents is.
func (m *machine) enabled(i *Interface) bool {
	if i.kind() == ifacePhysical || len(i.Parents) == 0 {
		return !i.Disabled
	}
	for _, p := range m.parents(i) {
		if p.ID != i.ID && m.enabled(p) {
			return true
		}
	}
	return false
}

// nextIfname is Node.get_next_ifname: eth<N+1> for the highest ethN in use.
func (m *machine) nextIfname() string {
	n := -1
	for _, i := range m.Interfaces {
		if strings.HasPrefix(i.Name, "eth") {
			digits := strings.TrimPrefix(i.Name, "eth")
			end := 0
			for end < len(digits) && digits[end] >= '0' && digits[end] <= '9' {
				end++
			}
			if v, err := strconv.Atoi(digits[:end]); err == nil && v > n {
				n = v
			}
		}
	}
	return fmt.Sprintf("eth%d", n+1)
}

// effectiveMTU is Interface.get_effective_mtu.
func (m *machine) effectiveMTU(n *netModel, i *Interface) int {
	mtu := 0
	if v, ok := intValue(i.Params["mtu"]); ok {
		mtu = v
	}
	if mtu == 0 {
		if v := n.vlan(i.VLAN); v != nil {
			mtu = v.MTU
		}
	}
	if mtu == 0 {
		mtu = defaultMTU
	}
	for _, c := range m.children(i.ID) {
		mtu = max(mtu, m.effectiveMTU(n, c))
	}
	return mtu
}

func intValue(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case float64:
		return int(x), true
	}
	return 0, false
}

// JSON --------------------------------------------------------------------------------------

// interfaceJSON renders an interface as MAAS's interface handler does.
func interfaceJSON(n *netModel, m *machine, i *Interface) map[string]any {
	tags := i.Tags
	if tags == nil {
		tags = []string{}
	}
	links := []any{}
	for _, l := range i.Links {
		j := map[string]any{"id": l.ID, "mode": l.Mode}
		if l.IP != "" {
			j["ip_address"] = l.IP
		}
		if s := n.subnet(l.Subnet); s != nil {
			j["subnet"] = subnetJSON(n, s)
		}
		links = append(links, j)
	}
	var discovered any
	var found []map[string]any
	for _, d := range i.Discovered {
		p, err := netip.ParsePrefix(d)
		if err != nil {
			continue
		}
		if s := n.subnetForIP(p.Addr()); s != nil {
			found = append(found, map[string]any{"subnet": subnetJSON(n, s), "ip_address": p.Addr().String()})
		}
	}
	if len(found) > 0 {
		discovered = found
	}
	parents := []string{}
	for _, p := range m.parents(i) {
		parents = append(parents, p.Name)
	}
	sort.Strings(parents)
	children := []string{}
	for _, c := range m.children(i.ID) {
		children = append(children, c.Name)
	}
	sort.Strings(children)
	var vj any
	if v := n.vlan(i.VLAN); v != nil {
		vj = vlanJSON(n, v)
	}
	params := map[string]any{}
	for k, v := range i.Params {
		params[k] = v
	}
	var mac any
	if i.MAC != "" {
		mac = i.MAC
	}
	return map[string]any{"id": i.ID, "name": i.Name, "type": i.kind(), "mac_address": mac,
		"enabled": m.enabled(i), "links": links, "vlan": vj, "system_id": m.SystemID, "tags": tags, "params": params,
		"parents": parents, "children": children, "effective_mtu": m.effectiveMTU(n, i), "link_connected": !i.Disconnected,
		"interface_speed": i.InterfaceSpeed, "link_speed": i.LinkSpeed, "discovered": discovered, "firmware_version": nil,
		"product": nilIfEmpty(i.Product), "vendor": nilIfEmpty(i.Vendor), "numa_node": 0, "sriov_max_vf": 0,
		"resource_uri": fmt.Sprintf("%snodes/%s/interfaces/%d/", APIPrefix, m.SystemID, i.ID)}
}

// machineIPAddresses are the addresses on the machine's links (Node.ip_addresses).
func machineIPAddresses(m *machine) []string {
	out := []string{}
	for _, i := range m.Interfaces {
		for _, l := range i.Links {
			if l.IP != "" && !slices.Contains(out, l.IP) {
				out = append(out, l.IP)
			}
		}
	}
	return out
}

// Link operations ---------------------------------------------------------------------------

// linker changes the links of one machine (r.mu held; the network model is read only).
type linker struct {
	r *Region
	w *writer
	n *netModel
	m *machine
}

func (w *writer) linker(m *machine) *linker { return &linker{r: w.r, w: w, n: w.r.net, m: m} }

func (k *linker) family(subnetID int) int {
	if s := k.n.subnet(subnetID); s != nil {
		if s.prefix().Addr().Is4() {
			return 4
		}
		return 6
	}
	return 0
}

// removeLinks drops the links of i for which drop is true.
func removeLinks(i *Interface, drop func(Link) bool) {
	keep := i.Links[:0:0]
	for _, l := range i.Links {
		if !drop(l) {
			keep = append(keep, l)
		}
	}
	i.Links = keep
}

// removeLinkDHCP is remove_link_dhcp: DHCP links without a subnet or of the family go.
func (k *linker) removeLinkDHCP(i *Interface, family int) {
	removeLinks(i, func(l Link) bool {
		return l.Mode == linkDHCP && (family == 0 || l.Subnet == 0 || k.family(l.Subnet) == family)
	})
}

func removeLinkUp(i *Interface) { removeLinks(i, func(l Link) bool { return l.Mode == linkUp }) }

// setVLAN changes the interface's VLAN; on a machine a different VLAN deletes every link
// (the interface_vlan_update signal).
func setVLAN(i *Interface, vlanID int) {
	if i.VLAN != vlanID {
		i.Links = nil
		i.VLAN = vlanID
	}
}

// linkSubnet is Interface.link_subnet. ip is only used for static links; an invalid one
// allocates an address.
func (k *linker) linkSubnet(i *Interface, mode string, s *subnet, ip netip.Addr) (Link, error) {
	sid := 0
	if s != nil {
		sid = s.ID
		if i.VLAN == 0 {
			setVLAN(i, s.VLAN)
		}
	}
	fam := k.family(sid)
	l := Link{Mode: mode, Subnet: sid}
	switch mode {
	case linkAuto:
		l.ID = int(k.w.next("ipaddress"))
		i.Links = append(i.Links, l)
		k.removeLinkDHCP(i, fam)
		removeLinkUp(i)
	case linkDHCP:
		k.removeLinkDHCP(i, fam)
		l.ID = int(k.w.next("ipaddress"))
		i.Links = append(i.Links, l)
		removeLinkUp(i)
	case linkStatic:
		addr, err := k.staticAddress(s, ip)
		if err != nil {
			return Link{}, err
		}
		l.ID, l.IP = int(k.w.next("ipaddress")), addr.String()
		i.Links = append(i.Links, l)
		k.removeLinkDHCP(i, fam)
		removeLinkUp(i)
	case linkUp:
		removeLinkUp(i)
		l.ID = int(k.w.next("ipaddress"))
		i.Links = append(i.Links, l)
		k.removeLinkDHCP(i, fam)
	default:
		return Link{}, fmt.Errorf("fakemaas: unknown link mode %q", mode)
	}
	return l, nil
}

// staticAddress is _link_subnet_static's address: the requested one if it is in the
// subnet, outside its dynamic ranges and unused; else the next free one.
func (k *linker) staticAddress(s *subnet, ip netip.Addr) (netip.Addr, error) {
	if !ip.IsValid() {
		return k.allocate(s, nil)
	}
	if !s.prefix().Contains(ip) {
		return ip, textError(http.StatusForbidden, fmt.Sprintf("IP address is not in the given subnet '%s'.", k.n.subnetLabel(s)))
	}
	if rg := k.dynamicRangeFor(s, ip); rg != nil {
		return ip, textError(http.StatusForbidden, fmt.Sprintf("IP address is inside a dynamic range %s-%s.", rg.Start, rg.End))
	}
	for _, u := range k.r.usedIPs(k.n, k.m) {
		if u.ip == ip {
			return ip, notFound("IP address is already in use.")
		}
	}
	return ip, nil
}

func (k *linker) dynamicRangeFor(s *subnet, ip netip.Addr) *ipRange {
	for _, rg := range k.n.rangesOf(s.ID) {
		if rg.Type == rangeDynamic && rg.span().contains(toU(ip)) {
			return rg
		}
	}
	return nil
}

// allocate is StaticIPAddress.objects.allocate_new without a requested address.
func (k *linker) allocate(s *subnet, exclude []netip.Addr) (netip.Addr, error) {
	use := k.r.subnetUse(k.n, s, k.r.usedIPs(k.n, k.m), 0)
	ip, ok := s.nextFreeIP(use, exclude)
	if !ok {
		return netip.Addr{}, textError(http.StatusServiceUnavailable, fmt.Sprintf("No more IPs available in subnet: %s.", s.CIDR))
	}
	return ip, nil
}

// clearAllLinks is clear_all_links(clearing_config=True).
func clearAllLinks(i *Interface) { i.Links = nil }

// unlink is unlink_ip_address: the link goes, and an enabled interface left without links
// gets a LINK_UP one.
func (k *linker) unlink(i *Interface, linkID int) {
	removeLinks(i, func(l Link) bool { return l.ID == linkID })
	if k.m.enabled(i) {
		k.ensureLinkUp(i)
	}
}

// ensureLinkUp is ensure_link_up: LINK_UP links go when others exist; an interface on a
// VLAN without links gets LINK_UP (on the subnet of an address discovered on that VLAN).
func (k *linker) ensureLinkUp(i *Interface) {
	if len(i.Links) > 0 {
		var ups, others int
		for _, l := range i.Links {
			if l.Mode == linkUp {
				ups++
			} else {
				others++
			}
		}
		if ups > 0 && others > 0 {
			removeLinkUp(i)
		}
		return
	}
	if i.VLAN == 0 {
		return
	}
	var s *subnet
	for _, d := range i.Discovered {
		if p, err := netip.ParsePrefix(d); err == nil {
			if ds := k.n.subnetForIP(p.Addr()); ds != nil && ds.VLAN == i.VLAN {
				s = ds
				break
			}
		}
	}
	_, _ = k.linkSubnet(i, linkUp, s, netip.Addr{})
}

// setInitialNetworking is Node.set_initial_networking_configuration, what commissioning
// ends with: the boot interface links with default_boot_interface_link_type (AUTO) to the
// subnets it was seen on, else AUTO on its VLAN's first subnet, else DHCP; every other
// enabled interface is LINK_UP.
func (k *linker) setInitialNetworking() {
	m := k.m
	boot := m.bootInterface()
	if boot == nil {
		return
	}
	for i := range m.Interfaces {
		clearAllLinks(&m.Interfaces[i])
	}
	mode := k.r.configString("default_boot_interface_link_type")
	switch mode {
	case linkAuto, linkDHCP, linkStatic, linkUp:
	default:
		mode = linkAuto
	}
	set := false
	var linked []int
	for _, d := range boot.Discovered {
		p, err := netip.ParsePrefix(d)
		if err != nil {
			continue
		}
		s := k.n.subnetForIP(p.Addr())
		if s == nil || slices.Contains(linked, s.ID) {
			continue
		}
		linked = append(linked, s.ID)
		if _, err := k.linkSubnet(boot, mode, s, netip.Addr{}); err == nil {
			set = true
		}
	}
	if !set {
		k.forceAutoOrDHCP(boot)
	}
	for i := range m.Interfaces {
		if m.Interfaces[i].ID != boot.ID && m.enabled(&m.Interfaces[i]) {
			k.ensureLinkUp(&m.Interfaces[i])
		}
	}
}

// forceAutoOrDHCP is force_auto_or_dhcp_link: AUTO on the first subnet of the
// interface's VLAN, else DHCP. An interface on no VLAN is left alone.
func (k *linker) forceAutoOrDHCP(i *Interface) {
	if i.VLAN == 0 {
		return
	}
	if subs := k.n.subnetsOn(i.VLAN); len(subs) > 0 {
		_, _ = k.linkSubnet(i, linkAuto, subs[0], netip.Addr{})
		return
	}
	_, _ = k.linkSubnet(i, linkDHCP, nil, netip.Addr{})
}

// claimAutoIPs is Node.claim_auto_ips at the start of a deployment: every AUTO link
// without an address gets the next free one of its subnet.
func (k *linker) claimAutoIPs() error {
	var claimed []netip.Addr
	for x := range k.m.Interfaces {
		i := &k.m.Interfaces[x]
		for y := range i.Links {
			l := &i.Links[y]
			if l.Mode != linkAuto || l.IP != "" {
				continue
			}
			s := k.n.subnet(l.Subnet)
			if s == nil {
				return notFound(fmt.Sprintf("Automatic IP address cannot be configured on interface %s without an associated subnet.", i.Name))
			}
			ip, err := k.allocate(s, claimed)
			if err != nil {
				return err
			}
			l.IP = ip.String()
			claimed = append(claimed, ip)
		}
	}
	return nil
}

// releaseInterfaceConfig is Node.release_interface_config: AUTO addresses are freed and
// bridges made when the machine was acquired go, their links back on their parent.
func (k *linker) releaseInterfaceConfig() {
	m := k.m
	for x := range m.Interfaces {
		for y := range m.Interfaces[x].Links {
			if l := &m.Interfaces[x].Links[y]; l.Mode == linkAuto {
				l.IP = ""
			}
		}
	}
	for {
		var acquired *Interface
		for x := range m.Interfaces {
			if m.Interfaces[x].Acquired {
				acquired = &m.Interfaces[x]
				break
			}
		}
		if acquired == nil {
			return
		}
		if ps := m.parents(acquired); len(ps) > 0 && acquired.kind() == ifaceBridge {
			ps[0].Links = append(ps[0].Links, acquired.Links...)
		}
		k.deleteInterface(acquired.ID)
	}
}

// deleteInterface removes an interface, and children it was the last parent of.
func (k *linker) deleteInterface(id int) {
	m := k.m
	for _, c := range m.children(id) {
		if len(c.Parents) == 1 {
			k.deleteInterface(c.ID)
		}
	}
	var keep []Interface
	for _, i := range m.Interfaces {
		if i.ID == id {
			continue
		}
		i.Parents = slices.DeleteFunc(slices.Clone(i.Parents), func(p int) bool { return p == id })
		keep = append(keep, i)
	}
	m.Interfaces = keep
}

// migrateInterfaces converts a machine recorded before the network model: physical
// interfaces go on the default VLAN unless disconnected, then a legacy "dhcp" or
// "link_up" mode becomes that link; a machine with no legacy modes gets MAAS's initial
// configuration.
func (w *writer) migrateInterfaces(m *machine, n *netModel) {
	k := &linker{r: w.r, w: w, n: n, m: m}
	legacy := false
	def := n.defaultVLAN()
	for x := range m.Interfaces {
		i := &m.Interfaces[x]
		if i.VLAN == 0 && !i.Disconnected && def != nil {
			i.VLAN = def.ID
		}
		if i.LegacyLinkMode != "" {
			legacy = true
		}
	}
	if legacy {
		for x := range m.Interfaces {
			i := &m.Interfaces[x]
			switch i.LegacyLinkMode {
			case linkDHCP:
				_, _ = k.linkSubnet(i, linkDHCP, nil, netip.Addr{})
			case linkUp:
				_, _ = k.linkSubnet(i, linkUp, nil, netip.Addr{})
			}
			i.LegacyLinkMode = ""
		}
	} else if !nodestatus.CommissioningLike(m.Status) {
		k.setInitialNetworking()
	}
	m.NetModel = 1
}

// withPhysical is a machine's interfaces once mac_addresses named its physical ones:
// those of kept MACs stay as they are (with their links), interfaces left without any
// parent go, and new MACs get new interfaces named as get_next_ifname names them.
func withPhysical(old []Interface, macs []Interface) []Interface {
	m := &machine{}
	for _, i := range old {
		if i.kind() != ifacePhysical || slices.ContainsFunc(macs, func(x Interface) bool { return x.MAC == i.MAC }) {
			m.Interfaces = append(m.Interfaces, i)
		}
	}
	for changed := true; changed; {
		changed = false
		for x := range m.Interfaces {
			i := &m.Interfaces[x]
			if i.kind() == ifacePhysical {
				continue
			}
			kept := slices.DeleteFunc(slices.Clone(i.Parents), func(p int) bool { return m.iface(p) == nil })
			if len(kept) == 0 {
				m.Interfaces = slices.Delete(m.Interfaces, x, x+1)
				changed = true
				break
			}
			i.Parents = kept
		}
	}
	for _, n := range macs {
		if !slices.ContainsFunc(m.Interfaces, func(x Interface) bool { return x.MAC == n.MAC && x.kind() == ifacePhysical }) {
			n.Name = m.nextIfname()
			m.Interfaces = append(m.Interfaces, n)
		}
	}
	return m.Interfaces
}

// assignInterfaces numbers a machine's new interfaces and puts them on the default VLAN.
// With configure, a machine without any link gets MAAS's initial configuration: the
// fake's stand-in for commissioning, for machines the API makes Ready or Deployed.
func (w *writer) assignInterfaces(m *machine, configure bool) {
	def := w.r.net.defaultVLAN()
	for x := range m.Interfaces {
		if i := &m.Interfaces[x]; i.ID == 0 {
			i.ID = int(w.next("interface"))
			if def != nil && !i.Disconnected {
				i.VLAN = def.ID
			}
		}
	}
	m.NetModel = 1
	if configure && !slices.ContainsFunc(m.Interfaces, func(i Interface) bool { return len(i.Links) > 0 }) {
		w.linker(m).setInitialNetworking()
	}
}

// commissionedInterfaces is the network part of processing commissioning results
// (update_node_network_information): each reported interface's addresses are recorded
// as discovered; an interface seen on a known subnet moves to its VLAN, a disconnected
// one to none, a connected one keeps its VLAN (or takes the default VLAN); then, while
// commissioning, the initial link configuration. Unlike MAAS, the fake does not create
// subnets (or fabrics) for networks it does not know.
func (w *writer) commissionedInterfaces(m *machine) {
	k := w.linker(m)
	def := k.n.defaultVLAN()
	for x := range m.Interfaces {
		i := &m.Interfaces[x]
		vlanID := 0
		for _, d := range i.Discovered {
			if p, err := netip.ParsePrefix(d); err == nil {
				if s := k.n.subnetForIP(p.Addr()); s != nil {
					vlanID = s.VLAN
					break
				}
			}
		}
		switch {
		case vlanID != 0:
		case i.Disconnected:
		case i.VLAN != 0 && k.n.vlan(i.VLAN) != nil:
			vlanID = i.VLAN
		case def != nil:
			vlanID = def.ID
		}
		setVLAN(i, vlanID)
	}
	if m.Status == nodestatus.Commissioning {
		k.setInitialNetworking()
	}
	m.NetModel = 1
}

// API ---------------------------------------------------------------------------------------

// allowedIfaceStates are the statuses in which a machine's interfaces may change.
var allowedIfaceStates = []nodestatus.Status{nodestatus.New, nodestatus.Ready, nodestatus.FailedTesting,
	nodestatus.Allocated, nodestatus.Broken}

func checkIfaceState(m *machine, operation string, extra ...nodestatus.Status) error {
	if slices.Contains(allowedIfaceStates, m.Status) || slices.Contains(extra, m.Status) {
		return nil
	}
	return conflict(fmt.Sprintf("Cannot %s interface because the machine is not New, Ready, Allocated, or Broken.", operation))
}

func (r *Region) ifaceItem(sid string, id int) any {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m := r.machines[sid]
	if m == nil {
		return nil
	}
	if i := m.iface(id); i != nil {
		return interfaceJSON(r.net, m, i)
	}
	return nil
}

func (r *Region) apiInterfaces(w http.ResponseWriter, q *request, sid string) error {
	if len(q.path) == 3 {
		var create func(*writer, *machine) (int, error)
		switch {
		case q.Method == http.MethodGet && q.op == "":
			writeJSON(w, http.StatusOK, r.machineItem(sid, func(m *machine) any {
				out := []any{}
				for x := range m.Interfaces {
					out = append(out, interfaceJSON(r.net, m, &m.Interfaces[x]))
				}
				return out
			}))
			return nil
		case q.Method == http.MethodPost && q.op == "create_physical":
			create = func(wr *writer, m *machine) (int, error) { return wr.createPhysical(m, q) }
		case q.Method == http.MethodPost && q.op == "create_bond":
			create = func(wr *writer, m *machine) (int, error) { return wr.createChild(m, q, ifaceBond) }
		case q.Method == http.MethodPost && q.op == "create_vlan":
			create = func(wr *writer, m *machine) (int, error) { return wr.createChild(m, q, ifaceVLAN) }
		case q.Method == http.MethodPost && q.op == "create_bridge":
			create = func(wr *writer, m *machine) (int, error) { return wr.createChild(m, q, ifaceBridge) }
		default:
			return unknownOp(q)
		}
		var id int
		err := r.updateMachine(sid, func(wr *writer, m *machine) error {
			var err error
			id, err = create(wr, m)
			return err
		})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, r.ifaceItem(sid, id))
		return nil
	}
	if len(q.path) != 4 {
		return notFound("Unknown API endpoint: " + q.URL.Path + ".")
	}
	id, err := strconv.Atoi(q.path[3])
	r.mu.RLock()
	found := err == nil && r.machines[sid].iface(id) != nil
	r.mu.RUnlock()
	if !found {
		return notFound("No Interface matches the given query.")
	}
	var op func(*writer, *machine, *Interface) error
	switch {
	case q.Method == http.MethodGet && q.op == "":
	case q.Method == http.MethodPut && q.op == "":
		op = func(wr *writer, m *machine, i *Interface) error { return wr.updateInterface(m, i, q) }
	case q.Method == http.MethodDelete && q.op == "":
		err := r.updateMachine(sid, func(wr *writer, m *machine) error {
			if err := checkIfaceState(m, "delete interface"); err != nil {
				return err
			}
			wr.linker(m).deleteInterface(id)
			return nil
		})
		if err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	case q.Method == http.MethodPost && q.op == "link_subnet":
		op = func(wr *writer, m *machine, i *Interface) error { return wr.linkSubnetForm(m, i, q) }
	case q.Method == http.MethodPost && q.op == "unlink_subnet":
		op = func(wr *writer, m *machine, i *Interface) error {
			if err := checkIfaceState(m, "unlink subnet"); err != nil {
				return err
			}
			raw, given := q.get("id")
			var choices []string
			for _, l := range i.Links {
				choices = append(choices, "'"+strconv.Itoa(l.ID)+"'")
			}
			linkID, err := strconv.Atoi(raw)
			ok := err == nil && slices.ContainsFunc(i.Links, func(l Link) bool { return l.ID == linkID })
			switch {
			case !given || raw == "":
				return validation(fieldErrors{"id": {"This field is required."}})
			case !ok:
				return validation(fieldErrors{"id": {fmt.Sprintf("'%s' is not a valid id.  It should be one of: %s.", raw, strings.Join(choices, ", "))}})
			}
			wr.linker(m).unlink(i, linkID)
			return nil
		}
	case q.Method == http.MethodPost && q.op == "disconnect":
		op = func(wr *writer, m *machine, i *Interface) error {
			if err := checkIfaceState(m, "disconnect"); err != nil {
				return err
			}
			i.Links = nil
			i.Discovered = nil
			i.VLAN = 0
			if k := i.kind(); k == ifaceBond || k == ifaceBridge {
				for _, p := range m.parents(i) {
					setVLAN(p, 0) // _update_parents
				}
			}
			return nil
		}
	case q.Method == http.MethodPost && q.op == "set_default_gateway":
		return badRequest("maasemu does not model a machine's default gateway link: the default gateway is chosen as MAAS chooses it without one (managed subnets, bonds and bridges, the boot interface, ...).")
	case q.Method == http.MethodPost && (q.op == "add_tag" || q.op == "remove_tag"):
		op = func(wr *writer, m *machine, i *Interface) error {
			tag, ok := q.get("tag")
			if !ok {
				return badRequest("No provided tag!")
			}
			if q.op == "add_tag" {
				if !slices.Contains(i.Tags, tag) {
					i.Tags = append(i.Tags, tag)
				}
			} else {
				i.Tags = slices.DeleteFunc(i.Tags, func(t string) bool { return t == tag })
			}
			return nil
		}
	default:
		return unknownOp(q)
	}
	if op != nil {
		err := r.updateMachine(sid, func(wr *writer, m *machine) error { return op(wr, m, m.iface(id)) })
		if err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, r.ifaceItem(sid, id))
	return nil
}

// Forms -----------------------------------------------------------------------------------

// ifaceForm parses the fields every interface form has (InterfaceForm): vlan, mtu,
// accept_ra, link_connected, interface_speed, link_speed, tags.
type ifaceForm struct {
	q  *request
	n  *netModel
	fe fieldErrors
}

func (f *ifaceForm) vlan() (id int, given bool) {
	raw, ok := f.q.get("vlan")
	if !ok {
		return 0, false
	}
	if raw == "" {
		return 0, true
	}
	n, err := strconv.Atoi(raw)
	if err != nil || f.n.vlan(n) == nil {
		f.fe.add("vlan", "Select a valid choice. That choice is not one of the available choices.")
		return 0, false
	}
	return n, true
}

// intField parses an IntegerField with bounds (Django's messages).
func (f *ifaceForm) intField(k string, min, max int) (int, bool) {
	raw, ok := f.q.get(k)
	if !ok || raw == "" {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(raw))
	switch {
	case err != nil:
		f.fe.add(k, "Enter a whole number.")
		return 0, false
	case n < min:
		f.fe.add(k, fmt.Sprintf("Ensure this value is greater than or equal to %d.", min))
		return 0, false
	case max >= 0 && n > max:
		f.fe.add(k, fmt.Sprintf("Ensure this value is less than or equal to %d.", max))
		return 0, false
	}
	return n, true
}

// choice parses a ChoiceField with MAAS's invalid-choice text.
func (f *ifaceForm) choice(k string, choices []string) (string, bool) {
	raw, ok := f.q.get(k)
	if !ok || raw == "" {
		return "", false
	}
	if !slices.Contains(choices, raw) {
		quoted := make([]string, len(choices))
		for i, c := range choices {
			quoted[i] = "'" + c + "'"
		}
		f.fe.add(k, fmt.Sprintf("'%s' is not a valid %s.  It should be one of: %s.", raw, k, strings.Join(quoted, ", ")))
		return "", false
	}
	return raw, true
}

// nullBool parses a NullBooleanField.
func (f *ifaceForm) nullBool(k string) (bool, bool) {
	raw, ok := f.q.get(k)
	if !ok {
		return false, false
	}
	switch strings.ToLower(raw) {
	case "true", "1", "t", "on", "yes":
		return true, true
	case "false", "0", "f", "off", "no":
		return false, true
	}
	return false, false
}

// common applies the fields every interface form takes to i.
func (f *ifaceForm) common(i *Interface) {
	if mtu, ok := f.intField("mtu", 552, -1); ok {
		setParam(i, "mtu", mtu)
	} else if v, given := f.q.get("mtu"); given && v == "" {
		delete(i.Params, "mtu")
	}
	if ra, ok := f.nullBool("accept_ra"); ok {
		setParam(i, "accept-ra", ra)
	}
	if v, ok := f.q.get("link_connected"); ok {
		b, _ := f.q.boolParam("link_connected", true)
		i.Disconnected = !b && v != ""
	}
	if n, ok := f.intField("interface_speed", 0, -1); ok {
		i.InterfaceSpeed = n
	}
	if n, ok := f.intField("link_speed", 0, -1); ok {
		i.LinkSpeed = n
	}
	if i.Disconnected && i.LinkSpeed != 0 {
		if _, given := f.q.get("link_speed"); given {
			f.fe.add("__all__", "link_speed cannot be set when link_connected is false.")
		}
		i.LinkSpeed = 0
	}
	if t, ok := f.q.get("tags"); ok {
		i.Tags = nil
		for _, x := range strings.Split(t, ",") {
			if x = strings.TrimSpace(x); x != "" {
				i.Tags = append(i.Tags, x)
			}
		}
	}
}

func setParam(i *Interface, k string, v any) {
	if i.Params == nil {
		i.Params = map[string]any{}
	}
	i.Params[k] = v
}

// parents parses the parents (or parent) field: interface ids of the machine.
func (f *ifaceForm) parents(m *machine, field string) ([]*Interface, bool) {
	raw := f.q.form["parents"]
	if len(raw) == 0 {
		raw = f.q.form["parent"]
	}
	var out []*Interface
	for _, v := range raw {
		for _, x := range strings.Split(v, ",") {
			x = strings.TrimSpace(x)
			if x == "" {
				continue
			}
			id, err := strconv.Atoi(x)
			if err != nil {
				f.fe.add(field, fmt.Sprintf("“%s” is not a valid value.", x))
				return nil, false
			}
			p := m.iface(id)
			if p == nil {
				f.fe.add(field, fmt.Sprintf("Select a valid choice. %s is not one of the available choices.", x))
				return nil, false
			}
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out, true
}

func (f *ifaceForm) name(m *machine, required bool) (string, bool) {
	name, ok := f.q.get("name")
	if !ok || name == "" {
		if required {
			f.fe.add("name", "This field is required.")
		}
		return "", false
	}
	if !ifaceNameRE.MatchString(name) {
		f.fe.add("name", ifaceNameMsg)
		return "", false
	}
	return name, true
}

func nameInUse(m *machine, name string, self int) bool {
	for _, i := range m.Interfaces {
		if i.Name == name && i.ID != self {
			return true
		}
	}
	return false
}

func nodeLabel(m *machine) string { return fmt.Sprintf("%s (%s)", m.SystemID, m.Hostname) }

func (f *ifaceForm) mac(k string) (string, bool) {
	raw, ok := f.q.get(k)
	if !ok || raw == "" {
		return "", false
	}
	hw, err := net.ParseMAC(strings.ReplaceAll(strings.TrimSpace(raw), "-", ":"))
	if err != nil || len(hw) != 6 || !macRE.MatchString(strings.TrimSpace(raw)) {
		f.fe.add(k, fmt.Sprintf("'%s' is not a valid MAC address.", raw))
		return "", false
	}
	return hw.String(), true
}

// macInUse is PhysicalInterface.clean's uniqueness check: the message when another
// physical interface (of any machine) has mac.
func (w *writer) macInUse(m *machine, mac string, self int) string {
	owner, used := w.r.macIndex[mac]
	if !used {
		return ""
	}
	o := w.r.machines[owner]
	if owner == m.SystemID || o == nil {
		o = m
	}
	for _, x := range o.Interfaces {
		if x.MAC == mac && x.kind() == ifacePhysical && x.ID != self {
			return fmt.Sprintf("This MAC address is already in use by %s (physical) on %s.", x.Name, o.Hostname)
		}
	}
	return ""
}

// createPhysical is create_physical (PhysicalInterfaceForm).
func (w *writer) createPhysical(m *machine, q *request) (int, error) {
	if err := checkIfaceState(m, "create"); err != nil {
		return 0, err
	}
	f := &ifaceForm{q: q, n: w.r.net, fe: fieldErrors{}}
	i := Interface{}
	mac, ok := f.mac("mac_address")
	if _, given := q.get("mac_address"); !given || q.str("mac_address") == "" {
		f.fe.add("mac_address", "This field is required.")
	} else if ok {
		i.MAC = mac
		if msg := w.macInUse(m, mac, 0); msg != "" {
			f.fe.add("mac_address", msg)
		}
	}
	if name, ok := f.name(m, false); ok {
		if nameInUse(m, name, 0) {
			f.fe.add("name", fmt.Sprintf("Node %s already has an interface named '%s'.", nodeLabel(m), name))
		}
		i.Name = name
	} else if _, bad := f.fe["name"]; !bad {
		i.Name = m.nextIfname()
	}
	if len(q.form["parents"]) > 0 {
		f.fe.add("parents", "A physical interface cannot have parents.")
	}
	if v, ok := f.vlan(); ok {
		i.VLAN = v
	}
	f.common(&i)
	if enabled, ok := f.nullBool("enabled"); ok {
		i.Disabled = !enabled
	}
	if len(f.fe) > 0 {
		return 0, validation(f.fe)
	}
	i.ID = int(w.next("interface"))
	m.Interfaces = append(m.Interfaces, i)
	w.linker(m).ensureLinkUp(m.iface(i.ID))
	return i.ID, nil
}

// Bond and bridge parameters: the form fields, their choices and the defaults a new
// interface gets (BondInterfaceForm, BridgeInterfaceForm).
var (
	bondModes        = []string{"balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb"}
	bondLACPRates    = []string{"fast", "slow"}
	bondXmitPolicies = []string{"layer2", "layer2+3", "layer3+4", "encap2+3", "encap3+4"}
	bridgeTypes      = []string{"standard", "ovs"}
)

// bondParams applies the bond_* fields (defaults when creating).
func (f *ifaceForm) bondParams(i *Interface, created bool) {
	set := func(k string, v any, ok bool, def any) {
		switch {
		case ok:
			setParam(i, k, v)
		case created:
			setParam(i, k, def)
		}
	}
	mode, ok := f.choice("bond_mode", bondModes)
	set("bond_mode", mode, ok, bondModes[0])
	n, ok := f.intField("bond_miimon", 0, -1)
	set("bond_miimon", n, ok, 100)
	n, ok = f.intField("bond_downdelay", 0, -1)
	set("bond_downdelay", n, ok, 0)
	n, ok = f.intField("bond_updelay", 0, -1)
	set("bond_updelay", n, ok, 0)
	n, ok = f.intField("bond_num_grat_arp", 0, 255)
	set("bond_num_grat_arp", n, ok, 1)
	rate, ok := f.choice("bond_lacp_rate", bondLACPRates)
	set("bond_lacp_rate", rate, ok, bondLACPRates[0])
	pol, ok := f.choice("bond_xmit_hash_policy", bondXmitPolicies)
	set("bond_xmit_hash_policy", pol, ok, bondXmitPolicies[0])
}

// bridgeParams applies the bridge_* fields (defaults when creating).
func (f *ifaceForm) bridgeParams(i *Interface, created bool) {
	t, ok := f.choice("bridge_type", bridgeTypes)
	switch {
	case ok:
		setParam(i, "bridge_type", t)
	case created:
		setParam(i, "bridge_type", bridgeTypes[0])
	}
	if stp, ok := f.nullBool("bridge_stp"); ok {
		setParam(i, "bridge_stp", stp)
	} else if created {
		setParam(i, "bridge_stp", false)
	}
	if fd, ok := f.intField("bridge_fd", 0, -1); ok {
		setParam(i, "bridge_fd", fd)
	} else if created {
		setParam(i, "bridge_fd", 15)
	}
}

// createChild is create_bond, create_vlan and create_bridge (BondInterfaceForm,
// VLANInterfaceForm, BridgeInterfaceForm / AcquiredBridgeInterfaceForm, then the models'
// validation and save): the new interface gets its parents, MAC and VLAN; a bond's or
// bridge's parents lose their links and join its VLAN; the new interface is LINK_UP.
func (w *writer) createChild(m *machine, q *request, kind string) (int, error) {
	operation := map[string]string{ifaceBond: "create bond", ifaceVLAN: "create VLAN", ifaceBridge: "create bridge"}[kind]
	if err := checkIfaceState(m, operation); err != nil {
		return 0, err
	}
	n := w.r.net
	f := &ifaceForm{q: q, n: n, fe: fieldErrors{}}
	pfield := "parents"
	if kind != ifaceBond {
		pfield = "parent" // the API renames the parents errors of VLANs and bridges
	}
	i := Interface{Type: kind}
	parents, pok := f.parents(m, pfield)
	vlanID, vlanGiven := f.vlan()
	if kind == ifaceBridge && m.Status == nodestatus.Allocated {
		vlanGiven = false // AcquiredBridgeInterfaceForm: the parent's VLAN
		delete(f.fe, "vlan")
	}
	name, nameOK := f.name(m, kind != ifaceVLAN)
	if pok {
		switch kind {
		case ifaceBond:
			if len(parents) < 1 {
				f.fe.add(pfield, "A bond interface must have one or more parents.")
				pok = false
			}
		case ifaceVLAN:
			switch {
			case len(parents) != 1:
				f.fe.add(pfield, "A VLAN interface must have exactly one parent.")
				pok = false
			case parents[0].kind() == ifaceVLAN:
				f.fe.add(pfield, "A VLAN interface can't have another VLAN interface as parent.")
				pok = false
			case slices.ContainsFunc(m.children(parents[0].ID), func(c *Interface) bool { return c.kind() == ifaceBond }):
				f.fe.add(pfield, "A VLAN interface can't have a parent that is already in a bond.")
				pok = false
			}
		case ifaceBridge:
			switch {
			case len(parents) != 1:
				f.fe.add(pfield, "A bridge interface must have exactly one parent.")
				pok = false
			case parents[0].kind() == ifaceBridge:
				f.fe.add(pfield, "A bridge interface can't have another bridge interface as parent.")
				pok = false
			case slices.ContainsFunc(m.children(parents[0].ID), func(c *Interface) bool {
				return c.kind() == ifaceBond || c.kind() == ifaceBridge
			}):
				f.fe.add(pfield, "A bridge interface can't have a parent that is already in a bond or a bridge.")
				pok = false
			}
		}
	}
	if kind == ifaceVLAN {
		_, bad := f.fe["vlan"]
		switch {
		case bad:
		case !vlanGiven || vlanID == 0:
			f.fe.add("vlan", "A VLAN interface must be connected to a tagged VLAN.")
		case n.vlan(vlanID).VID == 0:
			f.fe.add("vlan", "A VLAN interface can only belong to a tagged VLAN.")
		}
	}
	f.common(&i)
	switch kind {
	case ifaceBond:
		f.bondParams(&i, true)
	case ifaceBridge:
		f.bridgeParams(&i, true)
	}
	mac, macOK := f.mac("mac_address")
	_, fieldErrs := f.fe[pfield]
	if pok && !fieldErrs && len(parents) > 0 {
		switch kind {
		case ifaceVLAN:
			if _, bad := f.fe["vlan"]; !bad {
				pv := n.vlan(parents[0].VLAN)
				if pv == nil || pv.FabricID != n.vlan(vlanID).FabricID {
					f.fe.add("vlan", "A VLAN interface can only belong to a tagged VLAN on the same fabric as its parent interface.")
				} else if !nameOK {
					if _, bad := f.fe["name"]; !bad {
						name, nameOK = fmt.Sprintf("%s.%d", parents[0].Name, n.vlan(vlanID).VID), true
					}
				}
				if nameOK && nameInUse(m, name, 0) {
					f.fe.add("name", fmt.Sprintf("Node %s already has an interface named '%s'.", nodeLabel(m), name))
				}
			}
		default:
			if !macOK {
				if _, given := q.get("mac_address"); !given {
					mac, macOK = parents[0].MAC, true
				}
			}
			var inUse []string
			for _, p := range parents {
				for _, c := range m.children(p.ID) {
					if kind == ifaceBridge && c.kind() == ifaceVLAN {
						continue
					}
					if !slices.Contains(inUse, p.Name) {
						inUse = append(inUse, p.Name)
					}
				}
			}
			if len(inUse) > 0 {
				sort.Strings(inUse)
				f.fe.add(pfield, "Interfaces already in-use: "+strings.Join(inUse, ", ")+".")
			}
			if !vlanGiven {
				vlanID = parents[0].VLAN
			}
			if kind == ifaceBond {
				for _, p := range parents {
					if p.VLAN != vlanID {
						f.fe.add(pfield, "All parents must belong to the same VLAN.")
						break
					}
				}
			}
		}
	}
	if kind != ifaceVLAN && nameOK && nameInUse(m, name, 0) {
		f.fe.add("__all__", "Interface with this Node config and Name already exists.")
	}
	if len(f.fe) > 0 {
		return 0, validation(f.fe)
	}
	// The models' validation, on save.
	switch kind {
	case ifaceBond:
		for _, p := range parents {
			if p.kind() != ifacePhysical {
				return 0, validation(fieldErrors{"parents": {"Only physical interfaces can be bonded."}})
			}
		}
	case ifaceVLAN:
		if k := parents[0].kind(); k != ifacePhysical && k != ifaceBond && k != ifaceBridge {
			return 0, validation(fieldErrors{"parents": {"VLAN interface can only be created on a physical or bond interface."}})
		}
		mac, macOK = parents[0].MAC, true
	}
	if !macOK {
		return 0, validation(fieldErrors{"mac_address": {"This field cannot be blank."}})
	}
	i.ID = int(w.next("interface"))
	i.Name, i.MAC, i.VLAN = name, mac, vlanID
	for _, p := range parents {
		i.Parents = append(i.Parents, p.ID)
	}
	acquiredBridge := kind == ifaceBridge && m.Status == nodestatus.Allocated
	var moved []Link
	if acquiredBridge {
		moved = parents[0].Links
		parents[0].Links = nil
		i.Acquired = true
	}
	parentIDs := i.Parents
	m.Interfaces = append(m.Interfaces, i)
	k := w.linker(m)
	if kind != ifaceVLAN {
		// _update_parents: the parents' links go and they join the new interface's VLAN.
		for _, pid := range parentIDs {
			p := m.iface(pid)
			clearAllLinks(p)
			setVLAN(p, vlanID)
		}
	}
	child := m.iface(i.ID)
	child.Links = append(child.Links, moved...)
	k.ensureLinkUp(child)
	return i.ID, nil
}

// updateInterface is PUT nodes/<sid>/interfaces/<id>/: name, vlan, mtu, link settings,
// tags and the bond or bridge parameters (InterfaceForm.get_interface_form(type)); a
// deployed machine's interfaces only take name, mac_address and link settings
// (DeployedInterfaceForm).
func (w *writer) updateInterface(m *machine, i *Interface, q *request) error {
	if err := checkIfaceState(m, "update interface", nodestatus.Deployed); err != nil {
		return err
	}
	f := &ifaceForm{q: q, n: w.r.net, fe: fieldErrors{}}
	c := *i
	c.Params = map[string]any{}
	for k, v := range i.Params {
		c.Params[k] = v
	}
	if name, ok := f.name(m, false); ok {
		if nameInUse(m, name, i.ID) {
			f.fe.add("name", fmt.Sprintf("Node %s already has an interface named '%s'.", nodeLabel(m), name))
		}
		c.Name = name
	}
	if mac, ok := f.mac("mac_address"); ok && c.kind() != ifaceVLAN {
		if msg := w.macInUse(m, mac, i.ID); msg != "" {
			f.fe.add("mac_address", msg)
		}
		c.MAC = mac
	}
	deployed := m.Status == nodestatus.Deployed
	vlanID, vlanGiven := 0, false
	if !deployed {
		vlanID, vlanGiven = f.vlan()
		if vlanGiven && c.kind() == ifaceVLAN {
			if vlanID == 0 {
				f.fe.add("vlan", "A VLAN interface must be connected to a tagged VLAN.")
			} else if f.n.vlan(vlanID).VID == 0 {
				f.fe.add("vlan", "A VLAN interface can only belong to a tagged VLAN.")
			}
		}
		f.common(&c)
		switch c.kind() {
		case ifaceBond:
			f.bondParams(&c, false)
		case ifaceBridge:
			f.bridgeParams(&c, false)
		}
		if enabled, ok := f.nullBool("enabled"); ok && c.kind() == ifacePhysical {
			c.Disabled = !enabled
		}
	} else if v, ok := q.get("link_connected"); ok {
		b, _ := q.boolParam("link_connected", true)
		c.Disconnected = !b && v != ""
	}
	if len(f.fe) > 0 {
		return validation(f.fe)
	}
	if vlanGiven {
		setVLAN(&c, vlanID)
	}
	*i = c
	if c.kind() == ifaceBond || c.kind() == ifaceBridge {
		for _, p := range m.parents(i) {
			setVLAN(p, i.VLAN)
		}
	}
	for _, ch := range m.children(i.ID) {
		if ch.kind() == ifaceVLAN {
			ch.MAC = i.MAC
		}
	}
	if m.enabled(i) {
		w.linker(m).ensureLinkUp(i)
	}
	return nil
}

// linkSubnetForm is link_subnet (InterfaceLinkForm, then Interface.link_subnet).
func (w *writer) linkSubnetForm(m *machine, i *Interface, q *request) error {
	if err := checkIfaceState(m, "link subnet"); err != nil {
		return err
	}
	n := w.r.net
	fe := fieldErrors{}
	force, err := q.boolParam("force", false)
	if err != nil {
		return err
	}
	for _, c := range m.children(i.ID) {
		if c.kind() == ifaceBond {
			fe.add("bond", fmt.Sprintf("Cannot link interface(%s) when interface is in a bond(%s).", i.Name, c.Name))
		}
	}
	mode := strings.ToLower(q.str("mode"))
	modes := []string{linkAuto, linkDHCP, linkStatic, linkUp}
	switch {
	case mode == "":
		fe.add("mode", "This field is required.")
	case !slices.Contains(modes, mode):
		fe.add("mode", fmt.Sprintf("'%s' is not a valid mode.  It should be one of: 'auto', 'dhcp', 'static', 'link_up'.", mode))
		mode = ""
	}
	// The subnet field: any subnet when the interface is on no VLAN or force is given,
	// else one of its VLAN's subnets; an id, a CIDR or a name.
	var s *subnet
	if raw := q.str("subnet"); raw != "" {
		onVLAN := func(c *subnet) bool { return i.VLAN == 0 || force || c.VLAN == i.VLAN }
		if id, err := strconv.Atoi(raw); err == nil {
			if c := n.subnet(id); c != nil && onVLAN(c) {
				s = c
			} else {
				fe.add("subnet", fmt.Sprintf("None found with id=%s.", raw))
			}
		} else {
			var matches []*subnet
			for _, c := range n.Subnets {
				if !onVLAN(c) {
					continue
				}
				if c.Name == raw || c.CIDR == raw || (strings.HasPrefix(raw, "cidr:") && c.CIDR == strings.TrimPrefix(raw, "cidr:")) ||
					(strings.HasPrefix(raw, "name:") && c.Name == strings.TrimPrefix(raw, "name:")) {
					matches = append(matches, c)
				}
			}
			if len(matches) == 1 {
				s = matches[0]
			} else {
				fe.add("subnet", "Select a valid choice. That choice is not one of the available choices.")
			}
		}
	}
	var ip netip.Addr
	if raw := q.str("ip_address"); raw != "" {
		a, ok := parseIP(raw)
		if !ok {
			fe.add("ip_address", invalidIPMsg)
		}
		ip = a
	}
	defaultGateway, err := q.boolParam("default_gateway", false)
	if err != nil {
		return err
	}
	switch mode {
	case linkAuto:
		if s == nil {
			fe.add("subnet", "This field is required.")
		}
	case linkDHCP:
		for _, l := range i.Links {
			if l.Mode != linkDHCP {
				continue
			}
			if ls := n.subnet(l.Subnet); ls != nil {
				fe.add("mode", fmt.Sprintf("Interface is already set to DHCP from '%s'.", n.subnetLabel(ls)))
			} else {
				fe.add("mode", "Interface is already set to DHCP.")
			}
			break
		}
	case linkStatic:
		if s == nil {
			fe.add("subnet", "This field is required.")
		} else if ip.IsValid() {
			if !s.prefix().Contains(ip) {
				fe.add("ip_address", fmt.Sprintf("IP address is not in the given subnet '%s'.", n.subnetLabel(s)))
			}
			if rg := w.linker(m).dynamicRangeFor(s, ip); rg != nil {
				fe.add("ip_address", fmt.Sprintf("IP address is inside a dynamic range %s to %s.", rg.Start, rg.End))
			}
		}
	case linkUp:
		active := slices.ContainsFunc(i.Links, func(l Link) bool { return l.Mode != linkUp })
		if active && !force {
			fe.add("mode", "Cannot configure interface to link up (with no IP address) while other links are already configured. Specify force=True to override this behavior and delete all links.")
		}
	}
	if defaultGateway && mode != "" {
		switch {
		case mode != linkAuto && mode != linkStatic:
			fe.add("default_gateway", fmt.Sprintf("Cannot use in mode '%s'.", mode))
		case s == nil:
			fe.add("default_gateway", "Subnet is required when default_gateway is True.")
		case s.Gateway == "":
			fe.add("default_gateway", fmt.Sprintf("Cannot set as default gateway because subnet %s doesn't provide a gateway IP address.", n.subnetLabel(s)))
		default:
			fe.add("default_gateway", "maasemu does not model a machine's default gateway link: leave default_gateway false (MAAS then picks the gateway by its priorities).")
		}
	}
	if len(fe) > 0 {
		return validation(fe)
	}
	if mode == linkUp || force {
		clearAllLinks(i)
	}
	if force && s != nil && i.VLAN != 0 {
		i.VLAN = 0
	}
	_, err = w.linker(m).linkSubnet(i, mode, s, ip)
	return err
}
