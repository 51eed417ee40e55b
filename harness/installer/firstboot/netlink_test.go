package firstboot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// inNetns runs f on a locked thread inside a fresh network namespace.
func inNetns(t *testing.T, f func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // the thread dies with the namespace: never unlocked
		ns, err := netns.New()
		if err != nil {
			t.Errorf("new netns: %v", err)
			return
		}
		defer ns.Close()
		f()
	}()
	<-done
}

// veths makes n veth pairs whose first ends have the MACs 52:54:00:00:00:0i.
func veths(t *testing.T, n int) {
	for i := 1; i <= n; i++ {
		mac, _ := net.ParseMAC(fmt.Sprintf("52:54:00:00:00:%02x", i))
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("tmp%d", i), HardwareAddr: mac}, PeerName: fmt.Sprintf("peer%d", i)}
		if err := netlink.LinkAdd(v); err != nil {
			t.Fatalf("veth: %v", err)
		}
	}
}

func addrs(t *testing.T, name string) []string {
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	as, _ := netlink.AddrList(l, netlink.FAMILY_V4)
	var out []string
	for _, a := range as {
		out = append(out, a.IPNet.String())
	}
	return out
}

func masterOf(t *testing.T, name string) string {
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if l.Attrs().MasterIndex == 0 {
		return ""
	}
	m, _ := netlink.LinkByIndex(l.Attrs().MasterIndex)
	return m.Attrs().Name
}

func TestNetlinkUpBridge(t *testing.T) {
	inNetns(t, func() {
		veths(t, 2)
		nc := NetConfig{Version: 2, Ifaces: []Iface{
			{Name: "eth0", MatchMAC: "52:54:00:00:00:01"},
			{Name: "eth1", MatchMAC: "52:54:00:00:00:02", Addresses: []netip.Prefix{netip.MustParsePrefix("10.8.0.2/24")}},
			{Name: "br0", Kind: KindBridge, Members: []string{"eth0"}, Addresses: []netip.Prefix{netip.MustParsePrefix("10.9.0.2/24")}, Nameservers: []string{"10.9.0.1"}},
		}}
		resolv := filepath.Join(t.TempDir(), "resolv.conf")
		links, err := Netlink{ResolvConf: resolv}.Up(context.Background(), nc)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, l := range links {
			names = append(names, l.Name)
		}
		if diff := cmp.Diff([]string{"eth0", "eth1", "br0"}, names); diff != "" {
			t.Errorf("links (-want +got):\n%s", diff)
		}
		if got := masterOf(t, "eth0"); got != "br0" {
			t.Errorf("eth0's master = %q, want br0", got)
		}
		if diff := cmp.Diff([]string{"10.9.0.2/24"}, addrs(t, "br0")); diff != "" {
			t.Errorf("br0 addresses (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"10.8.0.2/24"}, addrs(t, "eth1")); diff != "" {
			t.Errorf("eth1 addresses (-want +got):\n%s", diff)
		}
		if b, _ := os.ReadFile(resolv); !slices.Contains(strings.Split(string(b), "\n"), "nameserver 10.9.0.1") {
			t.Errorf("resolv.conf:\n%s", b)
		}
	})
}

// TestNetlinkUpBondVLAN needs the bonding and 8021q drivers, which a VM's kernel has and
// a container host may not.
func TestNetlinkUpBondVLAN(t *testing.T) {
	inNetns(t, func() {
		veths(t, 2)
		if err := netlink.LinkAdd(netlink.NewLinkBond(netlink.LinkAttrs{Name: "probe0"})); err != nil {
			if errors.Is(err, syscall.EOPNOTSUPP) {
				t.Skipf("no bonding driver here: %v", err)
			}
			t.Fatal(err)
		}
		netlink.LinkDel(&netlink.Bond{LinkAttrs: netlink.LinkAttrs{Name: "probe0"}})
		nc := NetConfig{Version: 2, Ifaces: []Iface{
			{Name: "eth0", MatchMAC: "52:54:00:00:00:01"},
			{Name: "eth1", MatchMAC: "52:54:00:00:00:02"},
			{Name: "bond0", Kind: KindBond, Members: []string{"eth0", "eth1"}, BondMode: "active-backup", Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.11/24")}},
			{Name: "bond0.100", Kind: KindVLAN, VLANLink: "bond0", VLANID: 100, Addresses: []netip.Prefix{netip.MustParsePrefix("10.100.0.5/24")}},
		}}
		if _, err := (Netlink{ResolvConf: filepath.Join(t.TempDir(), "resolv.conf")}).Up(context.Background(), nc); err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{"eth0", "eth1"} {
			if got := masterOf(t, m); got != "bond0" {
				t.Errorf("%s's master = %q, want bond0", m, got)
			}
		}
		l, _ := netlink.LinkByName("bond0")
		if b, ok := l.(*netlink.Bond); !ok || b.Mode != netlink.BOND_MODE_ACTIVE_BACKUP {
			t.Errorf("bond0 = %#v, want an active-backup bond", l)
		}
		if diff := cmp.Diff([]string{"198.18.0.11/24"}, addrs(t, "bond0")); diff != "" {
			t.Errorf("bond0 addresses (-want +got):\n%s", diff)
		}
		v, _ := netlink.LinkByName("bond0.100")
		if vl, ok := v.(*netlink.Vlan); !ok || vl.VlanId != 100 {
			t.Errorf("bond0.100 = %#v, want VLAN 100", v)
		}
	})
}

func TestNetlinkUpUnknownBondMode(t *testing.T) {
	_, err := Netlink{}.link(Iface{Name: "bond0", Kind: KindBond, Members: []string{"eth0"}, BondMode: "fastest"}, nil)
	if err == nil || err.Error() != `bond bond0: unknown mode "fastest"` {
		t.Errorf("err = %v", err)
	}
}
