package curtincfg

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/curtincfg")

const goldenDir = "../../testdata/curtincfg"

// baseInput is a small amd64 BIOS machine on a MAAS-managed subnet, deploying a custom
// tgz image built on Ubuntu 22.04.
func baseInput() *Input {
	return &Input{
		Machine: Machine{
			SystemID: "x7kq3p", Hostname: "node1", Domain: "maas", Arch: "amd64", Subarch: "generic",
			Firmware: "bios",
			BlockDevices: []BlockDevice{
				{ID: 1, Name: "sda", Model: "QEMU HARDDISK", Serial: "QM00001", Size: 10 * gib, BlockSize: 512, IDPath: "/dev/disk/by-id/ata-QEMU_HARDDISK_QM00001"},
			},
			Interfaces: []Interface{
				{Type: IfacePhysical, Name: "eth0", MAC: "52:54:00:12:34:56", MTU: 1500,
					Links: []Link{{Mode: LinkAuto, Subnet: "10.0.0.0/24", IP: "10.0.0.10"}}},
			},
		},
		Deployment: Deployment{
			OSystem: OSCustom, Series: "myimage", BaseImage: "ubuntu/jammy",
			Image: Image{Filetype: "tgz", FilenameOnDisk: "87b8187"},
		},
		Network: Network{
			Subnets: []Subnet{{CIDR: "10.0.0.0/24", Gateway: "10.0.0.1", Managed: true, RackAddresses: []string{"10.0.0.2"}}},
		},
		Credentials: Credentials{ConsumerKey: "Cq8aJ7vRQmWxT2bN4d", TokenKey: "Hk3LpZ9sYv6EwQ1tRn", TokenSecret: "u5VbN8mKq2XcLw7RzT4yHf6GjP3sDa9E"},
		URLs:        URLs{RackIP: "10.0.0.2"},
	}
}

// goldenCase is one machine whose documents are compared with testdata/curtincfg/<name>.
// source says where in MAAS the expected shape comes from.
type goldenCase struct {
	name   string
	source string
	input  func() *Input
}

var goldenCases = []goldenCase{
	{
		name: "custom-tgz-ubuntu-bios",
		source: "preseed.py get_curtin_yaml_config (custom: no swap/kernel documents; apt kept for the ubuntu base), " +
			"curtin_userdata_custom, get_custom_image_dependency_validation (98-/99- checks, ubuntu base); " +
			"preseed_storage.py _generate_bios_grub_partition and test_preseed_storage.py TestGPTPXELargeBootDiskLayout " +
			"(BIOS+GPT: bios_grub sda-part1 1 MiB at 4 MiB, root sda-part2); storage_layouts.py FlatStorageLayout; " +
			"preseed_network.py v2 with source routing for ubuntu >= 18.04 (test_preseed_network.py TestNetplan)",
		input: baseInput,
	},
	{
		name: "custom-ddgz-uefi",
		source: "get_curtin_installer_url + maascommon/osystem _get_image_filetypes (root-dd.gz -> dd-gz: prefix); " +
			"storage_layouts.py create_basic_layout (UEFI: 512 MiB fat32 ESP sda-part1 on /boot/efi, no bios_grub) " +
			"and test_preseed_storage.py TestSimpleGPTLayout (ESP flag boot, offset 4194304B)",
		input: func() *Input {
			in := baseInput()
			in.Machine.Firmware = "uefi"
			in.Deployment.BaseImage = "ubuntu/noble"
			in.Deployment.Image = Image{Filetype: "ddgz", FilenameOnDisk: "5d41402"}
			return in
		},
	},
	{
		name: "custom-tgz-rhel9",
		source: "get_network_yaml_settings (rhel: v1) and test_preseed_network.py v1 expectations (subnets with " +
			"gateway, dns_nameservers/dns_search, nameserver entry); compose_curtin_archive_config (no apt for rhel); " +
			"get_curtin_config yum_proxy late command; DEPS_PER_OS (rhel: cloud-init check only)",
		input: func() *Input {
			in := baseInput()
			in.Deployment.Series = "rhel9-custom"
			in.Deployment.BaseImage = "rhel/9"
			return in
		},
	},
	{
		name: "ubuntu-noble-squashfs",
		source: "get_curtin_installer_url (synced squashfs -> cp:///media/root-ro); curtin_userdata (early_commands " +
			"driver_00); compose_curtin_kernel_preseed; compose_curtin_swap_preseed (swap_size set); get_archive_config " +
			"(deb822 sources_list for ubuntu >= 24.04); no custom-image checks",
		input: func() *Input {
			in := baseInput()
			in.Deployment = Deployment{OSystem: OSUbuntu, Series: "noble", HWEKernel: "ga-24.04",
				KernelPackage: "linux-generic", SwapSize: ptr(int64(0)),
				Image: Image{Filetype: "squashfs", FilenameOnDisk: "edbd57a", Subarch: "ga-24.04", Label: "stable"}}
			return in
		},
	},
	{
		name: "two-disks",
		source: "test_preseed_storage.py TestGPTWithBootDiskWithoutPartitionsLayout (a second GPT disk on BIOS also " +
			"gets a bios_grub partition; disk without model/serial uses path) and storage_layouts.py root_device " +
			"(root partition on the second disk, index 2 after bios_grub, no offset)",
		input: func() *Input {
			in := baseInput()
			in.Machine.BlockDevices = append(in.Machine.BlockDevices,
				BlockDevice{ID: 2, Name: "sdb", IDPath: "/dev/disk/by-id/wwn-0x55cd2e400009bf84", Size: 20 * gib, BlockSize: 4096})
			in.Storage = Storage{Layout: "flat", RootDevice: "sdb", BootSize: 1 * gib}
			return in
		},
	},
	{
		name: "bond",
		source: "test_preseed_network.py TestNetplan test_lacp_bond_with_params (parameters mode/lacp-rate/" +
			"transmit-hash-policy, interfaces sorted, macaddress) and TestBondNetworkLayout (v1 bond_interfaces, " +
			"params bond-*); all_interfaces_parents_first; gateway priority prefers bonds (get_gateways_by_priority)",
		input: func() *Input {
			in := baseInput()
			in.Machine.Interfaces = []Interface{
				{Type: IfacePhysical, Name: "eth0", MAC: "52:54:00:12:34:56", MTU: 9000},
				{Type: IfacePhysical, Name: "eth1", MAC: "52:54:00:12:34:57", MTU: 9000},
				{Type: IfaceBond, Name: "bond0", MAC: "52:54:00:12:34:56", MTU: 9000, Parents: []string{"eth1", "eth0"},
					Params: map[string]any{"bond_mode": "802.3ad", "bond_lacp_rate": "fast", "bond_miimon": 100,
						"bond_xmit_hash_policy": "layer3+4", "bond_num_grat_arp": 1},
					Links: []Link{{Mode: LinkStatic, Subnet: "10.0.0.0/24", IP: "10.0.0.20"}}},
			}
			return in
		},
	},
	{
		name: "lvm",
		source: "storage_layouts.py LVMStorageLayout (vgroot on the root partition, lvroot = whole extents minus " +
			"one per PV) and preseed_storage.py lvm_volgroup/lvm_partition operations with " +
			"_order_config_dependency (test_preseed_storage.py TestLVMOnlyVG, TestComplexDiskLayout)",
		input: func() *Input {
			in := baseInput()
			in.Storage = Storage{Layout: "lvm", UUIDs: map[string]string{"vgroot": "1793be1b-890a-44cb-9322-057b0d53b53c"}}
			return in
		},
	},
	{
		name: "static-vlan",
		source: "test_preseed_network.py TestVLANNetworkLayout (v1 vlan_link/vlan_id) and TestNetplan " +
			"test_multiple_ethernet_interfaces_with_routes (source routing: a table per non-default gateway, " +
			"routing-policy from/to/table/priority, routes); static links are sticky addresses",
		input: func() *Input {
			in := baseInput()
			in.Machine.Interfaces = []Interface{
				{Type: IfacePhysical, Name: "eth0", MAC: "52:54:00:12:34:56",
					Links: []Link{{Mode: LinkStatic, Subnet: "10.0.0.0/24", IP: "10.0.0.50"}}},
				{Type: IfaceVLAN, Name: "eth0.100", Parents: []string{"eth0"}, VID: 100,
					Links: []Link{{Mode: LinkStatic, Subnet: "192.168.100.0/24", IP: "192.168.100.50"}}},
			}
			in.Network.Subnets = append(in.Network.Subnets,
				Subnet{CIDR: "192.168.100.0/24", Gateway: "192.168.100.1", DNSServers: []string{"192.168.100.53"}})
			in.Network.Routes = []Route{{Source: "192.168.100.0/24", Destination: "172.16.0.0/16", Gateway: "192.168.100.254", Metric: 10}}
			in.Network.SearchDomains = []string{"maas", "example.com"}
			return in
		},
	},
}

func ptr[T any](v T) *T { return &v }

// goldenFiles renders every document of a case, keyed by file name.
func goldenFiles(t *testing.T, in *Input) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, p := range []Purpose{PurposeDeploy, PurposeEphemeralDeploy, PurposeCommissioning} {
		s, err := Preseed(in, p)
		if err != nil {
			t.Fatalf("Preseed(%s): %v", p, err)
		}
		files["preseed-"+string(p)+".yaml"] = s
	}
	c, err := CurtinConfig(in)
	if err != nil {
		t.Fatalf("CurtinConfig: %v", err)
	}
	for i, d := range c.Documents {
		files[fmt.Sprintf("config-%03d-%s.yaml", i, d.Name)] = d.YAML
	}
	files["source.txt"] = c.Source + "\n"
	vd, err := VendorData(in, PurposeDeploy)
	if err != nil {
		t.Fatalf("VendorData: %v", err)
	}
	files["vendor-data.yaml"] = vd
	return files
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			got := goldenFiles(t, tc.input())
			dir := filepath.Join(goldenDir, tc.name)
			if *update {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				for name, content := range got {
					if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				return
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatalf("reading golden files (run go test -update to create them): %v", err)
			}
			want := map[string]string{}
			for _, e := range entries {
				b, err := os.ReadFile(filepath.Join(dir, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				want[e.Name()] = string(b)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("documents differ from %s (-golden +got); shape per MAAS: %s\n%s", dir, tc.source, diff)
			}
		})
	}
}

// TestGoldenFilesListed keeps the golden directory free of stale cases.
func TestGoldenFilesListed(t *testing.T) {
	entries, err := os.ReadDir(goldenDir)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, tc := range goldenCases {
		known[tc.name] = true
	}
	for _, e := range entries {
		if e.IsDir() && !known[e.Name()] {
			t.Errorf("testdata/curtincfg/%s belongs to no golden case", e.Name())
		}
		if !e.IsDir() && !strings.HasSuffix(e.Name(), ".md") {
			t.Errorf("unexpected file testdata/curtincfg/%s", e.Name())
		}
	}
}

const pyFixpointScript = `
import json, sys, yaml
from collections import OrderedDict
def rep(dumper, data):
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items())
yaml.add_representer(OrderedDict, rep, Dumper=yaml.SafeDumper)
out = []
for doc in json.load(sys.stdin):
    header = ""
    if doc.startswith("#cloud-config\n"):
        header, doc = "#cloud-config\n", doc[len("#cloud-config\n"):]
    data = yaml.safe_load(doc)
    net = data.get("network") if isinstance(data, dict) else None
    if isinstance(net, dict) and net.get("version") == 2:
        data["network"] = OrderedDict(net.items())  # MAAS dumps network v2 from an OrderedDict
    out.append(header + yaml.safe_dump(data))
json.dump(out, sys.stdout)
`

// TestDocumentsArePyYAMLFixpoints loads every golden document with real PyYAML and dumps
// it again as MAAS does (yaml.safe_dump): the text must come back unchanged, which is
// what byte-for-byte MAAS output means for the same data.
func TestDocumentsArePyYAMLFixpoints(t *testing.T) {
	py := ""
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(p); err == nil && exec.Command(path, "-c", "import yaml").Run() == nil {
			py = path
			break
		}
	}
	if py == "" {
		t.Skip("PyYAML comparison: needs python3 with the yaml module (Debian python3-yaml)")
	}
	var names, docs []string
	for _, tc := range goldenCases {
		files := goldenFiles(t, tc.input())
		for name, body := range files {
			if strings.HasSuffix(name, ".yaml") {
				names = append(names, tc.name+"/"+name)
				docs = append(docs, body)
			}
		}
	}
	body, _ := json.Marshal(docs)
	cmd := exec.Command(py, "-c", pyFixpointScript)
	cmd.Stdin = bytes.NewReader(body)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v: %s", err, stderr.String())
	}
	var again []string
	if err := json.Unmarshal(out, &again); err != nil {
		t.Fatal(err)
	}
	for i := range docs {
		if docs[i] != again[i] {
			t.Errorf("%s is not what yaml.safe_dump prints for its own data (-ours +pyyaml):\n%s", names[i], cmp.Diff(docs[i], again[i]))
		}
	}
}
