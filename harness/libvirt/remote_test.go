package libvirt

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/harness/machine"
)

// tcpToUnix forwards TCP connections on a loopback port to libvirtd's unix socket, so
// that a qemu+tcp:// URI reaches the local daemon through go-libvirt's remote dialer.
func tcpToUnix(t *testing.T, socket string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("unix", socket)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, u)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(u, c); u.Close() }()
			go func() { defer wg.Done(); io.Copy(c, u); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// TestRemoteURI drives a VM's power through a remote URI (qemu+tcp://), as MAAS does
// with a power_address on another host.
func TestRemoteURI(t *testing.T) {
	ctx := t.Context()
	d := newVMDriver(t, ctx, nil)
	m, err := d.CreateVM(ctx, machine.Spec{Name: "remote", MemoryMiB: 256})
	if err != nil {
		t.Fatal(err)
	}
	addr := tcpToUnix(t, SystemSocket)
	uri := fmt.Sprintf("qemu+tcp://%s/system", addr)
	p := &VirshPower{Logger: quietLog, Waits: []time.Duration{0, 100 * time.Millisecond, time.Second}}
	params := fakemaas.PowerParams{"power_address": uri, "power_id": m.Domain()}
	var got []string
	for _, step := range []func() error{
		func() error { return p.PowerOn(ctx, params) },
		func() error { return p.PowerOff(ctx, params) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
		s, err := p.PowerQuery(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	if strings.Join(got, ",") != "on,off" {
		t.Errorf("states through %s: %v, want on,off", uri, got)
	}
	// A driver on a remote URI connects, but refuses to create machines there.
	rd, err := New(ctx, Options{URI: uri, Lab: randomLab(t), WorkDir: t.TempDir(), Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if _, err := rd.Create(ctx, machine.Spec{Name: "x"}); err == nil || !strings.Contains(err.Error(), "needs a local libvirt daemon") {
		t.Errorf("Create through a remote URI: %v", err)
	}
}
