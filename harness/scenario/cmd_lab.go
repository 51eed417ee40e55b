package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/harness/images"
	"github.com/maasemu/maasemu/harness/lab"
	"github.com/maasemu/maasemu/harness/libvirt"
	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/harness/report"
	"github.com/maasemu/maasemu/harness/timeline"
)

// machineState is a machine of the script's lab and its deployment follower.
type machineState struct {
	sc *script
	m  *lab.Machine

	mu     sync.Mutex
	done   chan struct{} // closed when the follower ends; nil when none started
	result report.Result
	hasRes bool
	ferr   error
	cuts   []powerCut
	cutLog []string
}

// powerCut powers the machine off when phase starts.
type powerCut struct {
	phase timeline.Phase
	fired bool
}

// startFollower follows the machine's deployment in the background (lab.Follow replays the
// events so far), once per deployment.
func (ms *machineState) startFollower() {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.done != nil {
		select {
		case <-ms.done:
		default:
			return // already following
		}
	}
	done := make(chan struct{})
	ms.done, ms.hasRes = done, false
	l := ms.sc.lab
	ctx := ms.sc.ctx
	go func() {
		defer close(done)
		res, err := l.Follow(ctx, ms.m, lab.FollowOptions{OnPhase: ms.onPhase, Poll: 250 * time.Millisecond})
		ms.mu.Lock()
		ms.result, ms.ferr, ms.hasRes = res, err, true
		ms.mu.Unlock()
	}()
}

// onPhase fires pending power cuts when their phase starts.
func (ms *machineState) onPhase(s timeline.Span) {
	if s.State != timeline.StateRunning {
		return
	}
	ms.mu.Lock()
	fire := false
	for i := range ms.cuts {
		if !ms.cuts[i].fired && ms.cuts[i].phase == s.Phase {
			ms.cuts[i].fired = true
			fire = true
		}
	}
	ms.mu.Unlock()
	if fire {
		ms.powerOff("phase " + string(s.Phase) + " started")
	}
}

// powerOff pulls the machine's plug through its driver (not through MAAS).
func (ms *machineState) powerOff(why string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ms.sc.ctx), 2*time.Minute)
	defer cancel()
	err := ms.m.Driver().PowerOff(ctx)
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if err != nil {
		ms.cutLog = append(ms.cutLog, fmt.Sprintf("power cut (%s) failed: %v", why, err))
		return
	}
	ms.cutLog = append(ms.cutLog, "power cut: "+why)
}

// waitFollower waits for the follower to end (after the script's context is cancelled).
func (ms *machineState) waitFollower() {
	ms.mu.Lock()
	done := ms.done
	ms.mu.Unlock()
	if done != nil {
		<-done
	}
}

// finished returns the follower's result once it has ended.
func (ms *machineState) finished() (report.Result, bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.result, ms.hasRes
}

// lab [-driver sim|libvirt] [-subnet CIDR] [-budget PHASE=DUR]...
func cmdLab(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	const usage = "lab [-driver sim|libvirt] [-subnet CIDR] [-budget PHASE=DUR]..."
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	driver := fs.String("driver", sc.s.o.Driver, "machine driver: sim or libvirt")
	subnet := fs.String("subnet", "", "the virtual subnet (default 198.18.0.0/24)")
	budgets := budgetFlag{}
	fs.Var(budgets, "budget", "a phase budget PHASE=DUR (repeatable)")
	pos := parseArgs(ts, fs, usage, args)
	wantArgs(ts, "lab", usage, pos, 0, 0)
	if sc.lab != nil {
		ts.Fatalf("lab: this script already has a lab (one per script)")
	}
	cfg := lab.Config{Dir: filepath.Join(sc.work, "lab"), Name: labName(ts), Driver: *driver,
		LibvirtURI: sc.s.o.LibvirtURI, AgentPath: sc.s.o.AgentPath, CurtinDir: sc.s.o.CurtinDir, Logger: sc.s.log}
	switch *driver {
	case lab.DriverSim:
		cfg.Budgets = timeline.SimBudgets()
	case lab.DriverLibvirt:
		cfg.Budgets = timeline.VMBudgets()
	default:
		ts.Fatalf("lab: -driver %q: want sim or libvirt", *driver)
	}
	for p, d := range budgets {
		cfg.Budgets[p] = d
	}
	if *subnet != "" {
		p, err := netip.ParsePrefix(*subnet)
		if err != nil || !p.Addr().Is4() || p.Bits() > 29 || p.Bits() < 8 {
			ts.Fatalf("lab: -subnet %q: want an IPv4 CIDR from /8 to /29, like 198.18.0.0/24", *subnet)
		}
		cfg.Subnet = p.Masked()
	}
	if sc.s.o.AgentPath == "" {
		ts.Fatalf("lab: no maasemu-agent binary (Options.AgentPath): machines cannot run their ephemeral")
	}
	ctx := sc.ctx
	// The boot stream and the test images, built once per run and cached.
	var stream string
	var err error
	if *driver == lab.DriverSim {
		stream, err = sc.s.simBootStream(ctx)
	} else {
		stream, err = sc.s.ephemeralStream(ctx)
	}
	ts.Check(err)
	man, imgDir, err := sc.s.testImages(ctx)
	ts.Check(err)
	if *driver == lab.DriverLibvirt {
		select {
		case sc.s.libvirtSlots <- struct{}{}:
		case <-ctx.Done():
			ts.Fatalf("lab: waiting for a libvirt slot: %v", ctx.Err())
		}
		sc.labRelease = func() { <-sc.s.libvirtSlots }
	}
	l, err := lab.Start(ctx, cfg)
	if err != nil {
		ts.Fatalf("lab: starting a %s lab: %v", *driver, err)
	}
	sc.lab, sc.labDir = l, cfg.Dir
	if err := l.ImportStreams(ctx, stream); err != nil {
		ts.Fatalf("lab: importing the boot stream %s: %v", stream, err)
	}
	ts.Setenv("RACK_IP", l.RackIP.String())
	ts.Setenv("MAAS_URL", l.APIURL)
	ts.Setenv("MAAS_APIKEY", l.Region.AdminAPIKey())
	exportImages(ts, man, imgDir)
	ts.Setenv("LAB_DIR", cfg.Dir)
	ts.Setenv("LAB_DRIVER", *driver)
	fmt.Fprintf(ts.Stdout(), "lab up: driver %s, rack %s, API %s\n", *driver, l.RackIP, l.APIURL)
}

// labName is a short lab name from the script's name (libvirt domains carry it).
func labName(ts *testscript.TestScript) string {
	n := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r - 'A' + 'a'
		}
		return '-'
	}, ts.Name())
	if len(n) > 24 {
		n = n[:24]
	}
	return "sc-" + n
}

// budgetFlag collects -budget PHASE=DUR.
type budgetFlag map[timeline.Phase]time.Duration

func (b budgetFlag) String() string { return fmt.Sprint(map[timeline.Phase]time.Duration(b)) }

func (b budgetFlag) Set(v string) error {
	k, d, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("budget %q: want PHASE=DUR, e.g. curtin-extract=10s", v)
	}
	p, err := parsePhase(k)
	if err != nil {
		return err
	}
	dur, err := time.ParseDuration(d)
	if err != nil || dur <= 0 {
		return fmt.Errorf("budget %q: %q is not a positive duration like 10s", v, d)
	}
	b[p] = dur
	return nil
}

func parsePhase(s string) (timeline.Phase, error) {
	for _, p := range timeline.Phases {
		if string(p) == s {
			return p, nil
		}
	}
	names := make([]string, len(timeline.Phases))
	for i, p := range timeline.Phases {
		names[i] = string(p)
	}
	return "", fmt.Errorf("phase %q: want one of %s", s, strings.Join(names, " "))
}

// images: builds the test images (once per run, cached), sets $TEST_IMAGES and lists them.
func cmdImages(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	wantArgs(ts, "images", "images", args, 0, 0)
	man, dir, err := sc.s.testImages(sc.ctx)
	ts.Check(err)
	exportImages(ts, man, dir)
	w := ts.Stdout()
	for _, im := range man.Images {
		fmt.Fprintf(w, "%s %s %s %s %s\n", im.Name, im.File, im.Filetype, im.Expected, im.Diagnosis)
	}
}

// exportImages sets $TEST_IMAGES and, for each test image NAME (with - as _), $TI_NAME
// (its file), $TI_NAME_FILETYPE and, for dd images, $TI_NAME_ROOT_UUID.
func exportImages(ts *testscript.TestScript, man *images.TestManifest, dir string) {
	ts.Setenv("TEST_IMAGES", dir)
	for _, im := range man.Images {
		n := "TI_" + envName(im.Name)
		ts.Setenv(n, filepath.Join(dir, im.File))
		ts.Setenv(n+"_FILETYPE", im.Filetype)
		if im.RootUUID != "" {
			ts.Setenv(n+"_ROOT_UUID", im.RootUUID)
		}
	}
}

// upload [-sha256 HEX] [-size N] [-chunk N] [-arch A] NAME FILE FILETYPE [BASE_IMAGE]
func cmdUpload(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	const usage = "upload [-sha256 HEX] [-size N] [-chunk N] [-arch A] NAME FILE FILETYPE [BASE_IMAGE]"
	fs := flag.NewFlagSet("upload", flag.ContinueOnError)
	var o lab.UploadOptions
	fs.StringVar(&o.SHA256, "sha256", "", "declare this sha256 instead of the file's")
	fs.Int64Var(&o.Size, "size", 0, "declare this size instead of the file's")
	fs.IntVar(&o.Chunk, "chunk", 0, "upload chunk size")
	fs.StringVar(&o.Architecture, "arch", "", "architecture (default amd64/generic)")
	pos := parseArgs(ts, fs, usage, args)
	wantArgs(ts, "upload", usage, pos, 3, 4)
	l := sc.needLab(ts, "upload")
	base := "ubuntu/jammy"
	if len(pos) == 4 {
		base = pos[3]
	}
	if base == "-" {
		base = ""
	}
	file := ts.MkAbs(pos[1])
	if _, err := os.Stat(file); err != nil {
		ts.Fatalf("upload: %v", err)
	}
	br, err := l.UploadImageWith(sc.ctx, pos[0], file, pos[2], base, o)
	if err != nil {
		var ue *lab.UploadError
		if neg && errors.As(err, &ue) {
			fmt.Fprintf(ts.Stderr(), "%s\n", ue.Error())
			return
		}
		ts.Fatalf("upload %s (%s as %s): %v", pos[0], pos[1], pos[2], err)
	}
	if neg {
		ts.Fatalf("upload %s: the region accepted it (resource %d), want a refusal", pos[0], br.ID)
	}
	fmt.Fprintf(ts.Stdout(), "uploaded %s as boot resource %d (%s, %s)\n", br.Name, br.ID, br.Type, br.Architecture)
}

// machine NAME [-firmware bios|uefi] [-disk SIZE[:BUS[:SERIAL]]]... [-nics N] [-nic-model M] [-memory MiB] [-commission]
func cmdMachine(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	const usage = "machine NAME [-firmware bios|uefi] [-disk SIZE[:BUS[:SERIAL]]]... [-nics N] [-nic-model M] [-memory MiB] [-commission]"
	fs := flag.NewFlagSet("machine", flag.ContinueOnError)
	fw := fs.String("firmware", "bios", "bios or uefi")
	disks := &diskFlag{}
	fs.Var(disks, "disk", "a disk SIZE[:BUS[:SERIAL]] (repeatable)")
	nics := fs.Int("nics", 1, "number of NICs")
	nicModel := fs.String("nic-model", "", "NIC model: virtio e1000 e1000e rtl8139")
	memory := fs.Int("memory", 0, "memory in MiB (VMs)")
	commission := fs.Bool("commission", false, "commission the machine (boot it) instead of describing it through the API")
	pos := parseArgs(ts, fs, usage, args)
	wantArgs(ts, "machine", usage, pos, 1, 1)
	l := sc.needLab(ts, "machine")
	name := pos[0]
	sc.mu.Lock()
	_, dup := sc.machines[name]
	sc.mu.Unlock()
	if dup {
		ts.Fatalf("machine: %s already exists in this lab", name)
	}
	f := machine.Firmware(*fw)
	if f != machine.BIOS && f != machine.UEFI {
		ts.Fatalf("machine: -firmware %q: want bios or uefi", *fw)
	}
	if *nics < 1 || *nics > 8 {
		ts.Fatalf("machine: -nics %d: want 1 to 8", *nics)
	}
	spec := lab.MachineSpec{Name: name, Firmware: f, Disks: disks.disks, NICs: *nics, NICModel: *nicModel,
		MemoryMiB: *memory, Commission: *commission}
	m, err := l.NewMachine(sc.ctx, spec)
	if m != nil {
		sc.mu.Lock()
		sc.machines[name] = &machineState{sc: sc, m: m}
		sc.mu.Unlock()
	}
	if err != nil {
		ts.Fatalf("machine %s: %v", name, err)
	}
	ts.Setenv("SYSTEM_ID_"+envName(name), m.SystemID)
	var macs []string
	for _, mac := range m.MACs {
		macs = append(macs, mac.String())
	}
	for i, mac := range macs {
		ts.Setenv(fmt.Sprintf("MAC_%s_%d", envName(name), i), mac)
	}
	fmt.Fprintf(ts.Stdout(), "machine %s: system_id %s, %s, MACs %s\n", name, m.SystemID, f, strings.Join(macs, " "))
}

// envName turns a machine name into the part of an environment variable name.
func envName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// diskFlag collects -disk SIZE[:BUS[:SERIAL]].
type diskFlag struct{ disks []machine.Disk }

func (d *diskFlag) String() string { return fmt.Sprint(d.disks) }

func (d *diskFlag) Set(v string) error {
	parts := strings.Split(v, ":")
	if len(parts) > 3 {
		return fmt.Errorf("disk %q: want SIZE[:BUS[:SERIAL]]", v)
	}
	size, err := parseBytes(parts[0])
	if err != nil {
		return fmt.Errorf("disk %q: %w", v, err)
	}
	disk := machine.Disk{SizeBytes: size}
	if len(parts) > 1 {
		switch parts[1] {
		case "virtio", "sata", "scsi", "nvme", "":
			disk.Bus = parts[1]
		default:
			return fmt.Errorf("disk %q: bus %q: want virtio, sata, scsi or nvme", v, parts[1])
		}
	}
	if len(parts) > 2 {
		disk.Serial = parts[2]
	}
	d.disks = append(d.disks, disk)
	return nil
}

// parseBytes reads sizes like 4G, 512M, 64K or a number of bytes (binary multiples).
func parseBytes(s string) (int64, error) {
	mult := int64(1)
	num := s
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'K', 'k':
			mult, num = 1<<10, s[:n-1]
		case 'M', 'm':
			mult, num = 1<<20, s[:n-1]
		case 'G', 'g':
			mult, num = 1<<30, s[:n-1]
		case 'T', 't':
			mult, num = 1<<40, s[:n-1]
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, optionally with K, M, G or T", s)
	}
	return n * mult, nil
}

// layout MACHINE flat|lvm|custom|blank [FILE] [k=v]...
func cmdLayout(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	const usage = "layout MACHINE flat|lvm|custom|blank [FILE] [k=v]..."
	wantArgs(ts, "layout", usage, args, 2, -1)
	ms := sc.machine(ts, "layout", args[0])
	params := url.Values{"op": {"set_storage_layout"}, "storage_layout": {args[1]}}
	rest := args[2:]
	if args[1] == "custom" {
		if len(rest) == 0 {
			ts.Fatalf("layout: a custom layout needs a FILE with a curtin storage configuration\nusage: %s", usage)
		}
		b, err := os.ReadFile(ts.MkAbs(rest[0]))
		ts.Check(err)
		params.Set(fakemaas.CustomStorageParam, string(b))
		rest = rest[1:]
	}
	for _, kv := range rest {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			ts.Fatalf("layout: %q: want k=v (e.g. boot_size=1G)\nusage: %s", kv, usage)
		}
		params.Add(k, v)
	}
	apiExpect(sc, ts, neg, "layout", "POST", "machines/"+ms.m.SystemID+"/", params, false)
}

// deploy MACHINE IMAGE [-user-data FILE] [-hwe-kernel K]
func cmdDeploy(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	const usage = "deploy MACHINE IMAGE [-user-data FILE] [-hwe-kernel K]"
	fs := flag.NewFlagSet("deploy", flag.ContinueOnError)
	userData := fs.String("user-data", "", "a FILE of user-data for the installed OS")
	hwe := fs.String("hwe-kernel", "", "hwe_kernel")
	pos := parseArgs(ts, fs, usage, args)
	wantArgs(ts, "deploy", usage, pos, 2, 2)
	ms := sc.machine(ts, "deploy", pos[0])
	o := lab.DeployOptions{DistroSeries: pos[1], HWEKernel: *hwe}
	if *userData != "" {
		b, err := os.ReadFile(ts.MkAbs(*userData))
		ts.Check(err)
		o.UserData = b
	}
	err := sc.lab.Deploy(sc.ctx, ms.m, o)
	if err != nil {
		if neg {
			fmt.Fprintf(ts.Stderr(), "%v\n", err)
			return
		}
		ts.Fatalf("deploy %s %s: %v", pos[0], pos[1], err)
	}
	if neg {
		ts.Fatalf("deploy %s %s: the region accepted the deployment, want a refusal", pos[0], pos[1])
	}
	ms.startFollower()
	fmt.Fprintf(ts.Stdout(), "deploying %s on %s (%s)\n", pos[1], pos[0], ms.m.SystemID)
}

// release MACHINE
func cmdRelease(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	wantArgs(ts, "release", "release MACHINE", args, 1, 1)
	ms := sc.machine(ts, "release", args[0])
	apiExpect(sc, ts, neg, "release", "POST", "machines/"+ms.m.SystemID+"/", url.Values{"op": {"release"}}, false)
}

// await MACHINE STATUS [-timeout DUR]
func cmdAwait(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	const usage = "await MACHINE STATUS [-timeout DUR]"
	fs := flag.NewFlagSet("await", flag.ContinueOnError)
	def := 10 * time.Minute
	if sc.lab != nil && sc.lab.DriverName() == lab.DriverLibvirt {
		def = 40 * time.Minute
	}
	timeout := fs.Duration("timeout", def, "give up after this long")
	pos := parseArgs(ts, fs, usage, args)
	if len(pos) > 2 {
		// a status of several words: "Failed deployment"
		pos = []string{pos[0], strings.Join(pos[1:], " ")}
	}
	wantArgs(ts, "await", usage, pos, 2, 2)
	ms := sc.machine(ts, "await", pos[0])
	want := pos[1]
	ctx, cancel := context.WithTimeout(sc.ctx, *timeout)
	defer cancel()
	if want == lab.StatusDeployed || want == lab.StatusFailed {
		ms.startFollower()
		ms.mu.Lock()
		done := ms.done
		ms.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			ts.Fatalf("await %s %q: still %s after %s", pos[0], want, currentStatus(sc, ms), *timeout)
		}
		res, _ := ms.finished()
		writeResult(ts, ms, res)
		switch {
		case res.Status == "cancelled":
			ts.Fatalf("await %s %q: the script's time ran out (%v)", pos[0], want, ms.ferr)
		case neg && res.Status == want:
			ts.Fatalf("await %s: the deployment ended %q, want anything else", pos[0], res.Status)
		case !neg && res.Status != want:
			ts.Fatalf("await %s: want %q, the deployment ended %q: %s", pos[0], want, res.Status, res.Summary())
		}
		return
	}
	if neg {
		ts.Fatalf("unsupported: ! wait for status %q (only Deployed and Failed deployment are terminal)", want)
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		got := currentStatus(sc, ms)
		if got == want {
			fmt.Fprintf(ts.Stdout(), "%s: %s\n", pos[0], got)
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			ts.Fatalf("await %s %q: still %q after %s", pos[0], want, got, *timeout)
		}
	}
}

// currentStatus is the machine's MAAS status name, or the error reading it.
func currentStatus(sc *script, ms *machineState) string {
	r, err := sc.lab.API(context.WithoutCancel(sc.ctx), "GET", "machines/"+ms.m.SystemID+"/", nil)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	var v struct {
		StatusName string `json:"status_name"`
	}
	if r.Status != 200 || json.Unmarshal(r.Body, &v) != nil {
		return fmt.Sprintf("unknown (%d %s)", r.Status, bytes.TrimSpace(r.Body))
	}
	return v.StatusName
}

// writeResult writes a deployment's verdict, phases and diagnosis for stdout matching.
func writeResult(ts *testscript.TestScript, ms *machineState, r report.Result) {
	w := ts.Stdout()
	fmt.Fprintf(w, "status: %s\n", r.Status)
	if r.StatusMessage != "" {
		fmt.Fprintf(w, "message: %s\n", r.StatusMessage)
	}
	if r.FailedPhase != "" {
		fmt.Fprintf(w, "failed-phase: %s\n", r.FailedPhase)
	}
	for _, p := range r.Phases {
		if p.State == timeline.StatePending {
			continue
		}
		fmt.Fprintf(w, "phase %s %s %.1fs\n", p.Phase, p.State, p.Seconds)
	}
	for _, f := range r.Diagnosis {
		fmt.Fprintf(w, "diagnosis %s %s: %s\n", f.ID, f.Severity, f.Summary)
		for _, e := range f.Evidence {
			fmt.Fprintf(w, "  | %s\n", e)
		}
	}
	ms.mu.Lock()
	for _, c := range ms.cutLog {
		fmt.Fprintf(w, "%s\n", c)
	}
	ms.mu.Unlock()
	if r.Error != "" {
		fmt.Fprintf(w, "error: %s\n", r.Error)
	}
}

// api [-export VAR=JSONPATH]... GET|POST|PUT|DELETE PATH [k=v | k@=FILE]...
func cmdAPI(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	const usage = "api [-export VAR=JSONPATH]... GET|POST|PUT|DELETE PATH [k=v | k@=FILE]..."
	var exports []string
	for len(args) >= 2 && args[0] == "-export" {
		exports, args = append(exports, args[1]), args[2:]
	}
	wantArgs(ts, "api", usage, args, 2, -1)
	sc.needLab(ts, "api")
	params := url.Values{}
	for _, kv := range args[2:] {
		if k, file, ok := strings.Cut(kv, "@="); ok && k != "" && !strings.Contains(k, "=") {
			b, err := os.ReadFile(ts.MkAbs(file))
			ts.Check(err)
			params.Add(k, string(b))
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			ts.Fatalf("api: %q: want k=v or k@=FILE\nusage: %s", kv, usage)
		}
		params.Add(k, v)
	}
	body := apiExpect(sc, ts, neg, "api", args[0], args[1], params, true)
	if len(exports) == 0 {
		return
	}
	if neg {
		ts.Fatalf("api: -export needs a successful call")
	}
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		ts.Fatalf("api: -export: the answer is not JSON: %v", err)
	}
	for _, e := range exports {
		name, expr, ok := strings.Cut(e, "=")
		if !ok || name == "" || envName(name) != name {
			ts.Fatalf("api: -export %q: want VAR=JSONPATH with VAR made of letters, digits and _", e)
		}
		v, err := JSONPath(doc, expr)
		if err != nil {
			ts.Fatalf("api: -export %s: %v", name, err)
		}
		ts.Setenv(name, v)
	}
}

// JSONPath picks a value out of decoded JSON: dot-separated steps, each a key of an
// object, an index into an array, or key=value selecting the first array element whose
// key has that value (e.g. "name=eth0.id", "0.system_id", "vlan.vid"). A step in
// brackets is taken as it is, dots included: "[cidr=198.18.0.0/24].id". Strings come out
// as they are; numbers, booleans and null as JSON; objects and arrays as compact JSON.
func JSONPath(doc any, path string) (string, error) {
	steps, err := pathSteps(path)
	if err != nil {
		return "", err
	}
	cur := doc
	for _, step := range steps {
		switch v := cur.(type) {
		case map[string]any:
			next, ok := v[step]
			if !ok {
				return "", fmt.Errorf("path %q: no key %q (keys: %s)", path, step, strings.Join(sortedKeys(v), " "))
			}
			cur = next
		case []any:
			if k, want, ok := strings.Cut(step, "="); ok {
				found := false
				for _, el := range v {
					if m, ok := el.(map[string]any); ok && fmt.Sprint(m[k]) == want {
						cur, found = el, true
						break
					}
				}
				if !found {
					return "", fmt.Errorf("path %q: no element with %s=%s", path, k, want)
				}
				continue
			}
			i, err := strconv.Atoi(step)
			if err != nil || i < 0 || i >= len(v) {
				return "", fmt.Errorf("path %q: step %q: want an index below %d or key=value", path, step, len(v))
			}
			cur = v[i]
		default:
			return "", fmt.Errorf("path %q: step %q: %v is not an object or an array", path, step, cur)
		}
	}
	if s, ok := cur.(string); ok {
		return s, nil
	}
	b, err := json.Marshal(cur)
	return string(b), err
}

// pathSteps splits a JSONPath at dots outside brackets.
func pathSteps(path string) ([]string, error) {
	var steps []string
	for rest := path; ; {
		var step string
		if strings.HasPrefix(rest, "[") {
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return nil, fmt.Errorf("path %q: unclosed [", path)
			}
			step, rest = rest[1:end], rest[end+1:]
			if rest != "" && !strings.HasPrefix(rest, ".") {
				return nil, fmt.Errorf("path %q: want a dot after ]", path)
			}
		} else {
			i := strings.IndexByte(rest, '.')
			if i < 0 {
				i = len(rest)
			}
			step, rest = rest[:i], rest[i:]
		}
		if step == "" {
			return nil, fmt.Errorf("path %q has an empty step", path)
		}
		steps = append(steps, step)
		if rest == "" {
			return steps, nil
		}
		rest = rest[1:]
		if rest == "" {
			return nil, fmt.Errorf("path %q ends with a dot", path)
		}
	}
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// apiExpect makes an API call: a 2xx answer goes to stdout (JSON indented when show is
// set) and is returned; an error status fails the script unless neg, and then goes to
// stderr as "STATUS BODY".
func apiExpect(sc *script, ts *testscript.TestScript, neg bool, cmd, method, path string, params url.Values, show bool) []byte {
	r, err := sc.lab.API(sc.ctx, method, path, params)
	if err != nil {
		ts.Fatalf("%s: %v", cmd, err)
	}
	body := bytes.TrimSpace(r.Body)
	if r.Status >= 300 {
		if neg {
			fmt.Fprintf(ts.Stderr(), "%d %s\n", r.Status, body)
			return nil
		}
		ts.Fatalf("%s: %s %s: the region answered %d %s", cmd, strings.ToUpper(method), path, r.Status, body)
	}
	if neg {
		ts.Fatalf("%s: %s %s: the region answered %d, want an error status\n%s", cmd, strings.ToUpper(method), path, r.Status, truncate(body, 2000))
	}
	if !show {
		fmt.Fprintf(ts.Stdout(), "%d\n", r.Status)
		return body
	}
	out := body
	var v any
	if json.Unmarshal(body, &v) == nil {
		if pretty, err := json.MarshalIndent(v, "", "  "); err == nil {
			out = pretty
		}
	}
	fmt.Fprintf(ts.Stdout(), "%s\n", out)
	return body
}

func truncate(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	return append(append([]byte(nil), b[:n]...), "..."...)
}

// ensureLibvirt starts the libvirt daemons when they can be; the [libvirt] condition uses it.
func ensureLibvirt(ctx context.Context) error { return libvirt.EnsureDaemons(ctx) }
