package libvirt_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"os/signal"
	"syscall"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/harness/libvirt"
	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/trace"
)

// A lab's VM on the userspace network, powered on the way MAAS does it.
func Example() {
	// Ctrl-C cancels ctx; the driver then removes every machine it created.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := libvirt.EnsureDaemons(ctx); err != nil { // virtlogd + libvirtd, no systemd needed
		log.Fatal(err)
	}
	rec := trace.NewRecorder(nil)
	d, err := libvirt.New(ctx, libvirt.Options{Lab: "demo", Sink: rec})
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Sweep(ctx, d.Prefix()); err != nil { // leftovers of a crashed run
		log.Fatal(err)
	}
	m, err := d.Create(ctx, machine.Spec{
		Name: "node1", Firmware: machine.UEFI,
		NICs: []machine.NIC{{UDP: &machine.UDPAttachment{ // a vnet UDP port's Attachment()
			Remote: netip.MustParseAddrPort("127.0.0.1:40001"),
			Local:  netip.MustParseAddrPort("127.0.0.1:40002"),
		}}},
		Disks: []machine.Disk{{SizeBytes: 8 << 30, Serial: "disk0"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	power := libvirt.NewVirshPower(rec)
	params := fakemaas.PowerParams{"power_address": libvirt.URISystem, "power_id": d.DomainName("node1")}
	if err := power.PowerOn(ctx, params); err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.ConsolePath()) // also streamed into rec as console.line events
}
