package fakemaas

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/maasemu/maasemu/fakemaas/nodestatus"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestOperationTimeouts drives the status monitor by hand with a settable clock: the
// deadline of a commissioning machine restarts on curtin's early/late events, passes into
// MAAS's timeout failure, and a commissioning machine whose script runner went silent
// fails with the heartbeat message.
func TestOperationTimeouts(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	r, err := New(ctx, Options{StateDir: t.TempDir(), Now: clk.Now, MonitorInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	add := func(sid, mac string) {
		m := &machine{SystemID: sid, Hostname: sid, Domain: "maas", Architecture: "amd64/generic", PowerType: "manual",
			PowerState: "unknown", Netboot: true, Zone: "default", Pool: "default", Status: nodestatus.New,
			Interfaces: []Interface{{ID: 1, Name: "eth0", MAC: mac}}, Created: clk.Now(), Updated: clk.Now()}
		err := r.locked(func() error {
			if err := r.commit(func(w *writer) error { w.putMachine(m); return nil }); err != nil {
				return err
			}
			r.machines[sid] = m
			r.macIndex[mac] = sid
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.updateMachine(sid, func(w *writer, m *machine) error {
			return w.startCommissioning(m, "admin", false, false, false)
		}); err != nil {
			t.Fatal(err)
		}
	}
	status := func(sid string) (nodestatus.Status, string) {
		r.mu.RLock()
		defer r.mu.RUnlock()
		m := r.machines[sid]
		return m.Status, m.ErrorDescription
	}
	add("aaaaaa", "52:54:00:00:00:01")
	tok, err := r.nodeToken("aaaaaa")
	if err != nil {
		t.Fatal(err)
	}
	early := statusMessage{EventType: "start", Origin: "curtin", Name: "cmd-install/stage-early", Description: "preparing"}

	clk.Add(29 * time.Minute)
	r.expireOperations(ctx)
	if st, _ := status("aaaaaa"); st != nodestatus.Commissioning {
		t.Fatalf("after 29 minutes: %s, want Commissioning", st)
	}
	r.processStatus(tok.Key, "aaaaaa", early) // restarts the 30 minutes
	clk.Add(29 * time.Minute)
	r.expireOperations(ctx)
	if st, _ := status("aaaaaa"); st != nodestatus.Commissioning {
		t.Fatalf("29 minutes after curtin's stage-early: %s, want Commissioning", st)
	}
	clk.Add(time.Minute)
	r.expireOperations(ctx)
	st, why := status("aaaaaa")
	if st != nodestatus.FailedCommissioning || why != "Node operation 'Commissioning' timed out after 30 minutes." {
		t.Errorf("after 30 minutes: %s %q", st, why)
	}

	// A commissioning machine that signalled is watched by its heartbeat instead.
	add("bbbbbb", "52:54:00:00:00:02")
	if err := r.updateMachine("bbbbbb", func(w *writer, m *machine) error {
		_, err := w.processSignal(m, "WORKING", nil, 0, nil, 0, "", "", false, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	clk.Add(29 * time.Minute)
	r.expireOperations(ctx)
	if st, _ := status("bbbbbb"); st != nodestatus.Commissioning {
		t.Fatalf("29 minutes after a signal: %s", st)
	}
	clk.Add(time.Minute)
	r.expireOperations(ctx)
	st, why = status("bbbbbb")
	if st != nodestatus.FailedCommissioning || why != "Node has not been heard from for the last 30 minutes" {
		t.Errorf("silent for 30 minutes: %s %q", st, why)
	}

	// MarkFailed: the harness's reason on a machine; refused where MAAS refuses.
	add("cccccc", "52:54:00:00:00:03")
	if err := r.MarkFailed(ctx, "cccccc", "stalled in phase curtin for 120s"); err != nil {
		t.Fatal(err)
	}
	if st, why := status("cccccc"); st != nodestatus.FailedCommissioning || why != "stalled in phase curtin for 120s" {
		t.Errorf("MarkFailed: %s %q", st, why)
	}
	if err := r.MarkFailed(ctx, "nosuch", "x"); err == nil {
		t.Errorf("MarkFailed of an unknown machine succeeded")
	}
}

func TestMinutes(t *testing.T) {
	for d, want := range map[time.Duration]string{30 * time.Minute: "30", 90 * time.Second: "1.5", time.Hour: "60"} {
		if got := minutes(d); got != want {
			t.Errorf("minutes(%v) = %q, want %q", d, got, want)
		}
	}
}
