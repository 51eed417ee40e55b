package diskimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const mib = 1 << 20

func need(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (e2fsprogs, dosfstools, mtools, fdisk, gdisk, grub-pc-bin)", tool)
		}
	}
}

func sparse(t testing.TB, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := CreateSparse(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

func fileHash(t testing.TB, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// extract copies [off, off+size) of img into a file of its own (what dd skip/count does).
func extract(t testing.TB, img string, off, size int64) string {
	t.Helper()
	in, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	p := filepath.Join(t.TempDir(), "part.img")
	out, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, io.NewSectionReader(in, off, size)); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCreateSparse(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.img")
	if err := CreateSparse(p, 8*mib); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != 8*mib {
		t.Fatalf("size %d, want %d", st.Size(), 8*mib)
	}
	for _, tc := range []struct {
		name, path string
		size       int64
		want       string
	}{
		{"exists", p, mib, "exists"},
		{"unaligned", filepath.Join(dir, "b.img"), 1000, "multiple of 512"},
		{"zero", filepath.Join(dir, "c.img"), 0, "positive multiple"},
		{"empty path", "", mib, "empty path"},
	} {
		err := CreateSparse(tc.path, tc.size)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: CreateSparse(%q, %d) = %v, want error containing %q", tc.name, tc.path, tc.size, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "b.img")); err == nil {
		t.Error("a refused CreateSparse left a file behind")
	}
}

func TestTableRoundTrip(t *testing.T) {
	need(t, "sfdisk", "sgdisk")
	tests := []struct {
		name   string
		size   int64
		table  Table
		sfdisk []string // lines expected in sfdisk -d output
	}{
		{
			name: "gpt bios+uefi",
			size: 64 * mib,
			table: Table{Type: GPT, DiskGUID: "11111111-2222-3333-4444-555555555555", Partitions: []Partition{
				{Number: 1, Start: 1 * mib, Size: 1 * mib, Flag: FlagBIOSGrub, UUID: "A0000000-0000-0000-0000-000000000001"},
				{Number: 2, Start: 2 * mib, Size: 8 * mib, Flag: FlagBoot, Name: "ESP", UUID: "A0000000-0000-0000-0000-000000000002"},
				{Number: 3, Start: 10 * mib, Size: 40 * mib, Flag: FlagLinux, Name: "root", UUID: "A0000000-0000-0000-0000-000000000003"},
				{Number: 5, Start: 50 * mib, Size: 8 * mib, Flag: FlagSwap, UUID: "A0000000-0000-0000-0000-000000000005"},
			}},
			sfdisk: []string{
				"label: gpt",
				"label-id: 11111111-2222-3333-4444-555555555555",
				"disk.img1 : start=        2048, size=        2048, type=21686148-6449-6E6F-744E-656564454649, uuid=A0000000-0000-0000-0000-000000000001",
				"disk.img2 : start=        4096, size=       16384, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=A0000000-0000-0000-0000-000000000002, name=\"ESP\"",
				"disk.img5 : start=      102400, size=       16384, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, uuid=A0000000-0000-0000-0000-000000000005",
			},
		},
		{
			name: "msdos extended logical",
			size: 64 * mib,
			table: Table{Type: MSDOS, DiskGUID: "deadbeef", Partitions: []Partition{
				{Number: 1, Start: 1 * mib, Size: 8 * mib, Flag: FlagBoot},
				{Number: 2, Start: 9 * mib, Size: 50 * mib, Flag: FlagExtended},
				{Number: 5, Start: 10 * mib, Size: 20 * mib, Flag: FlagLogical},
				{Number: 6, Start: 31 * mib, Size: 10 * mib, Flag: FlagLVM},
				{Number: 7, Start: 42 * mib, Size: 17 * mib, Flag: FlagSwap},
			}},
			sfdisk: []string{
				"label: dos",
				"label-id: 0xdeadbeef",
				"disk.img1 : start=        2048, size=       16384, type=83, bootable",
				"disk.img2 : start=       18432, size=      102400, type=5",
				"disk.img5 : start=       20480, size=       40960, type=83",
				"disk.img6 : start=       63488, size=       20480, type=8e",
				"disk.img7 : start=       86016, size=       34816, type=82",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := sparse(t, tc.size)
			if err := WriteTable(img, tc.table); err != nil {
				t.Fatal(err)
			}
			got, err := ReadTable(img)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.table
			for i := range want.Partitions {
				p := &want.Partitions[i]
				if want.Type == GPT {
					p.TypeGUID = gptTypeForFlag[p.Flag]
				} else {
					p.MBRType = mbrTypeForFlag[p.Flag]
					p.Bootable = p.Flag == FlagBoot
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ReadTable after WriteTable (-want +got):\n%s", diff)
			}
			cmd := exec.Command("sfdisk", "-d", "disk.img")
			cmd.Dir = filepath.Dir(img)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("sfdisk -d: %v\n%s", err, out)
			}
			for _, l := range tc.sfdisk {
				if !strings.Contains(string(out), l+"\n") {
					t.Errorf("sfdisk -d lacks %q; got:\n%s", l, out)
				}
			}
			if tc.table.Type == GPT {
				out, err := exec.Command("sgdisk", "-v", img).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "No problems found") {
					t.Errorf("sgdisk -v: %v\n%s", err, out)
				}
			}
		})
	}
}

func TestWriteTableRefusesBadInput(t *testing.T) {
	img := sparse(t, 16*mib)
	good := Table{Type: GPT, Partitions: []Partition{{Number: 1, Start: mib, Size: 4 * mib}}}
	if err := WriteTable(img, good); err != nil {
		t.Fatal(err)
	}
	before := fileHash(t, img)
	tests := []struct {
		name string
		t    Table
		want string
	}{
		{"unknown type", Table{Type: "apm"}, `type "apm" must be`},
		{"overlap", Table{Type: GPT, Partitions: []Partition{{Number: 1, Start: mib, Size: 4 * mib}, {Number: 2, Start: 4 * mib, Size: mib}}}, "overlap"},
		{"in gpt header", Table{Type: GPT, Partitions: []Partition{{Number: 1, Start: 512, Size: mib}}}, "outside the usable area"},
		{"past end", Table{Type: GPT, Partitions: []Partition{{Number: 1, Start: mib, Size: 16 * mib}}}, "outside the usable area"},
		{"unaligned", Table{Type: GPT, Partitions: []Partition{{Number: 1, Start: mib + 1, Size: mib}}}, "multiple of 512"},
		{"bad flag", Table{Type: GPT, Partitions: []Partition{{Number: 1, Start: mib, Size: mib, Flag: "bogus"}}}, `flag "bogus"`},
		{"bad guid", Table{Type: GPT, Partitions: []Partition{{Number: 1, Start: mib, Size: mib, TypeGUID: "nope"}}}, "not a GUID"},
		{"dup number", Table{Type: GPT, Partitions: []Partition{{Number: 1, Start: mib, Size: mib}, {Number: 1, Start: 3 * mib, Size: mib}}}, "used twice"},
		{"number zero", Table{Type: GPT, Partitions: []Partition{{Number: 0, Start: mib, Size: mib}}}, "must be in 1..128"},
		{"long name", Table{Type: GPT, Partitions: []Partition{{Number: 1, Start: mib, Size: mib, Name: strings.Repeat("x", 37)}}}, "gpt allows 36"},
		{"logical without extended", Table{Type: MSDOS, Partitions: []Partition{{Number: 5, Start: mib, Size: mib}}}, "need an extended"},
		{"two extended", Table{Type: MSDOS, Partitions: []Partition{{Number: 1, Start: mib, Size: mib, Flag: FlagExtended}, {Number: 2, Start: 3 * mib, Size: mib, Flag: FlagExtended}}}, "both extended"},
		{"logical outside", Table{Type: MSDOS, Partitions: []Partition{{Number: 1, Start: mib, Size: 2 * mib, Flag: FlagExtended}, {Number: 5, Start: 4 * mib, Size: mib}}}, "must lie inside extended"},
		{"bios_grub on msdos", Table{Type: MSDOS, Partitions: []Partition{{Number: 1, Start: mib, Size: mib, Flag: FlagBIOSGrub}}}, "not valid on msdos"},
		{"bad disk id", Table{Type: MSDOS, DiskGUID: "xyz"}, "8 hex digits"},
	}
	for _, tc := range tests {
		err := WriteTable(img, tc.t)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), img) {
			t.Errorf("%s: WriteTable = %v, want an error naming %s and containing %q", tc.name, err, img, tc.want)
		}
	}
	if fileHash(t, img) != before {
		t.Error("a refused WriteTable changed the image")
	}
	if err := WriteTable(filepath.Join(t.TempDir(), "missing.img"), good); err == nil {
		t.Error("WriteTable on a missing file succeeded")
	}
}

func TestReadTableNoTable(t *testing.T) {
	img := sparse(t, 4*mib)
	if _, err := ReadTable(img); err == nil || !strings.Contains(err.Error(), "no partition table") {
		t.Fatalf("ReadTable of a blank image = %v, want ErrNoTable", err)
	}
}

func mkTree(t testing.TB) string {
	t.Helper()
	src := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "curtin"), 0o755))
	must(os.MkdirAll(filepath.Join(src, "etc", "deep", "er"), 0o755))
	must(os.WriteFile(filepath.Join(src, "curtin", "curtin-hooks"), []byte("#!/bin/sh\nexit 0\n"), 0o750))
	must(os.WriteFile(filepath.Join(src, "etc", "os-release"), []byte("ID=debian\nVERSION_ID=12\n"), 0o644))
	must(os.WriteFile(filepath.Join(src, "etc", "deep", "er", "big"), bytes.Repeat([]byte("0123456789abcdef"), 40000), 0o600))
	must(os.Symlink("os-release", filepath.Join(src, "etc", "link")))
	return src
}

func TestExt4(t *testing.T) {
	need(t, "mkfs.ext4", "e2fsck", "debugfs", "blkid")
	img := sparse(t, 64*mib)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(WriteTable(img, Table{Type: GPT, Partitions: []Partition{{Number: 1, Start: mib, Size: 32 * mib, Flag: FlagLinux}}}))
	src := mkTree(t)
	ctx := context.Background()
	o := FSOptions{Label: "cloudimg-rootfs", UUID: "0b3e1a53-6d4c-4f5e-9a27-2b7f1d5f8c11"}
	must(MakeExt4(ctx, img, mib, 32*mib, src, o))

	part := extract(t, img, mib, 32*mib)
	if out, err := exec.Command("e2fsck", "-fn", part).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
	out, err := exec.Command("blkid", "-p", "-o", "export", part).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "TYPE=ext4") || !strings.Contains(string(out), "LABEL=cloudimg-rootfs") {
		t.Errorf("blkid: %v\n%s", err, out)
	}
	fss, err := Probe(img)
	must(err)
	want := []FS{{Partition: 1, Offset: mib, Size: 32 * mib, Type: FSExt4, Label: o.Label, UUID: o.UUID, PartFlag: FlagLinux}}
	if diff := cmp.Diff(want, fss, cmpIgnorePartUUID); diff != "" {
		t.Errorf("Probe (-want +got):\n%s", diff)
	}
	fsys := fss[0]
	b, err := ReadFile(img, fsys, "/etc/os-release")
	must(err)
	if string(b) != "ID=debian\nVERSION_ID=12\n" {
		t.Errorf("ReadFile os-release = %q", b)
	}
	big, err := ReadFile(img, fsys, "etc/deep/er/big")
	must(err)
	if len(big) != 640000 {
		t.Errorf("ReadFile big: %d bytes, want 640000", len(big))
	}
	ents, err := ReadDir(img, fsys, "/curtin")
	must(err)
	if len(ents) != 1 || ents[0].Name != "curtin-hooks" || ents[0].Mode.Perm() != 0o750 {
		t.Errorf("ReadDir /curtin = %+v, want curtin-hooks mode 0750", ents)
	}
	for p, want := range map[string]bool{"/curtin/curtin-hooks": true, "/etc/link": true, "/nope": false, "/etc/nope/x": false, "/": true} {
		got, err := Exists(img, fsys, p)
		if err != nil || got != want {
			t.Errorf("Exists(%s) = %v, %v; want %v", p, got, err, want)
		}
	}
	if _, err := ReadFile(img, fsys, "/../etc/passwd"); err == nil || !strings.Contains(err.Error(), `".."`) {
		t.Errorf("ReadFile with .. = %v, want a traversal error", err)
	}
	if _, err := ReadFile(img, fsys, "/nope"); err == nil {
		t.Error("ReadFile of a missing file succeeded")
	}
	dst := filepath.Join(t.TempDir(), "out")
	must(ExtractTree(ctx, img, fsys, dst))
	st, err := os.Lstat(filepath.Join(dst, "etc", "link"))
	must(err)
	if st.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("extracted etc/link is %v, want a symlink", st.Mode())
	}
	st, err = os.Stat(filepath.Join(dst, "curtin", "curtin-hooks"))
	must(err)
	if st.Mode().Perm() != 0o750 {
		t.Errorf("extracted curtin-hooks mode %v, want 0750", st.Mode().Perm())
	}
	if err := ExtractTree(ctx, img, fsys, dst); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("ExtractTree into a non-empty dir = %v", err)
	}
}

var cmpIgnorePartUUID = cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".PartUUID" }, cmp.Ignore())

func TestMakeFSRefusesBadInput(t *testing.T) {
	img := sparse(t, 8*mib)
	before := fileHash(t, img)
	ctx := context.Background()
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"ext4 past end", MakeExt4(ctx, img, 4*mib, 8*mib, "", FSOptions{}), "past the end"},
		{"ext4 unaligned", MakeExt4(ctx, img, 100, 4*mib, "", FSOptions{}), "multiple of 512"},
		{"ext4 long label", MakeExt4(ctx, img, 0, 4*mib, "", FSOptions{Label: strings.Repeat("l", 17)}), "ext4 allows 16"},
		{"ext4 bad uuid", MakeExt4(ctx, img, 0, 4*mib, "", FSOptions{UUID: "zz"}), "not a UUID"},
		{"ext4 missing src", MakeExt4(ctx, img, 0, 4*mib, "/nonexistent/src", FSOptions{}), "source tree"},
		{"fat bad label", MakeFAT(ctx, img, 0, 4*mib, "", FSOptions{Label: "a/b"}), "label"},
		{"fat long label", MakeFAT(ctx, img, 0, 4*mib, "", FSOptions{Label: "ABCDEFGHIJKL"}), "at most 11"},
		{"fat bad volid", MakeFAT(ctx, img, 0, 4*mib, "", FSOptions{UUID: "1234"}), "8 hex digits"},
		{"fat32 too small", MakeFAT(ctx, img, 0, 4*mib, "", FSOptions{FATBits: 32}), "at least 33 MiB"},
		{"swap tiny", MakeSwap(ctx, img, 0, 4096, FSOptions{}), "10 pages"},
		{"swap bad uuid", MakeSwap(ctx, img, 0, mib, FSOptions{UUID: "x"}), "not a UUID"},
	}
	for _, tc := range tests {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: %v, want error containing %q", tc.name, tc.err, tc.want)
		}
	}
	if fileHash(t, img) != before {
		t.Error("a refused mkfs changed the image")
	}
}

func TestFATAndSwap(t *testing.T) {
	need(t, "mkfs.fat", "mcopy", "fsck.fat", "blkid")
	img := sparse(t, 96*mib)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(WriteTable(img, Table{Type: GPT, Partitions: []Partition{
		{Number: 1, Start: mib, Size: 16 * mib, Flag: FlagBoot},
		{Number: 2, Start: 17 * mib, Size: 40 * mib, Flag: FlagBoot},
		{Number: 3, Start: 57 * mib, Size: 8 * mib, Flag: FlagSwap},
	}}))
	src := t.TempDir()
	must(os.MkdirAll(filepath.Join(src, "EFI", "BOOT"), 0o755))
	must(os.WriteFile(filepath.Join(src, "EFI", "BOOT", "BOOTX64.EFI"), bytes.Repeat([]byte{0x4d, 0x5a}, 5000), 0o644))
	must(os.WriteFile(filepath.Join(src, "startup.nsh"), []byte("echo hi\n"), 0o644))
	ctx := context.Background()
	must(MakeFAT(ctx, img, mib, 16*mib, src, FSOptions{Label: "UEFI", UUID: "ABCD-1234"}))
	must(MakeFAT(ctx, img, 17*mib, 40*mib, src, FSOptions{Label: "ESP32", FATBits: 32}))
	must(MakeSwap(ctx, img, 57*mib, 8*mib, FSOptions{Label: "swap0", UUID: "5a1b0c2d-3e4f-4a5b-8c6d-7e8f90a1b2c3"}))
	for _, r := range [][2]int64{{mib, 16 * mib}, {17 * mib, 40 * mib}} {
		part := extract(t, img, r[0], r[1])
		if out, err := exec.Command("fsck.fat", "-n", part).CombinedOutput(); err != nil {
			t.Errorf("fsck.fat -n at %d: %v\n%s", r[0], err, out)
		}
	}
	swapPart := extract(t, img, 57*mib, 8*mib)
	out, err := exec.Command("blkid", "-p", "-o", "export", swapPart).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "TYPE=swap") || !strings.Contains(string(out), "LABEL=swap0") {
		t.Errorf("blkid swap: %v\n%s", err, out)
	}
	fss, err := Probe(img)
	must(err)
	got := make([][3]string, 0, len(fss))
	for _, f := range fss {
		got = append(got, [3]string{f.Type, f.Label, f.UUID})
	}
	want := [][3]string{{FSVFAT, "UEFI", "ABCD-1234"}, {FSVFAT, "ESP32", fss[1].UUID}, {FSSwap, "swap0", "5a1b0c2d-3e4f-4a5b-8c6d-7e8f90a1b2c3"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Probe (-want +got):\n%s", diff)
	}
	for _, f := range fss[:2] {
		b, err := ReadFile(img, f, "/EFI/BOOT/BOOTX64.EFI")
		must(err)
		if len(b) != 10000 {
			t.Errorf("partition %d: BOOTX64.EFI is %d bytes, want 10000", f.Partition, len(b))
		}
		ok, err := Exists(img, f, "/efi/boot/bootx64.efi")
		if err != nil || !ok {
			t.Errorf("partition %d: Exists(/efi/boot/bootx64.efi) = %v, %v; FAT is case-insensitive", f.Partition, ok, err)
		}
		dst := filepath.Join(t.TempDir(), "esp")
		must(ExtractTree(ctx, img, f, dst))
		if b, err := os.ReadFile(filepath.Join(dst, "startup.nsh")); err != nil || string(b) != "echo hi\n" {
			t.Errorf("partition %d: extracted startup.nsh = %q, %v", f.Partition, b, err)
		}
	}
	if _, err := ReadFile(img, fss[2], "/x"); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("ReadFile on swap = %v, want not supported", err)
	}
}

func TestReadlink(t *testing.T) {
	need(t, "mkfs.ext4", "debugfs")
	img := sparse(t, 16*mib)
	src := mkTree(t)
	long := strings.Repeat("d", 100) + "/target"
	if err := os.Symlink(long, filepath.Join(src, "longlink")); err != nil {
		t.Fatal(err)
	}
	if err := MakeExt4(context.Background(), img, 0, 16*mib, src, FSOptions{}); err != nil {
		t.Fatal(err)
	}
	fss, err := Probe(img)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"/etc/link": "os-release", "/longlink": long} {
		got, err := Readlink(img, fss[0], p)
		if err != nil || got != want {
			t.Errorf("Readlink(%s) = %q, %v; want %q", p, got, err, want)
		}
	}
	if _, err := Readlink(img, fss[0], "/etc/os-release"); err == nil || !strings.Contains(err.Error(), "not a symbolic link") {
		t.Errorf("Readlink of a file = %v", err)
	}
}
