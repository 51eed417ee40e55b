// Package lab wires a whole MAAS deployment path together: the fake region, the fake rack
// on a userspace virtual network, and machines on a driver (simulated or libvirt VMs), and
// follows deployments to a verdict with a timeline and a diagnosis.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/canonical/gomaasclient/client"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/harness/libvirt"
	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/harness/sim"
	"github.com/maasemu/maasemu/harness/timeline"
	"github.com/maasemu/maasemu/harness/vnet"
	"github.com/maasemu/maasemu/harness/vnet/pcap"
	"github.com/maasemu/maasemu/pxe"
	"github.com/maasemu/maasemu/pxe/dhcp4"
	"github.com/maasemu/maasemu/trace"
)

// Drivers.
const (
	DriverSim     = "sim"
	DriverLibvirt = "libvirt"
)

// Config configures a lab.
type Config struct {
	// Dir holds everything the lab writes: region state, machine disks, events.jsonl and
	// network.pcap. Required; the caller removes it.
	Dir string
	// Name names the lab (libvirt domains are maasemu-<Name>-<machine>); "" means "lab".
	Name string
	// Subnet is the virtual subnet; the rack takes its first address. The zero value is
	// 198.18.0.0/24.
	Subnet netip.Prefix
	// Driver is DriverSim or DriverLibvirt.
	Driver string
	// LibvirtURI for the libvirt driver; "" means qemu:///system.
	LibvirtURI string
	// AgentPath is the maasemu-agent binary sims put on PATH for `curtin in-target`.
	AgentPath string
	// CurtinDir is a real curtin tree for hooks that import curtin.
	CurtinDir string
	// Budgets judge each phase; nil means timeline.VMBudgets or SimBudgets by driver.
	Budgets timeline.Budgets
	// Events receives every event too (besides events.jsonl).
	Events trace.Sink
	Logger *slog.Logger
	// Seed makes network faults reproducible.
	Seed uint64
}

// Lab is a running region, rack, network and machine driver.
type Lab struct {
	cfg Config
	log *slog.Logger

	Recorder *trace.Recorder
	Region   *fakemaas.Region
	Switch   *vnet.Switch
	RackNIC  *vnet.Stack
	Rack     *pxe.Rack
	Driver   machine.Driver
	// APIURL is the region's API on the host's loopback (http://127.0.0.1:port/MAAS/).
	APIURL string
	Client *client.Client
	RackIP netip.Addr

	eventsFile *os.File
	pcapW      *pcap.Writer
	apiSrv     *http.Server
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	closers    []func() error

	mu       sync.Mutex
	machines map[string]*Machine

	closeOnce sync.Once
	closeErr  error
}

// Start brings a lab up. Close tears everything down.
func Start(ctx context.Context, cfg Config) (l *Lab, err error) {
	if cfg.Dir == "" {
		return nil, errors.New("lab: Config.Dir is required")
	}
	if cfg.Name == "" {
		cfg.Name = "lab"
	}
	if !cfg.Subnet.IsValid() {
		cfg.Subnet = vnet.DefaultSubnet
	}
	if cfg.Driver == "" {
		cfg.Driver = DriverSim
	}
	if cfg.Driver != DriverSim && cfg.Driver != DriverLibvirt {
		return nil, fmt.Errorf("lab: driver %q: want %q or %q", cfg.Driver, DriverSim, DriverLibvirt)
	}
	if cfg.Budgets == nil {
		if cfg.Driver == DriverSim {
			cfg.Budgets = timeline.SimBudgets()
		} else {
			cfg.Budgets = timeline.VMBudgets()
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	rackAddr := cfg.Subnet.Masked().Addr().Next()
	l = &Lab{cfg: cfg, log: cfg.Logger, machines: map[string]*Machine{}, RackIP: rackAddr}
	defer func() {
		if err != nil {
			_ = l.Close()
		}
	}()
	l.eventsFile, err = os.Create(filepath.Join(cfg.Dir, "events.jsonl"))
	if err != nil {
		return nil, err
	}
	l.Recorder = trace.NewRecorder(l.eventsFile)
	sink := trace.Tee(l.Recorder, cfg.Events)
	rctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel

	// The region, and its API on the host's loopback for clients.
	l.Region, err = fakemaas.New(rctx, fakemaas.Options{StateDir: filepath.Join(cfg.Dir, "region"), Events: sink, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	// Serial consoles, as MAAS admins set for VMs and lab machines: the kernel options after
	// "---" reach the ephemeral and, carried over by curtin, the installed system.
	if err := l.Region.SetConfig("kernel_opts", KernelOpts); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l.apiSrv = &http.Server{Handler: l.Region.Handler(), ReadHeaderTimeout: 30 * time.Second}
	l.serve(func() error { return l.apiSrv.Serve(ln) })
	l.APIURL = "http://" + ln.Addr().String() + "/MAAS/"
	l.Client, err = client.GetClient(l.APIURL, l.Region.AdminAPIKey(), "2.0")
	if err != nil {
		return nil, fmt.Errorf("lab: API client: %w", err)
	}

	// The network and the rack on it.
	l.pcapW, err = pcap.Create(filepath.Join(cfg.Dir, "network.pcap"), pcap.Options{})
	if err != nil {
		return nil, err
	}
	l.Switch, err = vnet.NewSwitch(vnet.Config{Name: cfg.Name, Capture: l.pcapW, Trace: sink, Logger: cfg.Logger, Seed: cfg.Seed})
	if err != nil {
		return nil, err
	}
	l.RackNIC, err = l.Switch.NewStack(vnet.StackConfig{Name: "rack", Addrs: []netip.Prefix{netip.PrefixFrom(rackAddr, cfg.Subnet.Bits())}})
	if err != nil {
		return nil, err
	}
	// The lab's subnet is a MAAS-managed one: the region owns it (machines get AUTO
	// addresses on it, with host entries) and the rack's DHCP serves what the region says.
	pool := poolOf(cfg.Subnet)
	if _, err := l.Region.EnsureSubnet(ctx, fakemaas.SubnetSpec{CIDR: cfg.Subnet.Masked(), Gateway: rackAddr,
		RackIP: rackAddr, DynamicStart: pool.Start, DynamicEnd: pool.End, DNSServers: []netip.Addr{rackAddr}}); err != nil {
		return nil, fmt.Errorf("lab: subnet %s: %w", cfg.Subnet, err)
	}
	rs, err := l.Region.DHCPSubnets(ctx)
	if err != nil {
		return nil, err
	}
	subnets := dhcp4.RegionSubnets(rs)
	l.Rack, err = pxe.New(pxe.Config{
		Region:        l.Region,
		RegionHandler: l.Region.Handler(),
		RackIP:        rackAddr,
		Subnets:       subnets,
		Hosts:         dhcp4.RegionHosts{Region: l.Region, Subnets: subnets},
		Sink:          sink,
		Logger:        cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	dconn, err := l.RackNIC.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 67), vnet.UDPOptions{Broadcast: true})
	if err != nil {
		return nil, err
	}
	l.serve(func() error { return l.Rack.ServeDHCP(rctx, dconn) })
	tconn, err := l.RackNIC.ListenUDP(netip.AddrPortFrom(rackAddr, 69), vnet.UDPOptions{})
	if err != nil {
		return nil, err
	}
	l.serve(func() error { return l.Rack.ServeTFTP(rctx, tconn) })
	for port, h := range map[uint16]http.Handler{5248: l.Rack.HTTPHandler(), 5240: l.Region.Handler()} {
		ln, err := l.RackNIC.ListenTCP(netip.AddrPortFrom(rackAddr, port))
		if err != nil {
			return nil, err
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
		l.serve(func() error { return srv.Serve(ln) })
		l.closers = append(l.closers, srv.Close)
	}

	// Machines.
	switch cfg.Driver {
	case DriverSim:
		d, err := sim.New(sim.Config{Switch: l.Switch, WorkDir: filepath.Join(cfg.Dir, "machines"), Events: sink,
			Logger: cfg.Logger, AgentPath: cfg.AgentPath, CurtinDir: cfg.CurtinDir})
		if err != nil {
			return nil, err
		}
		l.Driver = d
		l.closers = append(l.closers, d.Close)
		l.Region.RegisterPowerType(PowerTypeSim, &simPower{lab: l})
	case DriverLibvirt:
		if err := libvirt.EnsureDaemons(ctx); err != nil {
			return nil, fmt.Errorf("lab: libvirt: %w", err)
		}
		d, err := libvirt.New(rctx, libvirt.Options{URI: cfg.LibvirtURI, Lab: cfg.Name, WorkDir: filepath.Join(cfg.Dir, "machines"),
			Sink: sink, Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("lab: libvirt: %w", err)
		}
		l.Driver = d
		l.closers = append(l.closers, d.Close)
		// Leftovers of a crashed run of a lab with this name would block its machines.
		if gone, err := d.Sweep(ctx, d.Prefix()); err != nil {
			l.log.Warn("lab: sweeping leftover domains", "err", err)
		} else if len(gone) > 0 {
			l.log.Info("lab: removed leftover domains", "domains", gone)
		}
		l.Region.RegisterPowerType("virsh", libvirt.NewVirshPower(sink))
	}
	return l, nil
}

// KernelOpts is the lab's MAAS kernel_opts setting: the consoles the harness reads.
const KernelOpts = "console=tty0 console=ttyS0,115200"

// PowerTypeSim is the power type of simulated machines: a fake, named so, whose
// power_id is the machine's name in this lab.
const PowerTypeSim = "maasemu-sim"

func (l *Lab) serve(f func() error) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, context.Canceled) {
			l.log.Warn("lab: server ended", "err", err)
		}
	}()
}

// poolOf is the dynamic range: the upper half of the subnet, as a MAAS admin often sets it.
func poolOf(p netip.Prefix) dhcp4.Range {
	p = p.Masked()
	first := p.Addr()
	n := uint32(1) << (32 - p.Bits())
	base := first.As4()
	u := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	at := func(v uint32) netip.Addr {
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	return dhcp4.Range{Start: at(u + n/2), End: at(u + n - 2)}
}

// Close destroys every machine, stops every server and writes the capture out. Calling it
// again returns the first call's result.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.close() })
	return l.closeErr
}

func (l *Lab) close() error {
	var errs []error
	l.mu.Lock()
	ms := make([]*Machine, 0, len(l.machines))
	for _, m := range l.machines {
		ms = append(ms, m)
	}
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, m := range ms {
		errs = append(errs, m.m.Destroy(ctx))
	}
	for i := len(l.closers) - 1; i >= 0; i-- {
		errs = append(errs, l.closers[i]())
	}
	if l.apiSrv != nil {
		errs = append(errs, l.apiSrv.Close())
	}
	if l.cancel != nil {
		l.cancel()
	}
	if l.Switch != nil {
		errs = append(errs, l.Switch.Close())
	}
	l.wg.Wait()
	if l.Region != nil {
		errs = append(errs, l.Region.Close())
	}
	if l.pcapW != nil {
		errs = append(errs, l.pcapW.Close())
	}
	if l.eventsFile != nil {
		errs = append(errs, l.eventsFile.Close())
	}
	var out []error
	for _, e := range errs {
		if e != nil && !errors.Is(e, http.ErrServerClosed) && !errors.Is(e, net.ErrClosed) {
			out = append(out, e)
		}
	}
	return errors.Join(out...)
}

// simPower powers simulated machines for the region.
type simPower struct{ lab *Lab }

func (p *simPower) machine(params fakemaas.PowerParams) (machine.Machine, error) {
	name := params["power_id"]
	p.lab.mu.Lock()
	defer p.lab.mu.Unlock()
	m, ok := p.lab.machines[name]
	if !ok {
		return nil, fmt.Errorf("no simulated machine %q in this lab", name)
	}
	return m.m, nil
}

func (p *simPower) PowerOn(ctx context.Context, params fakemaas.PowerParams) error {
	m, err := p.machine(params)
	if err != nil {
		return err
	}
	return m.PowerOn(ctx)
}

func (p *simPower) PowerOff(ctx context.Context, params fakemaas.PowerParams) error {
	m, err := p.machine(params)
	if err != nil {
		return err
	}
	return m.PowerOff(ctx)
}

func (p *simPower) PowerQuery(ctx context.Context, params fakemaas.PowerParams) (string, error) {
	m, err := p.machine(params)
	if err != nil {
		return "error", err
	}
	s, err := m.PowerState(ctx)
	return string(s), err
}

var _ io.Closer = (*Lab)(nil)
