package diskimage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
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

func isExt(t string) bool { return t == FSExt2 || t == FSExt3 || t == FSExt4 }

// debugfsSpec is the device argument that makes e2fsprogs read a filesystem at an offset.
func debugfsSpec(img string, f FS) string {
	return img + "?offset=" + strconv.FormatInt(f.Offset, 10)
}

// ReadFile returns the contents of the file at p in the filesystem f of img. Symbolic links
// are followed inside the filesystem (absolute targets from its root, at most
// maxSymlinks of them). ext filesystems are read with debugfs: go-diskfs's ext4 reader
// loops forever on a file with holes and returns other blocks' data for holes before an
// extent or for unwritten extents, so it is not used for ext. FAT files are read with
// mtools.
func ReadFile(img string, f FS, p string) ([]byte, error) {
	c, err := cleanPath(img, p)
	if err != nil {
		return nil, err
	}
	if f.Type == FSVFAT {
		return readFAT(img, f, c, p)
	}
	if !isExt(f.Type) {
		return nil, fmt.Errorf("diskimage: %s partition %d: reading files from a %q filesystem is not supported (ext2/3/4 and vfat are)", img, f.Partition, f.Type)
	}
	if err := checkExtRegion(img, f); err != nil {
		return nil, err
	}
	for hops := 0; ; hops++ {
		st, err := statDebugfs(img, f, c)
		if err != nil {
			return nil, err
		}
		switch {
		case st.mode.IsRegular():
			return catDebugfs(img, f, c, st.size)
		case st.mode.IsDir():
			return nil, fmt.Errorf("diskimage: %s partition %d: read %s: is a directory", img, f.Partition, p)
		case st.mode&fs.ModeSymlink == 0:
			return nil, fmt.Errorf("diskimage: %s partition %d: read %s: not a regular file (%v)", img, f.Partition, p, st.mode.Type())
		}
		if hops == maxSymlinks {
			return nil, fmt.Errorf("diskimage: %s partition %d: read %s: more than %d symbolic links to follow", img, f.Partition, p, maxSymlinks)
		}
		target, err := Readlink(img, f, "/"+c)
		if err != nil {
			return nil, err
		}
		if target == "" {
			return nil, fmt.Errorf("diskimage: %s partition %d: read %s: symbolic link /%s has an empty target", img, f.Partition, p, c)
		}
		if !strings.HasPrefix(target, "/") {
			target = path.Join("/", path.Dir(c), target)
		}
		// ".." in a target stops at the filesystem's root, as it does in a chroot.
		if c = strings.TrimPrefix(path.Clean("/"+target), "/"); c == "" {
			c = "."
		}
	}
}

// Exists reports whether p exists (as any kind of file, a dangling symbolic link too) in
// the filesystem f of img. FAT names match case-insensitively.
func Exists(img string, f FS, p string) (bool, error) {
	c, err := cleanPath(img, p)
	if err != nil {
		return false, err
	}
	switch {
	case f.Type == FSVFAT:
		_, ok, err := fatStat(img, f, c)
		return ok, err
	case isExt(f.Type):
		if err := checkExtRegion(img, f); err != nil {
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
	return false, fmt.Errorf("diskimage: %s partition %d: reading files from a %q filesystem is not supported (ext2/3/4 and vfat are)", img, f.Partition, f.Type)
}

// DirEntry is one entry of a directory listing.
type DirEntry struct {
	Name string
	Mode fs.FileMode // type bits and permissions
}

// ReadDir lists the directory p of the filesystem f of img, sorted by name. ext entries
// carry their modes; FAT has none, so its directories are ModeDir|0755 and its files 0755
// (what Linux's vfat shows with the default umask).
func ReadDir(img string, f FS, p string) ([]DirEntry, error) {
	c, err := cleanPath(img, p)
	if err != nil {
		return nil, err
	}
	switch {
	case f.Type == FSVFAT:
		return listFAT(img, f, c, p)
	case isExt(f.Type):
		if err := checkExtRegion(img, f); err != nil {
			return nil, err
		}
		return listDebugfs(img, f, c)
	}
	return nil, fmt.Errorf("diskimage: %s partition %d: reading files from a %q filesystem is not supported (ext2/3/4 and vfat are)", img, f.Partition, f.Type)
}

// maxSymlinks bounds the symbolic links ReadFile follows (Linux's limit).
const maxSymlinks = 40

// debugfsTimeout bounds one debugfs run that reads no file data (stat, ls), so that no
// image, however malformed, can make a call hang.
var debugfsTimeout = 2 * time.Minute

// catRate is the slowest read rate allowed for a file's data before debugfs is stopped.
const catRate = 4 << 20 // bytes per second

// checkExtRegion validates the filesystem region before debugfs is pointed at it.
func checkExtRegion(img string, f FS) error {
	isz, err := imageSize(img)
	if err != nil {
		return err
	}
	if f.Offset < 0 || f.Size <= 0 || f.Offset+f.Size > isz {
		return fmt.Errorf("diskimage: %s: filesystem region [%d, %d) is not inside the image (%d bytes)", img, f.Offset, f.Offset+f.Size, isz)
	}
	return nil
}

// debugfs runs one debugfs request (in catastrophic mode: read-only, no bitmaps) on the
// filesystem f of img, bounded by timeout, and returns its output and what it said on
// stderr besides its banner. A filesystem debugfs cannot open is an error naming the
// image and debugfs's reason; a path it cannot find is fs.ErrNotExist.
func debugfs(img string, f FS, timeout time.Duration, cmd, c string) ([]byte, string, error) {
	p := "/" + strings.TrimPrefix(c, ".")
	if strings.ContainsAny(p, "\"\n") {
		return nil, "", fmt.Errorf("diskimage: %s partition %d: path %q: debugfs cannot name a path holding a double quote or a newline", img, f.Partition, p)
	}
	if _, err := exec.LookPath("debugfs"); err != nil {
		return nil, "", fmt.Errorf("diskimage: debugfs (e2fsprogs) is needed to read ext filesystems: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	x := exec.CommandContext(ctx, "debugfs", "-c", "-R", cmd+" \""+p+"\"", debugfsSpec(img, f))
	var stdout, stderr bytes.Buffer
	x.Stdout, x.Stderr = &stdout, &stderr
	x.WaitDelay = time.Second
	err := x.Run()
	if ctx.Err() != nil {
		return nil, "", fmt.Errorf("diskimage: %s partition %d: debugfs %s %s: stopped after %v (a malformed filesystem?)", img, f.Partition, cmd, p, timeout)
	}
	msg := debugfsMessage(stderr.String())
	switch {
	case strings.Contains(msg, "Filesystem not open") || strings.Contains(msg, "while trying to open") ||
		strings.Contains(msg, "while opening filesystem"):
		first, _, _ := strings.Cut(msg, "; ")
		return nil, "", fmt.Errorf("diskimage: %s partition %d (%s at offset %d): debugfs cannot open the filesystem: %s", img, f.Partition, f.Type, f.Offset,
			strings.TrimPrefix(first, "debugfs: "))
	case err != nil:
		return nil, "", fmt.Errorf("diskimage: %s partition %d: debugfs %s %s: %w: %s", img, f.Partition, cmd, p, err, msg)
	case strings.Contains(msg, "File not found by ext2_lookup") || strings.Contains(msg, "Ext2 inode is not a directory"):
		// not there, or a file where a directory was expected on the way
		return nil, "", fmt.Errorf("diskimage: %s partition %d: %s: %w", img, f.Partition, p, fs.ErrNotExist)
	}
	return stdout.Bytes(), msg, nil
}

// debugfsScript runs the requests in script, one per line, in one debugfs run on the
// filesystem f of img, opened with mode ("-c" to read, "-w" to write), and returns what
// debugfs said on stderr besides its banner. debugfs exits 0 whatever its requests did:
// a failed request is only a line in that message.
func debugfsScript(ctx context.Context, img string, f FS, mode, script string) (string, error) {
	cmd := exec.CommandContext(ctx, "debugfs", mode, "-f", "-", debugfsSpec(img, f))
	cmd.Stdin = strings.NewReader(script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	return debugfsMessage(stderr.String()), err
}

// debugfsMessage is debugfs's stderr without its banner and catastrophic-mode notice.
func debugfsMessage(stderr string) string {
	var keep []string
	for _, l := range strings.Split(stderr, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "debugfs ") || strings.Contains(l, "catastrophic mode") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "; ")
}

// extStat is what debugfs's stat says of an inode.
type extStat struct {
	mode fs.FileMode
	size int64
}

func (s extStat) IsDir() bool { return s.mode.IsDir() }

var (
	reStatMode = regexp.MustCompile(`(?m)^Inode: \d+\s+Type: \S+\s+Mode:\s+([0-7]+)`)
	reStatType = regexp.MustCompile(`(?m)^Inode: \d+\s+Type: (\S+)`)
	reStatSize = regexp.MustCompile(`(?m)^User:.*\bSize: (\d+)`)
)

var statTypes = map[string]fs.FileMode{"regular": 0, "directory": fs.ModeDir, "symlink": fs.ModeSymlink,
	"FIFO": fs.ModeNamedPipe, "socket": fs.ModeSocket, "character": fs.ModeDevice | fs.ModeCharDevice,
	"block": fs.ModeDevice}

// statDebugfs stats a path with debugfs, returning fs.ErrNotExist when it is absent.
func statDebugfs(img string, f FS, c string) (extStat, error) {
	out, msg, err := debugfs(img, f, debugfsTimeout, "stat", c)
	if err != nil {
		return extStat{}, err
	}
	s := string(out)
	p := "/" + strings.TrimPrefix(c, ".")
	tm, sz := reStatType.FindStringSubmatch(s), reStatSize.FindStringSubmatch(s)
	if tm == nil || sz == nil {
		if msg != "" {
			return extStat{}, fmt.Errorf("diskimage: %s partition %d: stat %s: debugfs: %s", img, f.Partition, p, msg)
		}
		if !strings.Contains(s, "Inode:") {
			return extStat{}, fmt.Errorf("diskimage: %s partition %d: %s: %w", img, f.Partition, p, fs.ErrNotExist)
		}
		return extStat{}, fmt.Errorf("diskimage: %s partition %d: stat %s: debugfs's answer has no type or size: %.200q", img, f.Partition, p, s)
	}
	typ, ok := statTypes[tm[1]]
	if !ok {
		return extStat{}, fmt.Errorf("diskimage: %s partition %d: stat %s: inode of unknown type %q", img, f.Partition, p, tm[1])
	}
	size, err := strconv.ParseInt(sz[1], 10, 64)
	if err != nil || size < 0 {
		return extStat{}, fmt.Errorf("diskimage: %s partition %d: stat %s: size %q", img, f.Partition, p, sz[1])
	}
	st := extStat{mode: typ, size: size}
	if m := reStatMode.FindStringSubmatch(s); m != nil {
		perm, _ := strconv.ParseUint(m[1], 8, 32)
		st.mode |= unixMode(uint32(perm)) &^ fs.ModeType
	}
	return st, nil
}

// catDebugfs reads the regular file c, of size bytes, with debugfs cat (holes and
// unwritten extents read as zeros). Its image region bounds the size: a file larger than
// the filesystem holding it can only be an inode that lies, and is refused.
func catDebugfs(img string, f FS, c string, size int64) ([]byte, error) {
	p := "/" + strings.TrimPrefix(c, ".")
	if size > f.Size*8 && size > 64<<20 {
		return nil, fmt.Errorf("diskimage: %s partition %d: read %s: the inode says %d bytes, far more than the %d-byte filesystem holds", img, f.Partition, p, size, f.Size)
	}
	out, msg, err := debugfs(img, f, debugfsTimeout+time.Duration(size/catRate)*time.Second, "cat", c)
	if err != nil {
		return nil, err
	}
	if int64(len(out)) != size {
		if msg == "" {
			msg = "a damaged inode or extent tree?"
		}
		return nil, fmt.Errorf("diskimage: %s partition %d: read %s: debugfs returned %d bytes of a %d-byte file: %s", img, f.Partition, p, len(out), size, msg)
	}
	return out, nil
}

// listDebugfs lists a directory with `debugfs -R "ls -p"` (/ino/mode/uid/gid/name/size/).
func listDebugfs(img string, f FS, c string) ([]DirEntry, error) {
	p := "/" + strings.TrimPrefix(c, ".")
	st, err := statDebugfs(img, f, c)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("diskimage: %s partition %d: list %s: not a directory", img, f.Partition, p)
	}
	out, msg, err := debugfs(img, f, debugfsTimeout, "ls -p", c)
	if err != nil {
		return nil, err
	}
	if msg != "" {
		// a directory debugfs could not read to the end (a damaged directory block)
		return nil, fmt.Errorf("diskimage: %s partition %d: list %s: debugfs: %s", img, f.Partition, p, msg)
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
	sort.Slice(res, func(i, j int) bool { return res[i].Name < res[j].Name })
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
		// rdump / DIR writes DIR/<basename of />: dump the root's entries, all in one
		// debugfs run (its startup and filesystem open cost more than a small tree).
		ents, err := ReadDir(img, f, "/")
		if err != nil {
			return err
		}
		if strings.ContainsAny(dst, "\"\n") {
			return fmt.Errorf("diskimage: extract from %s: destination %q: debugfs cannot name a path holding a double quote or a newline", img, dst)
		}
		var script strings.Builder
		for _, e := range ents {
			if strings.ContainsAny(e.Name, "\"\n") {
				return fmt.Errorf("diskimage: extract from %s partition %d: /%q: debugfs cannot name a path holding a double quote or a newline", img, f.Partition, e.Name)
			}
			fmt.Fprintf(&script, "rdump \"/%s\" \"%s\"\n", e.Name, dst)
		}
		if script.Len() == 0 {
			return nil
		}
		msg, err := debugfsScript(ctx, img, f, "-c", script.String())
		if ctx.Err() != nil {
			return fmt.Errorf("diskimage: extract from %s: %w", img, ctx.Err())
		}
		if err != nil {
			return fmt.Errorf("diskimage: extract from %s partition %d: debugfs rdump: %w: %s", img, f.Partition, err, msg)
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

// mtoolsTimeout bounds one mtools run that reads no file data.
var mtoolsTimeout = 2 * time.Minute

// fatPath is the mtools name of c in the FAT filesystem f of img ("::/EFI/BOOT"). Names
// holding characters FAT forbids are refused: mtools would take * and ? as wildcards.
func fatPath(img string, f FS, c string) (string, error) {
	if c == "." {
		return "::/", nil
	}
	for _, r := range c {
		if r < 0x20 || strings.ContainsRune("\"*:<>?\\|", r) {
			return "", fmt.Errorf("diskimage: %s partition %d: path %q: FAT names cannot hold %q", img, f.Partition, "/"+c, r)
		}
	}
	return "::/" + c, nil
}

// checkFATRegion validates the filesystem region before mtools is pointed at it.
func checkFATRegion(img string, f FS) error { return checkExtRegion(img, f) }

// mtools runs an mtools command on the FAT filesystem f of img, bounded by timeout. A
// name mtools cannot find is fs.ErrNotExist; a filesystem it cannot read is an error
// naming the image and mtools's reason.
func mtools(img string, f FS, timeout time.Duration, name string, args ...string) ([]byte, error) {
	if _, err := exec.LookPath(name); err != nil {
		return nil, fmt.Errorf("diskimage: %s (mtools) is needed to read FAT filesystems: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	x := exec.CommandContext(ctx, name, append([]string{"-i", fmt.Sprintf("%s@@%d", img, f.Offset)}, args...)...)
	x.Env = append(os.Environ(), mtoolsEnv...)
	var stdout, stderr bytes.Buffer
	x.Stdout, x.Stderr = &stdout, &stderr
	x.WaitDelay = time.Second
	err := x.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("diskimage: %s partition %d: %s %s: stopped after %v (a malformed filesystem?)", img, f.Partition, name, strings.Join(args, " "), timeout)
	}
	msg := strings.Join(strings.Fields(strings.ReplaceAll(stderr.String(), "\n", "; ")), " ")
	if err != nil {
		if strings.Contains(msg, "not found") && strings.Contains(msg, "File \"") {
			return nil, fmt.Errorf("diskimage: %s partition %d: %s: %w", img, f.Partition, args[len(args)-1], fs.ErrNotExist)
		}
		return nil, fmt.Errorf("diskimage: %s partition %d (%s at offset %d): %s %s: %w: %s", img, f.Partition, f.Type, f.Offset, name, strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}

// mdirBare lists mp with `mdir -b -a` (bare full paths, hidden and system files too;
// directories end in "/").
func mdirBare(img string, f FS, mp string) ([]string, error) {
	out, err := mtools(img, f, mtoolsTimeout, "mdir", "-b", "-a", mp)
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimRight(l, "\r"); l != "" {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// fatStat says whether c exists in the FAT filesystem f of img and whether it is a
// directory: mdir lists a directory's entries, and a file as itself.
func fatStat(img string, f FS, c string) (isDir, ok bool, err error) {
	if err := checkFATRegion(img, f); err != nil {
		return false, false, err
	}
	mp, err := fatPath(img, f, c)
	if err != nil {
		return false, false, err
	}
	lines, err := mdirBare(img, f, mp)
	if errors.Is(err, fs.ErrNotExist) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	if c != "." && len(lines) == 1 && strings.EqualFold(lines[0], mp) {
		return false, true, nil
	}
	return true, true, nil
}

// listFAT lists the FAT directory c.
func listFAT(img string, f FS, c, p string) ([]DirEntry, error) {
	isDir, ok, err := fatStat(img, f, c)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("diskimage: %s partition %d: list %s: %w", img, f.Partition, p, fs.ErrNotExist)
	}
	if !isDir {
		return nil, fmt.Errorf("diskimage: %s partition %d: list %s: not a directory", img, f.Partition, p)
	}
	mp, _ := fatPath(img, f, c)
	lines, err := mdirBare(img, f, mp)
	if err != nil {
		return nil, err
	}
	var res []DirEntry
	for _, l := range lines {
		m := fs.FileMode(0o755)
		if strings.HasSuffix(l, "/") {
			m |= fs.ModeDir
			l = strings.TrimSuffix(l, "/")
		}
		name := path.Base(l)
		if name == "." || name == ".." || name == "/" || name == "" {
			continue
		}
		res = append(res, DirEntry{Name: name, Mode: m})
	}
	sort.Slice(res, func(i, j int) bool { return res[i].Name < res[j].Name })
	return res, nil
}

// readFAT reads a file from a FAT filesystem with mtools.
func readFAT(img string, f FS, c, p string) ([]byte, error) {
	isDir, ok, err := fatStat(img, f, c)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("diskimage: %s partition %d: read %s: %w", img, f.Partition, p, fs.ErrNotExist)
	}
	if isDir {
		return nil, fmt.Errorf("diskimage: %s partition %d: read %s: is a directory", img, f.Partition, p)
	}
	mp, _ := fatPath(img, f, c)
	// FAT files are at most 4 GiB; allow for a slow disk.
	return mtools(img, f, mtoolsTimeout+time.Duration(f.Size/catRate)*time.Second, "mcopy", "-n", mp, "-")
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
	if err := checkExtRegion(img, f); err != nil {
		return "", err
	}
	st, err := statDebugfs(img, f, c)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("diskimage: %s partition %d: readlink %s: %w", img, f.Partition, p, fs.ErrNotExist)
		}
		return "", err
	}
	if st.mode&fs.ModeSymlink == 0 {
		return "", fmt.Errorf("diskimage: %s partition %d: readlink %s: not a symbolic link", img, f.Partition, p)
	}
	if st.size > 4096 {
		return "", fmt.Errorf("diskimage: %s partition %d: readlink %s: a %d-byte target is longer than a block (a damaged inode?)", img, f.Partition, p, st.size)
	}
	out, _, err := debugfs(img, f, debugfsTimeout, "stat", c)
	if err != nil {
		return "", err
	}
	s := string(out)
	if i := strings.Index(s, "Fast link dest: \""); i >= 0 {
		rest := s[i+len("Fast link dest: \""):]
		if j := strings.LastIndex(rest[:strings.IndexByte(rest+"\n", '\n')], "\""); j >= 0 {
			return rest[:j], nil
		}
	}
	// a slow symlink keeps its target in a data block
	b, err := catDebugfs(img, f, c, st.size)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
