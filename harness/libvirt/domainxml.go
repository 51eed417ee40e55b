package libvirt

import (
	"encoding/xml"
	"fmt"
	"strings"

	"github.com/maasemu/maasemu/harness/machine"
	"libvirt.org/go/libvirtxml"
)

// Accel is how QEMU runs the guest's CPU.
type Accel string

// Accelerators.
const (
	AccelKVM Accel = "kvm" // hardware virtualisation: libvirt domain type 'kvm'
	AccelTCG Accel = "tcg" // QEMU's emulator: libvirt domain type 'qemu'
)

func (a Accel) domainType() string {
	if a == AccelKVM {
		return "kvm"
	}
	return "qemu"
}

// UEFIFirmware names OVMF's code (mapped read-only) and the variable store template
// each UEFI machine gets a copy of.
type UEFIFirmware struct {
	Code string
	Vars string
}

// MetadataNamespace is the XML namespace of the <metadata> element the driver writes
// into each domain, so that Sweep can find the files of a crashed run.
const MetadataNamespace = "https://github.com/maasemu/maasemu/harness/libvirt/1"

// domainMetadata is the driver's element in the domain's <metadata>.
type domainMetadata struct {
	XMLName xml.Name `xml:"maasemu:machine"`
	NS      string   `xml:"xmlns:maasemu,attr"`
	Lab     string   `xml:"lab,attr"`
	Name    string   `xml:"name,attr"`
	Dir     string   `xml:"dir,attr"`
}

// domainConfig is everything a domain's XML depends on, resolved.
type domainConfig struct {
	Domain  string       // libvirt domain name
	Lab     string       // lab name, recorded in the metadata
	Spec    machine.Spec // normalized (normalizeSpec)
	Accel   Accel
	Dir     string   // the machine's work directory, recorded in the metadata
	Disks   []string // host paths of the disk images, in Spec order
	Console string   // host path of the serial console file
	NVRAM   string   // host path of the machine's NVRAM copy (UEFI)
	UEFI    UEFIFirmware
	// RunAs, when set ("+UID:+GID"), runs QEMU as that user with a static DAC label and
	// no relabelling, so that QEMU can open files wherever the caller can.
	RunAs string
}

// PCI slots the NVMe disks (attached on the QEMU command line, since libvirt 9.0 has no
// emulated NVMe disk bus) take on the root bus: 0x10 upwards, well clear of the slots
// libvirt assigns from 0x01.
const (
	nvmeFirstSlot = 0x10
	maxNVMe       = 8
	// With NVMe disks, libvirt's own devices must stay below slot nvmeFirstSlot.
	maxDevicesWithNVMe = 12
)

// domainXML returns the libvirt domain XML for cfg.
func domainXML(cfg domainConfig) (string, error) {
	dom, err := buildDomain(cfg)
	if err != nil {
		return "", err
	}
	s, err := dom.Marshal()
	if err != nil {
		return "", fmt.Errorf("domain %s: marshalling XML: %w", cfg.Domain, err)
	}
	return s + "\n", nil
}

func ptr[T any](v T) *T { return &v }

// buildDomain builds the domain for cfg: BIOS (SeaBIOS on the i440fx 'pc' machine, the
// iPXE ROM on the NIC, output on serial, no boot menu) or UEFI (OVMF on q35 with a
// read-only code pflash and a per-VM NVRAM); the boot NIC first in the boot order, then
// the disks in Spec order; raw disks with cache=unsafe; the serial console to a file.
func buildDomain(cfg domainConfig) (*libvirtxml.Domain, error) {
	spec := cfg.Spec
	if len(cfg.Disks) != len(spec.Disks) {
		return nil, fmt.Errorf("domain %s: %d disk paths for %d disks", cfg.Domain, len(cfg.Disks), len(spec.Disks))
	}
	meta, err := xml.Marshal(domainMetadata{NS: MetadataNamespace, Lab: cfg.Lab, Name: spec.Name, Dir: cfg.Dir})
	if err != nil {
		return nil, fmt.Errorf("domain %s: metadata: %w", cfg.Domain, err)
	}
	uefi := spec.Firmware == machine.UEFI
	dom := &libvirtxml.Domain{
		Type:          cfg.Accel.domainType(),
		Name:          cfg.Domain,
		Metadata:      &libvirtxml.DomainMetadata{XML: string(meta)},
		Memory:        &libvirtxml.DomainMemory{Value: uint(spec.MemoryMiB), Unit: "MiB"},
		CurrentMemory: &libvirtxml.DomainCurrentMemory{Value: uint(spec.MemoryMiB), Unit: "MiB"},
		VCPU:          &libvirtxml.DomainVCPU{Placement: "static", Value: uint(spec.CPUs)},
		OS: &libvirtxml.DomainOS{
			Type:     &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "pc", Type: "hvm"},
			BootMenu: &libvirtxml.DomainBootMenu{Enable: "no"},
		},
		Features: &libvirtxml.DomainFeatureList{
			ACPI: &libvirtxml.DomainFeature{},
			APIC: &libvirtxml.DomainFeatureAPIC{},
		},
		CPU:        cpuFor(cfg.Accel),
		Clock:      &libvirtxml.DomainClock{Offset: "utc"},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices:    &libvirtxml.DomainDeviceList{},
	}
	if uefi {
		if cfg.UEFI.Code == "" || cfg.NVRAM == "" {
			return nil, fmt.Errorf("domain %s: UEFI needs the OVMF code and an NVRAM path", cfg.Domain)
		}
		dom.OS.Type.Machine = "q35"
		dom.OS.Loader = &libvirtxml.DomainLoader{Path: cfg.UEFI.Code, Readonly: "yes", Secure: "no", Type: "pflash"}
		dom.OS.NVRam = &libvirtxml.DomainNVRam{NVRam: cfg.NVRAM, Template: cfg.UEFI.Vars}
	} else {
		// SeaBIOS prints on the serial port only when asked to.
		dom.OS.BIOS = &libvirtxml.DomainBIOS{UseSerial: "yes"}
	}
	if cfg.RunAs != "" {
		dom.SecLabel = []libvirtxml.DomainSecLabel{{Type: "static", Model: "dac", Relabel: "no", Label: cfg.RunAs}}
	}

	devs := dom.Devices
	// Boot order: the boot NIC first (always: MAAS's answer to the PXE request decides
	// between the ephemeral and the local disk), then the disks in Spec order.
	for i, n := range spec.NICs {
		iface := libvirtxml.DomainInterface{
			MAC:   &libvirtxml.DomainInterfaceMAC{Address: strings.ToLower(n.MAC.String())},
			Model: &libvirtxml.DomainInterfaceModel{Type: n.Model},
		}
		switch {
		case n.UDP != nil:
			iface.Source = &libvirtxml.DomainInterfaceSource{UDP: &libvirtxml.DomainInterfaceSourceUDP{
				Address: n.UDP.Remote.Addr().Unmap().String(),
				Port:    uint(n.UDP.Remote.Port()),
				Local: &libvirtxml.DomainInterfaceSourceLocal{
					Address: n.UDP.Local.Addr().Unmap().String(),
					Port:    uint(n.UDP.Local.Port()),
				},
			}}
		case n.Network != "":
			iface.Source = &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: n.Network}}
		case n.Bridge != "":
			iface.Source = &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: n.Bridge}}
		default:
			return nil, fmt.Errorf("domain %s: NIC %d has no attachment", cfg.Domain, i)
		}
		if n.Boot {
			iface.Boot = &libvirtxml.DomainDeviceBoot{Order: 1}
			// OVMF has its own virtio-net driver and PXE client, as a real UEFI machine's
			// firmware does; QEMU's iPXE EFI ROM would run first and DHCP on its own.
			// The other models have no OVMF driver and need the ROM.
			if uefi && n.Model == ModelVirtio {
				iface.ROM = &libvirtxml.DomainROM{Enabled: "no"}
			}
		} else {
			// Only the boot NIC PXE boots; the ROM on the others would only add DHCP
			// attempts (and minutes under TCG).
			iface.ROM = &libvirtxml.DomainROM{Enabled: "no"}
		}
		devs.Interfaces = append(devs.Interfaces, iface)
	}

	var (
		vdN, sdN, nvmeN int
		hasSCSI         bool
		qemuArgs        []libvirtxml.DomainQEMUCommandlineArg
		overrides       []libvirtxml.DomainQEMUOverrideDevice
	)
	order := uint(2)
	if len(spec.NICs) == 0 {
		order = 1
	}
	for i, d := range spec.Disks {
		bootOrder := order + uint(i)
		if d.Bus == BusNVMe {
			if nvmeN == maxNVMe {
				return nil, fmt.Errorf("machine %q: disk %d: at most %d NVMe disks are supported", spec.Name, i, maxNVMe)
			}
			serial := d.Serial
			if serial == "" {
				serial = fmt.Sprintf("nvme%d", nvmeN) // QEMU's nvme device requires one
			}
			if strings.ContainsAny(cfg.Disks[i], ",") {
				return nil, fmt.Errorf("machine %q: disk %d: path %q: an NVMe disk's path must not contain a comma (QEMU option syntax)", spec.Name, i, cfg.Disks[i])
			}
			bus := "pci.0"
			if uefi {
				bus = "pcie.0"
			}
			id := fmt.Sprintf("maasemu-nvme%d", nvmeN)
			qemuArgs = append(qemuArgs,
				libvirtxml.DomainQEMUCommandlineArg{Value: "-drive"},
				libvirtxml.DomainQEMUCommandlineArg{Value: fmt.Sprintf("file=%s,if=none,id=%s,format=raw,cache=unsafe", cfg.Disks[i], id)},
				libvirtxml.DomainQEMUCommandlineArg{Value: "-device"},
				libvirtxml.DomainQEMUCommandlineArg{Value: fmt.Sprintf("nvme,drive=%s,serial=%s,bootindex=%d,bus=%s,addr=%#x", id, serial, bootOrder, bus, nvmeFirstSlot+nvmeN)},
			)
			nvmeN++
			continue
		}
		disk := libvirtxml.DomainDisk{
			Device: "disk",
			Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw", Cache: "unsafe", Discard: "unmap"},
			Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: cfg.Disks[i]}},
			Serial: d.Serial,
			Boot:   &libvirtxml.DomainDeviceBoot{Order: bootOrder},
		}
		switch d.Bus {
		case BusVirtio:
			disk.Target = &libvirtxml.DomainDiskTarget{Dev: "vd" + driveLetters(vdN), Bus: "virtio"}
			vdN++
		case BusSATA, BusSCSI:
			disk.Target = &libvirtxml.DomainDiskTarget{Dev: "sd" + driveLetters(sdN), Bus: d.Bus}
			sdN++
			if d.Bus == BusSCSI {
				hasSCSI = true
				disk.Product = d.Model
			} else if d.Model != "" {
				// libvirt has no model for ATA disks; QEMU's ide-hd has the property.
				alias := fmt.Sprintf("ua-disk%d", i)
				disk.Alias = &libvirtxml.DomainAlias{Name: alias}
				overrides = append(overrides, libvirtxml.DomainQEMUOverrideDevice{
					Alias: alias,
					Frontend: libvirtxml.DomainQEMUOverrideFrontend{Properties: []libvirtxml.DomainQEMUOverrideProperty{
						{Name: "model", Type: "string", Value: d.Model},
					}},
				})
			}
		default:
			return nil, fmt.Errorf("machine %q: disk %d: bus %q not normalized", spec.Name, i, d.Bus)
		}
		devs.Disks = append(devs.Disks, disk)
	}
	if nvmeN > 0 && len(spec.NICs)+len(spec.Disks) > maxDevicesWithNVMe {
		return nil, fmt.Errorf("machine %q: %d NICs and disks: with NVMe disks at most %d are supported (NVMe takes fixed PCI slots from %#x)", spec.Name, len(spec.NICs)+len(spec.Disks), maxDevicesWithNVMe, nvmeFirstSlot)
	}
	if hasSCSI {
		devs.Controllers = append(devs.Controllers, libvirtxml.DomainController{Type: "scsi", Index: ptr(uint(0)), Model: "virtio-scsi"})
	}
	// No USB, no video, no balloon: less to emulate under TCG.
	devs.Controllers = append(devs.Controllers, libvirtxml.DomainController{Type: "usb", Index: ptr(uint(0)), Model: "none"})
	devs.Serials = []libvirtxml.DomainSerial{{
		Source: &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: cfg.Console, Append: "on"}},
		Target: &libvirtxml.DomainSerialTarget{Port: ptr(uint(0))},
	}}
	devs.Consoles = []libvirtxml.DomainConsole{{
		Source: &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: cfg.Console, Append: "on"}},
		Target: &libvirtxml.DomainConsoleTarget{Type: "serial", Port: ptr(uint(0))},
	}}
	devs.Videos = []libvirtxml.DomainVideo{{Model: libvirtxml.DomainVideoModel{Type: "none"}}}
	devs.MemBalloon = &libvirtxml.DomainMemBalloon{Model: "none"}
	if len(qemuArgs) > 0 {
		dom.QEMUCommandline = &libvirtxml.DomainQEMUCommandline{Args: qemuArgs}
	}
	if len(overrides) > 0 {
		dom.QEMUOverride = &libvirtxml.DomainQEMUOverride{Devices: overrides}
	}
	return dom, nil
}

// cpuFor returns the guest CPU: everything the accelerator can give. QEMU's default
// (qemu64) lacks SSE4.2, POPCNT and AVX, so images built for x86-64-v2 and later (the
// RHEL 9 family) would not boot on it; under TCG 'maximum' is QEMU's "max" model, under
// KVM the host's CPU is passed through (the KVM probe runs this same CPU).
func cpuFor(a Accel) *libvirtxml.DomainCPU {
	if a == AccelKVM {
		return &libvirtxml.DomainCPU{Mode: "host-passthrough", Check: "none", Migratable: "off"}
	}
	return &libvirtxml.DomainCPU{Mode: "maximum", Check: "none", Migratable: "off"}
}

// driveLetters returns the letters of the n-th drive name: a..z, aa..az, ...
func driveLetters(n int) string {
	s := ""
	for n++; n > 0; n = (n - 1) / 26 {
		s = string(rune('a'+(n-1)%26)) + s
	}
	return s
}
