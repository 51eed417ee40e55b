package diskimage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Snapshot is what a directory tree held when it was taken: for every entry, the
// metadata that changes when the entry is written, replaced, chmod'ed or chown'ed (the
// inode change time moves with all of them).
type Snapshot struct {
	root    string
	entries map[string]entryState
}

type entryState struct {
	stMode       uint32 // st_mode: type and permission bits, as the inode stores them
	uid, gid     uint32
	size         int64
	ino          uint64
	mtime, ctime int64 // nanoseconds
	rdev         uint64
}

// mode is stMode as an fs.FileMode.
func (e entryState) mode() fs.FileMode { return unixMode(e.stMode) }

func stateOf(st *syscall.Stat_t) entryState {
	return entryState{
		stMode: st.Mode, uid: st.Uid, gid: st.Gid, size: st.Size, ino: st.Ino, rdev: st.Rdev,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(),
	}
}

// walkStates returns the state of every entry under root, keyed by its path from root
// ("/etc/fstab"); the root itself is "/".
func walkStates(root string) (map[string]entryState, error) {
	out := map[string]entryState{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("diskimage: %s: no stat information", p)
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		key := "/"
		if rel != "." {
			key += filepath.ToSlash(rel)
		}
		out[key] = stateOf(st)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("diskimage: snapshot of %s: %w", root, err)
	}
	return out, nil
}

// SnapshotTree records the tree under root, for WriteBack.
func SnapshotTree(root string) (*Snapshot, error) {
	e, err := walkStates(root)
	if err != nil {
		return nil, err
	}
	return &Snapshot{root: root, entries: e}, nil
}

// ErrWriteBackUnsupported is returned by WriteBack when a change cannot be expressed to
// debugfs (a name holding a double quote or a newline, a socket); the caller should
// rebuild the filesystem instead.
var ErrWriteBackUnsupported = errors.New("diskimage: the change cannot be written back in place")

// WriteBack writes into the ext2/3/4 filesystem f of img what changed in snap's tree
// since it was taken: entries gone from the tree are removed, new and changed ones are
// written with their mode, owner and modification time. Everything else in the
// filesystem (its features, inode numbers, extended attributes, the files nothing
// touched) stays as it was, as when curtin unmounts the root of a dd image. Hard links the
// install made are written as separate files, and times to the second. A failure names
// the entry and debugfs's reason; the filesystem may then be partly written.
func WriteBack(ctx context.Context, img string, f FS, snap *Snapshot) error {
	if !isExt(f.Type) {
		return fmt.Errorf("%w: %s partition %d is %q, not ext2/3/4", ErrWriteBackUnsupported, img, f.Partition, f.Type)
	}
	if err := checkExtRegion(img, f); err != nil {
		return err
	}
	now, err := walkStates(snap.root)
	if err != nil {
		return err
	}
	script, err := writeBackScript(snap.root, snap.entries, now)
	if err != nil {
		return err
	}
	if script == "" {
		return nil
	}
	if _, err := exec.LookPath("debugfs"); err != nil {
		return fmt.Errorf("diskimage: debugfs (e2fsprogs) is needed to write ext filesystems: %w", err)
	}
	msg, err := debugfsScript(ctx, img, f, "-w", script)
	if ctx.Err() != nil {
		return fmt.Errorf("diskimage: write back to %s partition %d: %w", img, f.Partition, ctx.Err())
	}
	if err != nil || msg != "" {
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("diskimage: write back to %s partition %d (%s at offset %d): debugfs: %s", img, f.Partition, f.Type, f.Offset, msg)
	}
	return nil
}

// writeBackScript is the debugfs requests that turn the tree before into now: removals
// deepest first, then creations and updates shallowest first.
func writeBackScript(root string, before, now map[string]entryState) (string, error) {
	var removed, written, touched []string
	for p, b := range before {
		n, ok := now[p]
		switch {
		case !ok:
			removed = append(removed, p)
		case n.mode().Type() != b.mode().Type() || (n.mode().IsRegular() && n.ino != b.ino):
			removed = append(removed, p)
			written = append(written, p)
		case n.mode().IsDir():
			if n.stMode != b.stMode || n.uid != b.uid || n.gid != b.gid || n.mtime != b.mtime {
				touched = append(touched, p)
			}
		case n != b:
			if !n.mode().IsRegular() && n.ctime != b.ctime && n.size == b.size && n.mtime == b.mtime && n.rdev == b.rdev {
				touched = append(touched, p) // a chmod or chown of a link or node
				continue
			}
			removed = append(removed, p)
			written = append(written, p)
		}
	}
	for p := range now {
		if _, ok := before[p]; !ok {
			written = append(written, p)
		}
	}
	byDepth := func(xs []string, deepest bool) {
		sort.Slice(xs, func(i, j int) bool {
			if di, dj := strings.Count(xs[i], "/"), strings.Count(xs[j], "/"); di != dj {
				return (di > dj) == deepest
			}
			return xs[i] < xs[j]
		})
	}
	byDepth(removed, true)
	byDepth(written, false)
	sort.Strings(touched)

	var b strings.Builder
	for _, p := range append(append(append([]string(nil), removed...), written...), touched...) {
		if strings.ContainsAny(p, "\"\n") {
			return "", fmt.Errorf("%w: %q: debugfs cannot name a path holding a double quote or a newline", ErrWriteBackUnsupported, p)
		}
	}
	if strings.ContainsAny(root, "\"\n") {
		return "", fmt.Errorf("%w: staging directory %q holds a double quote or a newline", ErrWriteBackUnsupported, root)
	}
	for _, p := range removed {
		if before[p].mode().IsDir() {
			fmt.Fprintf(&b, "rmdir \"%s\"\n", p)
		} else {
			fmt.Fprintf(&b, "rm \"%s\"\n", p)
		}
	}
	for _, p := range written {
		n := now[p]
		host := filepath.Join(root, filepath.FromSlash(p))
		// Create in the parent by name: debugfs's mknod (unlike write and mkdir) links
		// its argument into the current directory as given, slashes and all.
		dir, name := path.Split(p)
		fmt.Fprintf(&b, "cd \"%s\"\n", dir)
		switch n.mode().Type() {
		case 0:
			fmt.Fprintf(&b, "write \"%s\" \"%s\"\n", host, name)
		case fs.ModeDir:
			fmt.Fprintf(&b, "mkdir \"%s\"\n", name)
		case fs.ModeSymlink:
			target, err := os.Readlink(host)
			if err != nil {
				return "", fmt.Errorf("diskimage: write back %s: %w", p, err)
			}
			if strings.ContainsAny(target, "\"\n") {
				return "", fmt.Errorf("%w: symlink %s -> %q: debugfs cannot name a target holding a double quote or a newline", ErrWriteBackUnsupported, p, target)
			}
			fmt.Fprintf(&b, "symlink \"%s\" \"%s\"\n", name, target)
		case fs.ModeNamedPipe:
			fmt.Fprintf(&b, "mknod \"%s\" p\n", name)
		case fs.ModeDevice | fs.ModeCharDevice, fs.ModeDevice:
			kind := "b"
			if n.mode()&fs.ModeCharDevice != 0 {
				kind = "c"
			}
			fmt.Fprintf(&b, "mknod \"%s\" %s %d %d\n", name, kind, unix.Major(n.rdev), unix.Minor(n.rdev))
		default:
			return "", fmt.Errorf("%w: %s is a %v", ErrWriteBackUnsupported, p, n.mode().Type())
		}
		setInode(&b, p, n)
	}
	for _, p := range touched {
		setInode(&b, p, now[p])
	}
	return b.String(), nil
}

// setInode writes the requests that give the inode at p the mode, owner and
// modification time of n.
func setInode(b *strings.Builder, p string, n entryState) {
	fmt.Fprintf(b, "sif \"%s\" mode 0%o\n", p, n.stMode)
	fmt.Fprintf(b, "sif \"%s\" uid %d\n", p, n.uid)
	fmt.Fprintf(b, "sif \"%s\" gid %d\n", p, n.gid)
	fmt.Fprintf(b, "sif \"%s\" mtime @%d\n", p, n.mtime/1e9)
}
