package libvirt

import (
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/maasemu/maasemu/harness/machine"
	"libvirt.org/go/libvirtxml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func udpNIC(mac string, model string, remote, local uint16) machine.NIC {
	return machine.NIC{
		MAC:   mustMAC(mac),
		Model: model,
		UDP: &machine.UDPAttachment{
			Remote: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), remote),
			Local:  netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), local),
		},
	}
}

const gib = 1 << 30

// goldenCase is one domain XML combination; its golden file is testdata/<name>.xml.
type goldenCase struct {
	name  string
	spec  machine.Spec
	accel Accel
	runAs string
}

func goldenCases() []goldenCase {
	return []goldenCase{
		{name: "bios-virtio-udp", spec: machine.Spec{
			Name: "node1", Firmware: machine.BIOS,
			NICs:  []machine.NIC{udpNIC("52:54:00:aa:00:01", "", 40001, 40002)},
			Disks: []machine.Disk{{SizeBytes: 8 * gib, Serial: "disk-node1-0"}},
		}},
		{name: "uefi-virtio-udp", spec: machine.Spec{
			Name: "node2", Firmware: machine.UEFI, MemoryMiB: 1024, CPUs: 2,
			NICs:  []machine.NIC{udpNIC("52:54:00:aa:00:02", "virtio", 40003, 40004)},
			Disks: []machine.Disk{{SizeBytes: 8 * gib, Serial: "disk-node2-0"}},
		}},
		{name: "bios-nic-kinds", spec: machine.Spec{
			Name: "node3",
			NICs: []machine.NIC{
				{MAC: mustMAC("52:54:00:aa:00:03"), Model: "e1000", Network: "maas-pxe"},
				{MAC: mustMAC("52:54:00:aa:00:04"), Model: "rtl8139", Bridge: "br0", Boot: true},
				udpNIC("52:54:00:aa:00:05", "e1000e", 40005, 40006),
			},
			Disks: []machine.Disk{{SizeBytes: 4 * gib}},
		}},
		{name: "uefi-e1000-network", spec: machine.Spec{
			Name: "node4", Firmware: machine.UEFI,
			NICs:  []machine.NIC{{MAC: mustMAC("52:54:00:aa:00:06"), Model: "e1000", Network: "default"}},
			Disks: []machine.Disk{{SizeBytes: 4 * gib, Bus: "sata", Serial: "SATA0"}},
		}},
		{name: "bios-disk-buses", spec: machine.Spec{
			Name: "node5",
			NICs: []machine.NIC{udpNIC("52:54:00:aa:00:07", "virtio", 40007, 40008)},
			Disks: []machine.Disk{
				{SizeBytes: 8 * gib, Bus: "virtio", Serial: "VIRT0"},
				{SizeBytes: 2 * gib, Bus: "sata", Serial: "SATA1", Model: "Samsung SSD 860"},
				{SizeBytes: 2 * gib, Bus: "scsi", Serial: "SCSI2", Model: "PERC H730"},
				{SizeBytes: 2 * gib, Bus: "nvme", Serial: "NVME3"},
				{SizeBytes: 1 * gib, Bus: "virtio"},
			},
		}},
		{name: "uefi-nvme-boot", spec: machine.Spec{
			Name: "node6", Firmware: machine.UEFI,
			NICs: []machine.NIC{udpNIC("52:54:00:aa:00:08", "virtio", 40009, 40010)},
			Disks: []machine.Disk{
				{SizeBytes: 8 * gib, Bus: "nvme", Serial: "NVME0"},
				{SizeBytes: 8 * gib, Bus: "nvme"},
				{SizeBytes: 2 * gib, Bus: "scsi", Serial: "SCSI0"},
			},
		}},
		{name: "bios-no-nic", spec: machine.Spec{
			Name:  "node7",
			Disks: []machine.Disk{{SizeBytes: gib, Serial: "A"}, {SizeBytes: gib, Bus: "sata", Serial: "B"}},
		}},
		{name: "kvm-runas", accel: AccelKVM, runAs: "+0:+0", spec: machine.Spec{
			Name: "node8", Firmware: machine.UEFI,
			NICs: []machine.NIC{udpNIC("52:54:00:aa:00:09", "", 40011, 40012)},
		}},
	}
}

// goldenConfig resolves a case's spec into a domain config with fixed paths.
func goldenConfig(t testing.TB, c goldenCase, dir string) domainConfig {
	t.Helper()
	spec, err := normalizeSpec(c.spec)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	accel := c.accel
	if accel == "" {
		accel = AccelTCG
	}
	domain := "maasemu-golden-" + spec.Name
	mdir := filepath.Join(dir, domain)
	cfg := domainConfig{
		Domain: domain, Lab: "golden", Spec: spec, Accel: accel, Dir: mdir,
		Console: filepath.Join(mdir, "console.log"),
		UEFI:    UEFIFirmware{Code: "/usr/share/OVMF/OVMF_CODE_4M.fd", Vars: "/usr/share/OVMF/OVMF_VARS_4M.fd"},
		RunAs:   c.runAs,
	}
	if spec.Firmware == machine.UEFI {
		cfg.NVRAM = filepath.Join(mdir, "nvram.fd")
	}
	for i := range spec.Disks {
		cfg.Disks = append(cfg.Disks, filepath.Join(mdir, diskFileName(i)))
	}
	return cfg
}

func TestDomainXMLGolden(t *testing.T) {
	for _, c := range goldenCases() {
		t.Run(c.name, func(t *testing.T) {
			got, err := domainXML(goldenConfig(t, c, "/var/lib/maasemu/lab"))
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", c.name+".xml")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("domain XML differs from %s (-want +got):\n%s", golden, diff)
			}
			// The XML parses back into the same domain.
			var back libvirtxml.Domain
			if err := back.Unmarshal(got); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			again, err := back.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, again+"\n"); diff != "" {
				t.Errorf("XML does not round-trip (-first +second):\n%s", diff)
			}
		})
	}
}

// TestDomainXMLBootOrder checks the rule the goldens encode: the boot NIC is 1, no other
// NIC has an order, and the disks follow in Spec order whatever their bus.
func TestDomainXMLBootOrder(t *testing.T) {
	for _, c := range goldenCases() {
		t.Run(c.name, func(t *testing.T) {
			cfg := goldenConfig(t, c, "/lab")
			dom, err := buildDomain(cfg)
			if err != nil {
				t.Fatal(err)
			}
			type dev struct {
				Kind  string
				Order uint
			}
			var got []dev
			for _, i := range dom.Devices.Interfaces {
				if i.Boot != nil {
					got = append(got, dev{"nic " + i.MAC.Address, i.Boot.Order})
				}
			}
			for _, d := range dom.Devices.Disks {
				got = append(got, dev{"disk " + d.Source.File.File, d.Boot.Order})
			}
			if dom.QEMUCommandline != nil {
				for _, a := range dom.QEMUCommandline.Args {
					if strings.HasPrefix(a.Value, "nvme,") {
						var order uint
						var path string
						for _, kv := range strings.Split(a.Value, ",") {
							if v, ok := strings.CutPrefix(kv, "bootindex="); ok {
								for _, ch := range v {
									order = order*10 + uint(ch-'0')
								}
							}
							if v, ok := strings.CutPrefix(kv, "drive="); ok {
								path = v
							}
						}
						got = append(got, dev{"nvme " + path, order})
					}
				}
			}
			var want []dev
			next := uint(1)
			for _, n := range cfg.Spec.NICs {
				if n.Boot {
					want = append(want, dev{"nic " + n.MAC.String(), 1})
					next = 2
				}
			}
			nvme := 0
			for i, d := range cfg.Spec.Disks {
				if d.Bus == BusNVMe {
					want = append(want, dev{"nvme maasemu-nvme" + string(rune('0'+nvme)), next + uint(i)})
					nvme++
					continue
				}
				want = append(want, dev{"disk " + cfg.Disks[i], next + uint(i)})
			}
			sortDevs := cmp.Transformer("sort", func(in []dev) map[string]uint {
				m := map[string]uint{}
				for _, d := range in {
					m[d.Kind] = d.Order
				}
				return m
			})
			if diff := cmp.Diff(want, got, sortDevs); diff != "" {
				t.Errorf("boot order (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDriveLetters(t *testing.T) {
	got := []string{driveLetters(0), driveLetters(1), driveLetters(25), driveLetters(26), driveLetters(27), driveLetters(701), driveLetters(702)}
	want := []string{"a", "b", "z", "aa", "ab", "zz", "aaa"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Error(diff)
	}
}
