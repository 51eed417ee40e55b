package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/fakemaas/curtincfg"
	"github.com/maasemu/maasemu/pxe"
	"github.com/maasemu/maasemu/pxe/dhcp4"
	"github.com/maasemu/maasemu/pxe/dhcp6"
	"github.com/maasemu/maasemu/trace"
)

// serveConfig is what "maasemu serve" runs: the region on --listen and, when any of
// --tftp, --http or --dhcp-interface is given, the rack on host sockets beside it.
type serveConfig struct {
	listen   string
	stateDir string
	logLevel string

	tftp          string
	http          string
	dhcpInterface string
	dhcp6         bool
	dhcpRange     string
	deployTimeout time.Duration
	curtin        string
}

func (c *serveConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.listen, "listen", "127.0.0.1:5240", "address of the region API (MAAS listens on :5240)")
	fs.StringVar(&c.stateDir, "state", defaultStateDir(), "state directory (database, images, admin.apikey, DHCP leases)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug (also every DHCP/TFTP/HTTP/metadata event), info, warn, error")
	fs.StringVar(&c.tftp, "tftp", "", "serve the rack's TFTP on this UDP address (e.g. :69 or 192.168.122.1:69)")
	fs.StringVar(&c.http, "http", "", "serve the rack's HTTP boot service on this address (MAAS: :5248), with the region's /MAAS/ behind it")
	fs.StringVar(&c.dhcpInterface, "dhcp-interface", "", "answer DHCPv4 on this interface (UDP 0.0.0.0:67 bound to it; needs root or CAP_NET_BIND_SERVICE+CAP_NET_RAW); the subnet and the rack address are the interface's first IPv4 address")
	fs.BoolVar(&c.dhcp6, "dhcp6", false, "also answer DHCPv6 on --dhcp-interface, for its first IPv6 prefix that is not link-local")
	fs.StringVar(&c.dhcpRange, "dhcp-range", "", "DHCPv4 dynamic range START-END (default: the upper half of the interface's subnet)")
	fs.DurationVar(&c.deployTimeout, "deploy-timeout", 0, "how long a machine may stay Deploying or Commissioning without progress before it fails (default: MAAS's node_timeout, 30m)")
	fs.StringVar(&c.curtin, "curtin", "", "a directory holding the curtin Python package (DIR/curtin/__init__.py), packed into the curtin user-data as MAAS does (default: whatever python3 imports)")
}

// validate checks the flags that need no system call.
func (c *serveConfig) validate() error {
	if c.deployTimeout < 0 {
		return fmt.Errorf("--deploy-timeout %v: must not be negative", c.deployTimeout)
	}
	if c.dhcp6 && c.dhcpInterface == "" {
		return errors.New("--dhcp6 needs --dhcp-interface: DHCPv6 is served on that interface")
	}
	if c.dhcpRange != "" && c.dhcpInterface == "" {
		return errors.New("--dhcp-range needs --dhcp-interface")
	}
	for _, f := range []struct{ name, addr string }{{"--tftp", c.tftp}, {"--http", c.http}} {
		if f.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(f.addr); err != nil {
			return fmt.Errorf("%s %q: want HOST:PORT or :PORT: %w", f.name, f.addr, err)
		}
	}
	if c.curtin != "" {
		if _, err := os.Stat(filepath.Join(c.curtin, "curtin", "__init__.py")); err != nil {
			return fmt.Errorf("--curtin %s: not a curtin tree (no curtin/__init__.py in it): %w", c.curtin, err)
		}
	}
	return nil
}

// rackWanted says whether any rack service was asked for.
func (c *serveConfig) rackWanted() bool {
	return c.tftp != "" || c.http != "" || c.dhcpInterface != ""
}

func defaultStateDir() string {
	if d := os.Getenv("MAASEMU_STATE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "maasemu-state"
	}
	return filepath.Join(home, ".local", "state", "maasemu")
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// logSink writes trace events to the log: warnings and errors at their level, the rest
// at debug.
func logSink(log *slog.Logger) trace.Sink {
	return trace.Func(func(e trace.Event) {
		level := slog.LevelDebug
		switch e.Level {
		case trace.LevelWarn:
			level = slog.LevelWarn
		case trace.LevelError:
			level = slog.LevelError
		}
		if !log.Enabled(context.Background(), level) {
			return
		}
		args := []any{"source", e.Source, "kind", e.Kind}
		if e.Machine != "" {
			args = append(args, "machine", e.Machine)
		}
		if e.MAC != "" {
			args = append(args, "mac", e.MAC)
		}
		log.Log(context.Background(), level, e.Message, args...)
	})
}

func init() {
	register(command{
		name:    "serve",
		summary: "run the fake MAAS region (API 2.0) and, with --tftp/--http/--dhcp-interface, its rack on host sockets",
		run:     runServe,
	})
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.flags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{code: 2, err: err}
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("unexpected arguments: %v", fs.Args())}
	}
	log, err := newLogger(stderr, cfg.logLevel)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if err := cfg.validate(); err != nil {
		return &exitError{code: 2, err: err}
	}
	// The rack's subnets come from the interface: bad input is refused before anything
	// is opened.
	var rackCfg pxe.Config
	if cfg.dhcpInterface != "" {
		if rackCfg, err = interfaceSubnets(cfg.dhcpInterface, cfg.dhcp6, cfg.dhcpRange); err != nil {
			return &exitError{code: 2, err: err}
		}
	}
	sink := logSink(log)
	packer := curtincfg.Packer{CurtinDir: cfg.curtin}
	region, err := fakemaas.New(ctx, fakemaas.Options{StateDir: cfg.stateDir, Logger: log, Events: sink,
		DeployTimeout: cfg.deployTimeout, Packer: packer})
	if err != nil {
		return err
	}
	defer region.Close()
	checkCurtin(ctx, log, packer)

	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.listen, err)
	}
	srv := &http.Server{Handler: region.Handler(), ReadHeaderTimeout: 20 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "maasemu region listening on http://%s/MAAS/ (state %s, API key in %s)\n",
		ln.Addr(), cfg.stateDir, region.APIKeyPath())

	rackCtx, stopRack := context.WithCancel(ctx)
	defer stopRack()
	var rackDone chan error
	if cfg.rackWanted() {
		rackDone, err = startRack(rackCtx, rackCfg, &cfg, region, sink, log, stdout)
		if err != nil {
			srv.Close()
			<-errc
			return err
		}
	}

	var serveErr error
	select {
	case err := <-errc:
		serveErr = fmt.Errorf("serving the region: %w", err)
	case err := <-rackDone: // nil channel without a rack: never ready
		serveErr = fmt.Errorf("serving the rack: %w", err)
		if err == nil {
			serveErr = errors.New("serving the rack: stopped")
		}
		rackDone = nil
	case <-ctx.Done():
	}
	log.Info("shutting down")
	stopRack()
	if rackDone != nil {
		if err := <-rackDone; err != nil && serveErr == nil {
			serveErr = fmt.Errorf("serving the rack: %w", err)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; serveErr == nil && err != nil && !errors.Is(err, http.ErrServerClosed) {
		serveErr = fmt.Errorf("serving the region: %w", err)
	}
	return serveErr
}

// startRack opens the rack's host sockets, says where they are, and serves them until
// ctx is done; the returned channel gets ServeSockets' result.
func startRack(ctx context.Context, rc pxe.Config, cfg *serveConfig, region *fakemaas.Region, sink trace.Sink,
	log *slog.Logger, stdout io.Writer) (chan error, error) {
	rc.Region, rc.RegionHandler, rc.Sink, rc.Logger = region, region.Handler(), sink, log
	if !rc.RackIP.IsValid() {
		// Without DHCP the rack address is the TFTP or HTTP address when it names one;
		// otherwise each request's local address is used.
		for _, a := range []string{cfg.tftp, cfg.http} {
			if host, _, err := net.SplitHostPort(a); err == nil {
				if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
					rc.RackIP = ip.Unmap()
					break
				}
			}
		}
	}
	if len(rc.Subnets) > 0 {
		// The region owns the subnet (machines get AUTO addresses and host entries on it);
		// the rack serves what the region says.
		s := rc.Subnets[0]
		spec := fakemaas.SubnetSpec{CIDR: s.Prefix, Gateway: s.Router, RackIP: s.RackIP, DNSServers: s.DNS}
		if len(s.Pools) > 0 {
			spec.DynamicStart, spec.DynamicEnd = s.Pools[0].Start, s.Pools[0].End
		}
		if _, err := region.EnsureSubnet(ctx, spec); err != nil {
			return nil, fmt.Errorf("registering subnet %s with the region: %w", s.Prefix, err)
		}
		rs, err := region.DHCPSubnets(ctx)
		if err != nil {
			return nil, err
		}
		rc.Subnets = dhcp4.RegionSubnets(rs)
		rc.Hosts = dhcp4.RegionHosts{Region: region, Subnets: rc.Subnets}
		rc.LeaseFile = filepath.Join(cfg.stateDir, "dhcp4-leases.json")
	}
	rack, err := pxe.New(rc)
	if err != nil {
		return nil, err
	}
	socks, err := pxe.OpenHost(ctx, pxe.HostOptions{DHCPInterface: cfg.dhcpInterface, DHCPv6: cfg.dhcp6,
		TFTPAddr: cfg.tftp, HTTPAddr: cfg.http})
	if err != nil {
		return nil, fmt.Errorf("opening the rack's host sockets: %w", err)
	}
	var parts []string
	if socks.DHCP != nil {
		s := rc.Subnets[0]
		parts = append(parts, fmt.Sprintf("DHCP on %s (subnet %s, range %s-%s)", cfg.dhcpInterface, s.Prefix,
			s.Pools[0].Start, s.Pools[0].End))
	}
	if socks.DHCPv6 != nil {
		s := rc.Subnets6[0]
		parts = append(parts, fmt.Sprintf("DHCPv6 on %s (subnet %s, range %s-%s)", cfg.dhcpInterface, s.Prefix,
			s.Pools[0].Start, s.Pools[0].End))
	}
	if socks.TFTP != nil {
		parts = append(parts, "TFTP on udp "+socks.TFTP.LocalAddr().String())
	}
	if socks.HTTP != nil {
		parts = append(parts, "HTTP on http://"+socks.HTTP.Addr().String()+"/")
	}
	fmt.Fprintf(stdout, "maasemu rack serving %s\n", strings.Join(parts, ", "))
	done := make(chan error, 1)
	go func() { done <- rack.ServeSockets(ctx, socks) }()
	return done, nil
}

// interfaceSubnets is the rack configuration for DHCP on iface: its first IPv4 address
// is the rack address and its subnet the DHCPv4 subnet (dynamic range r, or the upper half
// of the subnet); with v6, its first IPv6 address outside fe80::/10 does the same for
// DHCPv6 (range ::100-::1ff of the prefix).
func interfaceSubnets(iface string, v6 bool, r string) (pxe.Config, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return pxe.Config{}, fmt.Errorf("--dhcp-interface %s: %w", iface, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return pxe.Config{}, fmt.Errorf("--dhcp-interface %s: reading its addresses: %w", iface, err)
	}
	var p4, p6 netip.Prefix
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		ones, _ := ipn.Mask.Size()
		switch {
		case ip.Is4() && !p4.IsValid():
			p4 = netip.PrefixFrom(ip, ones)
		case ip.Is6() && !ip.IsLinkLocalUnicast() && !p6.IsValid():
			p6 = netip.PrefixFrom(ip, ones)
		}
	}
	if !p4.IsValid() {
		return pxe.Config{}, fmt.Errorf("--dhcp-interface %s has no IPv4 address: the rack needs one on the subnet it serves", iface)
	}
	if p4.Bits() > 30 {
		return pxe.Config{}, fmt.Errorf("--dhcp-interface %s: subnet %s is too small to lease addresses from (at most /30)", iface, p4.Masked())
	}
	pool, err := dhcpRange(p4, r)
	if err != nil {
		return pxe.Config{}, err
	}
	rc := pxe.Config{RackIP: p4.Addr(), Subnets: []dhcp4.Subnet{{Prefix: p4.Masked(), RackIP: p4.Addr(), Pools: []dhcp4.Range{pool},
		DNS: []netip.Addr{p4.Addr()}, DomainName: "maas"}}}
	if v6 {
		if !p6.IsValid() {
			return pxe.Config{}, fmt.Errorf("--dhcp6: --dhcp-interface %s has no IPv6 address outside fe80::/10 to serve DHCPv6 for", iface)
		}
		if p6.Bits() > 120 {
			return pxe.Config{}, fmt.Errorf("--dhcp6: --dhcp-interface %s: prefix %s is too small for the range ::100-::1ff (at most /120)", iface, p6.Masked())
		}
		base := p6.Masked().Addr().As16()
		start, end := base, base
		start[14], start[15] = 1, 0x00
		end[14], end[15] = 1, 0xff
		rc.Subnets6 = []dhcp6.Subnet{{Prefix: p6.Masked(), RackIP: p6.Addr(),
			Pools: []dhcp6.Range{{Start: netip.AddrFrom16(start), End: netip.AddrFrom16(end)}}}}
	}
	return rc, nil
}

// dhcpRange parses --dhcp-range START-END within p (p.Addr() is the rack's address), or
// returns the half of p that does not hold the rack's address (without the network and
// broadcast addresses) when r is empty.
func dhcpRange(p netip.Prefix, r string) (dhcp4.Range, error) {
	m := p.Masked()
	if r == "" {
		base := m.Addr().As4()
		u := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
		n := uint32(1) << (32 - m.Bits())
		at := func(v uint32) netip.Addr {
			return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		}
		upper := dhcp4.Range{Start: at(u + n/2), End: at(u + n - 2)}
		if p.Addr().Less(upper.Start) {
			return upper, nil
		}
		return dhcp4.Range{Start: at(u + 1), End: at(u + n/2 - 1)}, nil
	}
	a, b, ok := strings.Cut(r, "-")
	start, err1 := netip.ParseAddr(strings.TrimSpace(a))
	end, err2 := netip.ParseAddr(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || !start.Is4() || !end.Is4() {
		return dhcp4.Range{}, fmt.Errorf("--dhcp-range %q: want START-END, two IPv4 addresses", r)
	}
	if end.Less(start) {
		return dhcp4.Range{}, fmt.Errorf("--dhcp-range %q: the end comes before the start", r)
	}
	if !m.Contains(start) || !m.Contains(end) {
		return dhcp4.Range{}, fmt.Errorf("--dhcp-range %q: not inside the interface's subnet %s", r, m)
	}
	if p.Addr().Compare(start) >= 0 && p.Addr().Compare(end) <= 0 {
		return dhcp4.Range{}, fmt.Errorf("--dhcp-range %q: contains the rack's own address %s", r, p.Addr())
	}
	return dhcp4.Range{Start: start, End: end}, nil
}

// checkCurtin tells, at start, whether the curtin user-data can be served: the packer is
// tried on a one-document configuration.
func checkCurtin(ctx context.Context, log *slog.Logger, p curtincfg.Packer) {
	_, err := p.Pack(ctx, curtincfg.InstallerSpec{Configs: []string{"# maasemu serve: curtin check\n"}, Args: []string{"cp:///"}})
	switch {
	case err == nil:
		log.Info("curtin is available: deploying ephemerals get curtin's pack as their curtin user-data, as from MAAS 3.7",
			"curtin", p.CurtinDir)
	case errors.Is(err, curtincfg.ErrCurtinUnavailable):
		log.Warn("real curtin is unavailable: the curtin user-data will be refused (404, with a node event), so a real Ubuntu ephemeral installs nothing; maasemu's own agent is unaffected",
			"err", err)
	default:
		log.Warn("curtin's pack_install does not work: the curtin user-data will fail (500)", "err", err)
	}
}
