package diskimage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
	"github.com/diskfs/go-diskfs/filesystem/fat12"
	"github.com/diskfs/go-diskfs/filesystem/fat16"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// cleanPath validates a path inside a filesystem: absolute or relative to its root, no
// ".." escaping it. It returns the fs.FS form (no leading slash; "." for the root).
func cleanPath(img string, p string) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("diskimage: %s: path %q contains a NUL byte", img, p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "", fmt.Errorf("diskimage: %s: path %q must not contain \"..\"", img, p)
		}
	}
	c := strings.TrimPrefix(path.Clean("/"+p), "/")
	if c == "" {
		c = "."
	}
	return c, nil
}

// openFS opens the filesystem described by f in the image img with go-diskfs. The caller
// closes the returned closer.
func openFS(img string, f FS) (filesystem.FileSystem, func(), error) {
	isz, err := imageSize(img)
	if err != nil {
		return nil, nil, err
	}
	if f.Offset < 0 || f.Size <= 0 || f.Offset+f.Size > isz {
		return nil, nil, fmt.Errorf("diskimage: %s: filesystem region [%d, %d) is not inside the image (%d bytes)", img, f.Offset, f.Offset+f.Size, isz)
	}
	b, err := file.OpenFromPath(img, true)
	if err != nil {
		return nil, nil, fmt.Errorf("diskimage: %w", err)
	}
	closeFn := func() { b.Close() }
	var fsys filesystem.FileSystem
	switch f.Type {
	case FSExt2, FSExt3, FSExt4:
		fsys, err = ext4.Read(b, f.Size, f.Offset, SectorSize)
	case FSVFAT:
		// try the FAT widths in turn; each reader refuses the others' boot sectors
		if fsys, err = fat32.Read(b, f.Size, f.Offset, SectorSize); err != nil {
			var err16, err12 error
			if fsys, err16 = fat16.Read(b, f.Size, f.Offset, SectorSize); err16 != nil {
				if fsys, err12 = fat12.Read(b, f.Size, f.Offset, SectorSize); err12 != nil {
					err = fmt.Errorf("not FAT32 (%v), FAT16 (%v) or FAT12 (%v)", err, err16, err12)
				} else {
					err = nil
				}
			} else {
				err = nil
			}
		}
	default:
		closeFn()
		return nil, nil, fmt.Errorf("diskimage: %s partition %d: reading files from a %q filesystem is not supported (ext2/3/4 and vfat are)", img, f.Partition, f.Type)
	}
	if err != nil {
		closeFn()
		return nil, nil, fmt.Errorf("diskimage: %s partition %d (%s): %w", img, f.Partition, f.Type, err)
	}
	return fsys, closeFn, nil
}

func isExt(t string) bool { return t == FSExt2 || t == FSExt3 || t == FSExt4 }

// debugfsSpec is the device argument that makes e2fsprogs read a filesystem at an offset.
func debugfsSpec(img string, f FS) string {
	return img + "?offset=" + strconv.FormatInt(f.Offset, 10)
}

// ReadFile returns the contents of the file at p in the filesystem f of img. Symlinks are
// not followed (go-diskfs semantics); ext filesystems that go-diskfs cannot parse are read
// with debugfs.
func ReadFile(img string, f FS, p string) ([]byte, error) {
	c, err := cleanPath(img, p)
	if err != nil {
		return nil, err
	}
	if f.Type == FSVFAT {
		return readFAT(img, f, c, p)
	}
	fsys, done, err := openFS(img, f)
	if err == nil {
		defer done()
		b, rerr := fs.ReadFile(fsys, c)
		if rerr == nil {
			return b, nil
		}
		if !isExt(f.Type) || errors.Is(rerr, fs.ErrNotExist) {
			return nil, fmt.Errorf("diskimage: %s partition %d: read %s: %w", img, f.Partition, p, rerr)
		}
	} else if !isExt(f.Type) {
		return nil, err
	}
	// fallback: debugfs
	st, serr := statDebugfs(img, f, c)
	if serr != nil {
		return nil, serr
	}
	if st.IsDir() {
		return nil, fmt.Errorf("diskimage: %s partition %d: read %s: is a directory", img, f.Partition, p)
	}
	out, derr := run(context.Background(), nil, "debugfs", "-R", "cat /"+strings.TrimPrefix(c, "."), debugfsSpec(img, f))
	if derr != nil {
		return nil, derr
	}
	return out, nil
}

// Exists reports whether p exists (as any kind of file) in the filesystem f of img.
func Exists(img string, f FS, p string) (bool, error) {
	c, err := cleanPath(img, p)
	if err != nil {
		return false, err
	}
	if f.Type == FSVFAT {
		fsys, done, err := openFS(img, f)
		if err != nil {
			return false, err
		}
		defer done()
		_, ok, err := resolveFold(fsys, c)
		if err != nil {
			return false, fmt.Errorf("diskimage: %s partition %d: %s: %w", img, f.Partition, p, err)
		}
		return ok, nil
	}
	if isExt(f.Type) {
		if _, err := statDebugfs(img, f, c); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return false, nil
			}
			return false, err
		}
		return true, nil
	}
	fsys, done, err := openFS(img, f)
	if err == nil {
		defer done()
		if c == "." {
			return true, nil
		}
		// stat the parent listing so that dangling symlinks count as existing
		ents, rerr := fs.ReadDir(fsys, path.Dir(c))
		if rerr == nil {
			for _, e := range ents {
				if e.Name() == path.Base(c) {
					return true, nil
				}
			}
			return false, nil
		}
		if errors.Is(rerr, fs.ErrNotExist) {
			return false, nil
		}
		if !isExt(f.Type) {
			return false, fmt.Errorf("diskimage: %s partition %d: %s: %w", img, f.Partition, p, rerr)
		}
	} else if !isExt(f.Type) {
		return false, err
	}
	if _, err := statDebugfs(img, f, c); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// DirEntry is one entry of a directory listing.
type DirEntry struct {
	Name string
	Mode fs.FileMode // type bits and permissions
}

// ReadDir lists the directory p of the filesystem f of img, sorted by name.
func ReadDir(img string, f FS, p string) ([]DirEntry, error) {
	c, err := cleanPath(img, p)
	if err != nil {
		return nil, err
	}
	if isExt(f.Type) {
		// debugfs reports full modes; go-diskfs only the type bits
		return listDebugfs(img, f, c)
	}
	fsys, done, err := openFS(img, f)
	if err == nil {
		defer done()
		if f.Type == FSVFAT {
			real, ok, rerr := resolveFold(fsys, c)
			if rerr != nil {
				return nil, fmt.Errorf("diskimage: %s partition %d: list %s: %w", img, f.Partition, p, rerr)
			}
			if !ok {
				return nil, fmt.Errorf("diskimage: %s partition %d: list %s: %w", img, f.Partition, p, fs.ErrNotExist)
			}
			c = real
		}
		ents, rerr := fs.ReadDir(fsys, c)
		if rerr == nil {
			out := make([]DirEntry, 0, len(ents))
			for _, e := range ents {
				if e.Name() == "." || e.Name() == ".." {
					continue
				}
				m := e.Type()
				if info, ierr := e.Info(); ierr == nil {
					m = info.Mode()
				}
				out = append(out, DirEntry{Name: e.Name(), Mode: m})
			}
			return out, nil
		}
		if !isExt(f.Type) || errors.Is(rerr, fs.ErrNotExist) {
			return nil, fmt.Errorf("diskimage: %s partition %d: list %s: %w", img, f.Partition, p, rerr)
		}
	} else if !isExt(f.Type) {
		return nil, err
	}
	return listDebugfs(img, f, c)
}

type debugfsStat struct{ mode fs.FileMode }

func (s debugfsStat) IsDir() bool { return s.mode.IsDir() }

// statDebugfs stats a path with debugfs, returning fs.ErrNotExist when it is absent.
func statDebugfs(img string, f FS, c string) (debugfsStat, error) {
	p := "/" + strings.TrimPrefix(c, ".")
	out, err := run(context.Background(), nil, "debugfs", "-R", "stat "+p, debugfsSpec(img, f))
	if err != nil {
		return debugfsStat{}, err
	}
	s := string(out)
	if !strings.Contains(s, "Inode:") {
		return debugfsStat{}, fmt.Errorf("diskimage: %s partition %d: %s: %w", img, f.Partition, p, fs.ErrNotExist)
	}
	m := fs.FileMode(0)
	if strings.Contains(s, "Type: directory") {
		m = fs.ModeDir
	}
	return debugfsStat{mode: m}, nil
}

// listDebugfs lists a directory with `debugfs -R "ls -p"` (/ino/mode/uid/gid/name/size/).
func listDebugfs(img string, f FS, c string) ([]DirEntry, error) {
	p := "/" + strings.TrimPrefix(c, ".")
	out, err := run(context.Background(), nil, "debugfs", "-R", "ls -p "+p, debugfsSpec(img, f))
	if err != nil {
		return nil, err
	}
	var res []DirEntry
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Split(line, "/")
		if len(fields) < 7 {
			continue
		}
		name := fields[5]
		if name == "." || name == ".." || name == "" {
			continue
		}
		mode, _ := strconv.ParseUint(fields[2], 8, 32)
		res = append(res, DirEntry{Name: name, Mode: unixMode(uint32(mode))})
	}
	if len(res) == 0 && !strings.Contains(string(out), "/") {
		return nil, fmt.Errorf("diskimage: %s partition %d: list %s: %w", img, f.Partition, p, fs.ErrNotExist)
	}
	return res, nil
}

func unixMode(m uint32) fs.FileMode {
	fm := fs.FileMode(m & 0o777)
	switch m & 0o170000 {
	case 0o040000:
		fm |= fs.ModeDir
	case 0o120000:
		fm |= fs.ModeSymlink
	case 0o020000:
		fm |= fs.ModeDevice | fs.ModeCharDevice
	case 0o060000:
		fm |= fs.ModeDevice
	case 0o010000:
		fm |= fs.ModeNamedPipe
	case 0o140000:
		fm |= fs.ModeSocket
	}
	if m&0o4000 != 0 {
		fm |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		fm |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		fm |= fs.ModeSticky
	}
	return fm
}

// ExtractTree copies every file of the filesystem f of img into the directory dst (created
// if needed; it must be empty). ext filesystems are dumped with debugfs rdump, which keeps
// owners, modes and symlinks; FAT with mtools mcopy.
func ExtractTree(ctx context.Context, img string, f FS, dst string) error {
	isz, err := imageSize(img)
	if err != nil {
		return err
	}
	if f.Offset < 0 || f.Size <= 0 || f.Offset+f.Size > isz {
		return fmt.Errorf("diskimage: extract from %s: filesystem region [%d, %d) is not inside the image (%d bytes)", img, f.Offset, f.Offset+f.Size, isz)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("diskimage: extract: %w", err)
	}
	if ents, err := os.ReadDir(dst); err != nil {
		return fmt.Errorf("diskimage: extract: %w", err)
	} else if len(ents) > 0 {
		return fmt.Errorf("diskimage: extract from %s: destination %s is not empty", img, dst)
	}
	switch {
	case isExt(f.Type):
		// rdump / DIR writes DIR/<basename of />; dump the root's entries one by one.
		ents, err := ReadDir(img, f, "/")
		if err != nil {
			return err
		}
		for _, e := range ents {
			if _, err := run(ctx, nil, "debugfs", "-R", fmt.Sprintf("rdump \"/%s\" \"%s\"", e.Name, dst), debugfsSpec(img, f)); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		return nil
	case f.Type == FSVFAT:
		ents, err := ReadDir(img, f, "/")
		if err != nil {
			return err
		}
		if len(ents) == 0 {
			return nil
		}
		args := []string{"-i", fmt.Sprintf("%s@@%d", img, f.Offset), "-s", "-p", "-n", "-m"}
		for _, e := range ents {
			args = append(args, "::/"+e.Name)
		}
		args = append(args, filepath.Clean(dst)+"/")
		_, err = run(ctx, mtoolsEnv, "mcopy", args...)
		return err
	}
	return fmt.Errorf("diskimage: extract from %s partition %d: %q filesystems are not supported (ext2/3/4 and vfat are)", img, f.Partition, f.Type)
}

// resolveFold resolves c in fsys matching each path element case-insensitively (FAT
// semantics), returning the path with the names as stored.
func resolveFold(fsys fs.FS, c string) (string, bool, error) {
	if c == "." {
		return c, true, nil
	}
	cur := "."
	for _, el := range strings.Split(c, "/") {
		ents, err := fs.ReadDir(fsys, cur)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return "", false, nil
			}
			// a file where a directory was expected
			if st, serr := fs.Stat(fsys, cur); serr == nil && !st.IsDir() {
				return "", false, nil
			}
			return "", false, err
		}
		found := ""
		for _, e := range ents {
			if strings.EqualFold(e.Name(), el) {
				found = e.Name()
				break
			}
		}
		if found == "" {
			return "", false, nil
		}
		cur = path.Join(cur, found)
	}
	return cur, true, nil
}

// readFAT reads a file from a FAT filesystem with mtools (go-diskfs's FAT12/16 readers
// round sizes up to the cluster).
func readFAT(img string, f FS, c, p string) ([]byte, error) {
	fsys, done, err := openFS(img, f)
	if err != nil {
		return nil, err
	}
	real, ok, err := resolveFold(fsys, c)
	done()
	if err != nil {
		return nil, fmt.Errorf("diskimage: %s partition %d: read %s: %w", img, f.Partition, p, err)
	}
	if !ok {
		return nil, fmt.Errorf("diskimage: %s partition %d: read %s: %w", img, f.Partition, p, fs.ErrNotExist)
	}
	return run(context.Background(), mtoolsEnv, "mcopy", "-n", "-i", fmt.Sprintf("%s@@%d", img, f.Offset), "::/"+real, "-")
}

// Readlink returns the target of the symbolic link p in the ext filesystem f of img.
func Readlink(img string, f FS, p string) (string, error) {
	c, err := cleanPath(img, p)
	if err != nil {
		return "", err
	}
	if !isExt(f.Type) {
		return "", fmt.Errorf("diskimage: %s partition %d: %s filesystems have no symbolic links", img, f.Partition, f.Type)
	}
	out, err := run(context.Background(), nil, "debugfs", "-R", "stat /"+strings.TrimPrefix(c, "."), debugfsSpec(img, f))
	if err != nil {
		return "", err
	}
	s := string(out)
	if !strings.Contains(s, "Type: symlink") {
		if !strings.Contains(s, "Inode:") {
			return "", fmt.Errorf("diskimage: %s partition %d: readlink %s: %w", img, f.Partition, p, fs.ErrNotExist)
		}
		return "", fmt.Errorf("diskimage: %s partition %d: readlink %s: not a symbolic link", img, f.Partition, p)
	}
	if i := strings.Index(s, "Fast link dest: \""); i >= 0 {
		rest := s[i+len("Fast link dest: \""):]
		if j := strings.LastIndex(rest[:strings.IndexByte(rest+"\n", '\n')], "\""); j >= 0 {
			return rest[:j], nil
		}
	}
	// a slow symlink keeps its target in a data block
	b, err := run(context.Background(), nil, "debugfs", "-R", "cat /"+strings.TrimPrefix(c, "."), debugfsSpec(img, f))
	if err != nil {
		return "", err
	}
	return string(b), nil
}
