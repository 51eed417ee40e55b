package libvirt

import (
	"context"
	"fmt"
	"sync"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// fakeDaemon is an in-memory libvirtd for unit tests: domains with state, lifecycle
// events to every connection, and injectable failures. It checks that the XML parses
// and names a domain; it runs no guests.
type fakeDaemon struct {
	mu      sync.Mutex
	doms    map[string]*fakeDom
	conns   map[*fakeConn]bool
	dials   int
	nextID  int32
	failOn  map[string]error // by method name: "DomainCreate", "DomainDefineXMLFlags", ...
	onStart golibvirt.DomainState
	// beforeDefine, when set, runs at the start of every define, outside the lock.
	beforeDefine func()
}

type fakeDom struct {
	dom   golibvirt.Domain
	xml   string
	state golibvirt.DomainState
}

func newFakeDaemon() *fakeDaemon {
	return &fakeDaemon{doms: map[string]*fakeDom{}, conns: map[*fakeConn]bool{}, failOn: map[string]error{}, onStart: golibvirt.DomainRunning}
}

func (f *fakeDaemon) dial(ctx context.Context, uri string) (API, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failOn["Dial"]; err != nil {
		return nil, err
	}
	f.dials++
	c := &fakeConn{d: f}
	f.conns[c] = true
	return c, nil
}

func (f *fakeDaemon) dialPass(ctx context.Context, uri, _ string) (API, error) {
	return f.dial(ctx, uri)
}

func (f *fakeDaemon) openConns() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.conns)
}

func (f *fakeDaemon) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.doms {
		out = append(out, n)
	}
	return out
}

func (f *fakeDaemon) setState(name string, s golibvirt.DomainState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.doms[name].state = s
}

func (f *fakeDaemon) fail(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failOn[method] = err
}

// broadcast sends a lifecycle event to every connection subscribed. Called with f.mu held.
func (f *fakeDaemon) broadcast(dom golibvirt.Domain, ev golibvirt.DomainEventType, detail int32) {
	for c := range f.conns {
		if c.events != nil {
			c.queue = append(c.queue, golibvirt.DomainEventLifecycleMsg{Dom: dom, Event: int32(ev), Detail: detail})
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
	}
}

func noDomain(name string) error {
	return golibvirt.Error{Code: uint32(golibvirt.ErrNoDomain), Message: fmt.Sprintf("Domain not found: no domain with matching name '%s'", name)}
}

func opInvalid(msg string) error {
	return golibvirt.Error{Code: uint32(golibvirt.ErrOperationInvalid), Message: "Requested operation is not valid: " + msg}
}

// fakeConn is one connection to a fakeDaemon.
type fakeConn struct {
	d      *fakeDaemon
	closed bool
	events chan golibvirt.DomainEventLifecycleMsg
	queue  []golibvirt.DomainEventLifecycleMsg
	wake   chan struct{}
	stop   chan struct{}
	done   chan struct{}
}

func (c *fakeConn) check(method string) error {
	if c.closed {
		return fmt.Errorf("fake libvirt: %s on a closed connection", method)
	}
	return c.d.failOn[method]
}

func (c *fakeConn) DomainDefineXMLFlags(x string, flags golibvirt.DomainDefineFlags) (golibvirt.Domain, error) {
	if c.d.beforeDefine != nil {
		c.d.beforeDefine()
	}
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	if err := c.check("DomainDefineXMLFlags"); err != nil {
		return golibvirt.Domain{}, err
	}
	var dx libvirtxml.Domain
	if err := dx.Unmarshal(x); err != nil || dx.Name == "" {
		return golibvirt.Domain{}, fmt.Errorf("fake libvirt: XML error: %v", err)
	}
	d, ok := c.d.doms[dx.Name]
	if !ok {
		d = &fakeDom{dom: golibvirt.Domain{Name: dx.Name, ID: -1}, state: golibvirt.DomainShutoff}
		c.d.doms[dx.Name] = d
	}
	d.xml = x
	c.d.broadcast(d.dom, golibvirt.DomainEventDefined, 0)
	return d.dom, nil
}

func (c *fakeConn) DomainLookupByName(name string) (golibvirt.Domain, error) {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	if err := c.check("DomainLookupByName"); err != nil {
		return golibvirt.Domain{}, err
	}
	d, ok := c.d.doms[name]
	if !ok {
		return golibvirt.Domain{}, noDomain(name)
	}
	return d.dom, nil
}

func (c *fakeConn) DomainCreate(dom golibvirt.Domain) error {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	if err := c.check("DomainCreate"); err != nil {
		return err
	}
	d, ok := c.d.doms[dom.Name]
	if !ok {
		return noDomain(dom.Name)
	}
	if d.state == golibvirt.DomainRunning {
		return opInvalid("domain is already running")
	}
	c.d.nextID++
	d.dom.ID = c.d.nextID
	d.state = c.d.onStart
	c.d.broadcast(d.dom, golibvirt.DomainEventStarted, int32(golibvirt.DomainEventStartedBooted))
	return nil
}

func (c *fakeConn) DomainGetState(dom golibvirt.Domain, _ uint32) (int32, int32, error) {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	if err := c.check("DomainGetState"); err != nil {
		return 0, 0, err
	}
	d, ok := c.d.doms[dom.Name]
	if !ok {
		return 0, 0, noDomain(dom.Name)
	}
	return int32(d.state), 0, nil
}

func (c *fakeConn) DomainDestroyFlags(dom golibvirt.Domain, _ golibvirt.DomainDestroyFlagsValues) error {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	if err := c.check("DomainDestroyFlags"); err != nil {
		return err
	}
	d, ok := c.d.doms[dom.Name]
	if !ok {
		return noDomain(dom.Name)
	}
	if d.state == golibvirt.DomainShutoff {
		return opInvalid("domain is not running")
	}
	d.state = golibvirt.DomainShutoff
	d.dom.ID = -1
	c.d.broadcast(d.dom, golibvirt.DomainEventStopped, int32(golibvirt.DomainEventStoppedDestroyed))
	return nil
}

func (c *fakeConn) DomainUndefineFlags(dom golibvirt.Domain, _ golibvirt.DomainUndefineFlagsValues) error {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	if err := c.check("DomainUndefineFlags"); err != nil {
		return err
	}
	if _, ok := c.d.doms[dom.Name]; !ok {
		return noDomain(dom.Name)
	}
	delete(c.d.doms, dom.Name)
	c.d.broadcast(dom, golibvirt.DomainEventUndefined, 0)
	return nil
}

func (c *fakeConn) DomainGetXMLDesc(dom golibvirt.Domain, _ golibvirt.DomainXMLFlags) (string, error) {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	if err := c.check("DomainGetXMLDesc"); err != nil {
		return "", err
	}
	d, ok := c.d.doms[dom.Name]
	if !ok {
		return "", noDomain(dom.Name)
	}
	return d.xml, nil
}

func (c *fakeConn) ConnectListAllDomains(_ int32, _ golibvirt.ConnectListAllDomainsFlags) ([]golibvirt.Domain, uint32, error) {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	if err := c.check("ConnectListAllDomains"); err != nil {
		return nil, 0, err
	}
	var out []golibvirt.Domain
	for _, d := range c.d.doms {
		out = append(out, d.dom)
	}
	return out, uint32(len(out)), nil
}

// LifecycleEvents behaves as go-libvirt's: the channel is unbuffered and closes only
// when the connection ends.
func (c *fakeConn) LifecycleEvents(context.Context) (<-chan golibvirt.DomainEventLifecycleMsg, error) {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	if err := c.check("LifecycleEvents"); err != nil {
		return nil, err
	}
	c.events = make(chan golibvirt.DomainEventLifecycleMsg)
	c.wake = make(chan struct{}, 1)
	c.stop = make(chan struct{})
	c.done = make(chan struct{})
	go func() {
		defer close(c.done)
		defer close(c.events)
		for {
			c.d.mu.Lock()
			var next *golibvirt.DomainEventLifecycleMsg
			if len(c.queue) > 0 {
				next = &c.queue[0]
				c.queue = c.queue[1:]
			}
			c.d.mu.Unlock()
			if next == nil {
				select {
				case <-c.wake:
					continue
				case <-c.stop:
					return
				}
			}
			select {
			case c.events <- *next:
			case <-c.stop:
				return
			}
		}
	}()
	return c.events, nil
}

func (c *fakeConn) Disconnect() error {
	c.d.mu.Lock()
	if c.closed {
		c.d.mu.Unlock()
		return nil
	}
	c.closed = true
	delete(c.d.conns, c)
	stop, done := c.stop, c.done
	c.d.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
	return nil
}
