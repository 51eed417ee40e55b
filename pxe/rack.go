// Package pxe is maasemu's fake MAAS rack: DHCPv4 and DHCPv6 with MAAS's bootloader choices,
// TFTP and the HTTP boot service (port 5248) serving MAAS-exact boot configs, bootloaders and
// images, all on caller-provided connections so the same rack runs on a host socket, on the
// virtual network, or in a test.
package pxe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/maasemu/maasemu/pxe/bootconfig"
	"github.com/maasemu/maasemu/pxe/bootfiles"
	"github.com/maasemu/maasemu/pxe/bootloader"
	"github.com/maasemu/maasemu/pxe/dhcp4"
	"github.com/maasemu/maasemu/pxe/dhcp6"
	"github.com/maasemu/maasemu/pxe/httpboot"
	"github.com/maasemu/maasemu/pxe/tftpboot"
	"github.com/maasemu/maasemu/trace"
)

// Region is what the rack asks the region: boot configs, image files and bootloader files
// (fakemaas.Region implements it).
type Region = bootfiles.Region

// Config configures a Rack.
type Config struct {
	Region Region // required
	// RegionHandler serves /MAAS/... behind the rack's HTTP port (metadata, webhook, API).
	RegionHandler http.Handler
	// RackIP is the rack address used when a connection does not tell which address a
	// request arrived on. Zero: the first DHCPv4 subnet's RackIP.
	RackIP netip.Addr

	Subnets  []dhcp4.Subnet // DHCPv4; the first is the directly attached one
	Subnets6 []dhcp6.Subnet // DHCPv6; may be empty
	// Hosts looks up known machines for DHCPv4 (fixed addresses, hostnames); nil: none.
	Hosts dhcp4.Hosts
	// Hosts6 does the same for DHCPv6; nil: none.
	Hosts6  dhcp6.Hosts
	Unknown dhcp4.UnknownPolicy
	// LeaseFile persists DHCPv4 leases; empty keeps them in memory.
	LeaseFile string

	// BootloaderHost says where the host's bootloader packages are. With no directories
	// set: bootloader.DefaultHost(CacheDir, else bootloader.DefaultCacheDir()).
	BootloaderHost bootloader.Host
	// TFTPMaxBlockSize caps the negotiated TFTP blksize; 0 is 1468.
	TFTPMaxBlockSize int
	// TFTPSinglePort answers every TFTP transfer from the listening socket even on a host
	// socket (see tftpboot.Config.SinglePort); a gVisor conn always works so.
	TFTPSinglePort bool
	// GRUBDebug adds set debug="all" to GRUB configs.
	GRUBDebug bool

	Sink   trace.Sink
	Logger *slog.Logger
}

// Rack holds the rack's configuration and state. Its servers run on connections the caller
// opens; see ServeHost for host sockets.
type Rack struct {
	cfg   Config
	sink  trace.Sink // the caller's sink; cfg.Sink adds MACs to it
	tree  *bootfiles.Tree
	dhcp  *dhcp4.Server // nil without Subnets
	dhcp6 *dhcp6.Server // nil without Subnets6
	tftp  *tftpboot.Server
	http  *httpboot.Handler
}

// New checks cfg and builds the rack.
func New(cfg Config) (*Rack, error) {
	if cfg.Region == nil {
		return nil, errors.New("pxe rack config: no region")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Sink = trace.OrNop(cfg.Sink)
	if !cfg.RackIP.IsValid() && len(cfg.Subnets) > 0 {
		cfg.RackIP = cfg.Subnets[0].RackIP
	}
	host := cfg.BootloaderHost
	if host.PXELinuxDir == "" && host.SyslinuxBIOS == "" && host.ShimDir == "" && host.GRUBModules == "" {
		cache := host.CacheDir
		if cache == "" {
			cache = bootloader.DefaultCacheDir()
		}
		host = bootloader.DefaultHost(cache)
	}
	r := &Rack{sink: cfg.Sink}
	// TFTP and HTTP requests carry no MAC; name the machine from its lease so that its
	// timeline sees every file it fetched.
	cfg.Sink = trace.Func(func(e trace.Event) {
		if e.MAC == "" && (e.Source == trace.SourceTFTP || e.Source == trace.SourceHTTP) {
			e.MAC = r.macOf(e.Attrs["remote"])
		}
		r.sink.Emit(e)
	})
	r.cfg = cfg
	r.tree = bootfiles.New(bootfiles.Config{
		Region:     cfg.Region,
		Bootloader: bootloader.New(cfg.Region, host, cfg.Logger),
		Render:     bootconfig.Options{Debug: cfg.GRUBDebug},
		Sink:       cfg.Sink,
		Logger:     cfg.Logger,
	})
	if len(cfg.Subnets) > 0 {
		s, err := dhcp4.New(dhcp4.Config{
			Subnets: cfg.Subnets, Hosts: cfg.Hosts, Unknown: cfg.Unknown, LeaseFile: cfg.LeaseFile,
			Sink: cfg.Sink, Logger: cfg.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("pxe rack config: %w", err)
		}
		r.dhcp = s
	}
	if len(cfg.Subnets6) > 0 {
		s, err := dhcp6.New(dhcp6.Config{
			Subnets: cfg.Subnets6, Hosts: cfg.Hosts6, IgnoreUnknown: cfg.Unknown == dhcp4.IgnoreUnknown,
			Sink: cfg.Sink, Logger: cfg.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("pxe rack config: %w", err)
		}
		r.dhcp6 = s
	}
	r.tftp = tftpboot.New(tftpboot.Config{
		Tree: r.tree, LocalIP: cfg.RackIP, MaxBlockSize: cfg.TFTPMaxBlockSize, SinglePort: cfg.TFTPSinglePort,
		Sink: cfg.Sink, Logger: cfg.Logger,
	})
	r.http = httpboot.New(httpboot.Config{
		Tree: r.tree, Region: cfg.RegionHandler, LocalIP: cfg.RackIP, Sink: cfg.Sink, Logger: cfg.Logger,
	})
	return r, nil
}

// ServeDHCP answers DHCPv4 on conn until ctx is done, then closes conn. On a gVisor stack,
// conn is a UDP endpoint on port 67 with no address and SetBroadcast(true); on a host,
// ListenDHCP opens it.
func (r *Rack) ServeDHCP(ctx context.Context, conn net.PacketConn) error {
	if r.dhcp == nil {
		conn.Close()
		return errors.New("pxe: ServeDHCP: no DHCPv4 subnets configured")
	}
	return r.dhcp.Serve(ctx, conn)
}

// ServeDHCPv6 answers DHCPv6 on conn until ctx is done, then closes conn.
func (r *Rack) ServeDHCPv6(ctx context.Context, conn net.PacketConn) error {
	if r.dhcp6 == nil {
		conn.Close()
		return errors.New("pxe: ServeDHCPv6: no DHCPv6 subnets configured")
	}
	return r.dhcp6.Serve(ctx, conn)
}

// ServeTFTP serves TFTP (single port) on conn until ctx is done, then closes conn. conn must
// be bound to an address (on a gVisor stack, the rack address).
func (r *Rack) ServeTFTP(ctx context.Context, conn net.PacketConn) error {
	return r.tftp.Serve(ctx, conn)
}

// HTTPHandler is the rack's port-5248 service: serve it on any net.Listener.
func (r *Rack) HTTPHandler() http.Handler { return r.http }

// Leases returns the DHCPv4 lease table.
func (r *Rack) Leases() []dhcp4.Lease {
	if r.dhcp == nil {
		return nil
	}
	return r.dhcp.Leases()
}

// macOf returns the MAC leased the address in a "remote" attribute ("ip:port" or a
// *net.UDPAddr), or "".
func (r *Rack) macOf(remote any) string {
	if r.dhcp == nil || remote == nil {
		return ""
	}
	var s string
	switch v := remote.(type) {
	case string:
		s = v
	case fmt.Stringer:
		s = v.String()
	default:
		return ""
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return ""
	}
	ip := ap.Addr().Unmap()
	for _, l := range r.dhcp.Leases() {
		if l.IP == ip {
			return strings.ToLower(l.MAC)
		}
	}
	return ""
}

// Tree is the served file tree, for callers that read boot files in-process (simulated
// machines).
func (r *Rack) Tree() *bootfiles.Tree { return r.tree }
