package timeline

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/maasemu/maasemu/trace"
)

const (
	sid = "abc123"
	mac = "52:54:00:12:34:56"
)

type step struct {
	kind  string
	mac   bool // identify by MAC instead of system_id
	attrs map[string]any
}

func events(t0 time.Time, steps []step) []trace.Event {
	var out []trace.Event
	for i, s := range steps {
		e := trace.Event{Time: t0.Add(time.Duration(i) * time.Second), Kind: s.kind, Attrs: s.attrs}
		if s.mac {
			e.MAC = mac
		} else {
			e.Machine = sid
		}
		out = append(out, e)
	}
	return out
}

func a(kv ...string) map[string]any {
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// A full BIOS deployment as the rack, region and webhook report it.
var biosDeploy = []step{
	{kind: trace.KindStatusChange, attrs: a("from", "Allocated", "to", "Deploying")}, // 0 power
	{kind: trace.KindPower, attrs: a("action", "on")},                                // 1
	{kind: trace.KindDHCPDiscover, mac: true},                                        // 2 dhcp
	{kind: trace.KindDHCPOffer, mac: true},                                           // 3
	{kind: trace.KindDHCPRequest, mac: true},                                         // 4
	{kind: trace.KindDHCPAck, mac: true},                                             // 5 bootloader
	{kind: trace.KindTFTPRead, mac: true, attrs: a("file", "lpxelinux.0")},           // 6 config
	{kind: trace.KindTFTPRead, mac: true, attrs: a("file", "ldlinux.c32")},           // 7
	{kind: trace.KindBootConfig, attrs: a("purpose", "xinstall")},                    // 8 kernel
	{kind: trace.KindHTTPGet, mac: true, attrs: a("path", "/images/x/boot-kernel")},  // 9
	{kind: trace.KindHTTPGet, mac: true, attrs: a("path", "/images/x/boot-initrd")},  // 10 ephemeral
	{kind: trace.KindDHCPDiscover, mac: true},                                        // 11: the ephemeral's initramfs DHCP
	{kind: trace.KindWebhookEvent, attrs: a("name", "cmd-install", "event_type", "start")},
	{kind: trace.KindWebhookEvent, attrs: a("name", "cmd-install/stage-early", "event_type", "start")},        // 13
	{kind: trace.KindWebhookEvent, attrs: a("name", "cmd-install/stage-partitioning", "event_type", "start")}, // 14
	{kind: trace.KindWebhookEvent, attrs: a("name", "cmd-install/stage-network", "event_type", "start")},      // 15
	{kind: trace.KindWebhookEvent, attrs: a("name", "cmd-install/stage-extract", "event_type", "start")},      // 16
	{kind: trace.KindWebhookEvent, attrs: a("name", "cmd-install/stage-curthooks", "event_type", "start")},    // 17
	{kind: trace.KindWebhookEvent, attrs: a("name", "cmd-install/stage-hook", "event_type", "start")},         // 18
	{kind: trace.KindWebhookEvent, attrs: a("name", "cmd-install/stage-late", "event_type", "start")},         // 19
	{kind: trace.KindNetbootOff},
	{kind: trace.KindWebhookEvent, attrs: a("name", "cmd-install/stage-late", "event_type", "finish", "result", "SUCCESS")}, // 21 netboot-off
	{kind: trace.KindWebhookEvent, attrs: a("name", "cmd-install", "event_type", "finish", "result", "SUCCESS")},
	{kind: trace.KindWebhookEvent, attrs: a("name", "modules-final", "event_type", "finish", "result", "SUCCESS")}, // 23 reboot
	{kind: trace.KindDHCPDiscover, mac: true},                                                                      // 24 local boot
	{kind: trace.KindDHCPAck, mac: true},                                                                           // 25
	{kind: trace.KindTFTPRead, mac: true, attrs: a("file", "lpxelinux.0")},                                         // 26
	{kind: trace.KindBootConfig, attrs: a("purpose", "local")},                                                     // 27 first boot
	{kind: trace.KindUserDataRead},                                                                                 // 28
	{kind: trace.KindStatusChange, attrs: a("from", "Deploying", "to", "Deployed")},                                // 29 deployed
}

func TestFullDeploy(t *testing.T) {
	t0 := time.Unix(1700000000, 0).UTC()
	tl := New(sid, []string{"52:54:00:12:34:56"}, VMBudgets())
	// Events of another machine change nothing.
	tl.Observe(trace.Event{Time: t0, Kind: trace.KindDHCPDiscover, MAC: "52:54:00:ff:ff:ff"})
	for _, e := range events(t0, biosDeploy) {
		tl.Observe(e)
	}
	type got struct {
		Phase      Phase
		State      string
		Start, End int
	}
	var have []got
	for _, s := range tl.Spans() {
		have = append(have, got{s.Phase, s.State, int(s.Start.Sub(t0) / time.Second), int(s.End.Sub(t0) / time.Second)})
	}
	want := []got{
		{Power, StateDone, 0, 2}, {DHCP, StateDone, 2, 5}, {Bootloader, StateDone, 5, 6},
		{Config, StateDone, 6, 8}, {Kernel, StateDone, 8, 10}, {Ephemeral, StateDone, 10, 13},
		{CurtinEarly, StateDone, 13, 14}, {CurtinPart, StateDone, 14, 15}, {CurtinNet, StateDone, 15, 16},
		{CurtinExtr, StateDone, 16, 17}, {CurtinHooks, StateDone, 17, 18}, {CurtinHook, StateDone, 18, 19},
		{CurtinLate, StateDone, 19, 21}, {NetbootOff, StateDone, 21, 23}, {Reboot, StateDone, 23, 24},
		{LocalBoot, StateDone, 24, 27}, {FirstBoot, StateDone, 27, 29}, {DeployedMark, StateDone, 29, 29},
	}
	if diff := cmp.Diff(want, have); diff != "" {
		t.Errorf("spans (-want +got):\n%s", diff)
	}
	if p := tl.FailedPhase(); p != "" {
		t.Errorf("FailedPhase = %q, want none", p)
	}
	if s := tl.Check(t0.Add(time.Hour)); s != nil {
		t.Errorf("Check after Deployed = %v, want nil", s)
	}
}

func TestFailureMarksRunningPhase(t *testing.T) {
	t0 := time.Unix(1700000000, 0).UTC()
	tl := New(sid, []string{mac}, VMBudgets())
	evs := events(t0, biosDeploy[:18]) // into curthooks
	evs = append(evs, trace.Event{Time: t0.Add(40 * time.Second), Machine: sid, Kind: trace.KindStatusChange,
		Attrs: a("from", "Deploying", "to", "Failed deployment")})
	for _, e := range evs {
		tl.Observe(e)
	}
	if got := tl.FailedPhase(); got != CurtinHooks {
		t.Errorf("FailedPhase = %q, want %q", got, CurtinHooks)
	}
	if got := tl.Spans()[tl.index[CurtinHook]].State; got != StatePending {
		t.Errorf("phase after the failure is %q, want pending", got)
	}
}

func TestStall(t *testing.T) {
	t0 := time.Unix(1700000000, 0).UTC()
	tl := New(sid, []string{mac}, Budgets{Power: 30 * time.Second, DHCP: 10 * time.Second})
	for _, e := range events(t0, biosDeploy[:3]) { // power on, then one discover
		tl.Observe(e)
	}
	if s := tl.Check(t0.Add(12 * time.Second)); s != nil {
		t.Fatalf("Check within budget = %v, want nil", s)
	}
	s := tl.Check(t0.Add(13 * time.Second))
	if s == nil {
		t.Fatal("Check past budget = nil, want a stall")
	}
	if s.Phase != DHCP || s.Budget != 10*time.Second || s.Elapsed != 11*time.Second {
		t.Errorf("stall = %+v", *s)
	}
	if got := tl.FailedPhase(); got != DHCP {
		t.Errorf("FailedPhase = %q, want dhcp", got)
	}
	// Once judged, later events change nothing.
	tl.Observe(trace.Event{Time: t0.Add(14 * time.Second), MAC: mac, Kind: trace.KindDHCPAck})
	if got := tl.Current(); got != DHCP {
		t.Errorf("Current after stall = %q, want dhcp", got)
	}
}

func TestSkippedPhases(t *testing.T) {
	// A simulated machine that reports no TFTP (e.g. UEFI HTTP boot served the config first).
	t0 := time.Unix(1700000000, 0).UTC()
	tl := New(sid, []string{mac}, SimBudgets())
	for _, e := range events(t0, []step{
		{kind: trace.KindStatusChange, attrs: a("to", "Deploying")},
		{kind: trace.KindDHCPDiscover, mac: true},
		{kind: trace.KindDHCPAck, mac: true},
		{kind: trace.KindBootConfig, attrs: a("purpose", "xinstall")},
	}) {
		tl.Observe(e)
	}
	spans := tl.Spans()
	if got := spans[tl.index[Config]].State; got != StateSkipped {
		t.Errorf("config = %q, want skipped", got)
	}
	if got := tl.Current(); got != Kernel {
		t.Errorf("Current = %q, want kernel", got)
	}
}
