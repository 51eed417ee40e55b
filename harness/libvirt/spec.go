package libvirt

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"

	"github.com/maasemu/maasemu/harness/machine"
)

// Defaults for a machine.Spec's zero values.
const (
	DefaultMemoryMiB = 2048 // the ephemeral keeps its squashfs in RAM; TCG allocates lazily
	DefaultCPUs      = 1
	maxCPUs          = 64
	maxNICs          = 8
	maxDisks         = 16
	// Bus names of machine.Disk.
	BusVirtio = "virtio"
	BusSATA   = "sata"
	BusSCSI   = "scsi"
	BusNVMe   = "nvme"
	// Model names of machine.NIC.
	ModelVirtio  = "virtio"
	ModelE1000   = "e1000"
	ModelE1000e  = "e1000e"
	ModelRTL8139 = "rtl8139"
)

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	// libvirt accepts [A-Za-z0-9_ .+-] in a disk serial; a comma would also break the
	// QEMU command line of NVMe disks, so it is refused with the rest.
	serialRE = regexp.MustCompile(`^[A-Za-z0-9_.+-]+$`)
	modelRE  = regexp.MustCompile(`^[A-Za-z0-9_.+ -]+$`)
)

// Serial and model length limits, from the devices QEMU emulates: virtio-blk, ATA and
// NVMe serials are 20 bytes; an ATA model is 40 bytes; a SCSI product is 16 bytes.
const (
	maxSerial      = 20
	maxATAModel    = 40
	maxSCSIProduct = 16
)

// normalizeSpec checks spec and returns a copy with defaults filled in: firmware BIOS,
// memory, CPUs, NIC models and MACs, disk buses, and exactly one boot NIC (when there is
// any NIC). Every error names the field and the rule it broke.
func normalizeSpec(spec machine.Spec) (machine.Spec, error) {
	s := spec
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if s.Name == "" {
		bad("machine name is empty")
	} else if !nameRE.MatchString(s.Name) || len(s.Name) > 48 {
		bad("machine name %q: must be 1-48 characters of A-Z a-z 0-9 . _ - starting with a letter or digit", s.Name)
	}
	switch s.Firmware {
	case "":
		s.Firmware = machine.BIOS
	case machine.BIOS, machine.UEFI:
	default:
		bad("machine %q: firmware %q: must be %q or %q", s.Name, s.Firmware, machine.BIOS, machine.UEFI)
	}
	switch {
	case s.MemoryMiB == 0:
		s.MemoryMiB = DefaultMemoryMiB
	case s.MemoryMiB < 64:
		bad("machine %q: memory %d MiB: must be at least 64 MiB (0 means %d)", s.Name, s.MemoryMiB, DefaultMemoryMiB)
	}
	switch {
	case s.CPUs == 0:
		s.CPUs = DefaultCPUs
	case s.CPUs < 0 || s.CPUs > maxCPUs:
		bad("machine %q: cpus %d: must be between 1 and %d (0 means 1)", s.Name, s.CPUs, maxCPUs)
	}

	if len(s.NICs) > maxNICs {
		bad("machine %q: %d NICs: at most %d are supported", s.Name, len(s.NICs), maxNICs)
	}
	s.NICs = slices.Clone(s.NICs)
	boots := 0
	macs := map[string]int{}
	for i := range s.NICs {
		n := &s.NICs[i]
		if n.Boot {
			boots++
		}
		switch n.Model {
		case "":
			n.Model = ModelVirtio
		case ModelVirtio, ModelE1000, ModelE1000e, ModelRTL8139:
		default:
			bad("machine %q: NIC %d: model %q: must be one of virtio, e1000, e1000e, rtl8139", s.Name, i, n.Model)
		}
		if n.MAC == nil {
			n.MAC = DeriveMAC(s.Name, i)
		} else {
			n.MAC = slices.Clone(n.MAC)
			if len(n.MAC) != 6 {
				bad("machine %q: NIC %d: MAC %v: must be 6 bytes (Ethernet)", s.Name, i, n.MAC)
			} else if n.MAC[0]&1 != 0 {
				bad("machine %q: NIC %d: MAC %v: must be unicast (the low bit of the first octet is set)", s.Name, i, n.MAC)
			}
		}
		if j, dup := macs[n.MAC.String()]; dup {
			bad("machine %q: NIC %d: MAC %v: already used by NIC %d", s.Name, i, n.MAC, j)
		}
		macs[n.MAC.String()] = i
		kinds := 0
		if n.UDP != nil {
			kinds++
			if !n.UDP.Remote.IsValid() || n.UDP.Remote.Port() == 0 {
				bad("machine %q: NIC %d: UDP remote %v: must be an address and a non-zero port", s.Name, i, n.UDP.Remote)
			}
			if !n.UDP.Local.IsValid() || n.UDP.Local.Port() == 0 {
				bad("machine %q: NIC %d: UDP local %v: must be an address and a non-zero port", s.Name, i, n.UDP.Local)
			}
		}
		if n.Network != "" {
			kinds++
		}
		if n.Bridge != "" {
			kinds++
		}
		if n.Link != nil {
			bad("machine %q: NIC %d: Link attachments are for simulated machines; a VM NIC needs UDP, Network or Bridge", s.Name, i)
			kinds++
		}
		if kinds != 1 {
			bad("machine %q: NIC %d: exactly one of UDP, Network, Bridge must be set (got %d)", s.Name, i, kinds)
		}
	}
	switch {
	case boots > 1:
		bad("machine %q: %d NICs are marked Boot: at most one may be", s.Name, boots)
	case boots == 0 && len(s.NICs) > 0:
		s.NICs[0].Boot = true
	}

	if len(s.Disks) > maxDisks {
		bad("machine %q: %d disks: at most %d are supported", s.Name, len(s.Disks), maxDisks)
	}
	s.Disks = slices.Clone(s.Disks)
	serials := map[string]int{}
	for i := range s.Disks {
		d := &s.Disks[i]
		if d.SizeBytes <= 0 || d.SizeBytes%512 != 0 {
			bad("machine %q: disk %d: size %d bytes: must be a positive multiple of 512", s.Name, i, d.SizeBytes)
		}
		switch d.Bus {
		case "":
			d.Bus = BusVirtio
		case BusVirtio, BusSATA, BusSCSI, BusNVMe:
		default:
			bad("machine %q: disk %d: bus %q: must be one of virtio, sata, scsi, nvme", s.Name, i, d.Bus)
		}
		if d.Serial != "" {
			if len(d.Serial) > maxSerial || !serialRE.MatchString(d.Serial) {
				bad("machine %q: disk %d: serial %q: must be 1-%d characters of A-Z a-z 0-9 _ . + -", s.Name, i, d.Serial, maxSerial)
			}
			if j, dup := serials[d.Serial]; dup {
				bad("machine %q: disk %d: serial %q: already used by disk %d", s.Name, i, d.Serial, j)
			}
			serials[d.Serial] = i
		}
		if d.Model != "" {
			switch d.Bus {
			case BusSATA:
				if len(d.Model) > maxATAModel || !modelRE.MatchString(d.Model) {
					bad("machine %q: disk %d: model %q: an ATA model is 1-%d characters of A-Z a-z 0-9 space _ . + -", s.Name, i, d.Model, maxATAModel)
				}
			case BusSCSI:
				if len(d.Model) > maxSCSIProduct || !modelRE.MatchString(d.Model) {
					bad("machine %q: disk %d: model %q: a SCSI product is 1-%d characters of A-Z a-z 0-9 space _ . + -", s.Name, i, d.Model, maxSCSIProduct)
				}
			default:
				bad("machine %q: disk %d: model %q: QEMU's %s disks have no model to set; use bus sata or scsi", s.Name, i, d.Model, d.Bus)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return machine.Spec{}, err
	}
	return s, nil
}

// DeriveMAC returns a stable, locally administered MAC (QEMU's 52:54:00 prefix) for NIC
// index of the named machine, used when a Spec leaves MAC unset.
func DeriveMAC(name string, index int) net.HardwareAddr {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", name, index)))
	return net.HardwareAddr{0x52, 0x54, 0x00, h[0], h[1], h[2]}
}

// bootNIC returns the MAC of the NIC that PXE boots, or "".
func bootNIC(spec machine.Spec) string {
	for _, n := range spec.NICs {
		if n.Boot {
			return strings.ToLower(n.MAC.String())
		}
	}
	return ""
}

// Files in a machine's work directory.
const (
	consoleFileName = "console.log"
	nvramFileName   = "nvram.fd"
)

func diskFileName(i int) string { return fmt.Sprintf("disk%d.raw", i) }
