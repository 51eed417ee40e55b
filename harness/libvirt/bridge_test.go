package libvirt

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/maasemu/maasemu/harness/machine"
	"golang.org/x/sys/unix"
)

// TestNetworkAndBridgeNICs boots a VM on a libvirt network (type='network') and one on
// its bridge (type='bridge'), and sees both machines' DHCPDISCOVERs on the bridge. The
// network is transient and isolated: no forward, no address, no DHCP of libvirt's.
func TestNetworkAndBridgeNICs(t *testing.T) {
	ctx := t.Context()
	d := newVMDriver(t, ctx, nil)
	api, err := Dial(ctx, URISystem)
	if err != nil {
		t.Fatal(err)
	}
	defer api.Disconnect()
	lv, ok := api.(*golibvirt.Libvirt)
	if !ok {
		t.Skip("network test: needs go-libvirt's network calls")
	}
	lab := randomLab(t)
	netName, brName := "maasemu-"+lab, "mx"+lab
	nw, err := lv.NetworkCreateXML(fmt.Sprintf("<network><name>%s</name><bridge name='%s' stp='off' delay='0'/></network>", netName, brName))
	if err != nil {
		t.Skipf("network test: libvirt cannot create a bridge network here: %v", err)
	}
	defer lv.NetworkDestroy(nw)

	frames, err := capture(ctx, t, brName)
	if err != nil {
		t.Fatal(err)
	}
	specs := []machine.Spec{
		{Name: "on-network", Firmware: machine.BIOS, MemoryMiB: 256, NICs: []machine.NIC{{MAC: DeriveMAC("nw", 0), Network: netName}}},
		{Name: "on-bridge", Firmware: machine.UEFI, MemoryMiB: 256, NICs: []machine.NIC{{MAC: DeriveMAC("br", 0), Model: ModelE1000e, Bridge: brName}}},
	}
	want := map[string]bool{}
	for _, s := range specs {
		m, err := d.Create(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Destroy(ctx) // before the network goes
		if err := m.PowerOn(ctx); err != nil {
			t.Fatal(err)
		}
		want[s.NICs[0].MAC.String()] = true
	}
	timeout := time.After(3 * time.Minute)
	for len(want) > 0 {
		select {
		case f := <-frames:
			if m := parseDHCP(f); m != nil {
				delete(want, m.ClientHWAddr.String())
			}
		case <-timeout:
			t.Fatalf("no DHCPDISCOVER on %s from %v", brName, want)
		}
	}
}

// capture reads every frame on a host interface (AF_PACKET) until ctx ends or the
// test cleans up.
func capture(ctx context.Context, t *testing.T, ifname string) (<-chan []byte, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, err
	}
	proto := htons(unix.ETH_P_ALL)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(proto))
	if err != nil {
		return nil, fmt.Errorf("AF_PACKET socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// A receive timeout lets the reader notice the end.
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	out := make(chan []byte, 256)
	done := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(done)
		defer unix.Close(fd)
		buf := make([]byte, 65536)
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || n <= 0 {
				continue
			}
			select {
			case out <- append([]byte(nil), buf[:n]...):
			default:
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
	return out, nil
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
