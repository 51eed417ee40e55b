// Package dhcp4 is the rack's DHCPv4 server, answering as MAAS's ISC dhcpd configuration
// does: per-subnet pools and options, static leases for known machines, and the bootloader
// each client gets from options 93, 60, 77 and 175. It runs its own read loop on any
// net.PacketConn (a host socket or a gVisor conn) and reports every packet as a trace event.
package dhcp4

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/maasemu/maasemu/trace"
)

// Range is an inclusive address range of a dynamic pool.
type Range struct {
	Start, End netip.Addr
}

// Subnet is one subnet the server answers for (a "subnet" block of MAAS's dhcpd.conf).
type Subnet struct {
	Prefix netip.Prefix
	// RackIP is the rack's address on this subnet: next-server, the server identifier, and
	// the host of every boot URL. For a relayed subnet, the rack's address that the relay
	// forwards to.
	RackIP     netip.Addr
	Pools      []Range
	Router     netip.Addr   // option 3, when valid
	DNS        []netip.Addr // option 6
	DomainName string       // option 15 (MAAS always sends its default domain)
	SearchList []string     // option 119
	NTP        []netip.Addr // option 42
	MTU        int          // option 26, sent only when set and not 1500
	// LeaseTime is default-lease-time and max-lease-time (MAAS: 600 s). Clients whose
	// vendor class starts with "PXE" get 30 s (MAAS's class "PXE").
	LeaseTime time.Duration
	// DisabledBootMethods are MAAS boot method names (e.g. "ipxe", "uefi_amd64_http") the
	// subnet does not offer (Subnet.disabled_boot_architectures).
	DisabledBootMethods []string
}

// Host is a machine the region knows.
type Host struct {
	IP       netip.Addr // fixed address (a MAAS host entry); invalid for a dynamic address
	Hostname string
	SystemID string
}

// Hosts looks up known machines by MAC. found=false means an unknown machine.
type Hosts interface {
	LookupHost(ctx context.Context, mac net.HardwareAddr) (h Host, found bool, err error)
}

// UnknownPolicy says what to do with machines the region does not know.
type UnknownPolicy int

// Unknown-machine policies.
const (
	// AnswerUnknown gives unknown machines a pool address so they PXE boot and enlist, as
	// MAAS does.
	AnswerUnknown UnknownPolicy = iota
	// IgnoreUnknown stays silent for them (a lab that must not enlist strangers).
	IgnoreUnknown
)

// Config configures a Server.
type Config struct {
	Subnets []Subnet // the first one is the directly attached subnet when a packet does not say
	Hosts   Hosts    // nil: every machine is unknown
	Unknown UnknownPolicy
	// LeaseFile persists bound leases (JSON, written atomically); empty keeps them in memory.
	LeaseFile string
	// OfferHold is how long an offered address stays reserved for the client (default 60 s).
	OfferHold time.Duration
	// DeclineHold is how long a declined (in use elsewhere) address is avoided (default 10 min).
	DeclineHold time.Duration
	// SkipIPXENoProxyDHCP turns off the iPXE "no-pxedhcp" answer (see boot.go).
	SkipIPXENoProxyDHCP bool
	Sink                trace.Sink
	Logger              *slog.Logger
	Now                 func() time.Time // for tests; nil is time.Now
}

// MAAS's lease times (dhcpd.conf.template).
const (
	DefaultLeaseTime = 600 * time.Second
	PXELeaseTime     = 30 * time.Second
)

func (c *Config) validate() error {
	if len(c.Subnets) == 0 {
		return errors.New("dhcp4 config: no subnets")
	}
	for i := range c.Subnets {
		s := &c.Subnets[i]
		name := fmt.Sprintf("dhcp4 config: subnet %d (%s)", i, s.Prefix)
		if !s.Prefix.IsValid() || !s.Prefix.Addr().Is4() {
			return fmt.Errorf("%s: prefix must be an IPv4 CIDR", name)
		}
		s.Prefix = s.Prefix.Masked()
		if !s.RackIP.IsValid() || !s.RackIP.Is4() {
			return fmt.Errorf("%s: rack IP %v must be an IPv4 address", name, s.RackIP)
		}
		for _, p := range s.Pools {
			if !s.Prefix.Contains(p.Start) || !s.Prefix.Contains(p.End) || p.End.Less(p.Start) {
				return fmt.Errorf("%s: pool %v-%v must lie inside the prefix, start <= end", name, p.Start, p.End)
			}
			if p.contains(s.RackIP) {
				return fmt.Errorf("%s: pool %v-%v contains the rack address %v", name, p.Start, p.End, s.RackIP)
			}
		}
		if s.Router.IsValid() && !s.Prefix.Contains(s.Router) {
			return fmt.Errorf("%s: router %v is outside the subnet", name, s.Router)
		}
		if s.MTU != 0 && (s.MTU < 68 || s.MTU > 65535) {
			return fmt.Errorf("%s: MTU %d out of range 68..65535", name, s.MTU)
		}
		if s.LeaseTime == 0 {
			s.LeaseTime = DefaultLeaseTime
		}
		if s.LeaseTime < time.Second {
			return fmt.Errorf("%s: lease time %v shorter than 1 s", name, s.LeaseTime)
		}
		for j := 0; j < i; j++ {
			if c.Subnets[j].Prefix.Overlaps(s.Prefix) {
				return fmt.Errorf("%s overlaps subnet %d (%s)", name, j, c.Subnets[j].Prefix)
			}
		}
	}
	if c.OfferHold == 0 {
		c.OfferHold = 60 * time.Second
	}
	if c.DeclineHold == 0 {
		c.DeclineHold = 10 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Sink = trace.OrNop(c.Sink)
	return nil
}

// subnetFor returns the subnet containing a.
func (c *Config) subnetFor(a netip.Addr) *Subnet {
	for i := range c.Subnets {
		if c.Subnets[i].Prefix.Contains(a) {
			return &c.Subnets[i]
		}
	}
	return nil
}

func (p Range) contains(a netip.Addr) bool {
	return !a.Less(p.Start) && !p.End.Less(a)
}

// inPool reports whether a is in one of s's pools.
func (s *Subnet) inPool(a netip.Addr) bool {
	for _, p := range s.Pools {
		if p.contains(a) {
			return true
		}
	}
	return false
}

// broadcast is the subnet's broadcast address (option 28).
func (s *Subnet) broadcast() netip.Addr {
	b := s.Prefix.Addr().As4()
	bits := s.Prefix.Bits()
	for i := bits; i < 32; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom4(b)
}
