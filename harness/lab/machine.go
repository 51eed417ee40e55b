package lab

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/canonical/gomaasclient/entity"

	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/harness/vnet"
)

// MachineSpec describes a machine to add to the lab.
type MachineSpec struct {
	Name      string
	Firmware  machine.Firmware // default BIOS
	MemoryMiB int
	// Disks: sizes, buses, serials; default one 8 GiB virtio disk.
	Disks []machine.Disk
	// NICs is how many NICs (default 1) and NICModel their model (default virtio).
	NICs     int
	NICModel string
	// Commission boots the machine into commissioning, as MAAS does for a new machine,
	// instead of describing its hardware to the region through the API.
	Commission bool
}

// Machine is a machine in the lab: the driver's machine and the region's record of it.
type Machine struct {
	Spec     MachineSpec
	SystemID string
	MACs     []net.HardwareAddr
	m        machine.Machine
	ports    []*vnet.UDPPort
}

// Driver returns the driver's machine (power, disks, console).
func (m *Machine) Driver() machine.Machine { return m.m }

// NewMachine creates a machine on the lab's driver and registers it with the region.
func (l *Lab) NewMachine(ctx context.Context, spec MachineSpec) (*Machine, error) {
	if spec.Name == "" {
		return nil, fmt.Errorf("lab: a machine needs a name")
	}
	if spec.Firmware == "" {
		spec.Firmware = machine.BIOS
	}
	if len(spec.Disks) == 0 {
		spec.Disks = []machine.Disk{{SizeBytes: 8 << 30}}
	}
	if spec.NICs <= 0 {
		spec.NICs = 1
	}
	for i := range spec.Disks {
		if spec.Disks[i].Serial == "" {
			spec.Disks[i].Serial = fmt.Sprintf("%s-disk%d", spec.Name, i)
		}
		if spec.Disks[i].Bus == "" {
			spec.Disks[i].Bus = "virtio"
		}
	}
	m := &Machine{Spec: spec}
	ms := machine.Spec{Name: spec.Name, Firmware: spec.Firmware, MemoryMiB: spec.MemoryMiB, Disks: spec.Disks}
	for i := 0; i < spec.NICs; i++ {
		mac := machineMAC(l.cfg.Name, spec.Name, i)
		nic := machine.NIC{MAC: mac, Model: spec.NICModel, Boot: i == 0}
		if l.cfg.Driver == DriverLibvirt {
			p, err := l.Switch.AttachUDP(vnet.UDPPortConfig{Name: fmt.Sprintf("%s-nic%d", spec.Name, i), MAC: mac})
			if err != nil {
				return nil, err
			}
			m.ports = append(m.ports, p)
			nic.UDP = p.Attachment()
		}
		ms.NICs = append(ms.NICs, nic)
		m.MACs = append(m.MACs, mac)
	}
	dm, err := l.Driver.Create(ctx, ms)
	if err != nil {
		for _, p := range m.ports {
			p.Close()
		}
		return nil, err
	}
	m.m = dm
	l.mu.Lock()
	l.machines[spec.Name] = m
	l.mu.Unlock()
	if err := l.register(ctx, m); err != nil {
		return m, err
	}
	return m, nil
}

// machineMAC is a stable locally administered MAC for a lab's machine NIC.
func machineMAC(lab, name string, i int) net.HardwareAddr {
	s := sha256.Sum256([]byte(lab + "/" + name + "/" + strconv.Itoa(i)))
	return net.HardwareAddr{0x52, 0x54, 0x00, s[0], s[1], s[2]}
}

// register creates the machine in the region with its power parameters, then either
// commissions it or describes its disks and NICs through the API.
func (l *Lab) register(ctx context.Context, m *Machine) error {
	params := url.Values{
		"architecture": {"amd64/generic"},
		"hostname":     {m.Spec.Name},
		"commission":   {strconv.FormatBool(m.Spec.Commission)},
	}
	for _, mac := range m.MACs {
		params.Add("mac_addresses", mac.String())
	}
	switch l.cfg.Driver {
	case DriverSim:
		params.Set("power_type", PowerTypeSim)
		params.Set("power_parameters_power_id", m.Spec.Name)
	case DriverLibvirt:
		uri := l.cfg.LibvirtURI
		if uri == "" {
			uri = "qemu:///system"
		}
		params.Set("power_type", "virsh")
		params.Set("power_parameters_power_address", uri)
		params.Set("power_parameters_power_id", domainName(l, m))
	}
	var created struct {
		SystemID string `json:"system_id"`
	}
	if err := l.post(ctx, "machines/", "", params, &created); err != nil {
		return fmt.Errorf("lab: creating machine %s in the region: %w", m.Spec.Name, err)
	}
	m.SystemID = created.SystemID
	if m.Spec.Commission {
		return nil
	}
	return l.describeHardware(ctx, m)
}

func domainName(l *Lab, m *Machine) string {
	type namer interface{ DomainName(string) string }
	if n, ok := l.Driver.(namer); ok {
		return n.DomainName(m.Spec.Name)
	}
	return m.Spec.Name
}

// describeHardware tells the region the machine's disks (as the kernel will name them) and
// NICs, as an admin can through the API instead of commissioning.
func (l *Lab) describeHardware(ctx context.Context, m *Machine) error {
	for i, d := range m.Spec.Disks {
		name, idPath := machine.KernelName(d, i)
		params := url.Values{"name": {name}, "model": {modelOf(d)}, "serial": {d.Serial}, "id_path": {idPath},
			"size": {strconv.FormatInt(d.SizeBytes, 10)}, "block_size": {"512"}}
		if err := l.post(ctx, "nodes/"+m.SystemID+"/blockdevices/", "", params, nil); err != nil {
			return fmt.Errorf("lab: describing disk %d of %s: %w", i, m.Spec.Name, err)
		}
	}
	if err := l.post(ctx, "machines/"+m.SystemID+"/", "mark_fixed", nil, nil); err != nil {
		_ = err // a machine created with commission=false is already Ready
	}
	return nil
}

func modelOf(d machine.Disk) string {
	if d.Model != "" {
		return d.Model
	}
	if d.Bus == "virtio" || d.Bus == "" {
		return ""
	}
	return "QEMU HARDDISK"
}

// UploadImage uploads a custom image file through the API exactly as `maas boot-resources
// create name=... content@=FILE` does: create, then 4 MiB chunks.
func (l *Lab) UploadImage(ctx context.Context, name, path, filetype, baseImage string) (*entity.BootResource, error) {
	br, err := l.UploadImageWith(ctx, name, path, filetype, baseImage, UploadOptions{})
	if err != nil {
		return nil, fmt.Errorf("lab: uploading %s as boot resource %s: %w", path, name, err)
	}
	return br, nil
}

// ImportStreams imports a SimpleStreams tree (the test ephemeral, bootloaders).
func (l *Lab) ImportStreams(ctx context.Context, src string) error {
	_, err := l.Region.Import(ctx, src, nil)
	return err
}

// DeployOptions choose what to deploy.
type DeployOptions struct {
	DistroSeries string // the custom image's name, or os/series
	UserData     []byte // for the installed OS
	HWEKernel    string
}

// Deploy allocates and deploys the machine.
func (l *Lab) Deploy(ctx context.Context, m *Machine, o DeployOptions) error {
	if err := l.post(ctx, "machines/", "allocate", url.Values{"system_id": {m.SystemID}}, nil); err != nil {
		return fmt.Errorf("lab: allocating %s: %w", m.Spec.Name, err)
	}
	params := url.Values{"distro_series": {o.DistroSeries}}
	if len(o.UserData) > 0 {
		params.Set("user_data", base64.StdEncoding.EncodeToString(o.UserData))
	}
	if o.HWEKernel != "" {
		params.Set("hwe_kernel", o.HWEKernel)
	}
	if err := l.post(ctx, "machines/"+m.SystemID+"/", "deploy", params, nil); err != nil {
		return fmt.Errorf("lab: deploying %s: %w", m.Spec.Name, err)
	}
	return nil
}

// post sends a form POST to the API path (relative to /MAAS/api/2.0/) with op, decoding a
// JSON answer into out when given.
func (l *Lab) post(ctx context.Context, path, op string, params url.Values, out any) error {
	return apiPost(ctx, l.Client, path, op, params, out)
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' {
			return '-'
		}
		return r
	}, s)
}
