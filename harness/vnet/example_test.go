package vnet_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/harness/vnet"
	"github.com/maasemu/maasemu/harness/vnet/pcap"
)

// A lab network: a switch with a packet capture, the rack with an HTTP server, a UDP
// port pair for a VM's NIC, faults on the VM's link, and a simulated machine fetching
// from the rack.
func Example() {
	dir, err := os.MkdirTemp("", "vnet-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	capture, err := pcap.Create(filepath.Join(dir, "lab.pcap"), pcap.Options{})
	if err != nil {
		panic(err)
	}
	defer capture.Close()

	sw, err := vnet.NewSwitch(vnet.Config{Name: "lab", Capture: capture, Seed: 42})
	if err != nil {
		panic(err)
	}
	defer sw.Close()

	// The rack, at 198.18.0.1/24, serving HTTP on port 5248.
	rack, err := sw.NewStack(vnet.StackConfig{Name: "rack", Addrs: []netip.Prefix{vnet.DefaultRackAddr}})
	if err != nil {
		panic(err)
	}
	l, err := rack.ListenTCP(netip.MustParseAddrPort("198.18.0.1:5248"))
	if err != nil {
		panic(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the rack, %s", r.URL.Path)
	})}
	go srv.Serve(l)
	defer srv.Close()

	// A VM's NIC: QEMU sends to Remote and receives on Local
	// (-netdev socket,udp=Remote,localaddr=Local; libvirt <interface type='udp'>).
	vm, err := sw.AttachUDP(vnet.UDPPortConfig{Name: "vm0"})
	if err != nil {
		panic(err)
	}
	nic := machine.NIC{MAC: vnet.DeriveMAC("vm0"), UDP: vm.Attachment()}
	fmt.Println("VM NIC on", nic.UDP.Remote.Addr(), "and", nic.UDP.Local.Addr())

	// 10% loss and 50 ms delay on the VM's link, both ways.
	faults, err := vnet.ParseFaults("loss=10% delay=50ms")
	if err != nil {
		panic(err)
	}
	if err := vm.SetFaults(faults); err != nil {
		panic(err)
	}
	fmt.Println("vm0 faults:", vm.Faults())

	// A simulated machine on the same switch.
	sim, err := sw.NewStack(vnet.StackConfig{Name: "sim1", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.10/24")}})
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: &http.Transport{DialContext: sim.DialContext}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://198.18.0.1:5248/boot-kernel", nil)
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body))

	client.CloseIdleConnections()
	sw.Close()
	capture.Close()
	fmt.Println("captured frames:", capture.Packets() > 0)
	// Output:
	// VM NIC on 127.0.0.1 and 127.0.0.1
	// vm0 faults: loss=10% delay=50ms
	// hello from the rack, /boot-kernel
	// captured frames: true
}
