// Package sim is the simulated machine driver: in-process machines that network boot over
// the virtual wire (real DHCP, TFTP and HTTP against the rack), follow the served boot
// configs as pxelinux and GRUB would, run the installer library against sparse disk-image
// files, and first-boot from what is on their disks. The VM is for truth; sim is for speed
// and scale, and says where it models instead of running (see the console lines it prints).
package sim

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/harness/vnet"
	"github.com/maasemu/maasemu/trace"
)

// Config configures the driver.
type Config struct {
	// Switch is the virtual wire the machines' NICs attach to. Required.
	Switch *vnet.Switch
	// WorkDir holds each machine's disks, console log and scratch space. Required.
	WorkDir string
	// Events receives machine lifecycle and console events.
	Events trace.Sink
	Logger *slog.Logger
	// AgentPath is the maasemu-agent binary the installer puts on PATH as `curtin` for
	// in-target commands; empty uses the installer's shell shim.
	AgentPath string
	// CurtinDir is a real curtin tree for hooks that import curtin.
	CurtinDir string
	// RetryDelay is how long firmware waits before network booting again after nothing
	// booted; 0 means 2 s.
	RetryDelay time.Duration
	// DHCPTimeout bounds one DHCP attempt; 0 means 10 s (firmware retries after it).
	DHCPTimeout time.Duration
	// MaxInstalls is how many machines run their ephemeral's install at once; the others
	// wait at that point, as they would on a host with that many free cores. 0 means
	// twice the number of CPUs.
	MaxInstalls int
}

// Driver creates simulated machines.
type Driver struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	machines map[string]*Machine
	installs chan struct{} // a slot per ephemeral install running
}

var _ machine.Driver = (*Driver)(nil)

// New returns a driver.
func New(cfg Config) (*Driver, error) {
	if cfg.Switch == nil {
		return nil, errors.New("sim: Config.Switch is required")
	}
	if cfg.WorkDir == "" {
		return nil, errors.New("sim: Config.WorkDir is required")
	}
	if cfg.Events == nil {
		cfg.Events = trace.Nop{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 2 * time.Second
	}
	if cfg.DHCPTimeout <= 0 {
		cfg.DHCPTimeout = 10 * time.Second
	}
	if cfg.MaxInstalls <= 0 {
		cfg.MaxInstalls = 2 * runtime.NumCPU()
	}
	return &Driver{cfg: cfg, log: cfg.Logger, machines: map[string]*Machine{}, installs: make(chan struct{}, cfg.MaxInstalls)}, nil
}

// Name is "sim".
func (d *Driver) Name() string { return "sim" }

// Create makes a powered-off machine with blank sparse disks.
func (d *Driver) Create(ctx context.Context, spec machine.Spec) (machine.Machine, error) {
	if spec.Name == "" || strings.ContainsAny(spec.Name, "/\\ \x00") {
		return nil, fmt.Errorf("sim: machine name %q: want a non-empty name without slashes or spaces", spec.Name)
	}
	if len(spec.NICs) == 0 {
		return nil, fmt.Errorf("sim: machine %s: at least one NIC is needed to network boot", spec.Name)
	}
	if len(spec.Disks) == 0 {
		return nil, fmt.Errorf("sim: machine %s: at least one disk is needed to deploy", spec.Name)
	}
	if spec.Firmware == "" {
		spec.Firmware = machine.BIOS
	}
	if spec.Firmware != machine.BIOS && spec.Firmware != machine.UEFI {
		return nil, fmt.Errorf("sim: machine %s: firmware %q: want bios or uefi", spec.Name, spec.Firmware)
	}
	for i, n := range spec.NICs {
		if len(n.MAC) != 6 {
			return nil, fmt.Errorf("sim: machine %s: NIC %d has no 6-byte MAC", spec.Name, i)
		}
	}
	d.mu.Lock()
	if _, dup := d.machines[spec.Name]; dup {
		d.mu.Unlock()
		return nil, fmt.Errorf("sim: machine %s already exists", spec.Name)
	}
	m := &Machine{d: d, spec: spec, dir: filepath.Join(d.cfg.WorkDir, spec.Name), state: machine.PowerOff}
	d.machines[spec.Name] = m
	d.mu.Unlock()

	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		d.forget(m)
		return nil, err
	}
	for i, disk := range spec.Disks {
		if disk.SizeBytes < 64<<20 {
			d.forget(m)
			_ = os.RemoveAll(m.dir)
			return nil, fmt.Errorf("sim: machine %s: disk %d is %d bytes: want at least 64 MiB", spec.Name, i, disk.SizeBytes)
		}
		p := filepath.Join(m.dir, fmt.Sprintf("disk%d.img", i))
		f, err := os.Create(p)
		if err == nil {
			err = f.Truncate(disk.SizeBytes)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			d.forget(m)
			_ = os.RemoveAll(m.dir)
			return nil, fmt.Errorf("sim: machine %s: creating disk %d: %w", spec.Name, i, err)
		}
		m.disks = append(m.disks, p)
	}
	m.consolePath = filepath.Join(m.dir, "console.log")
	if err := os.WriteFile(m.consolePath, nil, 0o644); err != nil {
		d.forget(m)
		return nil, err
	}
	m.emit(trace.KindMachineCreated, "simulated machine created", map[string]any{"driver": "sim", "firmware": string(spec.Firmware)})
	return m, nil
}

func (d *Driver) forget(m *Machine) {
	d.mu.Lock()
	delete(d.machines, m.spec.Name)
	d.mu.Unlock()
}

// Close destroys every machine the driver still has.
func (d *Driver) Close() error {
	d.mu.Lock()
	ms := make([]*Machine, 0, len(d.machines))
	for _, m := range d.machines {
		ms = append(ms, m)
	}
	d.mu.Unlock()
	var errs []error
	for _, m := range ms {
		errs = append(errs, m.Destroy(context.Background()))
	}
	return errors.Join(errs...)
}

// Machine is one simulated machine.
type Machine struct {
	d           *Driver
	spec        machine.Spec
	dir         string
	disks       []string
	consolePath string

	mu        sync.Mutex
	state     machine.PowerState
	cancel    context.CancelFunc
	done      chan struct{}
	destroyed bool
}

var _ machine.Machine = (*Machine)(nil)

// Name returns the machine's name.
func (m *Machine) Name() string { return m.spec.Name }

// DiskPaths returns the disk image files.
func (m *Machine) DiskPaths() []string { return append([]string(nil), m.disks...) }

// ConsolePath returns the console log.
func (m *Machine) ConsolePath() string { return m.consolePath }

// PowerOn starts the machine; it network boots. Powering on a running machine does nothing.
func (m *Machine) PowerOn(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.destroyed {
		return fmt.Errorf("sim: machine %s is destroyed", m.spec.Name)
	}
	if m.state == machine.PowerOn {
		return nil
	}
	rctx, cancel := context.WithCancel(context.Background())
	m.cancel, m.done, m.state = cancel, make(chan struct{}), machine.PowerOn
	go m.run(rctx, m.done)
	m.emit(trace.KindMachineStarted, "powered on", map[string]any{"driver": "sim"})
	return nil
}

// PowerOff stops the machine at once, as pulling the plug does.
func (m *Machine) PowerOff(ctx context.Context) error {
	m.mu.Lock()
	cancel, done := m.cancel, m.done
	wasOn := m.state == machine.PowerOn
	m.cancel, m.done, m.state = nil, nil, machine.PowerOff
	m.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if wasOn {
		m.emit(trace.KindMachineStopped, "powered off", map[string]any{"driver": "sim", "detail": "power-off"})
	}
	return nil
}

// PowerState reports on or off.
func (m *Machine) PowerState(context.Context) (machine.PowerState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state, nil
}

// Destroy powers the machine off and removes its disks and console.
func (m *Machine) Destroy(ctx context.Context) error {
	err := m.PowerOff(ctx)
	m.mu.Lock()
	already := m.destroyed
	m.destroyed = true
	m.mu.Unlock()
	if already {
		return err
	}
	m.d.forget(m)
	if rerr := os.RemoveAll(m.dir); rerr != nil {
		err = errors.Join(err, rerr)
	}
	m.emit(trace.KindMachineDestroyed, "destroyed", map[string]any{"driver": "sim"})
	return err
}

// halted records that the machine powered itself off (power_state poweroff, halt).
func (m *Machine) halted(done chan struct{}) {
	m.mu.Lock()
	if m.done == done {
		m.state, m.cancel, m.done = machine.PowerOff, nil, nil
	}
	m.mu.Unlock()
	m.emit(trace.KindMachineStopped, "powered itself off", map[string]any{"driver": "sim", "detail": "shutdown"})
}

func (m *Machine) mac() net.HardwareAddr { return m.bootNIC().MAC }

func (m *Machine) bootNIC() machine.NIC {
	for _, n := range m.spec.NICs {
		if n.Boot {
			return n
		}
	}
	return m.spec.NICs[0]
}

// uuid is the machine's stable SMBIOS UUID, as option 97 and pxelinux.cfg/<uuid> use it.
func (m *Machine) uuid() [16]byte {
	sum := sha256.Sum256([]byte("maasemu-sim:" + m.spec.Name))
	var u [16]byte
	copy(u[:], sum[:16])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

func (m *Machine) emit(kind, msg string, attrs map[string]any) {
	m.d.cfg.Events.Emit(trace.Event{Source: trace.SourceMachine, Kind: kind, MAC: strings.ToLower(m.mac().String()),
		Message: m.spec.Name + ": " + msg, Attrs: attrs})
}

// console writes lines to the console log and to the trace, as a serial console would.
type console struct {
	m   *Machine
	mu  sync.Mutex
	f   *os.File
	buf []byte
}

func (m *Machine) openConsole() (*console, error) {
	f, err := os.OpenFile(m.consolePath, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	return &console{m: m, f: f}, nil
}

// Write implements io.Writer: complete lines become console events.
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.f.Write(p); err != nil {
		return 0, err
	}
	c.buf = append(c.buf, p...)
	for {
		i := strings.IndexByte(string(c.buf), '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(c.buf[:i]), "\r")
		c.buf = c.buf[i+1:]
		c.m.d.cfg.Events.Emit(trace.Event{Source: trace.SourceConsole, Kind: trace.KindConsoleLine,
			MAC: strings.ToLower(c.m.mac().String()), Message: line})
	}
	return len(p), nil
}

func (c *console) say(format string, args ...any) {
	fmt.Fprintf(c, format+"\n", args...)
}

func (c *console) Close() error { return c.f.Close() }

var _ io.Writer = (*console)(nil)
