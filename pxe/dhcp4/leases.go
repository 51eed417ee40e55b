package dhcp4

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Lease states.
const (
	StateOffered  = "offered"
	StateBound    = "bound"
	StateReleased = "released"
	StateExpired  = "expired"
)

// Lease is an address given to a client.
type Lease struct {
	MAC      string     `json:"mac"`
	IP       netip.Addr `json:"ip"`
	Hostname string     `json:"hostname,omitempty"`
	State    string     `json:"state"`
	Expires  time.Time  `json:"expires"`
}

// leases is the lease table: one address per MAC (ignore-client-uids true), one MAC per
// address. Released and expired leases stay as remembered bindings so a returning client gets
// its old address back while nobody else took it (ISC dhcpd does the same).
type leases struct {
	byMAC    map[string]*Lease
	byIP     map[netip.Addr]*Lease
	declined map[netip.Addr]time.Time // address -> avoid until
	// low is, per pool start, an address below which every pool address is taken: the
	// allocation scan starts there. drop lowers it; allocate raises it.
	low map[netip.Addr]netip.Addr
}

func newLeases() *leases {
	return &leases{
		byMAC: map[string]*Lease{}, byIP: map[netip.Addr]*Lease{},
		declined: map[netip.Addr]time.Time{}, low: map[netip.Addr]netip.Addr{},
	}
}

// active reports whether l holds its address at now.
func (l *Lease) active(now time.Time) bool {
	return (l.State == StateOffered || l.State == StateBound) && now.Before(l.Expires)
}

// holder returns the MAC holding a at now, or "".
func (t *leases) holder(a netip.Addr, now time.Time) string {
	if l, ok := t.byIP[a]; ok && l.active(now) {
		return l.MAC
	}
	return ""
}

// set records mac -> ip, dropping any previous binding of either.
func (t *leases) set(mac string, ip netip.Addr, hostname, state string, expires time.Time) *Lease {
	if old, ok := t.byMAC[mac]; ok && old.IP != ip {
		delete(t.byIP, old.IP)
		t.lower(old.IP)
	}
	if old, ok := t.byIP[ip]; ok && old.MAC != mac {
		delete(t.byMAC, old.MAC)
	}
	l := &Lease{MAC: mac, IP: ip, Hostname: hostname, State: state, Expires: expires}
	t.byMAC[mac] = l
	t.byIP[ip] = l
	return l
}

// free reports whether a may be given to mac at now.
func (t *leases) free(a netip.Addr, mac string, now time.Time, reserved func(netip.Addr) bool) bool {
	if until, ok := t.declined[a]; ok {
		if now.Before(until) {
			return false
		}
		delete(t.declined, a)
	}
	if h := t.holder(a, now); h != "" && h != mac {
		return false
	}
	if l, ok := t.byIP[a]; ok && l.MAC != mac && !l.active(now) {
		// A remembered binding of another client: usable, but only after unused addresses
		// (checked by the caller's second pass).
		return false
	}
	return !reserved(a)
}

// allocate finds an address in s's pools for mac: the lowest never-used (or own) address,
// then the address of the binding that ended first among other clients'.
func (t *leases) allocate(s *Subnet, mac string, now time.Time, reserved func(netip.Addr) bool) (netip.Addr, bool) {
	for _, p := range s.Pools {
		start, ok := t.low[p.Start]
		if !ok || !p.contains(start) {
			start = p.Start
		}
		for a, until := range t.declined { // a lapsed decline frees an address below low
			if p.contains(a) && a.Less(start) && !now.Before(until) {
				start = a
			}
		}
		for a := start; a.IsValid() && p.contains(a); a = a.Next() {
			if t.free(a, mac, now, reserved) {
				t.low[p.Start] = a
				return a, true
			}
		}
	}
	// Second pass: reuse the oldest ended binding of another client.
	var ended []*Lease
	for _, l := range t.byIP {
		if l.MAC != mac && !l.active(now) && s.inPool(l.IP) && !reserved(l.IP) {
			if until, ok := t.declined[l.IP]; ok && now.Before(until) {
				continue
			}
			ended = append(ended, l)
		}
	}
	if len(ended) == 0 {
		return netip.Addr{}, false
	}
	sort.Slice(ended, func(i, j int) bool {
		if !ended[i].Expires.Equal(ended[j].Expires) {
			return ended[i].Expires.Before(ended[j].Expires)
		}
		return ended[i].IP.Less(ended[j].IP)
	})
	a := ended[0].IP
	delete(t.byMAC, ended[0].MAC)
	delete(t.byIP, a)
	return a, true
}

// drop forgets mac's binding.
func (t *leases) drop(mac string) {
	if l, ok := t.byMAC[mac]; ok {
		delete(t.byIP, l.IP)
		delete(t.byMAC, mac)
		t.lower(l.IP)
	}
}

// lower moves the allocation start of a's pool down to a.
func (t *leases) lower(a netip.Addr) {
	for start, low := range t.low {
		if !a.Less(start) && a.Less(low) {
			t.low[start] = a
		}
	}
}

// expire marks ended bound leases expired and returns them; offers never taken up are
// forgotten.
func (t *leases) expire(now time.Time) []Lease {
	var out []Lease
	for mac, l := range t.byMAC {
		if now.Before(l.Expires) {
			continue
		}
		switch l.State {
		case StateBound:
			l.State = StateExpired
			out = append(out, *l)
		case StateOffered:
			t.drop(mac)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP.Less(out[j].IP) })
	return out
}

func (t *leases) list() []Lease {
	out := make([]Lease, 0, len(t.byMAC))
	for _, l := range t.byMAC {
		out = append(out, *l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP.Less(out[j].IP) })
	return out
}

// leaseFile is the persisted form.
type leaseFile struct {
	Version int     `json:"version"`
	Leases  []Lease `json:"leases"`
}

// load reads bound leases from path; a missing file is an empty table.
func (t *leases) load(path string, c *Config) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("lease file %s: %w", path, err)
	}
	var lf leaseFile
	if err := json.Unmarshal(b, &lf); err != nil {
		return fmt.Errorf("lease file %s: not valid JSON: %w", path, err)
	}
	if lf.Version != 1 {
		return fmt.Errorf("lease file %s: version %d, want 1", path, lf.Version)
	}
	for i, l := range lf.Leases {
		mac, err := net.ParseMAC(l.MAC)
		if err != nil || len(mac) != 6 {
			return fmt.Errorf("lease file %s: lease %d: MAC %q is not an Ethernet address", path, i, l.MAC)
		}
		if !l.IP.Is4() || c.subnetFor(l.IP) == nil {
			return fmt.Errorf("lease file %s: lease %d: address %v is in no configured subnet", path, i, l.IP)
		}
		if l.State != StateBound && l.State != StateReleased && l.State != StateExpired {
			return fmt.Errorf("lease file %s: lease %d: state %q is not bound, released or expired", path, i, l.State)
		}
		if _, dup := t.byIP[l.IP]; dup {
			return fmt.Errorf("lease file %s: lease %d: address %v leased twice", path, i, l.IP)
		}
		t.set(mac.String(), l.IP, l.Hostname, l.State, l.Expires)
	}
	return nil
}

// save writes bound/released/expired leases to path atomically (temp, fsync, rename).
func (t *leases) save(path string) error {
	lf := leaseFile{Version: 1}
	for _, l := range t.list() {
		if l.State != StateOffered {
			lf.Leases = append(lf.Leases, l)
		}
	}
	b, err := json.MarshalIndent(lf, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".leases-*")
	if err != nil {
		return fmt.Errorf("save leases: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("save leases: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("save leases: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save leases: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("save leases: %w", err)
	}
	return nil
}
