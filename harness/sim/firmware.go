package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/harness/sim/bootscript"
	"github.com/maasemu/maasemu/harness/sim/tftpc"
	"github.com/maasemu/maasemu/harness/vnet"
	"github.com/maasemu/maasemu/trace"
)

// run is the machine's life from power on: network boot, then whatever the rack's answer
// says, until it is powered off.
func (m *Machine) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	con, err := m.openConsole()
	if err != nil {
		m.d.log.Error("sim: console", "machine", m.spec.Name, "err", err)
		return
	}
	defer con.Close()
	if m.spec.Firmware == machine.UEFI {
		con.say("BdsDxe: loading Boot0001 \"UEFI PXEv4 (MAC:%s)\" (maasemu sim firmware)", strings.ToUpper(strings.ReplaceAll(m.mac().String(), ":", "")))
	} else {
		con.say("SeaBIOS (maasemu sim firmware)")
	}
	for cycle := 0; ctx.Err() == nil; cycle++ {
		nic, err := m.d.cfg.Switch.NewStack(vnet.StackConfig{Name: fmt.Sprintf("%s-nic0-%d", m.spec.Name, cycle), MAC: m.mac(), Promiscuous: true})
		if err != nil {
			con.say("sim: cannot attach the NIC to the virtual network: %v", err)
			return
		}
		next := m.boot(ctx, con, nic)
		_ = nic.Close()
		switch next {
		case bootAgain:
			continue
		case bootHalt:
			m.halted(done)
			return
		case bootIdle:
			<-ctx.Done()
			return
		case bootRetry:
			select {
			case <-ctx.Done():
				return
			case <-time.After(m.d.cfg.RetryDelay):
			}
		}
	}
}

type nextStep int

const (
	bootAgain nextStep = iota // the OS rebooted
	bootRetry                 // nothing booted: firmware tries the network again after a pause
	bootHalt                  // the machine powered itself off
	bootIdle                  // running (an OS, or stuck where a real machine would be)
)

// boot is one boot of the machine: network first, then the disk.
func (m *Machine) boot(ctx context.Context, con *console, nic *vnet.Stack) nextStep {
	fw := &firmware{m: m, con: con, nic: nic}
	defer fw.close()
	act, err := fw.netboot(ctx)
	if ctx.Err() != nil {
		return bootIdle
	}
	if err != nil {
		con.say("PXE: %v", err)
		con.say("PXE: no network boot; trying the next boot device")
		act = bootscript.Action{Kind: "local"}
	}
	for _, l := range act.Output {
		con.say("%s", l)
	}
	switch act.Kind {
	case "linux":
		return m.ephemeral(ctx, fw, act)
	case "halt":
		con.say("sim: the boot config powers the machine off")
		return bootHalt
	case "chain", "local", "exit":
		return m.diskBoot(ctx, fw, act)
	}
	con.say("sim: the bootloader did nothing this machine can follow (%s)", act.Kind)
	return bootRetry
}

// firmware is the network side of one boot: the NIC, its lease, and clients on it.
type firmware struct {
	m   *Machine
	con *console
	nic *vnet.Stack

	lease  *dhcpv4.DHCPv4
	server netip.Addr // next-server
	http   *http.Client
	// fetched caches what GRUB loaded so the kernel is not fetched twice.
	fetched map[string]int64
}

func (fw *firmware) close() {
	if fw.http != nil {
		fw.http.CloseIdleConnections()
	}
}

func (fw *firmware) step(step, msg string, attrs map[string]any) {
	if attrs == nil {
		attrs = map[string]any{}
	}
	attrs["step"] = step
	fw.m.d.cfg.Events.Emit(trace.Event{Source: trace.SourceMachine, Kind: trace.KindMachineStep,
		MAC: strings.ToLower(fw.m.mac().String()), Message: fw.m.spec.Name + ": " + msg, Attrs: attrs})
}

// dhcp runs DISCOVER/OFFER/REQUEST/ACK. pxe adds the options a PXE ROM sends; without
// it the client looks like the ephemeral's or the installed OS's DHCP client.
func (fw *firmware) dhcp(ctx context.Context, pxe bool) (*dhcpv4.DHCPv4, error) {
	conn, err := fw.nic.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 68), vnet.UDPOptions{Broadcast: true})
	if err != nil {
		return nil, err
	}
	c, err := nclient4.NewWithConn(conn, fw.m.mac(), nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3))
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer c.Close()
	var mods []dhcpv4.Modifier
	if pxe {
		arch, class := iana.INTEL_X86PC, "PXEClient:Arch:00000:UNDI:002001"
		if fw.m.spec.Firmware == machine.UEFI {
			arch, class = iana.EFI_X86_64, "PXEClient:Arch:00007:UNDI:003016"
		}
		u := fw.m.uuid()
		mods = append(mods,
			dhcpv4.WithOption(dhcpv4.OptClientArch(arch)),
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier(class)),
			dhcpv4.WithGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 2, 1}),
			dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, u[:]...)),
			dhcpv4.WithRequestedOptions(dhcpv4.OptionTFTPServerName, dhcpv4.OptionBootfileName,
				dhcpv4.OptionClassIdentifier, dhcpv4.OptionVendorSpecificInformation, dhcpv4.GenericOptionCode(210)))
	} else {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("udhcp 1.35.0")))
	}
	dctx, cancel := context.WithTimeout(ctx, fw.m.d.cfg.DHCPTimeout)
	defer cancel()
	lease, err := c.Request(dctx, mods...)
	if err != nil {
		return nil, fmt.Errorf("DHCP: no lease: %w", err)
	}
	ack := lease.ACK
	mask := ack.SubnetMask()
	ones, _ := mask.Size()
	if ones == 0 {
		ones = 24
	}
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || ip.IsUnspecified() {
		return nil, errors.New("DHCP: the ACK assigns no address")
	}
	if err := fw.nic.AddAddress(netip.PrefixFrom(ip, ones)); err != nil {
		return nil, err
	}
	if r := ack.Router(); len(r) > 0 {
		if gw, ok := netip.AddrFromSlice(r[0].To4()); ok {
			_ = fw.nic.SetGateway(gw)
		}
	}
	fw.http = &http.Client{Transport: &http.Transport{DialContext: fw.dial, MaxIdleConnsPerHost: 4}}
	return ack, nil
}

// dial connects through the NIC, failing at once while it has no address, as a kernel
// with no route does (the first boot's init-local reports before the network is up).
func (fw *firmware) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if a := fw.nic.Addr(); !a.IsValid() || a.IsUnspecified() {
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ENETUNREACH}
	}
	return fw.nic.DialContext(ctx, network, addr)
}

// netboot is what the NIC's boot ROM and the bootloader it loads do.
func (fw *firmware) netboot(ctx context.Context) (bootscript.Action, error) {
	con := fw.con
	con.say("PXE: DHCP (%s)...", fw.m.mac())
	ack, err := fw.dhcp(ctx, true)
	if err != nil {
		return bootscript.Action{}, err
	}
	fw.lease = ack
	fw.server, _ = netip.AddrFromSlice(ack.ServerIPAddr.To4())
	file := ack.BootFileName
	if file == "" {
		file = ack.BootFileNameOption()
	}
	con.say("PXE: IP %s, next-server %s, file %q", ack.YourIPAddr, ack.ServerIPAddr, file)
	fw.step("dhcp", "leased "+ack.YourIPAddr.String(), map[string]any{"file": file})
	if file == "" {
		return bootscript.Action{}, errors.New("PXE-E53: no boot filename received")
	}
	// The bootloader itself.
	bl, err := fw.fetch(ctx, file, "")
	if err != nil {
		return bootscript.Action{}, fmt.Errorf("PXE-E32: fetching %s: %w", file, err)
	}
	if len(bl) == 0 {
		return bootscript.Action{}, fmt.Errorf("PXE: %s is empty", file)
	}
	name := strings.ToLower(path.Base(strings.ReplaceAll(file, `\`, "/")))
	fw.step("bootloader", "loaded "+name, map[string]any{"file": file, "bytes": len(bl)})
	switch name {
	case "lpxelinux.0", "pxelinux.0":
		return fw.pxelinux(ctx, file)
	case "bootx64.efi", "grubx64.efi":
		return fw.grubnet(ctx, file, name)
	}
	return bootscript.Action{}, fmt.Errorf("sim: bootloader %q is not one this simulated machine can run (amd64 pxelinux, shim and GRUB are)", file)
}

// fetch gets a file the way a bootloader does: an http:// URL over HTTP, anything else by
// TFTP from next-server, relative to dir.
func (fw *firmware) fetch(ctx context.Context, file, dir string) ([]byte, error) {
	if strings.HasPrefix(file, "http://") {
		return fw.httpGet(ctx, file)
	}
	if dir != "" && !strings.HasPrefix(file, "/") {
		file = path.Join(dir, file)
	}
	var buf bytes.Buffer
	if err := fw.tftp(ctx, strings.TrimPrefix(file, "/"), &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (fw *firmware) tftp(ctx context.Context, file string, w io.Writer) error {
	conn, err := fw.nic.ListenUDP(netip.AddrPortFrom(fw.nic.Addr(), 0), vnet.UDPOptions{})
	if err != nil {
		return err
	}
	defer conn.Close()
	server := net.UDPAddrFromAddrPort(netip.AddrPortFrom(fw.server, 69))
	_, err = tftpc.Get(ctx, conn, server, file, w, tftpc.Options{BlockSize: 1468, TSize: true, Timeout: 2 * time.Second})
	return err
}

func (fw *firmware) httpGet(ctx context.Context, u string) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := fw.httpTo(ctx, u, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// httpTo streams u into w and returns the byte count.
func (fw *firmware) httpTo(ctx context.Context, u string, w io.Writer) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", "maasemu-sim-firmware")
	resp, err := fw.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, &httpError{url: u, status: resp.StatusCode}
	}
	n, err := io.Copy(w, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("%s: got %d of %d bytes", u, n, resp.ContentLength)
	}
	return n, err
}

type httpError struct {
	url    string
	status int
}

func (e *httpError) Error() string { return fmt.Sprintf("%s: HTTP %d", e.url, e.status) }

func notFound(err error) bool {
	var he *httpError
	return tftpc.NotFound(err) || (errors.As(err, &he) && he.status == http.StatusNotFound)
}

// pxelinux is lpxelinux.0: ldlinux.c32 and the config from the path prefix (option 210,
// which MAAS sets to the rack's HTTP URL), tried in pxelinux's order.
func (fw *firmware) pxelinux(ctx context.Context, file string) (bootscript.Action, error) {
	prefix := path.Dir(file) + "/"
	if prefix == "./" {
		prefix = ""
	}
	if v := fw.lease.Options.Get(dhcpv4.GenericOptionCode(210)); len(v) > 0 {
		prefix = string(v)
	}
	get := func(name string) ([]byte, error) {
		if strings.HasPrefix(prefix, "http://") {
			return fw.httpGet(ctx, prefix+name)
		}
		return fw.fetch(ctx, prefix+name, "")
	}
	fw.con.say("PXELINUX 6.04 (maasemu sim: following the config as lpxelinux.0 would)")
	if _, err := get("ldlinux.c32"); err != nil {
		return bootscript.Action{}, fmt.Errorf("failed to load ldlinux.c32: %w", err)
	}
	u := fw.m.uuid()
	uuid := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	mac := "01-" + strings.ReplaceAll(strings.ToLower(fw.m.mac().String()), ":", "-")
	ip4 := fw.lease.YourIPAddr.To4()
	hexIP := fmt.Sprintf("%02X%02X%02X%02X", ip4[0], ip4[1], ip4[2], ip4[3])
	names := []string{uuid, mac}
	for i := len(hexIP); i > 0; i-- {
		names = append(names, hexIP[:i])
	}
	names = append(names, "default")
	for _, n := range names {
		cfg, err := get("pxelinux.cfg/" + n)
		if err != nil {
			if notFound(err) {
				continue
			}
			return bootscript.Action{}, fmt.Errorf("pxelinux.cfg/%s: %w", n, err)
		}
		fw.step("config", "read pxelinux.cfg/"+n, map[string]any{"file": "pxelinux.cfg/" + n})
		act, err := bootscript.PXELinux(string(cfg), fw.m.mac())
		if err != nil {
			return act, err
		}
		switch act.Kind {
		case "chain":
			for _, c32 := range []string{"chain.c32", "libcom32.c32", "libutil.c32"} {
				if _, err := get(c32); err != nil {
					return act, fmt.Errorf("failed to load %s: %w", c32, err)
				}
			}
		case "linux":
			for _, f := range []*string{&act.Kernel, &act.Initrd} {
				if *f == "" {
					continue
				}
				if !strings.HasPrefix(*f, "http://") {
					*f = prefix + *f
				}
			}
		}
		return act, nil
	}
	return bootscript.Action{}, errors.New("pxelinux: no config file found (tried " + strings.Join(names, ", ") + ")")
}

// grubnet is shim (bootx64.efi) loading grubx64.efi from where it came from, and that
// GRUB reading grub/grub.cfg over the same protocol.
func (fw *firmware) grubnet(ctx context.Context, file, name string) (bootscript.Action, error) {
	dev := "tftp," + fw.server.String()
	if u, err := url.Parse(file); err == nil && u.Scheme == "http" {
		dev = "http," + u.Host
	}
	if name == "bootx64.efi" {
		grub := path.Join(path.Dir(file), "grubx64.efi")
		if strings.HasPrefix(file, "http://") {
			grub = strings.TrimSuffix(file, path.Base(file)) + "grubx64.efi"
		}
		if _, err := fw.fetch(ctx, grub, ""); err != nil {
			return bootscript.Action{}, fmt.Errorf("shim: failed to load grubx64.efi: %w", err)
		}
		fw.step("bootloader", "shim loaded grubx64.efi", map[string]any{"file": grub})
	}
	fw.con.say("GRUB (maasemu sim: running the served scripts as GRUB would)")
	env := &netGrub{fw: fw, ctx: ctx}
	// GRUB asks for its module lists first; MAAS answers them empty.
	for _, lst := range []string{"command.lst", "fs.lst", "crypto.lst", "terminal.lst"} {
		_, _ = env.ReadFile(dev, "/grub/x86_64-efi/"+lst)
	}
	cfg, err := env.ReadFile(dev, "/grub/grub.cfg")
	if err != nil {
		return bootscript.Action{}, fmt.Errorf("GRUB: /grub/grub.cfg: %w", err)
	}
	ip := fw.lease.YourIPAddr.String()
	vars := map[string]string{
		"root": dev, "prefix": "(" + dev + ")/grub", "net_default_mac": strings.ToLower(fw.m.mac().String()),
		"net_default_ip": ip, "net_default_server": fw.server.String(), "grub_cpu": "x86_64", "grub_platform": "efi",
	}
	act, err := bootscript.Grub(string(cfg), vars, env)
	if err != nil {
		return act, err
	}
	if act.Kind == "linux" {
		d := strings.Trim(act.Device, "()")
		act.Kernel, act.Initrd = env.url(d, act.Kernel), env.url(d, act.Initrd)
	}
	return act, nil
}

// netGrub is GRUB's view of (tftp,...) and (http,...) devices.
type netGrub struct {
	fw    *firmware
	ctx   context.Context
	disks *disks // probed on first use
}

func (g *netGrub) url(dev, p string) string {
	if h, ok := strings.CutPrefix(dev, "http,"); ok {
		return "http://" + h + p
	}
	if _, ok := strings.CutPrefix(dev, "tftp,"); ok {
		return "tftp:" + p
	}
	return p
}

func (g *netGrub) ReadFile(dev, p string) ([]byte, error) {
	if h, ok := strings.CutPrefix(dev, "http,"); ok {
		return g.fw.httpGet(g.ctx, "http://"+h+p)
	}
	if _, ok := strings.CutPrefix(dev, "tftp,"); ok {
		return g.fw.fetch(g.ctx, strings.TrimPrefix(p, "/"), "")
	}
	return nil, fmt.Errorf("GRUB: device (%s) is not reachable from network boot", dev)
}

// FileExists loads the file from the network, as GRUB's linux and initrd commands do, or
// looks for it on a disk.
func (g *netGrub) FileExists(dev, p string) bool {
	if !strings.HasPrefix(dev, "http,") && !strings.HasPrefix(dev, "tftp,") {
		d, err := g.localDisks()
		return err == nil && d.FileExists(dev, p)
	}
	u := g.url(dev, p)
	if g.fw.fetched == nil {
		g.fw.fetched = map[string]int64{}
	}
	if _, ok := g.fw.fetched[u]; ok {
		return true
	}
	var n int64
	var err error
	if strings.HasPrefix(u, "http://") {
		n, err = g.fw.httpSize(g.ctx, u)
	} else {
		cw := &countWriter{}
		err = g.fw.tftp(g.ctx, strings.TrimPrefix(p, "/"), cw)
		n = cw.n
	}
	if err != nil {
		return false
	}
	g.fw.fetched[u] = n
	return true
}

// Search looks on the machine's disks, as MAAS's local-boot configs
// (config.local.*.template) make the network-booted GRUB do.
func (g *netGrub) Search(by, value string) (string, bool) {
	d, err := g.localDisks()
	if err != nil {
		return "", false
	}
	return d.Search(by, value)
}

// localDisks probes the machine's disks once per GRUB run.
func (g *netGrub) localDisks() (*disks, error) {
	if g.disks == nil {
		d, err := g.fw.m.openDisks()
		if err != nil {
			return nil, err
		}
		g.disks = d
	}
	return g.disks, nil
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// loadKernel checks that the kernel and initrd the bootloader named are served. Over HTTP
// only their first KiB is read: a simulated machine runs no kernel, and fetching every
// machine's kernel whole costs more than the rest of its deployment (a VM fetches them).
func (fw *firmware) loadKernel(ctx context.Context, act bootscript.Action) error {
	for _, f := range []string{act.Kernel, act.Initrd} {
		if f == "" {
			continue
		}
		if _, ok := fw.fetched[f]; ok {
			continue
		}
		var n int64
		var err error
		switch {
		case strings.HasPrefix(f, "http://"):
			n, err = fw.httpSize(ctx, f)
		default:
			cw := &countWriter{}
			err = fw.tftp(ctx, strings.TrimPrefix(strings.TrimPrefix(f, "tftp:"), "/"), cw)
			n = cw.n
		}
		if err != nil {
			return fmt.Errorf("loading %s: %w", f, err)
		}
		fw.con.say("Loading %s... %d bytes ok (sim: header read)", path.Base(f), n)
	}
	return nil
}

// httpSize reads the first KiB of u and returns the file's size.
func (fw *firmware) httpSize(ctx context.Context, u string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", "maasemu-sim-firmware")
	req.Header.Set("Range", "bytes=0-1023")
	resp, err := fw.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		var a, b, total int64
		if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-%d/%d", &a, &b, &total); err != nil {
			return 0, fmt.Errorf("%s: bad Content-Range %q", u, resp.Header.Get("Content-Range"))
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return total, nil
	case http.StatusOK:
		return resp.ContentLength, nil
	}
	return 0, &httpError{url: u, status: resp.StatusCode}
}
