// Package timeline turns one machine's event stream into the phases of a MAAS deployment,
// each with a start, an end and a budget, and detects a phase that stalls.
package timeline

import (
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/maasemu/maasemu/trace"
)

// Phase is one step of the deployment path.
type Phase string

// The phases, in the order a deployment goes through them.
const (
	Power        Phase = "power"        // deploy requested -> first DHCP discover
	DHCP         Phase = "dhcp"         // first discover -> ack
	Bootloader   Phase = "bootloader"   // ack -> bootloader fetched
	Config       Phase = "config"       // bootloader fetched -> install boot config served
	Kernel       Phase = "kernel"       // config -> kernel and initrd fetched
	Ephemeral    Phase = "ephemeral"    // initrd fetched -> curtin starts (squashfs, preseed, datasource)
	CurtinEarly  Phase = "curtin-early" // curtin stages, from its webhook events
	CurtinPart   Phase = "curtin-partitioning"
	CurtinNet    Phase = "curtin-network"
	CurtinExtr   Phase = "curtin-extract"
	CurtinHooks  Phase = "curtin-curthooks"
	CurtinHook   Phase = "curtin-hook"
	CurtinLate   Phase = "curtin-late"
	NetbootOff   Phase = "netboot-off" // curtin done -> the ephemeral reports modules-final
	Reboot       Phase = "reboot"      // modules-final -> second DHCP discover
	LocalBoot    Phase = "local-boot"  // second discover -> local boot config served
	FirstBoot    Phase = "first-boot"  // local boot -> the installed OS reads its user-data
	DeployedMark Phase = "deployed"    // status Deployed
)

// Phases lists every phase in order.
var Phases = []Phase{
	Power, DHCP, Bootloader, Config, Kernel, Ephemeral,
	CurtinEarly, CurtinPart, CurtinNet, CurtinExtr, CurtinHooks, CurtinHook, CurtinLate,
	NetbootOff, Reboot, LocalBoot, FirstBoot, DeployedMark,
}

// Titles are the human names of the phases.
var Titles = map[Phase]string{
	Power:        "power on",
	DHCP:         "DHCP",
	Bootloader:   "bootloader",
	Config:       "boot config",
	Kernel:       "kernel and initrd",
	Ephemeral:    "ephemeral up",
	CurtinEarly:  "curtin early",
	CurtinPart:   "curtin partitioning",
	CurtinNet:    "curtin network",
	CurtinExtr:   "curtin extract",
	CurtinHooks:  "curtin curthooks",
	CurtinHook:   "curtin hook",
	CurtinLate:   "curtin late",
	NetbootOff:   "netboot off",
	Reboot:       "reboot",
	LocalBoot:    "local boot",
	FirstBoot:    "first boot",
	DeployedMark: "Deployed",
}

var curtinStages = map[string]Phase{
	"early": CurtinEarly, "partitioning": CurtinPart, "network": CurtinNet, "extract": CurtinExtr,
	"curthooks": CurtinHooks, "hook": CurtinHook, "late": CurtinLate,
}

// Budgets are the longest each phase may take before it counts as stalled. A phase missing
// from the map has no budget.
type Budgets map[Phase]time.Duration

// VMBudgets suit VMs under software emulation on a small machine: generous, yet far below
// MAAS's 30-minute deployment timeout.
func VMBudgets() Budgets {
	return Budgets{
		Power: 60 * time.Second, DHCP: 60 * time.Second, Bootloader: 60 * time.Second,
		Config: 60 * time.Second, Kernel: 120 * time.Second, Ephemeral: 300 * time.Second,
		CurtinEarly: 300 * time.Second, CurtinPart: 300 * time.Second, CurtinNet: 300 * time.Second,
		CurtinExtr: 600 * time.Second, CurtinHooks: 600 * time.Second, CurtinHook: 300 * time.Second,
		CurtinLate: 300 * time.Second, NetbootOff: 120 * time.Second, Reboot: 120 * time.Second,
		LocalBoot: 120 * time.Second, FirstBoot: 300 * time.Second,
	}
}

// SimBudgets suit simulated machines, which do the same work without firmware or kernels.
func SimBudgets() Budgets {
	b := Budgets{}
	for _, p := range Phases {
		if p != DeployedMark {
			b[p] = 60 * time.Second
		}
	}
	return b
}

// Span states.
const (
	StatePending = "pending" // not reached
	StateRunning = "running"
	StateDone    = "done"
	StateSkipped = "skipped" // a later phase began before this one showed any sign
	StateFailed  = "failed"  // the deployment failed during this phase
	StateStalled = "stalled" // this phase overran its budget
)

// Span is one phase as it happened.
type Span struct {
	Phase     Phase         `json:"phase"`
	Title     string        `json:"title"`
	State     string        `json:"state"`
	Start     time.Time     `json:"start,omitzero"`
	End       time.Time     `json:"end,omitzero"`
	Budget    time.Duration `json:"budget_ns,omitempty"`
	LastEvent string        `json:"last_event,omitempty"`
}

// Duration is End-Start, or 0 when the span has not both.
func (s Span) Duration() time.Duration {
	if s.Start.IsZero() || s.End.IsZero() {
		return 0
	}
	return s.End.Sub(s.Start)
}

// Stall describes a phase that overran its budget.
type Stall struct {
	Phase     Phase
	Elapsed   time.Duration
	Budget    time.Duration
	LastEvent string
}

func (s Stall) Error() string {
	msg := fmt.Sprintf("no progress in phase %q for %s (budget %s)", Titles[s.Phase], s.Elapsed.Round(time.Second), s.Budget)
	if s.LastEvent != "" {
		msg += "; last event: " + s.LastEvent
	}
	return msg
}

// Timeline follows one machine. It is safe for concurrent use.
type Timeline struct {
	mu       sync.Mutex
	systemID string
	macs     map[string]bool
	budgets  Budgets
	spans    []Span
	index    map[Phase]int
	cur      int // index of the running phase, -1 before the first
	boots    int // DHCP discovers that started a boot cycle
	acked    bool
	lastSeen time.Time
	final    string // "Deployed" or "Failed deployment" once known
}

// New returns a Timeline for the machine with systemID and MACs, judged by budgets.
func New(systemID string, macs []string, budgets Budgets) *Timeline {
	t := &Timeline{systemID: systemID, macs: map[string]bool{}, budgets: budgets, index: map[Phase]int{}, cur: -1}
	for _, m := range macs {
		t.macs[strings.ToLower(m)] = true
	}
	for i, p := range Phases {
		t.spans = append(t.spans, Span{Phase: p, Title: Titles[p], State: StatePending, Budget: budgets[p]})
		t.index[p] = i
	}
	return t
}

// Mine reports whether e concerns this machine.
func (t *Timeline) Mine(e trace.Event) bool {
	if e.Machine != "" && e.Machine == t.systemID {
		return true
	}
	return e.MAC != "" && t.macs[strings.ToLower(e.MAC)]
}

// Observe advances the timeline with e, which is ignored unless it concerns this machine.
func (t *Timeline) Observe(e trace.Event) {
	if !t.Mine(e) {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.final != "" {
		return
	}
	t.lastSeen = e.Time
	if t.cur >= 0 && t.spans[t.cur].State == StateRunning {
		t.spans[t.cur].LastEvent = describe(e)
	}
	str := func(k string) string { s, _ := e.Attrs[k].(string); return s }
	switch e.Kind {
	case trace.KindStatusChange:
		switch str("to") {
		case "Deploying":
			t.begin(Power, e)
		case "Deployed":
			t.begin(DeployedMark, e)
			t.endCurrent(e.Time, StateDone)
			t.final = "Deployed"
		case "Failed deployment":
			t.endCurrent(e.Time, StateFailed)
			t.final = "Failed deployment"
		}
	case trace.KindPower:
		if str("action") == "on" && t.cur < 0 {
			t.begin(Power, e)
		}
	case trace.KindDHCPDiscover:
		// The first discover starts the install boot; the ephemeral's own DHCP (initramfs)
		// belongs to the ephemeral phase; a discover once curtin is done starts the local boot.
		if t.boots == 0 || (t.boots == 1 && t.past(NetbootOff)) {
			t.boots++
			t.acked = false
			if t.boots == 1 {
				t.begin(DHCP, e)
			} else {
				t.begin(LocalBoot, e)
			}
		}
	case trace.KindDHCPAck:
		if t.boots == 1 && !t.acked {
			t.begin(Bootloader, e)
		}
		t.acked = true
	case trace.KindTFTPRead, trace.KindHTTPGet:
		file := str("file")
		if file == "" {
			file = str("path")
		}
		switch {
		case t.at(Bootloader) && isBootloader(file):
			t.begin(Config, e)
		case t.at(Kernel) && strings.HasSuffix(file, "boot-initrd"):
			t.begin(Ephemeral, e)
		}
	case trace.KindBootConfig:
		switch str("purpose") {
		case "xinstall", "commissioning":
			if t.before(Kernel) {
				t.begin(Kernel, e)
			}
		case "local":
			if t.past(Ephemeral) {
				t.begin(FirstBoot, e)
			}
		}
	case trace.KindWebhookEvent:
		name, typ := str("name"), str("event_type")
		if stage, ok := strings.CutPrefix(name, "cmd-install/stage-"); ok && !strings.Contains(stage, "/") {
			if p, ok := curtinStages[stage]; ok {
				if typ == "start" {
					t.begin(p, e)
				} else if typ == "finish" && t.at(p) && p == CurtinLate {
					t.begin(NetbootOff, e)
				}
			}
		}
		if name == "cmd-install" && typ == "finish" && t.before(NetbootOff) && t.past(Ephemeral) {
			t.begin(NetbootOff, e)
		}
		if name == "modules-final" && typ == "finish" && t.at(NetbootOff) && str("result") != "FAIL" {
			t.begin(Reboot, e)
		}
	case trace.KindUserDataRead:
		if t.past(Ephemeral) && t.before(FirstBoot) {
			t.begin(FirstBoot, e)
		}
	}
}

// past reports whether phase p has been reached.
func (t *Timeline) past(p Phase) bool { return t.cur >= t.index[p] }

// at reports whether p is the running phase.
func (t *Timeline) at(p Phase) bool { return t.cur == t.index[p] }

// before reports whether p has not been reached yet.
func (t *Timeline) before(p Phase) bool { return t.cur < t.index[p] }

// begin ends the running phase, marks phases never seen as skipped, and starts p. Going
// backwards is ignored: phases only move forward.
func (t *Timeline) begin(p Phase, e trace.Event) {
	i := t.index[p]
	if i <= t.cur {
		return
	}
	t.endCurrent(e.Time, StateDone)
	for j := t.cur + 1; j < i; j++ {
		if t.spans[j].State == StatePending {
			t.spans[j].State = StateSkipped
		}
	}
	t.cur = i
	t.spans[i].State = StateRunning
	t.spans[i].Start = e.Time
	t.spans[i].LastEvent = describe(e)
	if p == DeployedMark {
		t.spans[i].End = e.Time
	}
}

func (t *Timeline) endCurrent(at time.Time, state string) {
	if t.cur < 0 || t.spans[t.cur].State != StateRunning {
		return
	}
	t.spans[t.cur].End = at
	t.spans[t.cur].State = state
}

// Check reports a stall when the running phase has overrun its budget at now; the phase is
// then marked stalled and the timeline stops following events.
func (t *Timeline) Check(now time.Time) *Stall {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.final != "" || t.cur < 0 {
		return nil
	}
	s := &t.spans[t.cur]
	if s.State != StateRunning || s.Budget <= 0 {
		return nil
	}
	elapsed := now.Sub(s.Start)
	if elapsed <= s.Budget {
		return nil
	}
	s.State = StateStalled
	s.End = now
	t.final = "stalled"
	return &Stall{Phase: s.Phase, Elapsed: elapsed, Budget: s.Budget, LastEvent: s.LastEvent}
}

// Fail marks the running phase failed at the given time (a power cut, a driver error).
func (t *Timeline) Fail(at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.final != "" {
		return
	}
	t.endCurrent(at, StateFailed)
	t.final = "failed"
}

// Current returns the running (or last reached) phase, or "" before the first.
func (t *Timeline) Current() Phase {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur < 0 {
		return ""
	}
	return t.spans[t.cur].Phase
}

// Spans returns a copy of every phase in order.
func (t *Timeline) Spans() []Span {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Span(nil), t.spans...)
}

// FailedPhase returns the phase that failed or stalled, or "" when none did.
func (t *Timeline) FailedPhase() Phase {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.spans {
		if s.State == StateFailed || s.State == StateStalled {
			return s.Phase
		}
	}
	return ""
}

var bootloaderFiles = map[string]bool{
	"lpxelinux.0": true, "pxelinux.0": true, "bootx64.efi": true, "grubx64.efi": true,
	"bootaa64.efi": true, "grubaa64.efi": true, "ipxe.cfg": true, "ldlinux.c32": true,
}

func isBootloader(file string) bool {
	return bootloaderFiles[strings.ToLower(path.Base(strings.ReplaceAll(file, `\`, "/")))]
}

func describe(e trace.Event) string {
	if e.Message != "" {
		return e.Kind + ": " + e.Message
	}
	return e.Kind
}
