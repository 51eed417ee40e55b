// Package machine defines the machines maasemu deploys to, whatever drives them: libvirt
// VMs with real firmware, or simulated machines that speak the same protocols in-process.
package machine

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// Firmware is what the machine boots with.
type Firmware string

// Firmware kinds.
const (
	BIOS Firmware = "bios" // SeaBIOS with the iPXE ROM
	UEFI Firmware = "uefi" // OVMF, with a per-machine NVRAM copy
)

// PowerState is the machine's power as MAAS reports it.
type PowerState string

// Power states, as MAAS names them.
const (
	PowerOn      PowerState = "on"
	PowerOff     PowerState = "off"
	PowerUnknown PowerState = "unknown"
	PowerError   PowerState = "error"
)

// Spec describes a machine to create.
type Spec struct {
	Name      string // unique within the lab; libvirt domain name for the libvirt driver
	Firmware  Firmware
	MemoryMiB int // 0 means the driver's default
	CPUs      int // 0 means 1
	NICs      []NIC
	Disks     []Disk
}

// NIC is one network interface. Exactly one attachment is set.
type NIC struct {
	MAC   net.HardwareAddr
	Model string // "virtio" (default), "e1000", "e1000e", "rtl8139"
	Boot  bool   // PXE boots from this NIC (the first NIC when none is marked)

	// UDP attaches a VM NIC to the userspace switch: QEMU sends frames to Remote and
	// receives them on Local (libvirt <interface type='udp'>).
	UDP *UDPAttachment
	// Network and Bridge attach a VM NIC to a libvirt network or a host bridge.
	Network string
	Bridge  string
	// Link attaches a simulated machine's NIC to the switch in-process.
	Link any
}

// UDPAttachment is QEMU's socket netdev in UDP form.
type UDPAttachment struct {
	Remote netip.AddrPort // where QEMU sends frames (the switch's port)
	Local  netip.AddrPort // where QEMU receives frames
}

// Disk is one disk.
type Disk struct {
	SizeBytes int64
	Bus       string // "virtio" (default), "sata", "scsi", "nvme"
	Serial    string
	Model     string
}

// Driver creates machines.
type Driver interface {
	// Name is "libvirt" or "sim".
	Name() string
	// Create defines a machine, powered off, with blank disks.
	Create(ctx context.Context, spec Spec) (Machine, error)
}

// Machine is one created machine. Destroy removes everything it owns (domain, NVRAM,
// disks, processes); it is safe to call more than once.
type Machine interface {
	Name() string
	PowerOn(ctx context.Context) error
	PowerOff(ctx context.Context) error
	PowerState(ctx context.Context) (PowerState, error)
	// DiskPaths are host paths of the disk images, in Spec order, for inspection.
	DiskPaths() []string
	// ConsolePath is the host path of the serial console log, or "" when there is none.
	ConsolePath() string
	Destroy(ctx context.Context) error
}

// KernelName is the name a Linux guest gives the i-th disk of this kind on its bus, and its
// /dev/disk/by-id path (as udev names QEMU's disks with their serials).
func KernelName(d Disk, i int) (name, byID string) {
	switch d.Bus {
	case "sata":
		return fmt.Sprintf("sd%c", 'a'+i), "/dev/disk/by-id/ata-QEMU_HARDDISK_" + d.Serial
	case "scsi":
		return fmt.Sprintf("sd%c", 'a'+i), "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_" + d.Serial
	case "nvme":
		return fmt.Sprintf("nvme%dn1", i), "/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_" + d.Serial
	}
	return fmt.Sprintf("vd%c", 'a'+i), "/dev/disk/by-id/virtio-" + d.Serial
}
