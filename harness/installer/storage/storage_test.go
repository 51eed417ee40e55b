package storage

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

func parse(t *testing.T, y string) *Config {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(y), &m); err != nil {
		t.Fatal(err)
	}
	c, err := Parse(m["storage"])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHumanToBytes(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		err  string
	}{
		{"536870912B", 536870912, ""},
		{"512M", 512 << 20, ""},
		{"1.5G", 3 << 29, ""},
		{"8G", 8 << 30, ""},
		{"1T", 1 << 40, ""},
		{"1K", 1024, ""},
		{"100", 100, ""},
		{"0.5K", 512, ""},
		{"0.3K", 0, "'0.3K': resulted in non-integer (307.2)"},
		{"-1G", 0, "'-1G': cannot be negative"},
		{"huge", 0, "'huge' is not valid input."},
	}
	for _, c := range cases {
		got, err := HumanToBytes(c.in)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("HumanToBytes(%q) error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("HumanToBytes(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
}

// TestLayout checks curtin v1's sequential placement: 1 MiB first, each next partition
// right after the previous, MAAS's offset ignored, msdos logical partitions inside the
// extended one with a 1 MiB gap.
func TestLayout(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		name string
		yaml string
		want []Extent
	}{
		{"maas gpt bios", `storage:
  version: 1
  config:
  - {id: sda, type: disk, ptable: gpt, serial: S}
  - {id: sda-part1, type: partition, device: sda, number: 1, size: 1048576B, flag: bios_grub, offset: 4194304B}
  - {id: sda-part2, type: partition, device: sda, number: 2, size: 8G}
  - {id: sda-part3, type: partition, device: sda, number: 3, size: 512M, flag: swap}
`, []Extent{
			{ID: "sda-part1", Disk: "sda", Number: 1, Start: mib, Size: mib, Flag: "bios_grub"},
			{ID: "sda-part2", Disk: "sda", Number: 2, Start: 2 * mib, Size: 8 << 30},
			{ID: "sda-part3", Disk: "sda", Number: 3, Start: 2*mib + 8<<30, Size: 512 * mib, Flag: "swap"},
		}},
		{"numbers derived, two disks", `storage:
  config:
  - {id: a, type: disk, ptable: gpt, path: /dev/vda}
  - {id: b, type: disk, ptable: gpt, path: /dev/vdb}
  - {id: a1, type: partition, device: a, size: 100M}
  - {id: b1, type: partition, device: b, size: 10M}
  - {id: a2, type: partition, device: a, size: 20M}
`, []Extent{
			{ID: "a1", Disk: "a", Number: 1, Start: mib, Size: 100 * mib},
			{ID: "b1", Disk: "b", Number: 1, Start: mib, Size: 10 * mib},
			{ID: "a2", Disk: "a", Number: 2, Start: 101 * mib, Size: 20 * mib},
		}},
		{"msdos extended and logical", `storage:
  config:
  - {id: d, type: disk, ptable: msdos, path: /dev/vda}
  - {id: p1, type: partition, device: d, size: 100M, flag: boot}
  - {id: p2, type: partition, device: d, size: 300M, flag: extended}
  - {id: p5, type: partition, device: d, size: 100M, flag: logical}
  - {id: p6, type: partition, device: d, size: 100M, flag: logical}
`, []Extent{
			{ID: "p1", Disk: "d", Number: 1, Start: mib, Size: 100 * mib, Flag: "boot"},
			{ID: "p2", Disk: "d", Number: 2, Start: 101 * mib, Size: 302 * mib, Flag: "extended"},
			{ID: "p5", Disk: "d", Number: 5, Start: 102 * mib, Size: 100 * mib, Flag: "logical"},
			{ID: "p6", Disk: "d", Number: 6, Start: 203 * mib, Size: 100 * mib, Flag: "logical"},
		}},
		{"v2 honours offset", `storage:
  version: 2
  config:
  - {id: d, type: disk, ptable: gpt, path: /dev/vda}
  - {id: p1, type: partition, device: d, size: 1M, offset: 4M, flag: bios_grub}
`, []Extent{{ID: "p1", Disk: "d", Number: 1, Start: 4 * mib, Size: mib, Flag: "bios_grub"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parse(t, c.yaml).Layout(512)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("layout (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckFits(t *testing.T) {
	e := Extent{Disk: "sda", Number: 2, Start: 2 << 20, Size: 200 << 20}
	if err := CheckFits(e, "gpt", 256<<20, 512); err != nil {
		t.Errorf("fits: %v", err)
	}
	err := CheckFits(e, "gpt", 128<<20, 512)
	if err == nil || !strings.HasPrefix(err.Error(), "Could not create partition 2 from 4096 to 413695") {
		t.Errorf("does not fit: %v", err)
	}
	// gpt keeps 33 sectors for the backup table; msdos does not
	exact := Extent{Disk: "d", Number: 1, Start: 1 << 20, Size: 3 << 20}
	if err := CheckFits(exact, "msdos", 4<<20, 512); err != nil {
		t.Errorf("msdos exact fit: %v", err)
	}
	if err := CheckFits(exact, "gpt", 4<<20, 512); err == nil {
		t.Error("gpt exact fit over the backup table accepted")
	}
}

func TestFstabLines(t *testing.T) {
	c := parse(t, `storage:
  config:
  - {id: d, type: disk, ptable: gpt, path: /dev/vda}
  - {id: p1, type: partition, device: d, size: 512M, flag: boot}
  - {id: p2, type: partition, device: d, size: 1G}
  - {id: p3, type: partition, device: d, size: 1G, flag: swap}
  - {id: f1, type: format, volume: p1, fstype: fat32}
  - {id: f2, type: format, volume: p2, fstype: ext4}
  - {id: f3, type: format, volume: p3, fstype: swap}
  - {id: m2, type: mount, device: f2, path: /, options: 'errors=remount-ro'}
  - {id: m1, type: mount, device: f1, path: /boot/efi}
  - {id: m3, type: mount, device: f3, path: ''}
  - {id: m4, type: mount, spec: tmpfs, fstype: tmpfs, path: /tmp, options: 'size=1G'}
  - {id: m5, type: mount, device: f2, path: /data, passno: 2, freq: 1}
`)
	cases := []struct {
		id, spec, device, want string
	}{
		{"m2", "/dev/disk/by-uuid/U2", "/dev/vda2", "# / was on /dev/vda2 during curtin installation\n/dev/disk/by-uuid/U2 / ext4 errors=remount-ro 0 1\n"},
		{"m1", "/dev/disk/by-uuid/ABCD-1234", "/dev/vda1", "# /boot/efi was on /dev/vda1 during curtin installation\n/dev/disk/by-uuid/ABCD-1234 /boot/efi vfat defaults 0 1\n"},
		{"m3", "/dev/disk/by-uuid/U3", "/dev/vda3", "/dev/disk/by-uuid/U3 none swap sw 0 0\n"},
		{"m4", "", "", "# /tmp was on tmpfs during curtin installation\ntmpfs /tmp tmpfs size=1G 0 0\n"},
		{"m5", "/dev/disk/by-uuid/U2", "/dev/vda2", "# /data was on /dev/vda2 during curtin installation\n/dev/disk/by-uuid/U2 /data ext4 defaults 1 2\n"},
	}
	for _, tc := range cases {
		it, _ := c.Get(tc.id)
		fd, err := c.MountData(*it)
		if err != nil {
			t.Fatalf("%s: %v", tc.id, err)
		}
		fd.Device = tc.device
		got, err := FstabLine(fd, tc.spec)
		if err != nil {
			t.Fatalf("%s: %v", tc.id, err)
		}
		if got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.id, got, tc.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{`storage: [1, 2]`, "storage: must be a mapping"},
		{`storage: {version: 3, config: []}`, "only versions 1 and 2 exist"},
		{`storage: {config: [{type: disk}]}`, "lacks 'id' or 'type'"},
		{`storage: {config: [{id: d, type: disk, ptable: zfs}]}`, "Invalid partition table type: zfs"},
		{`storage: {config: [{id: p, type: partition, device: d}]}`, "size must be specified for partition to be created"},
		{`storage: {config: [{id: p, type: partition, device: d, size: 10Q}]}`, "'10Q' is not valid input."},
		{`storage: {config: [{id: p, type: partition, device: d, size: 1G, flag: weird}]}`, `flag "weird" is not one of`},
		{`storage: {config: [{id: f, type: format, fstype: ext4}]}`, "volume must be specified for partition 'f'"},
		{`storage: {config: [{id: a, type: disk}, {id: a, type: disk}]}`, `duplicate id "a"`},
		{`storage: {config: [{id: v, type: lvm_volgroup, name: vg}]}`, "devices for volgroup 'v' must be specified"},
	}
	for _, c := range cases {
		var m map[string]any
		yaml.Unmarshal([]byte(c.yaml), &m)
		_, err := Parse(m["storage"])
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.yaml, err, c.want)
		}
	}
}

func TestMkfsArgs(t *testing.T) {
	cases := []struct {
		it   Item
		want []string
	}{
		{Item{Fstype: "ext4", Label: "root"}, []string{"mkfs.ext4", "-F", "-L", "root", "-U", "U", "/dev/x"}},
		{Item{Fstype: "fat32", Label: "efi-partition-label"}, []string{"mkfs.vfat", "-I", "-n", "efi-partiti", "-F", "32", "/dev/x"}},
		{Item{Fstype: "xfs", ExtraOptions: []string{"-K"}}, []string{"mkfs.xfs", "-f", "-m", "uuid=U", "-K", "/dev/x"}},
		{Item{Fstype: "swap"}, []string{"mkswap", "--force", "--uuid", "U", "/dev/x"}},
	}
	for _, c := range cases {
		got, err := MkfsArgs(c.it, "/dev/x", "U")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.it.Fstype, diff)
		}
	}
	if _, err := MkfsArgs(Item{Fstype: "zfs"}, "/dev/x", "U"); err == nil || err.Error() != "unsupported fs type 'zfs'" {
		t.Errorf("zfs: %v", err)
	}
}
