// Package libvirt runs maasemu's machines as libvirt/QEMU VMs with real firmware, and
// implements MAAS's virsh power type on the same connection code.
//
// A Driver (machine.Driver) defines one domain per machine, named
// "maasemu-<lab>-<name>", with raw sparse disks, a per-VM NVRAM copy for UEFI and a
// serial console written to a file that is streamed into the trace. Everything a Driver
// creates is removed by Machine.Destroy, Driver.Close, the cancellation of the context
// given to New, or a later Sweep. VirshPower (fakemaas.PowerDriver) does what MAAS's
// virsh driver does: start, destroy and domstate on a libvirt URI and a domain name.
//
// The driver talks to libvirtd through API, the handful of go-libvirt calls it needs,
// so that unit tests can stand in a fake; domain XML is built with libvirtxml.
package libvirt
