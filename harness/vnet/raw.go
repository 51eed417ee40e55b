package vnet

import (
	"context"
	"fmt"
	"net"
)

// RawOptions configure a raw port.
type RawOptions struct {
	// MTU of the port; 0 means the switch's default.
	MTU int
	// Queue is how many received frames wait for Recv before new ones are dropped;
	// 0 means 1024.
	Queue int
	// MAC, when set, names the station behind the port in trace events.
	MAC net.HardwareAddr
}

// RawPort sends and receives whole Ethernet frames in-process: for tests and tools.
type RawPort struct {
	*Port
	q    chan []byte
	done chan struct{}
}

// AttachRaw attaches a raw port.
func (sw *Switch) AttachRaw(name string, opts RawOptions) (*RawPort, error) {
	if opts.Queue < 0 {
		return nil, fmt.Errorf("vnet: raw port %q: queue %d must not be negative", name, opts.Queue)
	}
	if opts.Queue == 0 {
		opts.Queue = 1024
	}
	r := &RawPort{q: make(chan []byte, opts.Queue), done: make(chan struct{})}
	p, err := sw.attach(name, "raw", opts.MTU, opts.MAC, r.deliver, func() error {
		close(r.done)
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.Port = p
	return r, nil
}

func (r *RawPort) deliver(p *Port, frame []byte) {
	select {
	case r.q <- append([]byte(nil), frame...):
	default:
		p.c.txErrors.Add(1)
	}
}

// Send puts a frame on the wire as if a station behind the port sent it. The frame is
// not kept. A frame shorter than an Ethernet header or larger than the port's MTU
// allows is refused (and counted).
func (r *RawPort) Send(frame []byte) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if len(frame) < ethHeaderLen {
		r.c.malformed.Add(1)
		return fmt.Errorf("vnet: port %s: frame of %d bytes is shorter than an Ethernet header (%d)", r.name, len(frame), ethHeaderLen)
	}
	if frameTooBig(frame, r.MTU()) {
		r.c.rxOversize.Add(1)
		return fmt.Errorf("vnet: port %s: frame of %d bytes exceeds the port MTU %d plus the Ethernet header", r.name, len(frame), r.MTU())
	}
	r.sw.input(r.Port, frame)
	return nil
}

// Recv returns the next frame the switch sent to this port.
func (r *RawPort) Recv(ctx context.Context) ([]byte, error) {
	select {
	case f := <-r.q:
		return f, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-r.done:
		select {
		case f := <-r.q:
			return f, nil
		default:
			return nil, ErrClosed
		}
	}
}

// Pending returns how many received frames wait for Recv.
func (r *RawPort) Pending() int { return len(r.q) }
