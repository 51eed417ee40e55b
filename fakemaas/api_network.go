package fakemaas

import (
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The network endpoints of API 2.0 as MAAS serves them (maasserver/api/{subnets,
// ipranges,fabrics,vlans}.py with forms/{subnet,iprange,vlan}.py and the models'
// validation): subnets/, ipranges/, fabrics/, fabrics/<id>/vlans/[<vid>/] and
// vlans/<id>/.

// JSON -------------------------------------------------------------------------------------

func vlanJSON(n *netModel, v *vlan) map[string]any {
	fname := ""
	if f := n.fabric(v.FabricID); f != nil {
		fname = f.Name
	}
	return map[string]any{"id": v.ID, "name": nilIfEmpty(n.vlanName(v)), "vid": v.VID, "fabric": fname,
		"fabric_id": v.FabricID, "mtu": v.MTU, "primary_rack": nilIfEmpty(v.PrimaryRack),
		"secondary_rack": nilIfEmpty(v.SecondaryRack), "dhcp_on": v.DHCPOn, "external_dhcp": nil, "relay_vlan": nil,
		"space": spaceUndefined, "resource_uri": fmt.Sprintf("%svlans/%d/", APIPrefix, v.ID)}
}

func subnetJSON(n *netModel, s *subnet) map[string]any {
	var vj any
	if v := n.vlan(s.VLAN); v != nil {
		vj = vlanJSON(n, v)
	}
	dns := s.DNSServers
	if dns == nil {
		dns = []string{}
	}
	boot := s.DisabledBootArchitectures
	if boot == nil {
		boot = []string{}
	}
	return map[string]any{"id": s.ID, "name": s.Name, "description": s.Description, "vlan": vj, "space": spaceUndefined,
		"cidr": s.CIDR, "gateway_ip": nilIfEmpty(s.Gateway), "dns_servers": dns, "rdns_mode": s.RDNSMode,
		"active_discovery": s.ActiveDiscovery, "allow_dns": s.AllowDNS, "allow_proxy": s.AllowProxy, "managed": s.Managed,
		"disabled_boot_architectures": boot, "resource_uri": fmt.Sprintf("%ssubnets/%d/", APIPrefix, s.ID)}
}

func fabricJSON(n *netModel, f *fabric) map[string]any {
	vlans := []any{}
	for _, v := range n.VLANs {
		if v.FabricID == f.ID {
			vlans = append(vlans, vlanJSON(n, v))
		}
	}
	return map[string]any{"id": f.ID, "name": f.Name, "class_type": nilIfEmpty(f.ClassType), "vlans": vlans,
		"resource_uri": fmt.Sprintf("%sfabrics/%d/", APIPrefix, f.ID)}
}

func (r *Region) ipRangeJSON(n *netModel, rg *ipRange) map[string]any {
	var user any
	if rg.User != "" {
		user = r.userJSON(rg.User)
	}
	var sj any
	if s := n.subnet(rg.Subnet); s != nil {
		sj = subnetJSON(n, s)
	}
	return map[string]any{"id": rg.ID, "type": rg.Type, "start_ip": rg.Start, "end_ip": rg.End, "comment": rg.Comment,
		"user": user, "subnet": sj, "resource_uri": fmt.Sprintf("%sipranges/%d/", APIPrefix, rg.ID)}
}

// netView renders under the read lock.
func (r *Region) netView(f func(n *netModel) any) any {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return f(r.net)
}

// Dispatch ---------------------------------------------------------------------------------

func (r *Region) apiNetwork(w http.ResponseWriter, q *request) error {
	switch q.path[0] {
	case "subnets":
		return r.apiSubnets(w, q)
	case "ipranges":
		return r.apiIPRanges(w, q)
	case "fabrics":
		return r.apiFabrics(w, q)
	case "vlans":
		if len(q.path) != 2 {
			return notFound("Unknown API endpoint: " + q.URL.Path + ".")
		}
		id, err := strconv.Atoi(q.path[1])
		var vid int
		if v := r.netView(func(n *netModel) any { return n.vlan(id) }).(*vlan); err == nil && v != nil {
			vid = v.ID
		} else {
			return notFound("No VLAN matches the given query.")
		}
		return r.apiVLAN(w, q, vid)
	}
	return notFound("Unknown API endpoint: " + q.URL.Path + ".")
}

// Subnets ------------------------------------------------------------------------------------

// findSubnet is get_subnet_or_404's specifier: an id, a CIDR or a name.
func (n *netModel) findSubnet(spec string) *subnet {
	if id, err := strconv.Atoi(spec); err == nil {
		return n.subnet(id)
	}
	if p, err := netip.ParsePrefix(spec); err == nil {
		for _, s := range n.Subnets {
			if s.CIDR == p.Masked().String() {
				return s
			}
		}
		return nil
	}
	var found *subnet
	for _, s := range n.Subnets {
		if s.Name == spec {
			if found != nil {
				return nil
			}
			found = s
		}
	}
	return found
}

func (r *Region) apiSubnets(w http.ResponseWriter, q *request) error {
	if len(q.path) == 1 {
		switch {
		case q.Method == http.MethodGet && q.op == "":
			writeJSON(w, http.StatusOK, r.netView(func(n *netModel) any {
				out := []any{}
				for _, s := range n.Subnets {
					out = append(out, subnetJSON(n, s))
				}
				return out
			}))
			return nil
		case q.Method == http.MethodPost && q.op == "":
			var id int
			err := r.updateNetwork(func(t *netTx) error {
				s := &subnet{RDNSMode: 2, AllowDNS: true, AllowProxy: true, Managed: true}
				if err := t.subnetForm(q, s, true); err != nil {
					return err
				}
				s.ID = int(t.w.next("subnet"))
				t.n.Subnets = append(t.n.Subnets, s)
				id = s.ID
				return nil
			})
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, r.netView(func(n *netModel) any { return subnetJSON(n, n.subnet(id)) }))
			return nil
		}
		return unknownOp(q)
	}
	if len(q.path) != 2 {
		return notFound("Unknown API endpoint: " + q.URL.Path + ".")
	}
	var id int
	if s := r.netView(func(n *netModel) any { return n.findSubnet(q.path[1]) }).(*subnet); s != nil {
		id = s.ID
	} else {
		return notFound("No Subnet matches the given query.")
	}
	switch {
	case q.Method == http.MethodGet && q.op == "":
	case q.Method == http.MethodGet && (q.op == "reserved_ip_ranges" || q.op == "unreserved_ip_ranges" || q.op == "statistics"):
		r.mu.RLock()
		s := r.net.subnet(id)
		use := r.subnetUse(r.net, s, r.usedIPs(r.net), 0)
		r.mu.RUnlock()
		v4 := s.prefix().Addr().Is4()
		inUse := s.inUseSpans(use)
		var used []span
		for _, p := range inUse {
			used = append(used, p.span)
		}
		universe, _ := usableSpans(s.prefix())
		if !s.Managed {
			universe = normalize(slices.Clone(use.reserved))
		}
		free := universe.minus(normalize(used))
		rangeJSON := func(sp span) map[string]any {
			return map[string]any{"start": sp.lo.addr(v4).String(), "end": sp.hi.addr(v4).String(), "num_addresses": sp.size()}
		}
		switch q.op {
		case "reserved_ip_ranges":
			out := []any{}
			for _, p := range inUse {
				j := rangeJSON(p.span)
				j["purpose"] = p.purposes
				out = append(out, j)
			}
			writeJSON(w, http.StatusOK, out)
		case "unreserved_ip_ranges":
			out := []any{}
			for _, f := range free {
				out = append(out, rangeJSON(f))
			}
			writeJSON(w, http.StatusOK, out)
		default:
			writeJSON(w, http.StatusOK, subnetStatistics(s, universe, free))
		}
		return nil
	case q.Method == http.MethodGet && q.op == "ip_addresses":
		writeJSON(w, http.StatusOK, r.subnetIPAddresses(id))
		return nil
	case q.Method == http.MethodPut && q.op == "":
		err := r.updateNetwork(func(t *netTx) error { return t.subnetForm(q, t.n.subnet(id), false) })
		if err != nil {
			return err
		}
	case q.Method == http.MethodDelete && q.op == "":
		force, err := q.boolParam("force", false)
		if err != nil {
			return err
		}
		if err := r.updateNetwork(func(t *netTx) error { return t.deleteSubnet(id, force) }); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	default:
		return unknownOp(q)
	}
	writeJSON(w, http.StatusOK, r.netView(func(n *netModel) any { return subnetJSON(n, n.subnet(id)) }))
	return nil
}

// subnetStatistics is IPRangeStatistics.render_json without ranges or suggestions.
func subnetStatistics(s *subnet, universe, free spanSet) map[string]any {
	var total, avail, largest uint64
	for _, u := range universe {
		total += u.size()
	}
	for _, f := range free {
		avail += f.size()
		largest = max(largest, f.size())
	}
	usage := 0.0
	if total > 0 {
		usage = float64(total-avail) / float64(total)
	}
	v4 := s.prefix().Addr().Is4()
	out := map[string]any{"num_available": avail, "largest_available": largest, "num_unavailable": total - avail,
		"total_addresses": total, "usage": usage, "usage_string": fmt.Sprintf("%.0f%%", math.Round(usage*100)),
		"available_string": fmt.Sprintf("%.0f%%", math.Round((1-usage)*100)), "ip_version": 6}
	if v4 {
		out["ip_version"] = 4
	}
	if len(universe) > 0 {
		out["first_address"] = universe[0].lo.addr(v4).String()
		out["last_address"] = universe[len(universe)-1].hi.addr(v4).String()
	}
	return out
}

// subnetIPAddresses is render_json_for_related_ips with usernames and node summaries.
func (r *Region) subnetIPAddresses(id int) []any {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s := r.net.subnet(id)
	p := s.prefix()
	var uses []ipUse
	for _, u := range r.usedIPs(r.net) {
		if p.Contains(u.ip) {
			uses = append(uses, u)
		}
	}
	slices.SortFunc(uses, func(a, b ipUse) int { return a.ip.Compare(b.ip) })
	out := []any{}
	for _, u := range uses {
		j := map[string]any{"ip": u.ip.String(), "alloc_type": u.allocType, "alloc_type_name": allocTypeNames[u.allocType]}
		if m := r.machines[u.systemID]; m != nil {
			j["node_summary"] = map[string]any{"system_id": m.SystemID, "node_type": 0, "fqdn": m.Hostname + "." + m.Domain,
				"hostname": m.Hostname, "is_container": false, "via": u.iface}
		} else if u.systemID == "" {
			j["node_summary"] = map[string]any{"system_id": r.net.Rack.SystemID, "node_type": 2,
				"fqdn": r.net.Rack.Hostname + ".maas", "hostname": r.net.Rack.Hostname, "is_container": false}
		}
		out = append(out, j)
	}
	return out
}

var allocTypeNames = map[int]string{allocAuto: "Automatic", allocSticky: "User reserved", allocUser: "User reserved",
	allocDHCP: "DHCP", allocDiscovered: "Observed"}

var subnetNameRE = regexp.MustCompile(`^[.: \w/-]+$`)

// bootArchitectures are the boot methods disabled_boot_architectures may name, with their
// DHCP architecture octets (BootMethodRegistry methods with an octet or an HTTP prefix).
var bootArchitectures = map[string]string{"pxe": "00:00", "uefi_amd64_tftp": "00:07", "uefi_ebc_tftp": "00:09",
	"uefi_arm64_tftp": "00:0B", "open-firmware_ppc64el": "00:0C", "powernv": "00:0E", "uefi_amd64_http": "00:10",
	"uefi_arm64_http": "00:13", "s390x": "00:1F", "s390x_partition": "00:20", "ipxe": ""}

// subnetForm is SubnetForm with Subnet's validation: it fills s from the request.
func (t *netTx) subnetForm(q *request, s *subnet, creating bool) error {
	n := t.n
	fe := fieldErrors{}
	if _, ok := q.get("space"); ok {
		fe.add("space", "Spaces may no longer be set on subnets. Set the space on the underlying VLAN.")
	}
	oldCIDR, oldName := s.CIDR, s.Name
	if raw, ok := q.get("cidr"); ok || creating {
		var p netip.Prefix
		var err error
		if strings.Contains(raw, "/") {
			p, err = netip.ParsePrefix(strings.TrimSpace(raw))
		} else if a, perr := netip.ParseAddr(strings.TrimSpace(raw)); perr == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		} else {
			err = perr
		}
		switch {
		case raw == "":
			fe.add("cidr", "This field is required.")
		case err != nil:
			fe.add("cidr", "Required format: <network>/<prefixlen>.")
		case p.Bits() == 0:
			fe.add("cidr", "Prefix length must be greater than 0.")
		default:
			s.CIDR = p.Masked().String()
		}
	}
	if v, ok := q.get("name"); ok && v != "" {
		if !subnetNameRE.MatchString(v) {
			fe.add("name", "Enter a valid value.")
		}
		s.Name = v
	} else if _, bad := fe["cidr"]; !bad {
		if creating {
			s.Name = s.CIDR
		} else if oldName == oldCIDR {
			s.Name = s.CIDR
		}
	}
	if v, ok := q.get("description"); ok {
		s.Description = v
	}
	pick := func(k string, find func(int) bool) (int, bool) {
		raw, ok := q.get(k)
		if !ok || raw == "" {
			return 0, false
		}
		id, err := strconv.Atoi(raw)
		if err != nil || !find(id) {
			fe.add(k, "Select a valid choice. That choice is not one of the available choices.")
			return 0, false
		}
		return id, true
	}
	vlanID, vlanGiven := pick("vlan", func(id int) bool { return n.vlan(id) != nil })
	fabricID, fabricGiven := pick("fabric", func(id int) bool { return n.fabric(id) != nil })
	vid, vidGiven := 0, false
	if raw, ok := q.get("vid"); ok && raw != "" {
		v, err := strconv.Atoi(strings.TrimSpace(raw))
		switch {
		case err != nil:
			fe.add("vid", "Enter a whole number.")
		case v < 0:
			fe.add("vid", "Ensure this value is greater than or equal to 0.")
		case v > 4094:
			fe.add("vid", "Ensure this value is less than or equal to 4094.")
		default:
			vid, vidGiven = v, true
		}
	}
	if raw, ok := q.get("gateway_ip"); ok {
		if raw == "" {
			s.Gateway = ""
		} else if a, ok := parseIP(raw); ok {
			s.Gateway = a.String()
		} else {
			fe.add("gateway_ip", invalidIPMsg)
		}
	}
	if vals, ok := q.form["dns_servers"]; ok {
		var dns []string
		for _, v := range vals {
			for _, x := range regexp.MustCompile(`[,\s]+`).Split(v, -1) {
				if x == "" {
					continue
				}
				a, ok := parseIP(x)
				if !ok {
					fe.add("dns_servers", fmt.Sprintf("Invalid IP address: %s; provide a list of space-separated IP addresses", x))
					continue
				}
				dns = append(dns, a.String())
			}
		}
		s.DNSServers = dns
	}
	if raw, ok := q.get("rdns_mode"); ok && raw != "" {
		if raw != "0" && raw != "1" && raw != "2" {
			fe.add("rdns_mode", fmt.Sprintf("Select a valid choice. %s is not one of the available choices.", raw))
		} else {
			s.RDNSMode, _ = strconv.Atoi(raw)
		}
	}
	truthy := func(k string, cur bool) bool {
		raw, ok := q.get(k)
		if !ok {
			return cur
		}
		switch strings.ToLower(raw) {
		case "true", "t", "1":
			return true
		}
		return false
	}
	// allow_dns and allow_proxy: only "true", "t" and "1" are true (SubnetForm.clean).
	s.AllowDNS = truthy("allow_dns", s.AllowDNS)
	s.AllowProxy = truthy("allow_proxy", s.AllowProxy)
	djangoBool := func(k string, cur bool) bool {
		raw, ok := q.get(k)
		if !ok {
			return cur
		}
		switch strings.ToLower(raw) {
		case "", "false", "0":
			return false
		}
		return true
	}
	s.Managed = djangoBool("managed", s.Managed)
	s.ActiveDiscovery = djangoBool("active_discovery", s.ActiveDiscovery)
	if vals, ok := q.form["disabled_boot_architectures"]; ok {
		var arches []string
		for _, v := range vals {
			for _, x := range regexp.MustCompile(`[,\s]+`).Split(v, -1) {
				if x == "" {
					continue
				}
				name := ""
				if _, known := bootArchitectures[x]; known {
					name = x
				}
				octet := strings.ToUpper(strings.Replace(x, "0x", "00:", 1))
				for k, o := range bootArchitectures {
					if o != "" && strings.EqualFold(o, octet) {
						name = k
					}
				}
				if name == "" {
					fe.add("disabled_boot_architectures", "Unknown boot architecture "+x)
				} else if !slices.Contains(arches, name) {
					arches = append(arches, name)
				}
			}
		}
		slices.Sort(arches)
		s.DisabledBootArchitectures = arches
	}
	// The VLAN: when creating, from vlan, fabric and vid (default: the default VLAN);
	// when updating, only vlan changes it.
	if creating {
		switch {
		case !fabricGiven && !vlanGiven:
			if _, bad := fe["fabric"]; !bad {
				if _, bad := fe["vlan"]; !bad {
					if !vidGiven || vid == 0 {
						vlanID = n.defaultVLAN().ID
					} else if v := n.vlanByVID(defaultFabricID, vid); v != nil {
						vlanID = v.ID
					} else {
						fe.add("vid", fmt.Sprintf("No VLAN with vid %d in default fabric.", vid))
					}
				}
			}
		case fabricGiven && !vlanGiven:
			if _, bad := fe["vlan"]; !bad {
				if !vidGiven || vid == 0 {
					vlanID = n.fabricDefaultVLAN(fabricID).ID
				} else if v := n.vlanByVID(fabricID, vid); v != nil {
					vlanID = v.ID
				} else {
					fe.add("vid", fmt.Sprintf("No VLAN with vid %d in fabric name=%s.", vid, n.fabric(fabricID).Name))
				}
			}
		case fabricGiven && vlanGiven:
			if v := n.vlan(vlanID); v.FabricID != fabricID {
				fe.add("vlan", fmt.Sprintf("VLAN %s.%s is not in fabric name=%s.", n.fabric(v.FabricID).Name, n.vlanName(v),
					n.fabric(fabricID).Name))
			}
		}
		if vlanID != 0 {
			s.VLAN = vlanID
		}
	} else if vlanGiven {
		s.VLAN = vlanID
	}
	// Subnet.clean: the gateway in the subnet, no overlap; the CIDR is unique.
	if p, err := netip.ParsePrefix(s.CIDR); err == nil {
		if g, err := netip.ParseAddr(s.Gateway); err == nil && !p.Contains(g) && !(g.Is6() && p.Addr().Is6() && g.IsLinkLocalUnicast()) {
			fe.add("gateway_ip", "Gateway IP must be within CIDR range.")
		}
		for _, o := range n.Subnets {
			if o.ID != s.ID && o.prefix().Overlaps(p) {
				fe.add("__all__", fmt.Sprintf("Subnet %s would overlap with existing subnets.", s.CIDR))
				break
			}
		}
		for _, o := range n.Subnets {
			if o.ID != s.ID && o.CIDR == s.CIDR {
				fe.add("cidr", "Subnet with this Cidr already exists.")
				break
			}
		}
	}
	if len(fe) > 0 {
		return validation(fe)
	}
	return nil
}

// deleteSubnet is Subnet.delete: refused while it serves a dynamic range with DHCP on,
// or (without force) while machines have addresses on it; its ranges and links go.
func (t *netTx) deleteSubnet(id int, force bool) error {
	n := t.n
	s := n.subnet(id)
	if n.dhcpOn(s) && slices.ContainsFunc(n.rangesOf(id), func(r *ipRange) bool { return r.Type == rangeDynamic }) {
		return badRequest("Cannot delete a subnet that is actively servicing a dynamic IP range. (Delete the dynamic range or disable DHCP first.)")
	}
	var holders []string
	for _, sid := range sortedKeys(t.r.machines) {
		m := t.r.machines[sid]
		for _, i := range m.Interfaces {
			if slices.ContainsFunc(i.Links, func(l Link) bool { return l.Subnet == id && l.IP != "" && l.Mode != linkDHCP }) {
				holders = append(holders, sid)
				break
			}
		}
	}
	if len(holders) > 0 && !force {
		return badRequest("Cannot delete a subnet that has IP addresses in use by nodes. (Use the 'force' parameter to override.)")
	}
	for _, sid := range sortedKeys(t.r.machines) {
		m := t.r.machines[sid]
		if !slices.ContainsFunc(m.Interfaces, func(i Interface) bool {
			return slices.ContainsFunc(i.Links, func(l Link) bool { return l.Subnet == id })
		}) {
			continue
		}
		c := t.machine(sid)
		for x := range c.Interfaces {
			removeLinks(&c.Interfaces[x], func(l Link) bool { return l.Subnet == id })
		}
	}
	p := s.prefix()
	n.Rack.Addresses = slices.DeleteFunc(n.Rack.Addresses, func(a string) bool {
		ip, err := netip.ParseAddr(a)
		return err == nil && p.Contains(ip)
	})
	n.Ranges = slices.DeleteFunc(n.Ranges, func(r *ipRange) bool { return r.Subnet == id })
	n.Subnets = slices.DeleteFunc(n.Subnets, func(x *subnet) bool { return x.ID == id })
	return nil
}

// IP ranges ----------------------------------------------------------------------------------

func (r *Region) apiIPRanges(w http.ResponseWriter, q *request) error {
	if len(q.path) == 1 {
		switch {
		case q.Method == http.MethodGet && q.op == "":
			writeJSON(w, http.StatusOK, r.netView(func(n *netModel) any {
				out := []any{}
				for _, rg := range n.Ranges {
					out = append(out, r.ipRangeJSON(n, rg))
				}
				return out
			}))
			return nil
		case q.Method == http.MethodPost && q.op == "":
			var id int
			err := r.updateNetwork(func(t *netTx) error {
				rg := &ipRange{User: q.user}
				if err := t.ipRangeForm(q, rg, true); err != nil {
					return err
				}
				rg.ID = int(t.w.next("iprange"))
				t.n.Ranges = append(t.n.Ranges, rg)
				id = rg.ID
				return nil
			})
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, r.netView(func(n *netModel) any { return r.ipRangeJSON(n, n.ipRange(id)) }))
			return nil
		}
		return unknownOp(q)
	}
	if len(q.path) != 2 {
		return notFound("Unknown API endpoint: " + q.URL.Path + ".")
	}
	id, err := strconv.Atoi(q.path[1])
	if err != nil || r.netView(func(n *netModel) any { return n.ipRange(id) }).(*ipRange) == nil {
		return notFound("No IPRange matches the given query.")
	}
	switch {
	case q.Method == http.MethodGet && q.op == "":
	case q.Method == http.MethodPut && q.op == "":
		if err := r.updateNetwork(func(t *netTx) error { return t.ipRangeForm(q, t.n.ipRange(id), false) }); err != nil {
			return err
		}
	case q.Method == http.MethodDelete && q.op == "":
		err := r.updateNetwork(func(t *netTx) error {
			t.n.Ranges = slices.DeleteFunc(t.n.Ranges, func(x *ipRange) bool { return x.ID == id })
			return nil
		})
		if err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	default:
		return unknownOp(q)
	}
	writeJSON(w, http.StatusOK, r.netView(func(n *netModel) any { return r.ipRangeJSON(n, n.ipRange(id)) }))
	return nil
}

// ipRangeForm is IPRangeForm with IPRange's validation: it fills rg from the request.
func (t *netTx) ipRangeForm(q *request, rg *ipRange, creating bool) error {
	n := t.n
	fe := fieldErrors{}
	if v, ok := q.get("type"); ok || creating {
		switch {
		case v == "":
			fe.add("type", "This field is required.")
		case v != rangeDynamic && v != rangeReserved:
			fe.add("type", fmt.Sprintf("Select a valid choice. %s is not one of the available choices.", v))
		default:
			rg.Type = v
		}
	}
	addr := func(k string, cur string) string {
		v, ok := q.get(k)
		if !ok && !creating {
			return cur
		}
		if v == "" {
			fe.add(k, "This field is required.")
			return ""
		}
		a, ok := parseIP(v)
		if !ok {
			fe.add(k, invalidIPMsg)
			return ""
		}
		return a.String()
	}
	rg.Start = addr("start_ip", rg.Start)
	rg.End = addr("end_ip", rg.End)
	if v, ok := q.get("comment"); ok {
		rg.Comment = v
	}
	if raw, ok := q.get("subnet"); ok && raw != "" {
		id, err := strconv.Atoi(raw)
		if err != nil || n.subnet(id) == nil {
			fe.add("subnet", "Select a valid choice. That choice is not one of the available choices.")
		} else {
			rg.Subnet = id
		}
	} else if creating {
		if a, ok := parseIP(rg.Start); ok {
			if s := n.subnetForIP(a); s != nil {
				rg.Subnet = s.ID
			}
		}
		if rg.Subnet == 0 {
			fe.add("subnet", "This field is required.")
		}
	}
	if len(fe) > 0 {
		return validation(fe)
	}
	return t.validateIPRange(rg)
}

// validateIPRange is IPRange.clean: the addresses' family and order, the range inside
// its subnet without the network and broadcast addresses, a large enough IPv6 dynamic
// range, no conflict with other ranges (and, for a dynamic range, with addresses in use).
func (t *netTx) validateIPRange(rg *ipRange) error {
	n := t.n
	both := func(msg string) error { return validation(fieldErrors{"start_ip": {msg}, "end_ip": {msg}}) }
	start, end := netip.MustParseAddr(rg.Start), netip.MustParseAddr(rg.End)
	if start.Is4() != end.Is4() {
		return both("Start IP address and end IP address must be in the same address family.")
	}
	if end.Less(start) {
		return validation(fieldErrors{"end_ip": {"End IP address must not be less than Start IP address."}})
	}
	s := n.subnet(rg.Subnet)
	p := s.prefix()
	switch {
	case !p.Contains(start) && !p.Contains(end):
		return both(fmt.Sprintf("IP addresses must be within subnet: %s.", s.CIDR))
	case !p.Contains(start):
		return validation(fieldErrors{"start_ip": {fmt.Sprintf("Start IP address must be within subnet: %s.", s.CIDR)}})
	case !p.Contains(end):
		return validation(fieldErrors{"end_ip": {fmt.Sprintf("End IP address must be within subnet: %s.", s.CIDR)}})
	case start == p.Masked().Addr():
		return validation(fieldErrors{"start_ip": {"Reserved network address cannot be included in IP range."}})
	case p.Addr().Is4() && toU(end) == prefixSpan(p).hi:
		return validation(fieldErrors{"end_ip": {"Broadcast address cannot be included in IP range."}})
	}
	if start.Is6() && rg.Type == rangeDynamic && (span{toU(start), toU(end)}).size() < 256 {
		return both("IPv6 dynamic range must be at least 256 addresses in size.")
	}
	// _validate_duplicates_and_overlaps.
	use := t.r.subnetUse(n, s, t.r.usedIPs(n), rg.ID)
	var unused spanSet
	universe, _ := usableSpans(p)
	nonDiscovered := concat(use.v6Reserved, use.gatewayDNS, use.allocated)
	switch {
	case rg.Type == rangeReserved && s.Managed:
		unused = universe.minus(normalize(concat(use.v6Reserved, use.reserved, use.dynamic)))
	case rg.Type == rangeReserved:
		unused = universe.minus(normalize(concat(use.v6Reserved, use.reserved)))
	case s.Managed:
		unused = universe.minus(normalize(concat(nonDiscovered, use.reserved, use.dynamic)))
	default:
		unused = normalize(slices.Clone(use.reserved)).minus(normalize(concat(nonDiscovered, use.dynamic)))
	}
	if len(unused) == 0 {
		return both(fmt.Sprintf("There is no room for any %s ranges on this subnet.", rg.Type))
	}
	msg := fmt.Sprintf("Requested %s range conflicts with an existing range.", rg.Type)
	if rg.Type == rangeDynamic {
		msg = fmt.Sprintf("Requested %s range conflicts with an existing IP address or range.", rg.Type)
	}
	if f, ok := unused.find(toU(start)); !ok || !f.contains(toU(end)) {
		return both(msg)
	}
	return nil
}

// Fabrics and VLANs ----------------------------------------------------------------------

var (
	fabricNameRE   = regexp.MustCompile(`^[\w-]+$`)
	reservedFabric = regexp.MustCompile(`^fabric-\d+$`)
	modelNameRE    = regexp.MustCompile(`^\w[ \w-]*$`)
)

func (r *Region) apiFabrics(w http.ResponseWriter, q *request) error {
	if len(q.path) == 1 {
		switch {
		case q.Method == http.MethodGet && q.op == "":
			writeJSON(w, http.StatusOK, r.netView(func(n *netModel) any {
				out := []any{}
				for _, f := range n.Fabrics {
					out = append(out, fabricJSON(n, f))
				}
				return out
			}))
			return nil
		case q.Method == http.MethodPost && q.op == "":
			var id int
			err := r.updateNetwork(func(t *netTx) error {
				f := &fabric{ID: int(t.w.next("fabric"))}
				if err := t.fabricForm(q, f); err != nil {
					return err
				}
				if f.Name == "" {
					f.Name = fmt.Sprintf("fabric-%d", f.ID)
				}
				t.n.Fabrics = append(t.n.Fabrics, f)
				t.n.VLANs = append(t.n.VLANs, &vlan{ID: vlanIDBase + int(t.w.next("vlan")) + 1, FabricID: f.ID,
					Name: defaultVLANName, MTU: defaultMTU})
				id = f.ID
				return nil
			})
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, r.netView(func(n *netModel) any { return fabricJSON(n, n.fabric(id)) }))
			return nil
		}
		return unknownOp(q)
	}
	var fid int
	if f := r.netView(func(n *netModel) any { return n.findFabric(q.path[1]) }).(*fabric); f != nil {
		fid = f.ID
	} else {
		return notFound("No Fabric matches the given query.")
	}
	if len(q.path) >= 3 && q.path[2] == "vlans" {
		return r.apiFabricVLANs(w, q, fid)
	}
	if len(q.path) != 2 {
		return notFound("Unknown API endpoint: " + q.URL.Path + ".")
	}
	switch {
	case q.Method == http.MethodGet && q.op == "":
	case q.Method == http.MethodPut && q.op == "":
		if err := r.updateNetwork(func(t *netTx) error { return t.fabricForm(q, t.n.fabric(fid)) }); err != nil {
			return err
		}
	case q.Method == http.MethodDelete && q.op == "":
		if err := r.updateNetwork(func(t *netTx) error { return t.deleteFabric(fid) }); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	default:
		return unknownOp(q)
	}
	writeJSON(w, http.StatusOK, r.netView(func(n *netModel) any { return fabricJSON(n, n.fabric(fid)) }))
	return nil
}

// findFabric is get_fabric_or_404's specifier: an id or a name.
func (n *netModel) findFabric(spec string) *fabric {
	if id, err := strconv.Atoi(spec); err == nil {
		return n.fabric(id)
	}
	for _, f := range n.Fabrics {
		if f.Name == spec {
			return f
		}
	}
	return nil
}

// fabricForm is FabricForm with Fabric's validation.
func (t *netTx) fabricForm(q *request, f *fabric) error {
	fe := fieldErrors{}
	if v, ok := q.get("name"); ok {
		switch {
		case v == "":
			f.Name = fmt.Sprintf("fabric-%d", f.ID)
		case !fabricNameRE.MatchString(v):
			fe.add("name", fmt.Sprintf("Invalid fabric name: %s.", v))
		case reservedFabric.MatchString(v) && v != fmt.Sprintf("fabric-%d", f.ID):
			fe.add("name", "Reserved fabric name.")
		default:
			for _, o := range t.n.Fabrics {
				if o.ID != f.ID && o.Name == v {
					fe.add("name", "Fabric with this Name already exists.")
				}
			}
			f.Name = v
		}
	}
	if v, ok := q.get("description"); ok {
		f.Description = v
	}
	if v, ok := q.get("class_type"); ok {
		f.ClassType = v
	}
	if len(fe) > 0 {
		return validation(fe)
	}
	return nil
}

// deleteFabric is Fabric.delete.
func (t *netTx) deleteFabric(id int) error {
	n := t.n
	if id == defaultFabricID {
		return badRequest("This fabric is the default fabric, it cannot be deleted.")
	}
	inFabric := func(vlanID int) bool { v := n.vlan(vlanID); return v != nil && v.FabricID == id }
	var cidrs []string
	for _, s := range n.Subnets {
		if inFabric(s.VLAN) {
			cidrs = append(cidrs, s.CIDR)
		}
	}
	if len(cidrs) > 0 {
		slices.Sort(cidrs)
		return badRequest("Can't delete fabric; the following subnets are still present: " + strings.Join(cidrs, ", "))
	}
	var ifaces []string
	for _, sid := range sortedKeys(t.r.machines) {
		m := t.r.machines[sid]
		var names []string
		for _, i := range m.Interfaces {
			if inFabric(i.VLAN) {
				names = append(names, fmt.Sprintf("%s (%s) on %s", i.Name, i.kind(), m.Hostname))
			}
		}
		slices.Sort(names)
		ifaces = append(ifaces, names...)
	}
	if len(ifaces) > 0 {
		return badRequest("Can't delete fabric; the following interfaces are still connected: " + strings.Join(ifaces, ", "))
	}
	n.VLANs = slices.DeleteFunc(n.VLANs, func(v *vlan) bool { return v.FabricID == id })
	n.Fabrics = slices.DeleteFunc(n.Fabrics, func(f *fabric) bool { return f.ID == id })
	return nil
}

func (r *Region) apiFabricVLANs(w http.ResponseWriter, q *request, fid int) error {
	if len(q.path) == 3 {
		switch {
		case q.Method == http.MethodGet && q.op == "":
			writeJSON(w, http.StatusOK, r.netView(func(n *netModel) any {
				out := []any{}
				for _, v := range n.VLANs {
					if v.FabricID == fid {
						out = append(out, vlanJSON(n, v))
					}
				}
				return out
			}))
			return nil
		case q.Method == http.MethodPost && q.op == "":
			var id int
			err := r.updateNetwork(func(t *netTx) error {
				v := &vlan{FabricID: fid, MTU: defaultMTU}
				if err := t.vlanForm(q, v, true); err != nil {
					return err
				}
				v.ID = vlanIDBase + int(t.w.next("vlan")) + 1
				t.n.VLANs = append(t.n.VLANs, v)
				id = v.ID
				return nil
			})
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, r.netView(func(n *netModel) any { return vlanJSON(n, n.vlan(id)) }))
			return nil
		}
		return unknownOp(q)
	}
	if len(q.path) != 4 {
		return notFound("Unknown API endpoint: " + q.URL.Path + ".")
	}
	var id int
	found := r.netView(func(n *netModel) any {
		vid := -1
		if strings.EqualFold(q.path[3], "untagged") {
			vid = 0
		} else if x, err := strconv.Atoi(q.path[3]); err == nil {
			vid = x
		}
		return n.vlanByVID(fid, vid)
	}).(*vlan)
	if found == nil {
		return notFound("No VLAN matches the given query.")
	}
	id = found.ID
	return r.apiVLAN(w, q, id)
}

// apiVLAN serves one VLAN: read, update, delete.
func (r *Region) apiVLAN(w http.ResponseWriter, q *request, id int) error {
	switch {
	case q.Method == http.MethodGet && q.op == "":
	case q.Method == http.MethodPut && q.op == "":
		if err := r.updateNetwork(func(t *netTx) error { return t.vlanForm(q, t.n.vlan(id), false) }); err != nil {
			return err
		}
	case q.Method == http.MethodDelete && q.op == "":
		if err := r.updateNetwork(func(t *netTx) error { return t.deleteVLAN(id) }); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	default:
		return unknownOp(q)
	}
	writeJSON(w, http.StatusOK, r.netView(func(n *netModel) any { return vlanJSON(n, n.vlan(id)) }))
	return nil
}

// vlanForm is VLANForm with VLAN's validation: it fills v from the request.
func (t *netTx) vlanForm(q *request, v *vlan, creating bool) error {
	n := t.n
	fe := fieldErrors{}
	if raw, ok := q.get("vid"); ok || creating {
		vid, err := strconv.Atoi(strings.TrimSpace(raw))
		switch {
		case raw == "":
			fe.add("vid", "This field is required.")
		case err != nil:
			fe.add("vid", "Enter a whole number.")
		case vid < 0 || vid > 4094:
			fe.add("vid", "VID must be between 0 and 4094.")
		default:
			v.VID = vid
		}
	}
	if raw, ok := q.get("name"); ok {
		if raw != "" && !modelNameRE.MatchString(raw) {
			fe.add("name", "Enter a valid value.")
		}
		v.Name = raw
	}
	if raw, ok := q.get("description"); ok {
		v.Description = raw
	}
	if raw, ok := q.get("mtu"); ok && raw != "" {
		mtu, err := strconv.Atoi(strings.TrimSpace(raw))
		switch {
		case err != nil:
			fe.add("mtu", "Enter a whole number.")
		case mtu < 552:
			fe.add("mtu", "Ensure this value is greater than or equal to 552.")
		case mtu > 65535:
			fe.add("mtu", "MTU must be between 552 and 65535.")
		default:
			v.MTU = mtu
		}
	}
	if raw, ok := q.get("space"); ok && raw != "" && raw != spaceUndefined {
		fe.add("space", "Select a valid choice. That choice is not one of the available choices.")
	}
	rack := func(k string, cur string) string {
		raw, ok := q.get(k)
		if !ok {
			return cur
		}
		if raw == "" {
			return ""
		}
		if (raw != n.Rack.SystemID && raw != n.Rack.Hostname) || !n.rackOnVLAN(v) {
			fe.add(k, fmt.Sprintf("Select a valid choice. %s is not one of the available choices.", raw))
			return cur
		}
		return n.Rack.SystemID
	}
	oldPrimary, oldSecondary := v.PrimaryRack, v.SecondaryRack
	v.PrimaryRack = rack("primary_rack", v.PrimaryRack)
	v.SecondaryRack = rack("secondary_rack", v.SecondaryRack)
	if v.PrimaryRack == "" && oldSecondary != "" {
		v.PrimaryRack, v.SecondaryRack = oldSecondary, ""
	}
	if v.PrimaryRack != "" && v.PrimaryRack == oldSecondary {
		v.SecondaryRack = ""
	}
	if v.SecondaryRack != "" && v.SecondaryRack == oldPrimary && v.PrimaryRack == oldPrimary {
		fe.add("__all__", fmt.Sprintf("%s is already set as the primary rack controller", v.SecondaryRack))
	} else if v.SecondaryRack != "" && v.SecondaryRack == v.PrimaryRack {
		fe.add("__all__", "The primary and secondary rack must be different")
	}
	if raw, ok := q.get("dhcp_on"); ok {
		on := false
		switch strings.ToLower(raw) {
		case "", "false", "0":
		default:
			on = true
		}
		if on {
			hasDynamic := false
			for _, s := range n.subnetsOn(v.ID) {
				for _, rg := range n.rangesOf(s.ID) {
					hasDynamic = hasDynamic || rg.Type == rangeDynamic
				}
			}
			if !hasDynamic {
				fe.add("dhcp_on", "dhcp can only be turned on when a dynamic IP range is defined.")
			} else if v.PrimaryRack == "" {
				fe.add("__all__", "dhcp can only be turned on when a primary rack controller is set.")
			}
		}
		v.DHCPOn = on
	}
	if _, bad := fe["vid"]; !bad {
		for _, o := range n.VLANs {
			if o.ID != v.ID && o.FabricID == v.FabricID && o.VID == v.VID {
				fe.add("__all__", "A VLAN with the specified VID already exists in the destination fabric.")
				break
			}
		}
	}
	if len(fe) > 0 {
		return validation(fe)
	}
	return nil
}

// deleteVLAN is VLAN.delete: refused for a fabric's default VLAN; VLAN interfaces on it
// go, other interfaces and its subnets move to the fabric's default VLAN.
func (t *netTx) deleteVLAN(id int) error {
	n := t.n
	v := n.vlan(id)
	def := n.fabricDefaultVLAN(v.FabricID)
	if def.ID == id {
		return badRequest("This VLAN is the default VLAN in the fabric, it cannot be deleted.")
	}
	for _, sid := range sortedKeys(t.r.machines) {
		if !slices.ContainsFunc(t.r.machines[sid].Interfaces, func(i Interface) bool { return i.VLAN == id }) {
			continue
		}
		m := t.machine(sid)
		k := &linker{r: t.r, w: t.w, n: n, m: m}
		for {
			x := slices.IndexFunc(m.Interfaces, func(i Interface) bool { return i.VLAN == id && i.kind() == ifaceVLAN })
			if x < 0 {
				break
			}
			k.deleteInterface(m.Interfaces[x].ID)
		}
		for x := range m.Interfaces {
			if m.Interfaces[x].VLAN == id {
				setVLAN(&m.Interfaces[x], def.ID)
			}
		}
	}
	for _, s := range n.Subnets {
		if s.VLAN == id {
			s.VLAN = def.ID
		}
	}
	n.VLANs = slices.DeleteFunc(n.VLANs, func(x *vlan) bool { return x.ID == id })
	return nil
}
