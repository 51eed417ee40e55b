package diskimage

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// FSOptions are the identity of a new filesystem.
type FSOptions struct {
	Label string
	// UUID is a standard UUID for ext4 and swap, and the volume id "ABCD-1234" for FAT.
	// Empty: the tool picks one.
	UUID string
	// FATBits forces FAT12, 16 or 32 for MakeFAT; 0 lets mkfs.fat choose by size.
	FATBits int
}

var fatVolID = regexp.MustCompile(`^[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}$`)

func checkSrcDir(srcDir string) error {
	if srcDir == "" {
		return nil
	}
	st, err := os.Stat(srcDir)
	if err != nil {
		return fmt.Errorf("diskimage: source tree: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("diskimage: source tree %s is not a directory", srcDir)
	}
	return nil
}

// MakeExt4 makes an ext4 filesystem in the region [off, off+size) of the image file img,
// filled from srcDir when it is not empty (mke2fs -d keeps owners, modes, symlinks and
// device nodes).
func MakeExt4(ctx context.Context, img string, off, size int64, srcDir string, o FSOptions) error {
	if _, err := checkRegion(img, off, size, "ext4 filesystem"); err != nil {
		return err
	}
	if size%4096 != 0 || size < 1<<20 {
		return fmt.Errorf("diskimage: ext4 filesystem in %s: size %d must be at least 1 MiB and a multiple of 4096", img, size)
	}
	if len(o.Label) > 16 {
		return fmt.Errorf("diskimage: ext4 filesystem in %s: label %q is %d bytes, ext4 allows 16", img, o.Label, len(o.Label))
	}
	if o.UUID != "" {
		if _, err := uuid.Parse(o.UUID); err != nil {
			return fmt.Errorf("diskimage: ext4 filesystem in %s: UUID %q is not a UUID", img, o.UUID)
		}
	}
	if err := checkSrcDir(srcDir); err != nil {
		return err
	}
	args := []string{"-F", "-q", "-t", "ext4", "-b", "4096", "-E", fmt.Sprintf("offset=%d,nodiscard", off)}
	if o.Label != "" {
		args = append(args, "-L", o.Label)
	}
	if o.UUID != "" {
		args = append(args, "-U", strings.ToLower(o.UUID))
	}
	if srcDir != "" {
		args = append(args, "-d", srcDir)
	}
	args = append(args, img, strconv.FormatInt(size/1024, 10)+"k")
	// MKE2FS_CONFIG unset: the distribution defaults (what curtin's mkfs.ext4 uses too).
	_, err := run(ctx, []string{"E2FSPROGS_LIBMAGIC_SUPPRESS=1"}, "mkfs.ext4", args...)
	return err
}

// MakeFAT makes a FAT filesystem in the region [off, off+size) of img and copies the
// contents of srcDir (when not empty) into its root with mtools.
func MakeFAT(ctx context.Context, img string, off, size int64, srcDir string, o FSOptions) error {
	if _, err := checkRegion(img, off, size, "FAT filesystem"); err != nil {
		return err
	}
	if len(o.Label) > 11 || strings.ContainsAny(o.Label, "\"*+,./:;<=>?[\\]|") {
		return fmt.Errorf("diskimage: FAT filesystem in %s: label %q must be at most 11 characters without any of \"*+,./:;<=>?[\\]|", img, o.Label)
	}
	for _, r := range o.Label {
		if r > 0x7e || r < 0x20 {
			return fmt.Errorf("diskimage: FAT filesystem in %s: label %q must be printable ASCII", img, o.Label)
		}
	}
	if o.UUID != "" && !fatVolID.MatchString(o.UUID) {
		return fmt.Errorf("diskimage: FAT filesystem in %s: volume id %q must be 8 hex digits like ABCD-1234", img, o.UUID)
	}
	switch o.FATBits {
	case 0, 12, 16, 32:
	default:
		return fmt.Errorf("diskimage: FAT filesystem in %s: FAT size %d must be 12, 16 or 32", img, o.FATBits)
	}
	if o.FATBits == 32 && size < 33<<20 {
		return fmt.Errorf("diskimage: FAT filesystem in %s: FAT32 needs at least 33 MiB, got %d bytes", img, size)
	}
	if err := checkSrcDir(srcDir); err != nil {
		return err
	}
	args := []string{"--offset=" + strconv.FormatInt(off/SectorSize, 10), "-h", strconv.FormatInt(off/SectorSize, 10)}
	if o.FATBits != 0 {
		args = append(args, "-F", strconv.Itoa(o.FATBits))
		if o.FATBits == 32 {
			args = append(args, "-s", "1")
		}
	}
	if o.Label != "" {
		args = append(args, "-n", strings.ToUpper(o.Label))
	}
	if o.UUID != "" {
		args = append(args, "-i", strings.ReplaceAll(o.UUID, "-", ""))
	}
	args = append(args, img, strconv.FormatInt(size/1024, 10))
	if _, err := run(ctx, nil, "mkfs.fat", args...); err != nil {
		return err
	}
	if srcDir == "" {
		return nil
	}
	ents, err := os.ReadDir(srcDir)
	if err != nil {
		return fmt.Errorf("diskimage: FAT filesystem in %s: %w", img, err)
	}
	if len(ents) == 0 {
		return nil
	}
	margs := []string{"-i", fmt.Sprintf("%s@@%d", img, off), "-s", "-p", "-Q", "-m"}
	for _, e := range ents {
		margs = append(margs, filepath.Join(srcDir, e.Name()))
	}
	margs = append(margs, "::/")
	_, err = run(ctx, mtoolsEnv, "mcopy", margs...)
	return err
}

// mtoolsEnv stops mtools from refusing images whose geometry it dislikes.
var mtoolsEnv = []string{"MTOOLS_SKIP_CHECK=1", "MTOOLS_NO_VFAT=0", "MTOOLSRC=/dev/null"}

// MakeSwap writes a Linux swap signature (version 1, 4 KiB pages) over the region
// [off, off+size) of img, as mkswap does.
func MakeSwap(ctx context.Context, img string, off, size int64, o FSOptions) error {
	if _, err := checkRegion(img, off, size, "swap area"); err != nil {
		return err
	}
	const page = 4096
	if size < 10*page {
		return fmt.Errorf("diskimage: swap area in %s: size %d is smaller than 10 pages (%d bytes)", img, size, 10*page)
	}
	if len(o.Label) > 16 {
		return fmt.Errorf("diskimage: swap area in %s: label %q is %d bytes, swap allows 16", img, o.Label, len(o.Label))
	}
	id := uuid.New()
	if o.UUID != "" {
		var err error
		if id, err = uuid.Parse(o.UUID); err != nil {
			return fmt.Errorf("diskimage: swap area in %s: UUID %q is not a UUID", img, o.UUID)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	hdr := make([]byte, page)
	binary.LittleEndian.PutUint32(hdr[1024:], 1)                   // version
	binary.LittleEndian.PutUint32(hdr[1028:], uint32(size/page-1)) // last page
	binary.LittleEndian.PutUint32(hdr[1032:], 0)                   // bad pages
	copy(hdr[1036:1052], id[:])
	copy(hdr[1052:1068], o.Label)
	copy(hdr[page-10:], "SWAPSPACE2")
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("diskimage: swap area: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteAt(hdr, off); err != nil {
		return fmt.Errorf("diskimage: swap area in %s: %w", img, err)
	}
	return f.Close()
}
