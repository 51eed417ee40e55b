package scenario

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/maasemu/maasemu/harness/vnet"
	"github.com/maasemu/maasemu/trace"
)

// target is where a fault or a cut applies: the whole switch, or some ports.
type target struct {
	name   string
	all    bool                // the whole switch
	ports  func() []*vnet.Port // the ports now
	prefix string              // future ports with this name prefix too (sims' per-boot NICs)
	sw     *vnet.Switch
}

// resolveTarget reads "lab", "rack", a machine's name or a port's name.
func (sc *script) resolveTarget(ts *testscript.TestScript, cmd, name string) target {
	l := sc.needLab(ts, cmd)
	t := target{name: name, sw: l.Switch}
	switch name {
	case "lab":
		t.all = true
		return t
	case "rack":
		p := l.RackNIC.Port()
		t.ports = func() []*vnet.Port { return []*vnet.Port{p} }
		return t
	}
	sc.mu.Lock()
	ms, isMachine := sc.machines[name]
	sc.mu.Unlock()
	if isMachine {
		// libvirt NICs are ports <name>-nic<i>; a sim's NIC is a new port <name>-nic0-<boot>
		// on every boot.
		t.prefix = ms.m.Spec.Name + "-nic"
		t.ports = func() []*vnet.Port {
			var out []*vnet.Port
			for _, p := range l.Switch.Ports() {
				if strings.HasPrefix(p.Name(), t.prefix) {
					out = append(out, p)
				}
			}
			return out
		}
		return t
	}
	p, ok := l.Switch.Port(name)
	if !ok {
		var names []string
		for _, p := range l.Switch.Ports() {
			names = append(names, p.Name())
		}
		ts.Fatalf("%s: %q is not lab, rack, a machine or a port (ports: %s)", cmd, name, strings.Join(names, " "))
	}
	t.ports = func() []*vnet.Port { return []*vnet.Port{p} }
	return t
}

// watchPorts calls f with every port attached from now on whose name has prefix, until
// the script ends or stop is called.
func (sc *script) watchPorts(prefix string, f func(p *vnet.Port)) {
	ch, stop := sc.lab.Recorder.Subscribe()
	ctx, cancel := context.WithCancel(sc.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case e, ok := <-ch:
				if !ok {
					return
				}
				if e.Kind != trace.KindLink {
					continue
				}
				name, _ := e.Attrs["port"].(string)
				state, _ := e.Attrs["state"].(string)
				if state != "up" || !strings.HasPrefix(name, prefix) {
					continue
				}
				if p, ok := sc.lab.Switch.Port(name); ok {
					f(p)
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	sc.mu.Lock()
	sc.faults = append(sc.faults, func() { cancel(); stop(); <-done })
	sc.mu.Unlock()
}

// fault [lab|rack|PORT|MACHINE] SPEC...
func cmdFault(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	const usage = "fault [lab|rack|PORT|MACHINE] SPEC... (loss=10% delay=50ms jitter= duplicate= corrupt= reorder= seed= dir=in|out; none clears)"
	wantArgs(ts, "fault", usage, args, 1, -1)
	who := "lab"
	spec := args
	if !strings.Contains(args[0], "=") && args[0] != "none" {
		who, spec = args[0], args[1:]
	}
	if len(spec) == 0 {
		ts.Fatalf("fault: no fault SPEC\nusage: %s", usage)
	}
	f, err := vnet.ParseFaults(strings.Join(spec, " "))
	if err != nil {
		ts.Fatalf("fault: %v", err)
	}
	t := sc.resolveTarget(ts, "fault", who)
	if t.all {
		ts.Check(t.sw.SetFaults(f))
		fmt.Fprintf(ts.Stdout(), "switch faults: %s\n", f)
		return
	}
	for _, p := range t.ports() {
		ts.Check(p.SetFaults(f))
		fmt.Fprintf(ts.Stdout(), "port %s faults: %s\n", p.Name(), f)
	}
	if t.prefix != "" {
		sc.watchPorts(t.prefix, func(p *vnet.Port) {
			if err := p.SetFaults(f); err != nil {
				sc.s.log.Warn("scenario: faults on a new port", "port", p.Name(), "err", err)
			}
		})
		fmt.Fprintf(ts.Stdout(), "ports %s* attached later get: %s\n", t.prefix, f)
	}
}

// cut [lab|rack|PORT|MACHINE] DUR
func cmdCut(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	const usage = "cut [lab|rack|PORT|MACHINE] DUR"
	wantArgs(ts, "cut", usage, args, 1, 2)
	who, durArg := "lab", args[0]
	if len(args) == 2 {
		who, durArg = args[0], args[1]
	}
	d, err := time.ParseDuration(durArg)
	if err != nil || d <= 0 || d > time.Hour {
		ts.Fatalf("cut: %q: want a duration from 1ms to 1h, like 5s\nusage: %s", durArg, usage)
	}
	t := sc.resolveTarget(ts, "cut", who)
	if t.all {
		t.sw.Cut(d)
		fmt.Fprintf(ts.Stdout(), "switch cut for %s\n", d)
		return
	}
	ports := t.ports()
	if len(ports) == 0 {
		ts.Fatalf("cut %s: no port attached now (a powered-off machine has none)", who)
	}
	for _, p := range ports {
		p.Cut(d)
		fmt.Fprintf(ts.Stdout(), "port %s cut for %s\n", p.Name(), d)
	}
}

// power-cut MACHINE [-at PHASE]
func cmdPowerCut(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	const usage = "power-cut MACHINE [-at PHASE]"
	fs := flag.NewFlagSet("power-cut", flag.ContinueOnError)
	at := fs.String("at", "", "cut the power when this phase starts (default: now)")
	pos := parseArgs(ts, fs, usage, args)
	wantArgs(ts, "power-cut", usage, pos, 1, 1)
	ms := sc.machine(ts, "power-cut", pos[0])
	if *at == "" {
		ms.powerOff("power-cut command")
		ms.mu.Lock()
		msg := ms.cutLog[len(ms.cutLog)-1]
		ms.mu.Unlock()
		if strings.Contains(msg, "failed") {
			ts.Fatalf("power-cut %s: %s", pos[0], msg)
		}
		fmt.Fprintf(ts.Stdout(), "%s: %s\n", pos[0], msg)
		return
	}
	p, err := parsePhase(*at)
	if err != nil {
		ts.Fatalf("power-cut: -at: %v", err)
	}
	ms.mu.Lock()
	ms.cuts = append(ms.cuts, powerCut{phase: p})
	ms.mu.Unlock()
	fmt.Fprintf(ts.Stdout(), "%s: power cut armed for phase %s\n", pos[0], p)
}

// slow-http RATE
func cmdSlowHTTP(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	const usage = "slow-http RATE (bytes/s, e.g. 200K, 1M; 0 removes the limit)"
	wantArgs(ts, "slow-http", usage, args, 1, 1)
	l := sc.needLab(ts, "slow-http")
	var rate int64
	if args[0] != "0" {
		r, err := parseBytes(args[0])
		if err != nil {
			ts.Fatalf("slow-http: %v\nusage: %s", err, usage)
		}
		rate = r
	}
	if err := l.SetHTTPRate(rate); err != nil {
		ts.Fatalf("slow-http: %v", err)
	}
	fmt.Fprintf(ts.Stdout(), "rack HTTP limited to %d bytes/s\n", rate)
}
