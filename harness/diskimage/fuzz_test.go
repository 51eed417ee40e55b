package diskimage

import (
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The fuzz tests corrupt a small, valid filesystem image with a list of byte patches and
// call ReadFile, Exists, ReadDir (and Readlink) on it: each call must return, within a
// bound, with data or an error that names the image; none may hang or panic. A patch is 5
// bytes: a little-endian uint32 offset and the byte to write. Offsets with the top bit
// clear land in the first 256 KiB (where the metadata lives), others anywhere in the image.

const fuzzCallLimit = 90 * time.Second

func applyPatches(base, patch []byte) []byte {
	img := append([]byte(nil), base...)
	for i := 0; i+5 <= len(patch); i += 5 {
		off := binary.LittleEndian.Uint32(patch[i:])
		var at int
		if off&(1<<31) == 0 {
			at = int(off) % min(len(img), 256<<10)
		} else {
			at = int(off&^(1<<31)) % len(img)
		}
		img[at] = patch[i+4]
	}
	return img
}

// patch encodes setting the bytes b at the absolute offset off.
func patch(off int, b ...byte) []byte {
	var out []byte
	for i, v := range b {
		out = binary.LittleEndian.AppendUint32(out, uint32(off+i)|1<<31)
		out = append(out, v)
	}
	return out
}

func le16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// shorter bounds lets the fuzz tests use smaller internal time bounds than the defaults.
func shorterBounds(t testing.TB) {
	d, m := debugfsTimeout, mtoolsTimeout
	debugfsTimeout, mtoolsTimeout = 20*time.Second, 20*time.Second
	t.Cleanup(func() { debugfsTimeout, mtoolsTimeout = d, m })
}

// checkCalls runs the read functions on img and checks that each returns in time and
// that every error names the image.
func checkCalls(t *testing.T, img string, f FS, calls map[string]func() error) {
	t.Helper()
	for name, call := range calls {
		var err error
		bounded(t, fuzzCallLimit, name, func() { err = call() })
		if err != nil && !strings.Contains(err.Error(), img) {
			t.Errorf("%s: error does not name the image %s: %v", name, img, err)
		}
	}
}

var reInode = regexp.MustCompile(`Inode: (\d+)`)

// extLayout finds, in the base image, the byte offsets the seeds corrupt.
type extLayout struct {
	inodeTable, inodeSize int
	blockSize             int
}

func (l extLayout) inode(n int) int { return l.inodeTable + (n-1)*l.inodeSize }

func inodeOf(t testing.TB, img, p string) int {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "stat "+p, img).Output()
	if err != nil {
		t.Fatal(err)
	}
	m := reInode.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no inode for %s", p)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func FuzzReadExt(f *testing.F) {
	need(f, "mkfs.ext4", "debugfs")
	dir := f.TempDir()
	src, _ := holeTree(f)
	if err := os.WriteFile(filepath.Join(src, "etc", "os-release"), []byte("ID=debian\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 60; i++ { // a directory of more than one block
		os.WriteFile(filepath.Join(src, "etc", "file-with-a-long-name-"+strconv.Itoa(i)), []byte{byte(i)}, 0o644)
	}
	// a small image: the holey files are made smaller than holeTree's
	for _, n := range []string{"f", "hole-first", "etc/middle", "empty-sparse"} {
		os.Truncate(filepath.Join(src, n), 256<<10)
	}
	baseImg := filepath.Join(dir, "base.img")
	if err := CreateSparse(baseImg, 4*mib); err != nil {
		f.Fatal(err)
	}
	// Without metadata checksums, so that corruptions reach the structure parsing (with them
	// debugfs refuses every damaged block up front, as TestReadBadExt shows).
	if out, err := exec.Command("mkfs.ext4", "-F", "-q", "-t", "ext4", "-b", "4096", "-O", "^metadata_csum", "-d", src, baseImg, "4096k").CombinedOutput(); err != nil {
		f.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	base, err := os.ReadFile(baseImg)
	if err != nil {
		f.Fatal(err)
	}
	sb := 1024
	l := extLayout{blockSize: 1024 << binary.LittleEndian.Uint32(base[sb+24:]), inodeSize: int(binary.LittleEndian.Uint16(base[sb+88:]))}
	gdt := l.blockSize // 4 KiB blocks: the descriptors follow the superblock's block
	l.inodeTable = int(binary.LittleEndian.Uint32(base[gdt+8:])) * l.blockSize
	root := l.inode(2)
	rootExt := root + 0x28 // i_block: the extent header, then the first extent
	rootDir := int(binary.LittleEndian.Uint32(base[rootExt+12+8:])) * l.blockSize
	fIno := l.inode(inodeOf(f, baseImg, "/f"))
	etcIno := l.inode(inodeOf(f, baseImg, "/etc"))
	linkIno := l.inode(inodeOf(f, baseImg, "/etc/rel"))

	f.Add([]byte{})
	f.Add(patch(sb+56, 0, 0))                                                                                 // superblock magic
	f.Add(patch(sb+24, 30))                                                                                   // absurd block size
	f.Add(patch(gdt+8, le32(0xfffffff)...))                                                                   // inode table past the end
	f.Add(patch(rootExt, 0, 0))                                                                               // root's extent header magic
	f.Add(patch(rootExt+6, le16(5)...))                                                                       // extent tree depth 5 pointing at a data block
	f.Add(append(patch(rootExt+6, le16(1)...), patch(rootExt+12+8, le32(uint32(rootDir/l.blockSize))...)...)) // index to itself-ish
	f.Add(patch(rootDir+4, 0, 0))                                                                             // first dir entry rec_len 0
	f.Add(patch(rootDir+4, 0xff, 0xff))                                                                       // rec_len past the block
	f.Add(patch(rootDir+12+4, 1, 0))                                                                          // second entry rec_len 1
	f.Add(patch(fIno+4, 0xff, 0xff, 0xff, 0x7f))                                                              // i_size 2 GiB
	f.Add(patch(fIno+0x6c, 0xff, 0xff, 0xff, 0x7f))                                                           // i_size_high
	f.Add(patch(fIno+0x28+12+4, 0xff, 0xff))                                                                  // extent length 65535 (unwritten, huge)
	f.Add(patch(fIno+0x28+12+8, 0xff, 0xff, 0xff, 0x0f))                                                      // extent starting past the end
	f.Add(patch(fIno+0x28+2, 0xff, 0xff))                                                                     // 65535 extent entries
	f.Add(patch(etcIno+0x28+12+8, le32(uint32(rootDir/l.blockSize))...))                                      // /etc's block is the root's
	f.Add(patch(etcIno, 0xff, 0xff))                                                                          // /etc's mode: every type bit
	f.Add(patch(linkIno+4, 0xff, 0x10))                                                                       // a fast link claiming 4 KiB
	f.Add(patch(linkIno+0x28, 'e', 't', 'c', '/', 'r', 'e', 'l', 0))                                          // a link to itself

	f.Fuzz(func(t *testing.T, p []byte) {
		shorterBounds(t)
		img := filepath.Join(t.TempDir(), "fuzz.img")
		if err := os.WriteFile(img, applyPatches(base, p), 0o644); err != nil {
			t.Fatal(err)
		}
		fs := FS{Offset: 0, Size: 4 * mib, Type: FSExt4}
		calls := map[string]func() error{}
		for _, name := range []string{"/f", "/hole-first", "/etc/middle", "/etc/os-release", "/chain", "/loop1", "/etc/rel", "/etc/file-with-a-long-name-59"} {
			calls["ReadFile "+name] = func() error { _, err := ReadFile(img, fs, name); return err }
		}
		for _, name := range []string{"/", "/etc", "/nope"} {
			calls["ReadDir "+name] = func() error { _, err := ReadDir(img, fs, name); return err }
			calls["Exists "+name] = func() error { _, err := Exists(img, fs, name); return err }
		}
		calls["Readlink /etc/rel"] = func() error { _, err := Readlink(img, fs, "/etc/rel"); return err }
		checkCalls(t, img, fs, calls)
	})
}

func FuzzReadFAT(f *testing.F) {
	need(f, "mkfs.fat", "mcopy", "mdir")
	dir := f.TempDir()
	src := filepath.Join(dir, "src")
	for name, body := range map[string]string{"EFI/BOOT/BOOTX64.EFI": strings.Repeat("MZ", 3000), "EFI/debian/grub.cfg": "set x=1\n",
		"startup.nsh": "echo hi\n"} {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(body), 0o644)
	}
	for i := 0; i < 40; i++ {
		os.WriteFile(filepath.Join(src, "EFI", "debian", "long file name number "+strconv.Itoa(i)), []byte("x"), 0o644)
	}
	baseImg := filepath.Join(dir, "base.img")
	if err := CreateSparse(baseImg, 2*mib); err != nil {
		f.Fatal(err)
	}
	if err := MakeFAT(context.Background(), baseImg, 0, 2*mib, src, FSOptions{FATBits: 12}); err != nil {
		f.Fatal(err)
	}
	base, err := os.ReadFile(baseImg)
	if err != nil {
		f.Fatal(err)
	}
	bps := int(binary.LittleEndian.Uint16(base[11:]))
	fat := int(binary.LittleEndian.Uint16(base[14:])) * bps
	fatSize := int(binary.LittleEndian.Uint16(base[22:])) * bps
	rootDir := fat + int(base[16])*fatSize
	// FAT12 entries 2 and 3 (the first clusters) made to point at each other, in both FATs
	var loop []byte
	for i := 0; i < int(base[16]); i++ {
		loop = append(loop, patch(fat+i*fatSize+3, 0x03, 0x20, 0x00)...)
	}
	f.Add([]byte{})
	f.Add(loop)
	f.Add(patch(11, 0, 0))                           // 0 bytes per sector
	f.Add(patch(13, 0))                              // 0 sectors per cluster
	f.Add(patch(16, 0))                              // no FATs
	f.Add(patch(17, 0xff, 0xff))                     // 65535 root entries
	f.Add(patch(rootDir+26, 0xff, 0x0f))             // first root entry at cluster 0xfff
	f.Add(patch(rootDir+28, 0xff, 0xff, 0xff, 0xff)) // a 4 GiB file
	f.Add(patch(rootDir, 0xe5))                      // deleted entry
	f.Add(patch(510, 0, 0))                          // boot signature
	f.Fuzz(func(t *testing.T, p []byte) {
		shorterBounds(t)
		img := filepath.Join(t.TempDir(), "fuzz.img")
		if err := os.WriteFile(img, applyPatches(base, p), 0o644); err != nil {
			t.Fatal(err)
		}
		fs := FS{Offset: 0, Size: 2 * mib, Type: FSVFAT}
		calls := map[string]func() error{}
		for _, name := range []string{"/EFI/BOOT/BOOTX64.EFI", "/startup.nsh", "/efi/debian/long file name number 39"} {
			calls["ReadFile "+name] = func() error { _, err := ReadFile(img, fs, name); return err }
		}
		for _, name := range []string{"/", "/EFI/debian", "/nope"} {
			calls["ReadDir "+name] = func() error { _, err := ReadDir(img, fs, name); return err }
			calls["Exists "+name] = func() error { _, err := Exists(img, fs, name); return err }
		}
		checkCalls(t, img, fs, calls)
	})
}
