package curtincfg

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/maasemu/maasemu/fakemaas/curtincfg/pyyaml"
)

// These cases rebuild the machines of MAAS 3.7.3's src/maasserver/tests/
// test_preseed_storage.py and expect exactly the STORAGE_CONFIG YAML written there
// (compared after parsing, as MAAS's assertStorageConfig does). MAAS's factory makes
// i386/generic machines unless a test says otherwise.

type testPart struct {
	size                  int64
	uuid                  string
	bootable              bool
	fstype, label, fsuuid string
	mount                 string
	options               any
	nullLabel             bool
}

type testDisk struct {
	dev    BlockDevice
	ptable string
	parts  []testPart
}

func buildModel(t *testing.T, arch, bootMethod, bootDisk string, disks ...testDisk) *storageModel {
	t.Helper()
	m := &storageModel{arch: arch, bootMethod: bootMethod}
	for _, td := range disks {
		d := &sDisk{dev: td.dev, ptable: td.ptable}
		m.disks = append(m.disks, d)
		if td.dev.Name == bootDisk {
			m.boot = d
		}
	}
	if m.boot == nil {
		m.boot = m.disks[0]
	}
	for i, td := range disks {
		d := m.disks[i]
		for _, tp := range td.parts {
			u := tp.uuid
			p, err := m.addPartition(d, tp.size, tp.bootable, func(string) string { return u }, "test")
			if err != nil {
				t.Fatalf("partition on %s: %v", d.dev.Name, err)
			}
			var label any = tp.label
			if tp.nullLabel {
				label = nil
			}
			p.fs = &sFS{fstype: tp.fstype, label: label, uuid: tp.fsuuid, mountPoint: tp.mount, mountOptions: tp.options}
		}
	}
	return m
}

func qemuDisk(name, serial string, size int64) BlockDevice {
	return BlockDevice{Name: name, Model: "QEMU HARDDISK", Serial: serial, Size: size, BlockSize: 512}
}

func TestStorageMatchesMAASTests(t *testing.T) {
	tests := []struct {
		name  string // the MAAS test class
		model func(t *testing.T) *storageModel
		want  string
	}{
		{
			name: "TestSimpleGPTLayout",
			model: func(t *testing.T) *storageModel {
				return buildModel(t, "i386", "uefi", "sda", testDisk{dev: qemuDisk("sda", "QM00001", 8*gib), ptable: ptableGPT, parts: []testPart{
					{size: 512 * mib, uuid: "6efc2c3d-bc9d-4ee5-a7ed-c6e1574d5398", bootable: true, fstype: "fat32", fsuuid: "bf34f38c-02b7-4b4b-bb7c-e73521f9ead7", label: "efi", mount: "/boot/efi"},
					{size: 1 * gib, uuid: "0c1c1c3a-1e9d-4047-8ef6-328a03d513e5", bootable: true, fstype: "ext4", fsuuid: "f98e5b7b-cbb1-437e-b4e5-1769f81f969f", label: "boot", mount: "/boot", options: "rw,relatime,block_validity,barrier,user_xattr,acl"},
					{size: 1 * gib, uuid: "53f88413-0568-44cc-b7db-4378bdba7f6e", fstype: "swap", fsuuid: "0f523f74-e657-4c5d-a11b-b50c4c6b0c73", label: "swap", mount: "none", options: "pri=1,discard=pages"},
					{size: 5*gib + gib/2 - partitionTableExtra, uuid: "f74ff260-2a5b-4a36-b1b8-37f746b946bf", fstype: "xfs", fsuuid: "90a69b22-e281-4c5b-8df9-b09514f27ba1", label: "root", mount: "/", options: "rw,relatime,errors=remount-ro,data=ordered"},
				}})
			},
			want: `
config:
  - {id: sda, name: sda, type: disk, wipe: superblock, ptable: gpt, model: QEMU HARDDISK, serial: QM00001, grub_device: true}
  - {id: sda-part1, name: sda-part1, type: partition, number: 1, uuid: 6efc2c3d-bc9d-4ee5-a7ed-c6e1574d5398, size: 536870912B, device: sda, wipe: superblock, offset: 4194304B, flag: boot}
  - {id: sda-part2, name: sda-part2, type: partition, number: 2, uuid: 0c1c1c3a-1e9d-4047-8ef6-328a03d513e5, size: 1073741824B, device: sda, wipe: superblock, flag: boot}
  - {id: sda-part3, name: sda-part3, type: partition, number: 3, uuid: 53f88413-0568-44cc-b7db-4378bdba7f6e, size: 1073741824B, device: sda, wipe: superblock}
  - {id: sda-part4, name: sda-part4, type: partition, number: 4, uuid: f74ff260-2a5b-4a36-b1b8-37f746b946bf, size: 5897191424B, wipe: superblock, device: sda}
  - {id: sda-part1_format, type: format, fstype: fat32, label: efi, uuid: bf34f38c-02b7-4b4b-bb7c-e73521f9ead7, volume: sda-part1}
  - {id: sda-part2_format, type: format, fstype: ext4, label: boot, uuid: f98e5b7b-cbb1-437e-b4e5-1769f81f969f, volume: sda-part2}
  - {id: sda-part3_format, type: format, fstype: swap, label: swap, uuid: 0f523f74-e657-4c5d-a11b-b50c4c6b0c73, volume: sda-part3}
  - {id: sda-part4_format, type: format, fstype: xfs, label: root, uuid: 90a69b22-e281-4c5b-8df9-b09514f27ba1, volume: sda-part4}
  - {id: sda-part4_mount, type: mount, path: /, options: "rw,relatime,errors=remount-ro,data=ordered", device: sda-part4_format}
  - {id: sda-part2_mount, type: mount, path: /boot, options: "rw,relatime,block_validity,barrier,user_xattr,acl", device: sda-part2_format}
  - {id: sda-part1_mount, type: mount, path: /boot/efi, device: sda-part1_format}
  - {id: sda-part3_mount, device: sda-part3_format, options: "pri=1,discard=pages", type: mount}
`,
		},
		{
			name: "TestSimpleMBRLayout",
			model: func(t *testing.T) *storageModel {
				return buildModel(t, "i386", "pxe", "sda", testDisk{dev: qemuDisk("sda", "QM00001", 8*gib), ptable: ptableMSDOS, parts: []testPart{
					{size: 512 * mib, uuid: "6efc2c3d-bc9d-4ee5-a7ed-c6e1574d5398", bootable: true, fstype: "fat32", fsuuid: "bf34f38c-02b7-4b4b-bb7c-e73521f9ead7", label: "efi", mount: "/boot/efi", options: "rw,nosuid,nodev"},
					{size: 1 * gib, uuid: "0c1c1c3a-1e9d-4047-8ef6-328a03d513e5", bootable: true, fstype: "ext4", fsuuid: "f98e5b7b-cbb1-437e-b4e5-1769f81f969f", label: "boot", mount: "/boot", options: "rw,relatime,block_validity,barrier,acl"},
					{size: 2*gib + gib/2, uuid: "f74ff260-2a5b-4a36-b1b8-37f746b946bf", fstype: "ext4", fsuuid: "90a69b22-e281-4c5b-8df9-b09514f27ba1", label: "root", mount: "/"},
					{size: 2 * gib, uuid: "1b59e74f-6189-41a1-ba8e-fbf38df19820", fstype: "ext4", fsuuid: "9c1764f0-2b48-4127-b719-ec61ac7d5f4c", label: "srv", mount: "/srv", options: "rw,nosuid,nodev,noexec,relatime"},
					{size: 2*gib - partitionTableExtra, uuid: "8c365c80-900b-40a1-a8c7-1e445878d19a", fstype: "ext4", fsuuid: "bcac8449-3a45-4586-bdfb-c21e6ba47902", label: "srv-data", mount: "/srv/data", options: "rw,nosuid,nodev,noexec,relatime"},
				}})
			},
			want: `
config:
  - {id: sda, name: sda, type: disk, wipe: superblock, ptable: msdos, model: QEMU HARDDISK, serial: QM00001, grub_device: true}
  - {id: sda-part1, name: sda-part1, type: partition, number: 1, uuid: 6efc2c3d-bc9d-4ee5-a7ed-c6e1574d5398, size: 536870912B, device: sda, wipe: superblock, offset: 4194304B, flag: boot}
  - {id: sda-part2, name: sda-part2, type: partition, number: 2, uuid: 0c1c1c3a-1e9d-4047-8ef6-328a03d513e5, size: 1073741824B, wipe: superblock, device: sda, flag: boot}
  - {id: sda-part3, name: sda-part3, type: partition, number: 3, uuid: f74ff260-2a5b-4a36-b1b8-37f746b946bf, size: 2684354560B, wipe: superblock, device: sda}
  - {id: sda-part4, type: partition, number: 4, device: sda, flag: extended, size: 4287627264B}
  - {id: sda-part5, name: sda-part5, type: partition, number: 5, uuid: 1b59e74f-6189-41a1-ba8e-fbf38df19820, size: 2146435072B, device: sda, wipe: superblock, flag: logical}
  - {id: sda-part6, name: sda-part6, type: partition, number: 6, uuid: 8c365c80-900b-40a1-a8c7-1e445878d19a, size: 2138046464B, device: sda, wipe: superblock, flag: logical}
  - {id: sda-part1_format, type: format, fstype: fat32, label: efi, uuid: bf34f38c-02b7-4b4b-bb7c-e73521f9ead7, volume: sda-part1}
  - {id: sda-part2_format, type: format, fstype: ext4, label: boot, uuid: f98e5b7b-cbb1-437e-b4e5-1769f81f969f, volume: sda-part2}
  - {id: sda-part3_format, type: format, fstype: ext4, label: root, uuid: 90a69b22-e281-4c5b-8df9-b09514f27ba1, volume: sda-part3}
  - {id: sda-part5_format, type: format, fstype: ext4, label: srv, uuid: 9c1764f0-2b48-4127-b719-ec61ac7d5f4c, volume: sda-part5}
  - {id: sda-part6_format, type: format, fstype: ext4, label: srv-data, uuid: bcac8449-3a45-4586-bdfb-c21e6ba47902, volume: sda-part6}
  - {id: sda-part3_mount, type: mount, path: /, device: sda-part3_format}
  - {id: sda-part2_mount, type: mount, path: /boot, options: "rw,relatime,block_validity,barrier,acl", device: sda-part2_format}
  - {id: sda-part1_mount, type: mount, path: /boot/efi, options: "rw,nosuid,nodev", device: sda-part1_format}
  - {id: sda-part5_mount, type: mount, path: /srv, options: "rw,nosuid,nodev,noexec,relatime", device: sda-part5_format}
  - {id: sda-part6_mount, type: mount, path: /srv/data, options: "rw,nosuid,nodev,noexec,relatime", device: sda-part6_format}
`,
		},
		{
			name: "TestSimpleWithEmptyDiskLayout",
			model: func(t *testing.T) *storageModel {
				return buildModel(t, "i386", "pxe", "sda",
					testDisk{dev: qemuDisk("sda", "QM00001", 8*gib), ptable: ptableMSDOS, parts: []testPart{
						{size: 8*gib - partitionTableExtra, uuid: "6efc2c3d-bc9d-4ee5-a7ed-c6e1574d5398", fstype: "ext4", fsuuid: "90a69b22-e281-4c5b-8df9-b09514f27ba1", label: "root", mount: "/", options: "rw,relatime,errors=remount-ro,data=writeback"},
					}},
					testDisk{dev: BlockDevice{Name: "sdb", Size: 8 * gib, IDPath: "/dev/disk/by-id/wwn-0x55cd2e400009bf84"}})
			},
			want: `
config:
  - {id: sda, name: sda, type: disk, wipe: superblock, ptable: msdos, model: QEMU HARDDISK, serial: QM00001, grub_device: true}
  - {id: sdb, name: sdb, type: disk, wipe: superblock, path: /dev/disk/by-id/wwn-0x55cd2e400009bf84}
  - {id: sda-part1, name: sda-part1, type: partition, number: 1, uuid: 6efc2c3d-bc9d-4ee5-a7ed-c6e1574d5398, size: 8581545984B, device: sda, wipe: superblock, offset: 4194304B}
  - {id: sda-part1_format, type: format, fstype: ext4, label: root, uuid: 90a69b22-e281-4c5b-8df9-b09514f27ba1, volume: sda-part1}
  - {id: sda-part1_mount, type: mount, path: /, options: "rw,relatime,errors=remount-ro,data=writeback", device: sda-part1_format}
`,
		},
		{
			name: "TestMBRWithBootDiskWithoutPartitionsLayout",
			model: func(t *testing.T) *storageModel {
				return buildModel(t, "i386", "pxe", "sdb",
					testDisk{dev: qemuDisk("sda", "QM00001", 8*gib), ptable: ptableMSDOS, parts: []testPart{
						{size: 8*gib - partitionTableExtra, uuid: "6efc2c3d-bc9d-4ee5-a7ed-c6e1574d5398", fstype: "ext4", fsuuid: "90a69b22-e281-4c5b-8df9-b09514f27ba1", label: "root", mount: "/", options: "rw,relatime,errors=remount-ro,data=journal"},
					}},
					testDisk{dev: BlockDevice{Name: "sdb", Size: 8 * gib, IDPath: "/dev/disk/by-id/wwn-0x55cd2e400009bf84"}})
			},
			want: `
config:
  - {id: sda, name: sda, type: disk, wipe: superblock, ptable: msdos, model: QEMU HARDDISK, serial: QM00001}
  - {id: sdb, name: sdb, type: disk, wipe: superblock, ptable: msdos, path: /dev/disk/by-id/wwn-0x55cd2e400009bf84, grub_device: true}
  - {id: sda-part1, name: sda-part1, type: partition, number: 1, uuid: 6efc2c3d-bc9d-4ee5-a7ed-c6e1574d5398, size: 8581545984B, device: sda, wipe: superblock, offset: 4194304B}
  - {id: sda-part1_format, type: format, fstype: ext4, label: root, uuid: 90a69b22-e281-4c5b-8df9-b09514f27ba1, volume: sda-part1}
  - {id: sda-part1_mount, type: mount, path: /, options: "rw,relatime,errors=remount-ro,data=journal", device: sda-part1_format}
`,
		},
		{
			name: "TestGPTWithBootDiskWithoutPartitionsLayout",
			model: func(t *testing.T) *storageModel {
				return buildModel(t, "amd64", "pxe", "sdb",
					testDisk{dev: qemuDisk("sda", "QM00001", 8*gib), ptable: ptableMSDOS, parts: []testPart{
						{size: 8*gib - partitionTableExtra, uuid: "6efc2c3d-bc9d-4ee5-a7ed-c6e1574d5398", fstype: "ext4", fsuuid: "90a69b22-e281-4c5b-8df9-b09514f27ba1", label: "root", mount: "/", options: "rw,relatime,errors=remount-ro,data=journal"},
					}},
					testDisk{dev: BlockDevice{Name: "sdb", Size: 2 * gib * 1024, IDPath: "/dev/disk/by-id/wwn-0x55cd2e400009bf84"}})
			},
			want: `
config:
  - {id: sda, name: sda, type: disk, wipe: superblock, ptable: msdos, model: QEMU HARDDISK, serial: QM00001}
  - {id: sdb, name: sdb, type: disk, wipe: superblock, ptable: gpt, path: /dev/disk/by-id/wwn-0x55cd2e400009bf84, grub_device: true}
  - {id: sdb-part1, type: partition, number: 1, size: 1048576B, device: sdb, wipe: zero, offset: 4194304B, flag: bios_grub}
  - {id: sda-part1, name: sda-part1, type: partition, number: 1, uuid: 6efc2c3d-bc9d-4ee5-a7ed-c6e1574d5398, size: 8581545984B, device: sda, wipe: superblock, offset: 4194304B}
  - {id: sda-part1_format, type: format, fstype: ext4, label: root, uuid: 90a69b22-e281-4c5b-8df9-b09514f27ba1, volume: sda-part1}
  - {id: sda-part1_mount, type: mount, path: /, options: "rw,relatime,errors=remount-ro,data=journal", device: sda-part1_format}
`,
		},
		{
			name: "TestGPTPXELargeBootDiskLayout",
			model: func(t *testing.T) *storageModel {
				return buildModel(t, "amd64", "pxe", "sda",
					testDisk{dev: qemuDisk("sda", "QM00001", 2*gib*1024), ptable: ptableGPT, parts: []testPart{
						{size: 8*gib - partitionTableExtra - biosGrubPartitionSize, uuid: "6efc2c3d-bc9d-4ee5-a7ed-c6e1574d5398", fstype: "ext4", fsuuid: "90a69b22-e281-4c5b-8df9-b09514f27ba1", label: "root", mount: "/", options: "rw,relatime,errors=remount-ro,data=journal"},
					}})
			},
			want: `
config:
  - {id: sda, name: sda, type: disk, wipe: superblock, ptable: gpt, model: QEMU HARDDISK, serial: QM00001, grub_device: true}
  - {id: sda-part1, type: partition, number: 1, size: 1048576B, device: sda, wipe: zero, offset: 4194304B, flag: bios_grub}
  - {id: sda-part2, name: sda-part2, type: partition, number: 2, uuid: 6efc2c3d-bc9d-4ee5-a7ed-c6e1574d5398, size: 8581545984B, device: sda, wipe: superblock}
  - {id: sda-part2_format, type: format, fstype: ext4, label: root, uuid: 90a69b22-e281-4c5b-8df9-b09514f27ba1, volume: sda-part2}
  - {id: sda-part2_mount, type: mount, path: /, options: "rw,relatime,errors=remount-ro,data=journal", device: sda-part2_format}
`,
		},
		{
			name: "TestExt4MetadataCSUM",
			model: func(t *testing.T) *storageModel {
				m := buildModel(t, "i386", "pxe", "sda", testDisk{dev: qemuDisk("sda", "QM00001", 8*gib), ptable: ptableGPT, parts: []testPart{
					{size: 5*gib + gib/2 - partitionTableExtra, uuid: "f74ff260-2a5b-4a36-b1b8-37f746b946bf", fstype: "ext4", fsuuid: "bf34f38c-02b7-4b4b-bb7c-e73521f9ead7", nullLabel: true, mount: "/"},
				}})
				m.osystem, m.series = OSSUSE, "sles12.5"
				return m
			},
			want: `
config:
  - {grub_device: true, id: sda, model: QEMU HARDDISK, name: sda, ptable: gpt, serial: QM00001, type: disk, wipe: superblock}
  - {device: sda, id: sda-part1, name: sda-part1, number: 1, offset: 4194304B, size: 5897191424B, type: partition, uuid: f74ff260-2a5b-4a36-b1b8-37f746b946bf, wipe: superblock}
  - {fstype: ext4, id: sda-part1_format, label: null, type: format, uuid: bf34f38c-02b7-4b4b-bb7c-e73521f9ead7, volume: sda-part1, extra_options: [-O, ^metadata_csum]}
  - {device: sda-part1_format, id: sda-part1_mount, path: /, type: mount}
`,
		},
		{
			name: "TestSimplePower8Layout",
			model: func(t *testing.T) *storageModel {
				return buildModel(t, "ppc64el", "uefi", "sda", testDisk{dev: qemuDisk("sda", "QM00001", 8*gib), ptable: ptableGPT, parts: []testPart{
					{size: 8*gib - partitionTableExtra - prepPartitionSize, uuid: "f74ff260-2a5b-4a36-b1b8-37f746b946bf", fstype: "ext4", fsuuid: "90a69b22-e281-4c5b-8df9-b09514f27ba1", label: "root", mount: "/"},
				}})
			},
			want: `
config:
  - {id: sda, name: sda, type: disk, wipe: superblock, ptable: gpt, model: QEMU HARDDISK, serial: QM00001}
  - {id: sda-part1, name: sda-part1, type: partition, number: 1, offset: 4194304B, size: 8388608B, device: sda, wipe: zero, flag: prep, grub_device: true}
  - {id: sda-part2, name: sda-part2, type: partition, number: 2, uuid: f74ff260-2a5b-4a36-b1b8-37f746b946bf, size: 8573157376B, wipe: superblock, device: sda}
  - {id: sda-part2_format, type: format, fstype: ext4, label: root, uuid: 90a69b22-e281-4c5b-8df9-b09514f27ba1, volume: sda-part2}
  - {id: sda-part2_mount, type: mount, path: /, device: sda-part2_format}
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tt.model(t).generate()
			if err != nil {
				t.Fatal(err)
			}
			var want map[string]any
			if err := yaml.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatal(err)
			}
			got := roundTrip(t, pyyaml.M("config", cfg))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("storage config differs from MAAS's %s (-maas +got):\n%s", tt.name, diff)
			}
		})
	}
}

// roundTrip renders v and parses it back, for structural comparison.
func roundTrip(t *testing.T, v any) map[string]any {
	t.Helper()
	s, err := pyyaml.Dump(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := yaml.Unmarshal([]byte(s), &out); err != nil {
		t.Fatalf("parsing rendered YAML: %v\n%s", err, s)
	}
	return out
}

func TestLayoutSizes(t *testing.T) {
	tests := []struct {
		name      string
		mod       func(in *Input)
		wantParts map[string]int64 // storage id -> size in bytes
	}{
		{"flat bios", func(in *Input) {}, map[string]int64{"sda-part1": mib, "sda-part2": 10729029632}},
		{"flat uefi", func(in *Input) { in.Machine.Firmware = "uefi" }, map[string]int64{"sda-part1": 512 * mib, "sda-part2": 10192158720}},
		{"flat root size", func(in *Input) { in.Storage.RootSize = 4*gib + 3 }, map[string]int64{"sda-part1": mib, "sda-part2": 4 * gib}},
		{"arm64 bios gets /boot", func(in *Input) { in.Machine.Arch = "arm64" }, map[string]int64{"sda-part1": 512 * mib, "sda-part2": 10192158720}},
		{"lvm size", func(in *Input) { in.Storage = Storage{Layout: "lvm", LVSize: 5 * gib} }, map[string]int64{"sda-part2": 10729029632, "vgroot-lvroot": 5 * gib}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := baseInput()
			tt.mod(in)
			doc, err := in.storageDocument()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int64{}
			st, _ := doc.Get("storage")
			cfg, _ := st.(*pyyaml.Map).Get("config")
			for _, it := range cfg.([]any) {
				m := it.(*pyyaml.Map)
				id, _ := m.Get("id")
				if s, ok := m.Get("size"); ok {
					n, err := strconv.ParseInt(strings.TrimSuffix(s.(string), "B"), 10, 64)
					if err != nil {
						t.Fatal(err)
					}
					got[id.(string)] = n
				}
			}
			for id, want := range tt.wantParts {
				if got[id] != want {
					t.Errorf("%s size = %d, want %d (all: %v)", id, got[id], want, got)
				}
			}
		})
	}
}

func TestStorageUUIDs(t *testing.T) {
	in := baseInput()
	a := in.storageUUID("sda-part2")
	if a != in.storageUUID("sda-part2") {
		t.Fatal("derived UUID is not stable")
	}
	if a == in.storageUUID("sda-part1") {
		t.Fatal("two ids share a derived UUID")
	}
	other := baseInput()
	other.Machine.SystemID = "other1"
	if a == other.storageUUID("sda-part2") {
		t.Fatal("two machines share a derived UUID")
	}
	if a[14] != '5' {
		t.Errorf("derived UUID %s is not version 5", a)
	}
	in.Storage.UUIDs = map[string]string{"sda-part2": "6efc2c3d-bc9d-4ee5-a7ed-c6e1574d5398"}
	if got := in.storageUUID("sda-part2"); got != "6efc2c3d-bc9d-4ee5-a7ed-c6e1574d5398" {
		t.Errorf("input UUID not used: %s", got)
	}
}

func TestCustomStoragePassThrough(t *testing.T) {
	in := baseInput()
	in.Storage = Storage{Layout: "custom", Custom: `
storage:
  version: 1
  config:
    - {id: disk0, type: disk, ptable: gpt, serial: QM00001, grub_device: yes, wipe: superblock}
    - {id: disk0-efi, type: partition, device: disk0, size: 512M, flag: boot, number: 1}
    - {id: disk0-root, type: partition, device: disk0, size: 4G, number: 2}
    - {id: disk0-swap, type: partition, device: disk0, size: 1G, number: 3}
    - {id: efi-fs, type: format, volume: disk0-efi, fstype: fat32}
    - {id: root-fs, type: format, volume: disk0-root, fstype: ext4, label: "007"}
    - {id: swap-fs, type: format, volume: disk0-swap, fstype: swap}
    - {id: root-mount, type: mount, device: root-fs, path: /}
    - {id: efi-mount, type: mount, device: efi-fs, path: /boot/efi, options: "umask=0077"}
`}
	doc, err := in.storageDocument()
	if err != nil {
		t.Fatal(err)
	}
	got, err := pyyaml.Dump(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"  - grub_device: true\n", // YAML 1.1 "yes", as curtin's safe_load reads it
		"    label: '007'\n",      // stays a string
		"    size: 512M\n",
		"partitioning_commands:\n  builtin:\n  - curtin\n  - block-meta\n  - custom\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("custom storage document lacks %q:\n%s", want, got)
		}
	}
	if !in.storageHasSwap() {
		t.Error("storageHasSwap = false for a config with a swap format")
	}
	in.Deployment.OSystem, in.Deployment.Series, in.Deployment.Image = OSUbuntu, "jammy", Image{Filetype: "squashfs"}
	if sw := in.swapConfig(); sw == nil {
		t.Error("no swap document (size 0B) for an ubuntu deploy with a swap partition")
	}
}
