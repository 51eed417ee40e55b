package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/canonical/gomaasclient/client"
	"github.com/canonical/gomaasclient/entity"
	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/dhcpv6/nclient6"
	"github.com/vishvananda/netlink"
	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"

	"github.com/maasemu/maasemu/fakemaas/oauth"
	"github.com/maasemu/maasemu/fakemaas/regiontest"
)

var rackLine = regexp.MustCompile(`^maasemu rack serving (.*)$`)

// importedState is a state directory with the default test stream imported (kernels,
// squashfs and the pxelinux and GRUB bootloaders).
func importedState(t *testing.T, bin string) (state string, stream *regiontest.Stream) {
	t.Helper()
	state = t.TempDir()
	stream = regiontest.DefaultStream(t.TempDir())
	if err := stream.Write(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "images", "import", "--source", stream.Dir, "--state", state).CombinedOutput(); err != nil {
		t.Fatalf("maasemu images import: %v\n%s", err, out)
	}
	return state, stream
}

func bootloaderFile(s *regiontest.Stream, typ, name string) []byte {
	for _, b := range s.Bootloaders {
		if b.Type == typ {
			return b.Files[name]
		}
	}
	return nil
}

// rackAddrs parses the rack line: the TFTP and HTTP addresses.
func rackAddrs(t *testing.T, line string) (tftpAddr, httpURL string) {
	t.Helper()
	if m := regexp.MustCompile(`TFTP on udp (\S+?)(,|$)`).FindStringSubmatch(line); m != nil {
		tftpAddr = m[1]
	}
	if m := regexp.MustCompile(`HTTP on (http://\S+/)`).FindStringSubmatch(line); m != nil {
		httpURL = m[1]
	}
	return tftpAddr, httpURL
}

func curl(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl (make deps installs it)")
	}
	cmd := exec.Command("curl", append([]string{"-sS", "--fail", "--max-time", "20"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, errors.New(strings.TrimSpace(stderr.String()) + ": " + err.Error())
	}
	return out, nil
}

// writeFakeCurtin creates a FAKE curtin package (not curtin): its pack.pack_install returns
// a script naming the configs and args it got, so that the test can see --curtin reach
// the region's packer on a host where the real curtin cannot be installed.
func writeFakeCurtin(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fakecurtin")
	if err := os.MkdirAll(filepath.Join(dir, "curtin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"curtin/__init__.py": "# FAKE curtin for maasemu's serve test. Not curtin.\n",
		"curtin/pack.py": "# FAKE curtin.pack for maasemu's serve test. Not curtin.\n" +
			"def pack_install(fdout=None, configs=None, paths=None, add_files=None, copy_files=None, args=None):\n" +
			"    return '#!/bin/sh\\n# FAKE curtin pack: %d configs, args %s\\n' % (len(configs), ' '.join(args))\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestServeRackLoopback runs "maasemu serve --tftp --http" on loopback beside the region:
// curl fetches a machine's pxelinux config and the bootloader by TFTP and the API version
// through the rack's HTTP port (the region behind /MAAS/). --curtin reaches the packer
// that makes the curtin user-data, and --deploy-timeout fails a silent deployment.
func TestServeRackLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the maasemu binary")
	}
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("needs python3 for the --curtin packer")
	}
	bin := buildMaasemu(t)
	state, stream := importedState(t, bin)
	srv := startServe(t, bin, state, "--tftp", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--deploy-timeout", "3s", "--curtin", writeFakeCurtin(t))
	tftpAddr, httpURL := rackAddrs(t, srv.rack)
	if tftpAddr == "" || httpURL == "" {
		t.Fatalf("rack line %q names no TFTP or HTTP address", srv.rack)
	}
	key, err := os.ReadFile(filepath.Join(state, "admin.apikey"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.GetClient(srv.url, strings.TrimSpace(string(key)), "2.0")
	if err != nil {
		t.Fatal(err)
	}
	const mac = "52:54:00:5e:00:01"
	m, err := c.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: "tftp1", MACAddresses: []string{mac}},
		map[string]any{"commission": "false"})
	if err != nil {
		t.Fatal(err)
	}

	// TFTP: the machine's config, rendered for the address the request came to, and the
	// imported bootloader.
	cfg, err := curl(t, "tftp://"+tftpAddr+"/pxelinux.cfg/01-52-54-00-5e-00-01")
	if err != nil {
		t.Fatalf("curl tftp config: %v\n%s", err, srv.stderr)
	}
	for _, want := range []string{"DEFAULT execute", "KERNEL http://127.0.0.1:5248/images/", "ip=::::tftp1:BOOTIF"} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("TFTP config lacks %q:\n%s", want, cfg)
		}
	}
	lp, err := curl(t, "tftp://"+tftpAddr+"/lpxelinux.0")
	if err != nil || !bytes.Equal(lp, bootloaderFile(stream, "pxe", "lpxelinux.0")) {
		t.Errorf("curl tftp lpxelinux.0: %d bytes, %v", len(lp), err)
	}
	if _, err := curl(t, "--path-as-is", "tftp://"+tftpAddr+"/../etc/passwd"); err == nil {
		t.Error("TFTP served a path outside its tree")
	}

	// HTTP: the region's API version through the rack's port, and the same config.
	ver, err := curl(t, httpURL+"MAAS/api/2.0/version/")
	if err != nil {
		t.Fatalf("curl version through the rack: %v", err)
	}
	var v struct {
		Capabilities []string `json:"capabilities"`
		Version      string   `json:"version"`
	}
	if err := json.Unmarshal(ver, &v); err != nil || v.Version == "" || len(v.Capabilities) == 0 {
		t.Errorf("version through the rack: %v\n%s", err, ver)
	}
	if direct, err := curl(t, srv.url+"api/2.0/version/"); err != nil || !bytes.Equal(direct, ver) {
		t.Errorf("version on the region's own port differs: %v\n%s\n%s", err, direct, ver)
	}
	if hcfg, err := curl(t, httpURL+"pxelinux.cfg/01-52-54-00-5e-00-01"); err != nil || !strings.Contains(string(hcfg), "ip=::::tftp1:BOOTIF") {
		t.Errorf("config over the rack's HTTP: %v\n%s", err, hcfg)
	}

	// --curtin and --deploy-timeout: give the machine a disk, deploy, read the curtin
	// user-data with the node's
	// key from its preseed, then stay silent until the deploy timeout fails the machine.
	if _, err := c.BlockDevices.Create(m.SystemID, &entity.BlockDeviceParams{Name: "sda", Model: "QEMU HARDDISK",
		Serial: "QM-tftp1", Size: 20 << 30, BlockSize: 512}); err != nil {
		t.Fatal(err)
	}
	admin, err := oauth.ParseKey(strings.TrimSpace(string(key)))
	if err != nil {
		t.Fatal(err)
	}
	layout, _ := http.NewRequest(http.MethodPost, srv.url+"api/2.0/machines/"+m.SystemID+"/?op=set_storage_layout",
		strings.NewReader("storage_layout=flat"))
	layout.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	oauth.Sign(layout, admin)
	if resp, err := http.DefaultClient.Do(layout); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("set_storage_layout: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if _, err := c.Machine.Deploy(m.SystemID, &entity.MachineDeployParams{}); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	preseed, err := curl(t, httpURL+"MAAS/metadata/latest/by-id/"+m.SystemID+"/?op=get_preseed")
	if err != nil {
		t.Fatal(err)
	}
	var ps struct {
		Datasource struct {
			MAAS struct {
				MetadataURL string `yaml:"metadata_url"`
				ConsumerKey string `yaml:"consumer_key"`
				TokenKey    string `yaml:"token_key"`
				TokenSecret string `yaml:"token_secret"`
			} `yaml:"MAAS"`
		} `yaml:"datasource"`
	}
	if err := yaml.Unmarshal(preseed, &ps); err != nil {
		t.Fatalf("preseed: %v\n%s", err, preseed)
	}
	ds := ps.Datasource.MAAS
	req, _ := http.NewRequest(http.MethodGet, httpURL+"MAAS/metadata/curtin/2012-03-01/user-data", nil)
	oauth.Sign(req, oauth.Credentials{ConsumerKey: ds.ConsumerKey, TokenKey: ds.TokenKey, TokenSecret: ds.TokenSecret})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ud bytes.Buffer
	ud.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(ud.String(), "#!/bin/sh\n# FAKE curtin pack: ") {
		t.Errorf("curtin user-data with --curtin: %d %q", resp.StatusCode, ud.String())
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got, err := c.Machine.Get(m.SystemID)
		if err != nil {
			t.Fatal(err)
		}
		if got.StatusName == "Failed deployment" {
			break
		}
		if got.StatusName != "Deploying" || time.Now().After(deadline) {
			t.Fatalf("with --deploy-timeout 3s the silent machine is %q", got.StatusName)
		}
		time.Sleep(200 * time.Millisecond)
	}
	srv.stop(t)
}

// TestServeFlagErrors: bad rack flags are refused with exit code 2 and a message naming
// the flag and the rule, before anything is opened.
func TestServeFlagErrors(t *testing.T) {
	noCurtin := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"dhcp6 without an interface", []string{"--dhcp6"}, "--dhcp6 needs --dhcp-interface"},
		{"range without an interface", []string{"--dhcp-range", "10.0.0.10-10.0.0.20"}, "--dhcp-range needs --dhcp-interface"},
		{"negative deploy timeout", []string{"--deploy-timeout", "-1s"}, "--deploy-timeout -1s: must not be negative"},
		{"deploy timeout not a duration", []string{"--deploy-timeout", "soon"}, "invalid value \"soon\" for flag -deploy-timeout"},
		{"tftp without a port", []string{"--tftp", "127.0.0.1"}, "--tftp \"127.0.0.1\": want HOST:PORT or :PORT"},
		{"http without a port", []string{"--http", "localhost"}, "--http \"localhost\": want HOST:PORT or :PORT"},
		{"curtin dir without curtin", []string{"--curtin", noCurtin}, "--curtin " + noCurtin + ": not a curtin tree (no curtin/__init__.py in it)"},
		{"unknown interface", []string{"--dhcp-interface", "no-such-if0"}, "--dhcp-interface no-such-if0: route ip+net: no such network interface"},
		{"range outside the subnet", []string{"--dhcp-interface", "lo", "--dhcp-range", "10.0.0.10-10.0.0.20"}, "not inside the interface's subnet 127.0.0.0/8"},
		{"range backwards", []string{"--dhcp-interface", "lo", "--dhcp-range", "127.0.0.20-127.0.0.10"}, "the end comes before the start"},
		{"range over the rack", []string{"--dhcp-interface", "lo", "--dhcp-range", "127.0.0.1-127.0.0.10"}, "contains the rack's own address 127.0.0.1"},
		{"range not addresses", []string{"--dhcp-interface", "lo", "--dhcp-range", "a-b"}, "want START-END, two IPv4 addresses"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := t.TempDir()
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), append([]string{"serve", "--listen", "127.0.0.1:0", "--state", state}, tc.args...), &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tc.want)
			}
			if entries, _ := os.ReadDir(state); len(entries) != 0 {
				t.Errorf("a refused serve left %d entries in the state directory", len(entries))
			}
		})
	}
}

func TestDHCPRangeDefault(t *testing.T) {
	for _, tc := range []struct {
		prefix     string
		start, end string
	}{
		{"198.18.0.2/24", "198.18.0.128", "198.18.0.254"},
		{"192.168.1.200/24", "192.168.1.1", "192.168.1.127"},
		{"10.1.0.1/16", "10.1.128.0", "10.1.255.254"},
		{"172.16.0.1/30", "172.16.0.2", "172.16.0.2"},
	} {
		r, err := dhcpRange(netip.MustParsePrefix(tc.prefix), "")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([2]string{tc.start, tc.end}, [2]string{r.Start.String(), r.End.String()}); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.prefix, diff)
		}
	}
}

// TestServeDHCPInNetns runs "maasemu serve --dhcp-interface --dhcp6 --tftp --http" on real
// host sockets inside a network namespace this test creates (one end of a veth pair is
// the rack's interface): a raw-socket DHCP client on the other end gets a lease and the
// bootloader file, a DHCPv6 client the boot URL, curl the bootloader by TFTP from the
// rack's address, and the lease is kept in the state directory.
func TestServeDHCPInNetns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the maasemu binary")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: a network namespace, port 67 and a raw-socket DHCP client")
	}
	bin := buildMaasemu(t)
	state, stream := importedState(t, bin)
	// The namespace belongs to this goroutine's thread, which is never unlocked and so
	// ends with the test; serve and curl are started from it and inherit it.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Skipf("needs unshare(CLONE_NEWNET): %v", err)
	}
	lo, _ := netlink.LinkByName("lo")
	netlink.LinkSetUp(lo)
	for _, f := range []string{"all", "default"} {
		os.WriteFile("/proc/sys/net/ipv6/conf/"+f+"/accept_dad", []byte("0"), 0o644)
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "rack0"}, PeerName: "mach0",
		PeerHardwareAddr: net.HardwareAddr{0x52, 0x54, 0x00, 0x5e, 0x00, 0x02}}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Skipf("needs veth links: %v", err)
	}
	rackLink, _ := netlink.LinkByName("rack0")
	machLink, _ := netlink.LinkByName("mach0")
	for _, a := range []string{"198.18.0.2/24", "fd00:198:18::2/64"} {
		addr, _ := netlink.ParseAddr(a)
		if err := netlink.AddrAdd(rackLink, addr); err != nil {
			t.Fatal(err)
		}
	}
	netlink.LinkSetUp(rackLink)
	netlink.LinkSetUp(machLink)

	srv := startServeNoProbe(t, bin, state, "--dhcp-interface", "rack0", "--dhcp6", "--tftp", "198.18.0.2:69", "--http", "198.18.0.2:5248")
	for _, want := range []string{"DHCP on rack0 (subnet 198.18.0.0/24, range 198.18.0.128-198.18.0.254)",
		"DHCPv6 on rack0 (subnet fd00:198:18::/64, range fd00:198:18::100-fd00:198:18::1ff)",
		"TFTP on udp 198.18.0.2:69", "HTTP on http://198.18.0.2:5248/"} {
		if !strings.Contains(srv.rack, want) {
			t.Errorf("rack line %q lacks %q", srv.rack, want)
		}
	}

	client, err := nclient4.New("mach0", nclient4.WithTimeout(3*time.Second), nclient4.WithRetry(3))
	if err != nil {
		t.Skipf("needs a raw socket for the DHCP client: %v", err)
	}
	defer client.Close()
	lease, err := client.Request(context.Background(),
		dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, 0}),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")))
	if err != nil {
		t.Fatalf("DORA over the veth: %v\n%s", err, srv.stderr)
	}
	yi, _ := netip.AddrFromSlice(lease.ACK.YourIPAddr.To4())
	if lease.ACK.BootFileName != "lpxelinux.0" || !netip.MustParsePrefix("198.18.0.128/25").Contains(yi) ||
		lease.ACK.ServerIPAddr.String() != "198.18.0.2" {
		t.Errorf("ACK: file %q, address %v, next-server %v", lease.ACK.BootFileName, yi, lease.ACK.ServerIPAddr)
	}

	// DHCPv6 from the machine's link-local address.
	for i := 0; i < 200; i++ {
		if addrs, _ := netlink.AddrList(machLink, netlink.FAMILY_V6); len(addrs) > 0 && addrs[0].Flags&unix.IFA_F_TENTATIVE == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	c6conn, err := nclient6.NewIPv6UDPConn("mach0", dhcpv6.DefaultClientPort)
	if err != nil {
		t.Fatalf("dhcpv6 client socket: %v", err)
	}
	c6, err := nclient6.NewWithConn(c6conn, machLink.Attrs().HardwareAddr, nclient6.WithTimeout(2*time.Second), nclient6.WithRetry(3))
	if err != nil {
		t.Fatal(err)
	}
	defer c6.Close()
	adv, err := c6.Solicit(context.Background(), dhcpv6.WithOption(&dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionClientArchType, OptionData: []byte{0, 7}}))
	if err != nil {
		t.Fatalf("DHCPv6 solicit over the veth: %v\n%s", err, srv.stderr)
	}
	if u := adv.Options.BootFileURL(); u != "tftp://[fd00:198:18::2]/bootx64.efi" {
		t.Errorf("DHCPv6 boot URL %q", u)
	}

	// TFTP and HTTP on the rack's address, by curl started from this namespace.
	lp, err := curl(t, "tftp://198.18.0.2/lpxelinux.0")
	if err != nil || !bytes.Equal(lp, bootloaderFile(stream, "pxe", "lpxelinux.0")) {
		t.Errorf("curl tftp lpxelinux.0 from the rack's address: %d bytes, %v", len(lp), err)
	}
	if ver, err := curl(t, "http://198.18.0.2:5248/MAAS/api/2.0/version/"); err != nil || !bytes.Contains(ver, []byte(`"capabilities"`)) {
		t.Errorf("version through the rack's HTTP: %v\n%s", err, ver)
	}
	srv.stop(t)
	leases, err := os.ReadFile(filepath.Join(state, "dhcp4-leases.json"))
	if err != nil || !bytes.Contains(leases, []byte(yi.String())) || !bytes.Contains(leases, []byte("52:54:00:5e:00:02")) {
		t.Errorf("lease file after stop: %v\n%s", err, leases)
	}
}

// startServeNoProbe starts "maasemu serve" and waits for its region and rack lines only:
// inside a test's network namespace net/http's dials (made on other threads) would not
// reach it.
func startServeNoProbe(t *testing.T, bin, state string, extra ...string) *server {
	t.Helper()
	return startServeWith(t, bin, state, false, extra...)
}

// stop ends the server with SIGTERM and checks that it exits cleanly.
func (s *server) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("serve after SIGTERM: %v\n%s", err, s.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("serve did not stop on SIGTERM\n%s", s.stderr)
		s.cmd.Process.Kill()
		<-s.done
	}
}
