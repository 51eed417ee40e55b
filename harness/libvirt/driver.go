package libvirt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/trace"
)

// DomainPrefix starts the name of every domain maasemu defines.
const DomainPrefix = "maasemu-"

// cleanupTimeout bounds the cleanup that runs after a context was cancelled.
const cleanupTimeout = 2 * time.Minute

// Options configure a Driver. The zero value works for root on a host with libvirtd.
type Options struct {
	// URI of the libvirt daemon; "" means qemu:///system. Creating machines needs a local
	// daemon (the driver writes disks and reads the console on this host).
	URI string
	// Lab names this set of machines: domains are "maasemu-<Lab>-<machine>". "" means "lab".
	Lab string
	// WorkDir holds one directory per machine (disks, NVRAM, console). "" means
	// $MAASEMU_CACHE/libvirt/<Lab> ($MAASEMU_CACHE defaults to ~/.cache/maasemu).
	WorkDir string
	// Accel forces an accelerator; "" means KVM where it works (found by trying, and
	// remembered in CacheDir), else TCG.
	Accel Accel
	// CacheDir keeps the KVM verdict; "" means $MAASEMU_CACHE.
	CacheDir string
	// UEFI firmware; the zero value means FindUEFIFirmware.
	UEFI UEFIFirmware
	// RunAs is the DAC label QEMU runs with ("+UID:+GID"). "" means the calling user's
	// uid and gid on a local qemu:///system (so QEMU can use the work directory wherever
	// the caller can, without relabelling); "-" means libvirt's configured default
	// (Debian: libvirt-qemu, which needs the work directory reachable by that user).
	RunAs string
	// Sink receives machine lifecycle and console events; nil drops them.
	Sink trace.Sink
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Dial opens libvirt connections; nil means Dial. Tests pass a fake.
	Dial DialFunc
	// ConsolePoll is how often console files are read; 0 means 50ms.
	ConsolePoll time.Duration
}

var labRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`)

// Driver creates libvirt VMs (machine.Driver). It keeps two connections: one for
// commands and one, long-lived, for lifecycle events, which it fans out to its machines
// (go-libvirt's event streams are ended only by disconnecting, never by cancelling their
// context: digitalocean/go-libvirt#191).
type Driver struct {
	opts   Options
	uri    *url.URL
	local  bool
	prefix string
	api    API
	events API
	sink   trace.Sink
	log    *slog.Logger

	mu       sync.Mutex
	machines map[string]*VM // by domain name, including ones being created
	closed   bool
	creating sync.WaitGroup     // Creates under way, which Close waits for
	life     context.Context    // cancelled when Close starts: ends Creates under way
	endLife  context.CancelFunc //

	accelMu     sync.Mutex
	accel       Accel
	accelReason string

	eventsDone chan struct{}
	stopWatch  func() bool
	closeOnce  sync.Once
	closeErr   error
	done       chan struct{}
}

var _ machine.Driver = (*Driver)(nil)

// New connects to libvirt and returns a driver. When ctx is cancelled (Ctrl-C), the
// driver closes itself, destroying every machine it created; Done reports when that
// has finished.
func New(ctx context.Context, opts Options) (*Driver, error) {
	if opts.URI == "" {
		opts.URI = URISystem
	}
	if opts.Lab == "" {
		opts.Lab = "lab"
	}
	if !labRE.MatchString(opts.Lab) {
		return nil, fmt.Errorf("libvirt driver: lab name %q: must be 1-32 characters of A-Z a-z 0-9 _ . - starting with a letter or digit", opts.Lab)
	}
	switch opts.Accel {
	case "", AccelKVM, AccelTCG:
	default:
		return nil, fmt.Errorf("libvirt driver: accel %q: must be %q, %q or empty (detect)", opts.Accel, AccelKVM, AccelTCG)
	}
	u, err := ParseURI(opts.URI)
	if err != nil {
		return nil, fmt.Errorf("libvirt driver: %w", err)
	}
	if opts.WorkDir == "" {
		opts.WorkDir = filepath.Join(CacheRoot(), "libvirt", opts.Lab)
	}
	if opts.WorkDir, err = filepath.Abs(opts.WorkDir); err != nil {
		return nil, fmt.Errorf("libvirt driver: work dir: %w", err)
	}
	if opts.CacheDir == "" {
		opts.CacheDir = CacheRoot()
	}
	local := isLocal(u)
	if opts.RunAs == "" && local && u.Path == "/system" {
		opts.RunAs = fmt.Sprintf("+%d:+%d", os.Getuid(), os.Getgid())
	}
	if opts.RunAs == "-" {
		opts.RunAs = ""
	}
	if opts.Dial == nil {
		opts.Dial = Dial
	}
	d := &Driver{
		opts:       opts,
		uri:        u,
		local:      local,
		prefix:     DomainPrefix + opts.Lab + "-",
		sink:       trace.OrNop(opts.Sink),
		log:        opts.Logger,
		machines:   map[string]*VM{},
		eventsDone: make(chan struct{}),
		done:       make(chan struct{}),
	}
	d.life, d.endLife = context.WithCancel(context.Background())
	if d.log == nil {
		d.log = slog.Default()
	}
	d.log = d.log.With("driver", "libvirt", "uri", opts.URI, "lab", opts.Lab)
	if d.api, err = opts.Dial(ctx, opts.URI); err != nil {
		return nil, fmt.Errorf("libvirt driver: %w", err)
	}
	d.startEvents(ctx)
	d.stopWatch = context.AfterFunc(ctx, func() {
		d.log.Info("context cancelled: removing every machine of the lab")
		_ = d.Close()
	})
	return d, nil
}

// CacheRoot is $MAASEMU_CACHE, else ~/.cache/maasemu.
func CacheRoot() string {
	if d := os.Getenv("MAASEMU_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "maasemu")
	}
	return filepath.Join(os.TempDir(), "maasemu-cache")
}

// Name is "libvirt".
func (d *Driver) Name() string { return "libvirt" }

// Prefix is the prefix of every domain name of this driver's lab: "maasemu-<lab>-".
func (d *Driver) Prefix() string { return d.prefix }

// WorkDir is the directory holding the machines' files.
func (d *Driver) WorkDir() string { return d.opts.WorkDir }

// DomainName is the libvirt domain name of the named machine.
func (d *Driver) DomainName(machineName string) string { return d.prefix + machineName }

// Done is closed when the driver has closed (by Close or by the cancellation of New's
// context) and removed its machines.
func (d *Driver) Done() <-chan struct{} { return d.done }

// Machines returns the machines alive now.
func (d *Driver) Machines() []*VM {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*VM
	for _, v := range d.machines {
		if v.ready {
			out = append(out, v)
		}
	}
	return out
}

// Create defines a powered-off VM for spec: a work directory with raw sparse disks, an
// NVRAM copy for UEFI and the console file, and the libvirt domain. On any failure or
// cancellation nothing of it is left.
func (d *Driver) Create(ctx context.Context, spec machine.Spec) (machine.Machine, error) {
	v, err := d.create(ctx, spec, "", d.sink)
	if err != nil {
		return nil, err
	}
	return v, nil
}

// CreateVM is Create returning the concrete *VM.
func (d *Driver) CreateVM(ctx context.Context, spec machine.Spec) (*VM, error) {
	return d.create(ctx, spec, "", d.sink)
}

func (d *Driver) create(ctx context.Context, spec machine.Spec, accel Accel, sink trace.Sink) (_ *VM, err error) {
	spec, err = normalizeSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("libvirt: %w", err)
	}
	if !d.local {
		return nil, fmt.Errorf("libvirt: machine %q: creating machines needs a local libvirt daemon: %s is remote, and the disks and console must be on the daemon's host", spec.Name, d.opts.URI)
	}
	domain := d.prefix + spec.Name
	v := &VM{
		d: d, name: spec.Name, domain: domain, spec: spec, sink: sink,
		dir: filepath.Join(d.opts.WorkDir, domain), mac: bootNIC(spec),
	}
	// Reserve the name.
	d.mu.Lock()
	switch {
	case d.closed:
		d.mu.Unlock()
		return nil, fmt.Errorf("libvirt: machine %q: the driver is closed", spec.Name)
	case d.machines[domain] != nil:
		d.mu.Unlock()
		return nil, fmt.Errorf("libvirt: machine %q: already exists in lab %q", spec.Name, d.opts.Lab)
	}
	d.machines[domain] = v
	d.creating.Add(1)
	d.mu.Unlock()
	defer d.creating.Done()
	// Close ends a Create under way (and waits for its rollback).
	callerCtx := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(d.life, cancel)()

	defined := false
	defer func() {
		if err != nil {
			v.rollback(ctx, defined)
			if d.life.Err() != nil && callerCtx.Err() == nil && !errors.Is(err, errClosedDuringCreate) {
				err = fmt.Errorf("libvirt: machine %q: %w: %w", spec.Name, errClosedDuringCreate, err)
			}
		}
	}()

	if accel == "" {
		if accel, err = d.Accel(ctx); err != nil {
			return nil, err
		}
	}
	if _, lerr := d.api.DomainLookupByName(domain); lerr == nil {
		return nil, fmt.Errorf("libvirt: machine %q: domain %s already exists (a leftover of an earlier run? Sweep(ctx, %q) removes it)", spec.Name, domain, d.prefix)
	} else if !isNoDomain(lerr) {
		return nil, fmt.Errorf("libvirt: machine %q: looking up domain %s: %w", spec.Name, domain, lerr)
	}
	uefi := d.opts.UEFI
	if spec.Firmware == machine.UEFI {
		if uefi == (UEFIFirmware{}) {
			if uefi, err = FindUEFIFirmware(); err != nil {
				return nil, fmt.Errorf("libvirt: machine %q: %w", spec.Name, err)
			}
		} else if err = uefi.check(); err != nil {
			return nil, fmt.Errorf("libvirt: machine %q: %w", spec.Name, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("libvirt: machine %q: %w", spec.Name, err)
	}

	if err := os.MkdirAll(d.opts.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("libvirt: machine %q: work dir: %w", spec.Name, err)
	}
	if err := os.Mkdir(v.dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("libvirt: machine %q: work dir %s already exists (a leftover of an earlier run? Sweep(ctx, %q) removes it)", spec.Name, v.dir, d.prefix)
		}
		return nil, fmt.Errorf("libvirt: machine %q: work dir: %w", spec.Name, err)
	}
	v.dirCreated = true
	v.console = filepath.Join(v.dir, consoleFileName)
	for i, disk := range spec.Disks {
		p := filepath.Join(v.dir, diskFileName(i))
		if err := createSparse(p, disk.SizeBytes); err != nil {
			return nil, fmt.Errorf("libvirt: machine %q: disk %d: %w", spec.Name, i, err)
		}
		v.disks = append(v.disks, p)
	}
	if spec.Firmware == machine.UEFI {
		v.nvram = filepath.Join(v.dir, nvramFileName)
		if err := copyFile(v.nvram, uefi.Vars, 0o600); err != nil {
			return nil, fmt.Errorf("libvirt: machine %q: NVRAM copy of %s: %w", spec.Name, uefi.Vars, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("libvirt: machine %q: %w", spec.Name, err)
	}
	v.xml, err = domainXML(domainConfig{
		Domain: domain, Lab: d.opts.Lab, Spec: spec, Accel: accel, Dir: v.dir,
		Disks: v.disks, Console: v.console, NVRAM: v.nvram, UEFI: uefi, RunAs: d.opts.RunAs,
	})
	if err != nil {
		return nil, fmt.Errorf("libvirt: %w", err)
	}
	v.accel = accel
	// Validate against libvirt's schema as well as its own checks.
	if _, err := d.api.DomainDefineXMLFlags(v.xml, golibvirt.DomainDefineValidate); err != nil {
		return nil, fmt.Errorf("libvirt: machine %q: defining domain %s: %w", spec.Name, domain, err)
	}
	defined = true
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("libvirt: machine %q: %w", spec.Name, err)
	}
	v.tail = startConsoleTail(v.console, d.opts.ConsolePoll, v.consoleLine)
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, fmt.Errorf("libvirt: machine %q: %w", spec.Name, errClosedDuringCreate)
	}
	v.ready = true
	d.mu.Unlock()
	v.emit(trace.KindMachineCreated, trace.LevelInfo, "defined domain "+domain, map[string]any{
		"firmware": string(spec.Firmware), "accel": string(accel), "dir": v.dir,
	})
	d.log.Debug("machine created", "machine", spec.Name, "domain", domain, "accel", accel)
	return v, nil
}

var errClosedDuringCreate = errors.New("the driver closed while it was created")

// createSparse creates a new file of size bytes that takes no space until written.
func createSparse(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// forget drops a destroyed machine.
func (d *Driver) forget(v *VM) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.machines[v.domain] == v {
		delete(d.machines, v.domain)
	}
}

// Close destroys every machine the driver created (domains, NVRAM, disks, console
// files), ends the event stream and disconnects. It is safe to call more than once and
// runs even when the context given to New is already cancelled.
func (d *Driver) Close() error {
	d.closeOnce.Do(func() {
		d.stopWatch()
		d.mu.Lock()
		d.closed = true
		d.mu.Unlock()
		d.endLife()
		d.creating.Wait() // each rolls itself back
		d.mu.Lock()
		var vms []*VM
		for _, v := range d.machines {
			if v.ready {
				vms = append(vms, v)
			}
		}
		d.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		var errs []error
		var wg sync.WaitGroup
		var emu sync.Mutex
		for _, v := range vms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := v.Destroy(ctx); err != nil {
					emu.Lock()
					errs = append(errs, err)
					emu.Unlock()
				}
			}()
		}
		wg.Wait()
		if d.events != nil {
			_ = d.events.Disconnect()
			<-d.eventsDone
		}
		if err := d.api.Disconnect(); err != nil {
			d.log.Debug("disconnect", "err", err)
		}
		d.closeErr = errors.Join(errs...)
		close(d.done)
	})
	<-d.done
	return d.closeErr
}

// call runs f, a libvirt RPC that takes no context, and returns early with ctx's error
// when ctx ends first. An abandoned RPC finishes in the background (a reply, or the
// connection's end at Close, releases it).
func call[T any](ctx context.Context, f func() (T, error)) (T, error) {
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, err
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

func call0(ctx context.Context, f func() error) error {
	_, err := call(ctx, func() (struct{}, error) { return struct{}{}, f() })
	return err
}
