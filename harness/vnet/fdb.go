package vnet

import (
	"sync"
	"sync/atomic"
	"time"
)

// mac is an Ethernet address as a map key.
type mac [6]byte

func (m mac) isMulticast() bool { return m[0]&1 != 0 } // includes broadcast

// fdbEntry is one learned address. Port and last-seen time change without the table lock.
type fdbEntry struct {
	port atomic.Pointer[Port]
	seen atomic.Int64 // unix nanoseconds
}

// fdb is the forwarding database: source MAC -> port, with ageing.
type fdb struct {
	ageing time.Duration
	now    func() time.Time

	mu        sync.RWMutex
	entries   map[mac]*fdbEntry
	lastSweep int64
}

func newFDB(ageing time.Duration, now func() time.Time) *fdb {
	return &fdb{ageing: ageing, now: now, entries: map[mac]*fdbEntry{}}
}

// learn records that src was seen on p at time t (unix nanoseconds).
func (f *fdb) learn(src mac, p *Port, t int64) {
	f.mu.RLock()
	e := f.entries[src]
	f.mu.RUnlock()
	if e != nil {
		if e.port.Load() != p {
			e.port.Store(p) // the station moved
		}
		if e.seen.Load() != t {
			e.seen.Store(t)
		}
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if e = f.entries[src]; e == nil {
		e = &fdbEntry{}
		f.entries[src] = e
	}
	e.port.Store(p)
	e.seen.Store(t)
	// Sweep expired entries now and then so the table cannot grow without bound.
	if t-f.lastSweep > int64(f.ageing) {
		f.lastSweep = t
		for k, v := range f.entries {
			if t-v.seen.Load() > int64(f.ageing) {
				delete(f.entries, k)
			}
		}
	}
}

// lookup returns the port dst was last seen on, or nil when it is unknown or aged out.
func (f *fdb) lookup(dst mac, t int64) *Port {
	f.mu.RLock()
	e := f.entries[dst]
	f.mu.RUnlock()
	if e == nil {
		return nil
	}
	if t-e.seen.Load() > int64(f.ageing) {
		return nil
	}
	return e.port.Load()
}

// forget removes every entry pointing at p (the port is gone).
func (f *fdb) forget(p *Port) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, v := range f.entries {
		if v.port.Load() == p {
			delete(f.entries, k)
		}
	}
}

// flush empties the table.
func (f *fdb) flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.entries)
}

// snapshot returns the live entries: MAC -> port name.
func (f *fdb) snapshot(t int64) map[mac]*Port {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[mac]*Port, len(f.entries))
	for k, v := range f.entries {
		if t-v.seen.Load() <= int64(f.ageing) {
			out[k] = v.port.Load()
		}
	}
	return out
}
