package fakemaas

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"sort"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// The region's network model, as MAAS models it (maasserver/models/{fabric,vlan,subnet,
// iprange,staticipaddress}.py): fabrics holding VLANs, subnets on VLANs, dynamic and
// reserved IP ranges on subnets, and the region's one rack controller with its addresses.
// Machine interfaces link to subnets (Interface.Links, MAAS's StaticIPAddress rows).
// The model is small and changes rarely, so it is stored as one record.

// Default objects, numbered as a fresh MAAS numbers them: fabric 0 ("fabric-0") with
// its untagged VLAN, whose id is 5001 (MAAS's VLAN id sequence starts at 5001).
const (
	defaultFabricID = 0
	vlanIDBase      = 5000
	defaultVLANName = "Default VLAN"
	defaultMTU      = 1500
	spaceUndefined  = "undefined"
)

// IP range types (IPRANGE_TYPE).
const (
	rangeDynamic  = "dynamic"
	rangeReserved = "reserved"
)

type fabric struct {
	ID          int    `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	ClassType   string `json:"class_type,omitempty"`
}

type vlan struct {
	ID            int    `json:"id"`
	FabricID      int    `json:"fabric_id"`
	VID           int    `json:"vid"`
	Name          string `json:"name,omitempty"`
	Description   string `json:"description,omitempty"`
	MTU           int    `json:"mtu"`
	DHCPOn        bool   `json:"dhcp_on,omitempty"`
	PrimaryRack   string `json:"primary_rack,omitempty"`
	SecondaryRack string `json:"secondary_rack,omitempty"`
}

type subnet struct {
	ID                        int      `json:"id"`
	Name                      string   `json:"name"`
	Description               string   `json:"description,omitempty"`
	CIDR                      string   `json:"cidr"`
	VLAN                      int      `json:"vlan"`
	Gateway                   string   `json:"gateway_ip,omitempty"`
	DNSServers                []string `json:"dns_servers,omitempty"`
	RDNSMode                  int      `json:"rdns_mode"`
	AllowDNS                  bool     `json:"allow_dns"`
	AllowProxy                bool     `json:"allow_proxy"`
	Managed                   bool     `json:"managed"`
	ActiveDiscovery           bool     `json:"active_discovery,omitempty"`
	DisabledBootArchitectures []string `json:"disabled_boot_architectures,omitempty"`
}

func (s *subnet) prefix() netip.Prefix {
	p, _ := netip.ParsePrefix(s.CIDR)
	return p
}

type ipRange struct {
	ID      int    `json:"id"`
	Subnet  int    `json:"subnet"`
	Type    string `json:"type"`
	Start   string `json:"start_ip"`
	End     string `json:"end_ip"`
	Comment string `json:"comment,omitempty"`
	User    string `json:"user,omitempty"`
}

func (r *ipRange) span() span {
	return span{toU(netip.MustParseAddr(r.Start)), toU(netip.MustParseAddr(r.End))}
}

// rackController is the rack the region knows: the harness's rack. Its addresses are
// what MAAS would have as STICKY addresses on the rack's interfaces.
type rackController struct {
	SystemID  string   `json:"system_id"`
	Hostname  string   `json:"hostname"`
	Addresses []string `json:"addresses,omitempty"`
}

type netModel struct {
	Fabrics []*fabric      `json:"fabrics"`
	VLANs   []*vlan        `json:"vlans"`
	Subnets []*subnet      `json:"subnets"`
	Ranges  []*ipRange     `json:"ipranges"`
	Rack    rackController `json:"rack"`
}

func (n *netModel) clone() *netModel {
	b, err := json.Marshal(n)
	if err != nil {
		panic(err)
	}
	c := new(netModel)
	if err := json.Unmarshal(b, c); err != nil {
		panic(err)
	}
	return c
}

func (n *netModel) fabric(id int) *fabric {
	for _, f := range n.Fabrics {
		if f.ID == id {
			return f
		}
	}
	return nil
}

func (n *netModel) vlan(id int) *vlan {
	for _, v := range n.VLANs {
		if v.ID == id {
			return v
		}
	}
	return nil
}

func (n *netModel) vlanByVID(fabricID, vid int) *vlan {
	for _, v := range n.VLANs {
		if v.FabricID == fabricID && v.VID == vid {
			return v
		}
	}
	return nil
}

func (n *netModel) subnet(id int) *subnet {
	for _, s := range n.Subnets {
		if s.ID == id {
			return s
		}
	}
	return nil
}

func (n *netModel) ipRange(id int) *ipRange {
	for _, r := range n.Ranges {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// fabricDefaultVLAN is Fabric.get_default_vlan: the fabric's VLAN with the lowest id.
func (n *netModel) fabricDefaultVLAN(fabricID int) *vlan {
	var best *vlan
	for _, v := range n.VLANs {
		if v.FabricID == fabricID && (best == nil || v.ID < best.ID) {
			best = v
		}
	}
	return best
}

// defaultVLAN is VLAN.objects.get_default_vlan: the default fabric's default VLAN.
func (n *netModel) defaultVLAN() *vlan { return n.fabricDefaultVLAN(defaultFabricID) }

func (n *netModel) vlanName(v *vlan) string {
	if d := n.fabricDefaultVLAN(v.FabricID); d != nil && d.ID == v.ID {
		return "untagged"
	}
	return v.Name
}

// subnetsOn returns the VLAN's subnets in id order.
func (n *netModel) subnetsOn(vlanID int) []*subnet {
	var out []*subnet
	for _, s := range n.Subnets {
		if s.VLAN == vlanID {
			out = append(out, s)
		}
	}
	return out
}

func (n *netModel) rangesOf(subnetID int) []*ipRange {
	var out []*ipRange
	for _, r := range n.Ranges {
		if r.Subnet == subnetID {
			out = append(out, r)
		}
	}
	return out
}

// subnetForIP is get_best_subnet_for_ip: the subnet holding ip, one on a VLAN with DHCP
// on first.
func (n *netModel) subnetForIP(ip netip.Addr) *subnet {
	ip = ip.Unmap()
	var best *subnet
	for _, s := range n.Subnets {
		if !s.prefix().Contains(ip) {
			continue
		}
		if best == nil || (!n.dhcpOn(best) && n.dhcpOn(s)) {
			best = s
		}
	}
	return best
}

func (n *netModel) dhcpOn(s *subnet) bool {
	v := n.vlan(s.VLAN)
	return v != nil && v.DHCPOn
}

// subnetLabel is str(Subnet): "<name>:<cidr>(vid=<vid>)".
func (n *netModel) subnetLabel(s *subnet) string {
	vid := 0
	if v := n.vlan(s.VLAN); v != nil {
		vid = v.VID
	}
	return fmt.Sprintf("%s:%s(vid=%d)", s.Name, s.CIDR, vid)
}

// rackAddressesOnVLAN are the rack's addresses on subnets of the VLAN, when the rack
// serves it (primary or secondary rack): what preseed_network offers as name servers.
func (n *netModel) rackAddressesOnVLAN(vlanID int) []string {
	v := n.vlan(vlanID)
	if v == nil || n.Rack.SystemID == "" || (v.PrimaryRack != n.Rack.SystemID && v.SecondaryRack != n.Rack.SystemID) {
		return nil
	}
	var out []string
	for _, a := range n.Rack.Addresses {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			continue
		}
		if s := n.subnetForIP(ip); s != nil && s.VLAN == vlanID {
			out = append(out, a)
		}
	}
	return out
}

// rackOnVLAN reports whether the rack has an address on a subnet of the VLAN
// (RackController.objects.filter_by_vids for the fake's one rack).
func (n *netModel) rackOnVLAN(v *vlan) bool {
	for _, a := range n.Rack.Addresses {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			continue
		}
		if s := n.subnetForIP(ip); s != nil {
			if sv := n.vlan(s.VLAN); sv != nil && sv.VID == v.VID {
				return true
			}
		}
	}
	return false
}

// newNetModel is a fresh MAAS's network: fabric-0 with its untagged default VLAN, and the
// rack controller record.
func newNetModel(rackSystemID string) *netModel {
	return &netModel{
		Fabrics: []*fabric{{ID: defaultFabricID, Name: "fabric-0"}},
		VLANs:   []*vlan{{ID: vlanIDBase + 1, FabricID: defaultFabricID, VID: 0, Name: defaultVLANName, MTU: defaultMTU}},
		Rack:    rackController{SystemID: rackSystemID, Hostname: "maasemu-rack"},
	}
}

// Persistence ----------------------------------------------------------------------------

const netRecordKey = "network"

// loadNetwork reads the network record (creating the default network on first start) and
// migrates machines recorded before the network model: their interfaces get MAAS's
// initial configuration (the boot interface's legacy "dhcp"/"link_up" mode is kept).
func (r *Region) loadNetwork() error {
	var raw []byte
	if err := r.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get([]byte(netRecordKey)); v != nil {
			raw = append([]byte(nil), v...)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("fakemaas: reading the network model: %w", err)
	}
	var n *netModel
	fresh := raw == nil
	if fresh {
		n = newNetModel(r.newSystemID())
	} else {
		n = new(netModel)
		if err := json.Unmarshal(raw, n); err != nil {
			return fmt.Errorf("fakemaas: network model record: %w", err)
		}
	}
	var migrate []*machine
	for _, sid := range sortedKeys(r.machines) {
		if m := r.machines[sid]; m.NetModel == 0 {
			migrate = append(migrate, m.clone())
		}
	}
	r.net = n
	if !fresh && len(migrate) == 0 {
		return nil
	}
	err := r.commit(func(w *writer) error {
		for _, m := range migrate {
			w.migrateInterfaces(m, n)
			w.putMachine(m)
		}
		w.putNetwork(n)
		return nil
	})
	if err != nil {
		return err
	}
	for _, m := range migrate {
		r.machines[m.SystemID] = m
	}
	return nil
}

func (w *writer) putNetwork(n *netModel) {
	w.put(bucketMeta, []byte(netRecordKey), n)
}

// updateNetwork applies f to a copy of the network model (and to copies of the machines f
// asks for) and commits them together; on any error nothing changes.
func (r *Region) updateNetwork(f func(t *netTx) error) error {
	return r.locked(func() error {
		t := &netTx{r: r, n: r.net.clone(), machines: map[string]*machine{}}
		err := r.commit(func(w *writer) error {
			t.w = w
			if err := f(t); err != nil {
				return err
			}
			w.putNetwork(t.n)
			for _, m := range t.machines {
				m.Updated = r.now().UTC()
				w.putMachine(m)
			}
			return nil
		})
		if err != nil {
			return err
		}
		r.net = t.n
		for sid, m := range t.machines {
			r.machines[sid] = m
		}
		return nil
	})
}

// netTx is one change of the network model.
type netTx struct {
	r        *Region
	w        *writer
	n        *netModel
	machines map[string]*machine
}

// machine returns the transaction's copy of machine sid.
func (t *netTx) machine(sid string) *machine {
	if m, ok := t.machines[sid]; ok {
		return m
	}
	m := t.r.machines[sid].clone()
	t.machines[sid] = m
	return m
}

// Addresses in use ---------------------------------------------------------------------

// ipUse is one address taken by something: a machine's link, a discovered address, the
// rack.
type ipUse struct {
	ip         netip.Addr
	discovered bool
	systemID   string // "" for the rack
	iface      string
	allocType  int
}

// usedIPs lists every address in use, with override standing in for its own committed
// record (r.mu held).
func (r *Region) usedIPs(n *netModel, override ...*machine) []ipUse {
	over := map[string]*machine{}
	for _, m := range override {
		over[m.SystemID] = m
	}
	var out []ipUse
	add := func(m *machine) {
		for _, i := range m.Interfaces {
			for _, l := range i.Links {
				if ip, err := netip.ParseAddr(l.IP); err == nil {
					out = append(out, ipUse{ip: ip, systemID: m.SystemID, iface: i.Name, allocType: l.allocType()})
				}
			}
			for _, d := range i.Discovered {
				if p, err := netip.ParsePrefix(d); err == nil {
					out = append(out, ipUse{ip: p.Addr(), discovered: true, systemID: m.SystemID, iface: i.Name, allocType: allocDiscovered})
				}
			}
		}
	}
	for _, sid := range sortedKeys(r.machines) {
		if m, ok := over[sid]; ok {
			add(m)
			delete(over, sid)
			continue
		}
		add(r.machines[sid])
	}
	for _, m := range over {
		add(m)
	}
	for _, a := range n.Rack.Addresses {
		if ip, err := netip.ParseAddr(a); err == nil {
			out = append(out, ipUse{ip: ip, allocType: allocSticky})
		}
	}
	return out
}

// Static IP address allocation types (IPADDRESS_TYPE).
const (
	allocAuto       = 0
	allocSticky     = 1
	allocUser       = 4
	allocDHCP       = 5
	allocDiscovered = 6
)

// Address arithmetic ---------------------------------------------------------------------

// u128 is an IP address as a 128-bit number (IPv4 as its IPv4-mapped IPv6 form).
type u128 struct{ hi, lo uint64 }

func toU(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (u u128) addr(v4 bool) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.hi)
	binary.BigEndian.PutUint64(b[8:], u.lo)
	a := netip.AddrFrom16(b)
	if v4 {
		return a.Unmap()
	}
	return a
}

func (u u128) cmp(v u128) int {
	switch {
	case u.hi < v.hi:
		return -1
	case u.hi > v.hi:
		return 1
	case u.lo < v.lo:
		return -1
	case u.lo > v.lo:
		return 1
	}
	return 0
}

func (u u128) add(n uint64) u128 {
	lo, c := bits.Add64(u.lo, n, 0)
	return u128{u.hi + c, lo}
}

func (u u128) sub(n uint64) u128 {
	lo, b := bits.Sub64(u.lo, n, 0)
	return u128{u.hi - b, lo}
}

func (u u128) minus(v u128) u128 {
	lo, b := bits.Sub64(u.lo, v.lo, 0)
	return u128{u.hi - v.hi - b, lo}
}

// span is an inclusive address range.
type span struct{ lo, hi u128 }

// size is the number of addresses (saturating at 2^64-1 for huge IPv6 ranges).
func (s span) size() uint64 {
	d := s.hi.minus(s.lo)
	if d.hi != 0 || d.lo == ^uint64(0) {
		return ^uint64(0)
	}
	return d.lo + 1
}

func (s span) contains(u u128) bool { return s.lo.cmp(u) <= 0 && u.cmp(s.hi) <= 0 }

func prefixSpan(p netip.Prefix) span {
	p = p.Masked()
	lo := toU(p.Addr())
	hostBits := p.Addr().BitLen() - p.Bits()
	var mask u128
	switch {
	case hostBits >= 128:
		mask = u128{^uint64(0), ^uint64(0)}
	case hostBits >= 64:
		mask = u128{(1 << (hostBits - 64)) - 1, ^uint64(0)}
	case hostBits > 0:
		mask = u128{0, (1 << hostBits) - 1}
	}
	return span{lo, u128{lo.hi | mask.hi, lo.lo | mask.lo}}
}

// spanSet is a sorted list of disjoint, non-adjacent spans.
type spanSet []span

func normalize(ss []span) spanSet {
	sort.Slice(ss, func(i, j int) bool { return ss[i].lo.cmp(ss[j].lo) < 0 })
	var out spanSet
	for _, s := range ss {
		if n := len(out); n > 0 && (out[n-1].hi.cmp(s.lo) >= 0 || out[n-1].hi.add(1) == s.lo) {
			if s.hi.cmp(out[n-1].hi) > 0 {
				out[n-1].hi = s.hi
			}
			continue
		}
		out = append(out, s)
	}
	return out
}

// minus is set difference.
func (a spanSet) minus(b spanSet) spanSet {
	var out spanSet
	for _, s := range a {
		cur := s
		ok := true
		for _, u := range b {
			if u.hi.cmp(cur.lo) < 0 || u.lo.cmp(cur.hi) > 0 {
				continue
			}
			if u.lo.cmp(cur.lo) > 0 {
				out = append(out, span{cur.lo, u.lo.sub(1)})
			}
			if u.hi.cmp(cur.hi) >= 0 {
				ok = false
				break
			}
			cur.lo = u.hi.add(1)
		}
		if ok {
			out = append(out, cur)
		}
	}
	return out
}

func (a spanSet) find(u u128) (span, bool) {
	for _, s := range a {
		if s.contains(u) {
			return s, true
		}
	}
	return span{}, false
}

// usableSpan is get_unused_ranges_for_network's starting set: the subnet without its
// network address (and, for IPv4, its broadcast address), and for IPv6 without MAAS's
// automatically reserved ranges (::1-::ffff:ffff on a /64, the subnet-router anycast
// address).
func usableSpans(p netip.Prefix) (universe spanSet, reserved []span) {
	s := prefixSpan(p)
	v4 := p.Addr().Is4()
	if (v4 && p.Bits() < 31) || (!v4 && p.Bits() < 127) {
		s.lo = s.lo.add(1)
	}
	if v4 && p.Bits() < 31 {
		s.hi = s.hi.sub(1)
	}
	if !v4 {
		first := prefixSpan(p).lo
		if p.Bits() == 64 {
			reserved = append(reserved, span{first.add(1), first.add(0xffffffff)})
		}
		if p.Bits() < 127 {
			reserved = append(reserved, span{first, first})
		}
	}
	return spanSet{s}, reserved
}

// subnetUse is what the subnet utilization service counts as in use on a subnet.
type subnetUse struct {
	gatewayDNS []span // the gateway and in-subnet DNS servers
	allocated  []span // addresses assigned to machines and the rack, not discovered
	discovered []span
	reserved   []span
	dynamic    []span
	v6Reserved []span
}

func (r *Region) subnetUse(n *netModel, s *subnet, uses []ipUse, excludeRange int) subnetUse {
	p := s.prefix()
	var u subnetUse
	_, u.v6Reserved = usableSpans(p)
	addIP := func(list *[]span, a string) {
		if ip, err := netip.ParseAddr(a); err == nil && p.Contains(ip) {
			*list = append(*list, span{toU(ip), toU(ip)})
		}
	}
	addIP(&u.gatewayDNS, s.Gateway)
	for _, d := range s.DNSServers {
		addIP(&u.gatewayDNS, d)
	}
	for _, use := range uses {
		if !p.Contains(use.ip) {
			continue
		}
		if use.discovered {
			u.discovered = append(u.discovered, span{toU(use.ip), toU(use.ip)})
		} else {
			u.allocated = append(u.allocated, span{toU(use.ip), toU(use.ip)})
		}
	}
	for _, rg := range n.rangesOf(s.ID) {
		if rg.ID == excludeRange {
			continue
		}
		if rg.Type == rangeDynamic {
			u.dynamic = append(u.dynamic, rg.span())
		} else {
			u.reserved = append(u.reserved, rg.span())
		}
	}
	return u
}

func concat(lists ...[]span) []span {
	var out []span
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// allocationSpans is get_ipranges_for_ip_allocation: the free ranges an address may be
// allocated from. A managed subnet allocates from everything outside its ranges; an
// unmanaged one only inside its reserved ranges.
func (s *subnet) allocationSpans(u subnetUse, exclude []netip.Addr) spanSet {
	var ex []span
	for _, a := range exclude {
		ex = append(ex, span{toU(a), toU(a)})
	}
	used := normalize(concat(u.v6Reserved, ex, u.gatewayDNS, u.allocated, u.discovered, u.dynamic))
	if s.Managed {
		universe, _ := usableSpans(s.prefix())
		return universe.minus(normalize(concat(used, u.reserved)))
	}
	return normalize(slices.Clone(u.reserved)).minus(used)
}

// nextFreeIP is get_next_ip_for_allocation: the first address of the smallest free range
// (the lowest one among equals).
func (s *subnet) nextFreeIP(u subnetUse, exclude []netip.Addr) (netip.Addr, bool) {
	free := s.allocationSpans(u, exclude)
	if len(free) == 0 {
		return netip.Addr{}, false
	}
	best := free[0]
	for _, f := range free[1:] {
		if f.size() < best.size() {
			best = f
		}
	}
	return best.lo.addr(s.prefix().Addr().Is4()), true
}

// inUseSpans is get_ipranges_in_use, with each range's purposes.
func (s *subnet) inUseSpans(u subnetUse) []purposeSpan {
	var out []purposeSpan
	add := func(list []span, purpose string) {
		for _, sp := range list {
			out = append(out, purposeSpan{sp, []string{purpose}})
		}
	}
	add(u.v6Reserved, "reserved")
	for _, sp := range u.gatewayDNS {
		purpose := "dns-server"
		if ip := sp.lo.addr(s.prefix().Addr().Is4()); ip.String() == s.Gateway {
			purpose = "gateway-ip"
		}
		out = append(out, purposeSpan{sp, []string{purpose}})
	}
	add(u.allocated, "assigned-ip")
	add(u.discovered, "assigned-ip")
	add(u.dynamic, "dynamic")
	if s.Managed {
		add(u.reserved, "reserved")
	}
	return mergePurposes(out)
}

type purposeSpan struct {
	span
	purposes []string
}

// mergePurposes combines overlapping ranges, and adjacent ones of the same purposes.
func mergePurposes(in []purposeSpan) []purposeSpan {
	sort.SliceStable(in, func(i, j int) bool { return in[i].lo.cmp(in[j].lo) < 0 })
	var out []purposeSpan
	for _, p := range in {
		if n := len(out); n > 0 {
			last := &out[n-1]
			overlap := last.hi.cmp(p.lo) >= 0
			adjacent := last.hi.add(1) == p.lo && slices.Equal(last.purposes, p.purposes)
			if overlap || adjacent {
				if p.hi.cmp(last.hi) > 0 {
					last.hi = p.hi
				}
				for _, pp := range p.purposes {
					if !slices.Contains(last.purposes, pp) {
						last.purposes = append(last.purposes, pp)
					}
				}
				slices.Sort(last.purposes)
				continue
			}
		}
		out = append(out, purposeSpan{p.span, slices.Clone(p.purposes)})
	}
	return out
}

// Names and parsing -----------------------------------------------------------------------

// parseIP parses an address as Django's GenericIPAddressField does (IPv4-mapped IPv6
// addresses unpacked).
func parseIP(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

const invalidIPMsg = "Enter a valid IPv4 or IPv6 address."
