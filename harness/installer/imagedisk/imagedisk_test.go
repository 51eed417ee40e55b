package imagedisk

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maasemu/maasemu/harness/diskimage"
	"github.com/maasemu/maasemu/harness/installer/storage"
)

func TestPartName(t *testing.T) {
	for disk, want := range map[string]string{"/dev/vda": "/dev/vda2", "/dev/nvme0n1": "/dev/nvme0n1p2", "/dev/sdb": "/dev/sdb2"} {
		if got := partName(disk, 2); got != want {
			t.Errorf("partName(%s) = %s, want %s", disk, got, want)
		}
	}
}

// TestRejects checks the errors simulated machines give, naming the entry and the rule.
func TestRejects(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "d.img")
	if err := diskimage.CreateSparse(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Disk{Path: filepath.Join(dir, "missing")}); err == nil {
		t.Error("a missing disk image was accepted")
	}
	be, err := New(Disk{Path: img, Serial: "S1", WWN: "0x5000"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sc, err := storage.Parse(map[string]any{"config": []any{
		map[string]any{"id": "d", "type": "disk", "ptable": "gpt", "serial": "S1"},
		map[string]any{"id": "p1", "type": "partition", "device": "d", "size": "32M"},
		map[string]any{"id": "p2", "type": "partition", "device": "d", "size": "64M"},
		map[string]any{"id": "f1", "type": "format", "volume": "p1", "fstype": "xfs"},
		map[string]any{"id": "f2", "type": "format", "volume": "p1", "fstype": "btrfs"},
		map[string]any{"id": "vg", "type": "lvm_volgroup", "name": "vg0", "devices": []any{"p1"}},
		map[string]any{"id": "x", "type": "disk", "serial": "NOPE"},
		map[string]any{"id": "w", "type": "disk", "wwn": "0x5000"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	apply := func(id string) error {
		it, _ := sc.Get(id)
		_, err := be.Apply(ctx, sc, *it, dir, io.Discard)
		return err
	}
	if err := apply("d"); err != nil {
		t.Fatal(err)
	}
	if err := apply("p1"); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ id, want string }{
		{"p2", "Could not create partition 2 from 67584 to 198655"},
		{"f1", "xfs cannot be populated without mounting it"},
		{"f2", "fstype btrfs is not supported on simulated machines"},
		{"vg", "LVM is not supported on simulated machines; use the libvirt driver"},
		{"x", "no disk with serial 'NOPE' found"},
	}
	for _, c := range cases {
		if err := apply(c.id); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.id, err, c.want)
		}
	}
	if err := apply("w"); err != nil {
		t.Errorf("disk by wwn: %v", err)
	}
	tab, err := diskimage.ReadTable(img)
	if err != nil || len(tab.Partitions) != 1 {
		t.Errorf("a refused partition changed the table: %+v %v", tab, err)
	}
	if err := wipe(img, 0, 1<<20, "shred"); err == nil || !strings.Contains(err.Error(), "wipe mode 'shred'") {
		t.Errorf("wipe mode: %v", err)
	}
}
