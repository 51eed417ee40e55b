// Package commissioning builds and reads the hardware report a machine sends MAAS while it
// commissions: the machine-resources (LXD resources API 1.0) JSON that is the result of
// MAAS's builtin script 50-maas-01-commissioning, and the multipart op=signal request that
// carries script results to the metadata service.
//
// Both sides of the emulation use it: the agent that commissions a machine builds the
// report with BuildResources and posts it with Signal; the region reads it with
// ParseResources, which applies the rules MAAS's commissioning hooks apply
// (src/metadataserver/builtin_scripts/hooks.py, network.py and
// src/provisioningserver/utils/lxd.py in MAAS 3.7).
package commissioning

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// ScriptName is the builtin commissioning script whose result is the resources JSON
// (COMMISSIONING_OUTPUT_NAME).
const ScriptName = "50-maas-01-commissioning"

// RequiredExtensions are the LXD API extensions MAAS insists the report was made with.
var RequiredExtensions = []string{"api_os", "resources", "resources_system", "resources_usb_pci", "resources_v2"}

// extensions are the ones BuildResources declares: the required ones and the two MAAS uses
// to map devices to disks and interfaces.
var extensions = []string{"resources", "resources_v2", "api_os", "resources_system", "resources_usb_pci",
	"resources_network_usb", "resources_disk_address", "resources_cpu_socket", "resources_gpu", "resources_numa"}

// Hardware describes a machine to report.
type Hardware struct {
	Arch        string // Debian architecture: amd64, arm64, ppc64el, s390x, i386, armhf
	Hostname    string // environment.server_name; optional
	CPUCount    int    // threads; default 1
	CPUModel    string // socket name, e.g. "QEMU Virtual CPU version 2.5+"
	CPUSpeedMHz int    // socket frequency
	MemoryBytes int64
	Disks       []Disk
	NICs        []NIC
	SystemUUID  string // resources.system.uuid; optional
}

// Disk is one block device as the kernel and udev see it.
type Disk struct {
	Name       string // kernel name, LXD's id: "sda", "vda", "nvme0n1"
	Model      string
	Serial     string
	DeviceID   string // the /dev/disk/by-id/ name, e.g. "scsi-0QEMU_QEMU_HARDDISK_QM00001"
	DevicePath string // the /dev/disk/by-path/ name, e.g. "pci-0000:00:05.0-scsi-0:0:0:0"
	Size       int64  // bytes
	BlockSize  int    // bytes; default 512
	Type       string // bus: "scsi", "virtio", "nvme", "sata", "usb", "cdrom"; default "scsi"
	RPM        int    // 0 for solid state
	Removable  bool
	ReadOnly   bool
	Firmware   string // firmware_version
}

// NIC is one network port.
type NIC struct {
	Name         string // "ens3"
	MAC          string // aa:bb:cc:dd:ee:ff
	Disconnected bool   // no carrier (link_detected false)
	SpeedMbps    int    // link_speed
	Driver       string // default "virtio_net"
	Vendor       string
	Product      string
	PCIAddress   string   // "0000:00:03.0"
	Addresses    []string // global addresses in CIDR form, as the ephemeral configured them
	MTU          int      // default 1500
}

var kernelArch = map[string]string{"amd64": "x86_64", "arm64": "aarch64", "ppc64el": "ppc64le", "s390x": "s390x",
	"i386": "i686", "armhf": "armv7l", "riscv64": "riscv64"}

// debianArch is kernel_to_debian_architecture.
var debianArch = map[string]string{"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64el", "s390x": "s390x",
	"i686": "i386", "i386": "i386", "armv7l": "armhf", "armv8l": "arm64", "riscv64": "riscv64"}

// BuildResources renders hw as the JSON machine-resources prints (the output of
// 50-maas-01-commissioning). Inputs that MAAS could not have been sent (a disk without a
// name, a bad MAC, an unknown architecture) are refused.
func BuildResources(hw Hardware) ([]byte, error) {
	karch, ok := kernelArch[hw.Arch]
	if !ok {
		return nil, fmt.Errorf("commissioning: architecture %q: must be a Debian architecture (one of %s)", hw.Arch, strings.Join(sortedKeys(kernelArch), ", "))
	}
	cpus := hw.CPUCount
	if cpus <= 0 {
		cpus = 1
	}
	var threads []any
	for i := 0; i < cpus; i++ {
		threads = append(threads, map[string]any{"id": i, "thread": 0, "online": true, "isolated": false, "numa_node": 0})
	}
	var cores []any
	for i, t := range threads {
		cores = append(cores, map[string]any{"core": i, "die": 0, "threads": []any{t}, "frequency": hw.CPUSpeedMHz})
	}
	socket := map[string]any{"name": hw.CPUModel, "vendor": "", "socket": 0, "cache": []any{}, "cores": cores,
		"frequency": hw.CPUSpeedMHz, "frequency_minimum": 0, "frequency_turbo": 0}
	mem := hw.MemoryBytes
	var disks []any
	seenDisk := map[string]bool{}
	for i, d := range hw.Disks {
		if d.Name == "" || strings.ContainsAny(d.Name, "/ ") {
			return nil, fmt.Errorf("commissioning: disk %d: name %q must be a kernel block device name such as sda", i, d.Name)
		}
		if seenDisk[d.Name] {
			return nil, fmt.Errorf("commissioning: disk %q is listed twice", d.Name)
		}
		seenDisk[d.Name] = true
		if d.Size < 0 {
			return nil, fmt.Errorf("commissioning: disk %q: size %d must not be negative", d.Name, d.Size)
		}
		bs, typ := d.BlockSize, d.Type
		if bs == 0 {
			bs = 512
		}
		if typ == "" {
			typ = "scsi"
		}
		disks = append(disks, map[string]any{
			"id": d.Name, "device": fmt.Sprintf("8:%d", 16*i), "model": d.Model, "type": typ, "read_only": d.ReadOnly,
			"size": d.Size, "removable": d.Removable, "wwn": "", "numa_node": 0, "device_path": d.DevicePath,
			"block_size": bs, "firmware_version": d.Firmware, "rpm": d.RPM, "serial": d.Serial, "device_id": d.DeviceID,
			"partitions": []any{},
		})
	}
	var cards []any
	networks := map[string]any{"lo": map[string]any{"addresses": []any{
		map[string]any{"family": "inet", "address": "127.0.0.1", "netmask": "8", "scope": "local"}},
		"counters": counters(), "hwaddr": "", "host_name": "", "mtu": 65536, "state": "up", "type": "loopback",
		"bond": nil, "bridge": nil, "vlan": nil}}
	seenNIC := map[string]bool{}
	for i, n := range hw.NICs {
		if n.Name == "" || strings.ContainsAny(n.Name, "/ ") {
			return nil, fmt.Errorf("commissioning: NIC %d: name %q must be an interface name such as ens3", i, n.Name)
		}
		hwaddr, err := net.ParseMAC(n.MAC)
		if err != nil || len(hwaddr) != 6 {
			return nil, fmt.Errorf("commissioning: NIC %q: MAC %q must be a 6-byte MAC address aa:bb:cc:dd:ee:ff", n.Name, n.MAC)
		}
		if seenNIC[n.Name] {
			return nil, fmt.Errorf("commissioning: NIC %q is listed twice", n.Name)
		}
		seenNIC[n.Name] = true
		driver, mtu := n.Driver, n.MTU
		if driver == "" {
			driver = "virtio_net"
		}
		if mtu == 0 {
			mtu = 1500
		}
		pci := n.PCIAddress
		if pci == "" {
			pci = fmt.Sprintf("0000:00:%02x.0", 3+i)
		}
		port := map[string]any{"id": n.Name, "address": hwaddr.String(), "port": 0, "protocol": "ethernet",
			"auto_negotiation": false, "link_detected": !n.Disconnected, "link_speed": n.SpeedMbps, "link_duplex": "full"}
		cards = append(cards, map[string]any{"driver": driver, "driver_version": "1.0.0", "ports": []any{port},
			"numa_node": 0, "pci_address": pci, "vendor": n.Vendor, "vendor_id": "", "product": n.Product, "product_id": ""})
		var addrs []any
		for _, a := range n.Addresses {
			ip, ipnet, err := net.ParseCIDR(a)
			if err != nil {
				return nil, fmt.Errorf("commissioning: NIC %q: address %q must be in CIDR form, e.g. 10.0.0.5/24", n.Name, a)
			}
			ones, _ := ipnet.Mask.Size()
			family := "inet"
			if ip.To4() == nil {
				family = "inet6"
			}
			addrs = append(addrs, map[string]any{"family": family, "address": ip.String(), "netmask": fmt.Sprint(ones), "scope": "global"})
		}
		if addrs == nil {
			addrs = []any{}
		}
		state := "up"
		if n.Disconnected {
			state = "down"
		}
		networks[n.Name] = map[string]any{"addresses": addrs, "counters": counters(), "hwaddr": hwaddr.String(),
			"host_name": "", "mtu": mtu, "state": state, "type": "broadcast", "bond": nil, "bridge": nil, "vlan": nil}
	}
	if disks == nil {
		disks = []any{}
	}
	if cards == nil {
		cards = []any{}
	}
	doc := map[string]any{
		"api_extensions": extensions,
		"api_version":    "1.0",
		"environment": map[string]any{"kernel": "Linux", "kernel_architecture": karch, "kernel_version": "6.8.0",
			"os_name": "ubuntu", "os_version": "24.04", "server": "maas-machine-resources", "server_name": hw.Hostname,
			"server_version": "5.21"},
		"resources": map[string]any{
			"cpu": map[string]any{"architecture": karch, "sockets": []any{socket}, "total": cpus},
			"memory": map[string]any{"nodes": []any{map[string]any{"numa_node": 0, "hugepages_used": 0, "hugepages_total": 0,
				"used": 0, "total": mem}}, "hugepages_total": 0, "hugepages_used": 0, "hugepages_size": 2097152,
				"used": 0, "total": mem},
			"gpu":     map[string]any{"cards": []any{}, "total": 0},
			"network": map[string]any{"cards": cards, "total": len(cards)},
			"storage": map[string]any{"disks": disks, "total": len(disks)},
			"usb":     map[string]any{"devices": []any{}, "total": 0},
			"pci":     map[string]any{"devices": []any{}, "total": 0},
			"system": map[string]any{"uuid": hw.SystemUUID, "vendor": "QEMU", "product": "Standard PC", "family": "",
				"version": "", "sku": "", "serial": "", "type": "physical"},
		},
		"networks": networks,
	}
	return json.MarshalIndent(doc, "", " ")
}

func counters() map[string]any {
	return map[string]any{"bytes_received": 0, "bytes_sent": 0, "packets_received": 0, "packets_sent": 0}
}

// Report is what MAAS keeps from a resources JSON: the machine's architecture, CPU,
// memory, physical disks and physical interfaces.
type Report struct {
	Architecture string // Debian architecture from environment.kernel_architecture
	CPUCount     int
	CPUSpeedMHz  int
	CPUModel     string
	MemoryMiB    int64
	Disks        []ReportedDisk
	Interfaces   []ReportedInterface
}

// ReportedDisk is a physical block device as MAAS records it.
type ReportedDisk struct {
	Name            string
	Model           string
	Serial          string
	IDPath          string // /dev/disk/by-id/<device_id>, or /dev/<name> without a serial or device_id
	Size            int64
	BlockSize       int
	Tags            []string // rotary/<n>rpm or ssd, removable, sata
	FirmwareVersion string
}

// ReportedInterface is a physical interface as MAAS records it.
type ReportedInterface struct {
	Name          string
	MAC           string
	LinkConnected bool
	LinkSpeed     int
	Vendor        string
	Product       string
	Addresses     []string // global addresses in CIDR form
}

// ErrInvalidReport is wrapped by every ParseResources error.
var ErrInvalidReport = errors.New("invalid commissioning data")

// minDiskSize is MIN_BLOCK_DEVICE_SIZE: MAAS ignores smaller disks.
const minDiskSize = 4 * 1024 * 1024

var openBMCMAC = "02:00:00:00:00:02"

// notLXD is MAAS's assertion message for a report of another API version.
const notLXD = "Data not from LXD API 1.0!"

// ParseResources reads a resources JSON as process_lxd_results does: the API version and
// extensions are checked; read-only devices, CD-ROMs, bcache holders, loop devices and
// disks of 4 MiB or less are skipped; multipath paths to one LUN are condensed to one
// disk; interfaces are the "broadcast" networks that are not bonds, bridges or VLANs.
// Errors wrap ErrInvalidReport and say what MAAS would have logged.
func ParseResources(b []byte) (Report, error) {
	var rep Report
	var data struct {
		APIVersion    *string         `json:"api_version"`
		APIExtensions []string        `json:"api_extensions"`
		Environment   *map[string]any `json:"environment"`
		Resources     *struct {
			CPU struct {
				Total   int `json:"total"`
				Sockets []struct {
					Name          *string `json:"name"`
					Frequency     float64 `json:"frequency"`
					FrequencyTurb float64 `json:"frequency_turbo"`
				} `json:"sockets"`
			} `json:"cpu"`
			Memory struct {
				Total int64 `json:"total"`
			} `json:"memory"`
			Storage struct {
				Disks []map[string]any `json:"disks"`
			} `json:"storage"`
			Network struct {
				Cards []struct {
					Vendor  string           `json:"vendor"`
					Product string           `json:"product"`
					Ports   []map[string]any `json:"ports"`
				} `json:"cards"`
			} `json:"network"`
		} `json:"resources"`
		Networks map[string]struct {
			Type      string `json:"type"`
			HWAddr    string `json:"hwaddr"`
			State     string `json:"state"`
			Addresses []struct {
				Address string `json:"address"`
				Netmask string `json:"netmask"`
				Scope   string `json:"scope"`
			} `json:"addresses"`
			Bond   any `json:"bond"`
			Bridge any `json:"bridge"`
			VLAN   any `json:"vlan"`
		} `json:"networks"`
	}
	if err := json.Unmarshal(b, &data); err != nil {
		return rep, fmt.Errorf("%w: invalid JSON data: %v", ErrInvalidReport, err)
	}
	if data.APIVersion == nil || *data.APIVersion != "1.0" {
		return rep, fmt.Errorf("%w: %s", ErrInvalidReport, notLXD)
	}
	var missing []string
	for _, e := range RequiredExtensions {
		if !slices.Contains(data.APIExtensions, e) {
			missing = append(missing, "'"+e+"'")
		}
	}
	if len(missing) > 0 {
		return rep, fmt.Errorf("%w: Missing required LXD API extensions [%s]", ErrInvalidReport, strings.Join(missing, ", "))
	}
	if data.Environment == nil {
		return rep, fmt.Errorf("%w: 'environment' is missing", ErrInvalidReport)
	}
	karch, _ := (*data.Environment)["kernel_architecture"].(string)
	arch, ok := debianArch[karch]
	if !ok {
		return rep, fmt.Errorf("%w: environment.kernel_architecture %q is not an architecture MAAS knows", ErrInvalidReport, karch)
	}
	rep.Architecture = arch
	if data.Resources == nil {
		return rep, fmt.Errorf("%w: 'resources' is missing", ErrInvalidReport)
	}
	if data.Networks == nil {
		return rep, fmt.Errorf("%w: 'networks' is missing", ErrInvalidReport)
	}
	res := data.Resources
	rep.CPUCount = res.CPU.Total
	var names []string
	for _, s := range res.CPU.Sockets {
		if s.Name != nil {
			names = append(names, *s.Name)
		}
	}
	if len(names) > 0 && !slices.ContainsFunc(names, func(n string) bool { return n != names[0] }) {
		model := names[0]
		if m := ghzRE.FindStringSubmatch(model); m != nil {
			var ghz float64
			fmt.Sscanf(m[1], "%g", &ghz)
			rep.CPUSpeedMHz = int(ghz * 1000)
		}
		if i := strings.Index(model, " @"); i >= 0 {
			model = model[:i]
		}
		rep.CPUModel = model
	}
	if rep.CPUSpeedMHz == 0 {
		var turbo, sum float64
		for _, s := range res.CPU.Sockets {
			turbo = max(turbo, s.FrequencyTurb)
			sum += s.Frequency
		}
		switch {
		case turbo > 0:
			rep.CPUSpeedMHz = int(turbo)
		case sum > 0:
			avg := sum / float64(len(res.CPU.Sockets))
			rep.CPUSpeedMHz = int(avg/100+0.5) * 100
		}
	}
	rep.MemoryMiB = res.Memory.Total / (1024 * 1024)

	for _, d := range condenseLUNs(res.Storage.Disks) {
		get := func(k string) string { s, _ := d[k].(string); return s }
		num := func(k string) (int64, error) {
			switch v := d[k].(type) {
			case nil:
				return 0, nil
			case float64:
				return int64(v), nil
			}
			return 0, fmt.Errorf("%w: disk %q: %s %v is not a number", ErrInvalidReport, get("id"), k, d[k])
		}
		name := get("id")
		if name == "" {
			return rep, fmt.Errorf("%w: a storage disk has no id", ErrInvalidReport)
		}
		if ro, _ := d["read_only"].(bool); ro || get("type") == "cdrom" {
			continue
		}
		if strings.HasPrefix(name, "bcache") {
			continue
		}
		size, err := num("size")
		if err != nil {
			return rep, err
		}
		bs, err := num("block_size")
		if err != nil {
			return rep, err
		}
		rpm, err := num("rpm")
		if err != nil {
			return rep, err
		}
		if bs == 0 {
			bs = 512
		}
		serial, idPath := get("serial"), get("device_id")
		if idPath != "" {
			idPath = "/dev/disk/by-id/" + idPath
		}
		if idPath == "" || serial == "" {
			idPath = "/dev/" + name
		}
		if size <= minDiskSize || strings.HasPrefix(idPath, "/dev/loop") {
			continue
		}
		var tags []string
		multipath, _ := d["maas_multipath"].(bool)
		switch {
		case rpm != 0:
			tags = append(tags, "rotary", fmt.Sprintf("%drpm", rpm))
		case !multipath:
			tags = append(tags, "ssd")
		}
		if multipath {
			tags = append(tags, "multipath")
		}
		if rm, _ := d["removable"].(bool); rm {
			tags = append(tags, "removable")
		}
		if get("type") == "sata" {
			tags = append(tags, "sata")
		}
		rep.Disks = append(rep.Disks, ReportedDisk{Name: name, Model: get("model"), Serial: serial, IDPath: idPath,
			Size: size, BlockSize: int(bs), Tags: tags, FirmwareVersion: get("firmware_version")})
	}

	ports := map[string]map[string]any{}
	cardOf := map[string]int{}
	for ci, c := range res.Network.Cards {
		for _, p := range c.Ports {
			if id, _ := p["id"].(string); id != "" {
				ports[id] = p
				cardOf[id] = ci
			}
		}
	}
	names = names[:0]
	for n := range data.Networks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		n := data.Networks[name]
		if n.Type != "broadcast" || n.Bond != nil || n.Bridge != nil || n.VLAN != nil {
			continue
		}
		hw, err := net.ParseMAC(n.HWAddr)
		if err != nil {
			return rep, fmt.Errorf("%w: network %q: hwaddr %q is not a MAC address", ErrInvalidReport, name, n.HWAddr)
		}
		if len(hw) != 6 || hw.String() == openBMCMAC {
			continue // InfiniBand (LP:1939456) or a switch's OpenBMC port
		}
		iface := ReportedInterface{Name: name, MAC: hw.String(), LinkConnected: n.State == "up"}
		if p, ok := ports[name]; ok {
			ld, _ := p["link_detected"].(bool)
			iface.LinkConnected = ld
			if s, ok := p["link_speed"].(float64); ok {
				iface.LinkSpeed = int(s)
			}
			c := res.Network.Cards[cardOf[name]]
			iface.Vendor, iface.Product = c.Vendor, c.Product
		}
		for _, a := range n.Addresses {
			if a.Scope == "global" {
				iface.Addresses = append(iface.Addresses, a.Address+"/"+a.Netmask)
			}
		}
		rep.Interfaces = append(rep.Interfaces, iface)
	}
	return rep, nil
}

var ghzRE = regexp.MustCompile(`\s@\s(\d+\.\d+)GHz$`)

// Multipath device-path forms (_MP_PATH_ID / _DEV_PATH in hooks.py).
var (
	devPathRE = regexp.MustCompile(`^(\w+)-([\da-fA-F:\.]+)-(\w+)-(.*)$`)
	mpPathID  = map[string][]*regexp.Regexp{
		"fc":    {regexp.MustCompile(`^(?:\w+)-(lun-(?:0x)?[\da-fA-F]+)$`)},
		"vmbus": {regexp.MustCompile(`^(?:\w+)-(lun-(?:0x)?[\da-fA-F]+)$`)},
		"sas": {regexp.MustCompile(`^(?:0x[\da-fA-F]+)-(lun-(?:0x)?[\da-fA-F]+)$`),
			regexp.MustCompile(`^exp0x[\da-fA-F]+-phy(?:(?:0x)?[\da-fA-F]+)-(lun-(?:0x)?[\da-fA-F]+)$`),
			regexp.MustCompile(`^phy(?:(?:0x)?[\da-fA-F]+)-(lun-(?:0x)?[\da-fA-F]+)$`)},
		"ip": {regexp.MustCompile(`^[\.\-\w:]+-iscsi-(?:[\.\-\w:]+)-(lun-(?:0x)?[\da-fA-F]+)$`)},
	}
)

// condenseLUNs is _condense_luns: paths to the same (serial, LUN) become one disk, the
// one with the lowest id, marked maas_multipath when there was more than one.
func condenseLUNs(disks []map[string]any) []map[string]any {
	type key struct{ serial, lun string }
	groups := map[key][]map[string]any{}
	var order []key
	var out []map[string]any
	for _, d := range disks {
		dp, _ := d["device_path"].(string)
		m := devPathRE.FindStringSubmatch(dp)
		serial, _ := d["serial"].(string)
		if m == nil || m[3] == "usb" || serial == "" || mpPathID[m[3]] == nil {
			out = append(out, d)
			continue
		}
		var lun string
		for _, re := range mpPathID[m[3]] {
			if mm := re.FindStringSubmatch(m[4]); mm != nil {
				lun = mm[1]
				break
			}
		}
		if lun == "" {
			out = append(out, d)
			continue
		}
		k := key{serial, lun}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], d)
	}
	for _, k := range order {
		paths := groups[k]
		sort.SliceStable(paths, func(i, j int) bool { return idOf(paths[i]) < idOf(paths[j]) })
		first := paths[0]
		if len(paths) > 1 {
			first["maas_multipath"] = true
		}
		for _, p := range paths[1:] {
			if s, _ := first["device_id"].(string); s == "" {
				first["device_id"] = p["device_id"]
			}
		}
		out = append(out, first)
	}
	sort.SliceStable(out, func(i, j int) bool { return idOf(out[i]) < idOf(out[j]) })
	return out
}

func idOf(d map[string]any) string { s, _ := d["id"].(string); return s }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
