package scenario

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"

	"github.com/maasemu/maasemu/harness/diskimage"
)

// disk MACHINE [-disk N] ptable gpt|msdos | partitions N | fs [k=v]... | file PATH [REGEX] | root
func cmdDisk(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	const usage = "disk MACHINE [-disk N] ptable gpt|msdos | partitions N | fs [type=T] [label=L] [uuid=U] [part=N] | file PATH [REGEX] | ls DIR | root"
	fs := flag.NewFlagSet("disk", flag.ContinueOnError)
	index := fs.Int("disk", -1, "which disk (0 is the first; default: the first, or for file and root every disk)")
	pos := parseArgs(ts, fs, usage, args)
	wantArgs(ts, "disk", usage, pos, 2, -1)
	ms := sc.machine(ts, "disk", pos[0])
	paths := ms.m.Driver().DiskPaths()
	if len(paths) == 0 {
		ts.Fatalf("disk %s: the machine has no disks", pos[0])
	}
	if *index >= len(paths) {
		ts.Fatalf("disk %s: -disk %d: the machine has %d disk(s)", pos[0], *index, len(paths))
	}
	one := paths[0]
	if *index >= 0 {
		one = paths[*index]
		paths = []string{one}
	}
	w := ts.Stdout()
	switch what := pos[1]; what {
	case "ptable":
		wantArgs(ts, "disk ptable", usage, pos, 3, 3)
		want := strings.ToLower(pos[2])
		if want != "gpt" && want != "msdos" {
			ts.Fatalf("disk ptable: %q: want gpt or msdos", pos[2])
		}
		got := "none"
		t, err := diskimage.ReadTable(one)
		switch {
		case errors.Is(err, diskimage.ErrNoTable):
		case err != nil:
			ts.Fatalf("disk %s ptable: %v", pos[0], err)
		default:
			got = strings.ToLower(t.Type)
		}
		fmt.Fprintf(w, "ptable %s\n", got)
		if (got == want) == neg {
			if neg {
				ts.Fatalf("disk %s ptable: is %s, want another", pos[0], got)
			}
			ts.Fatalf("disk %s ptable: want %s, the disk has %s", pos[0], want, got)
		}
	case "partitions":
		wantArgs(ts, "disk partitions", usage, pos, 3, 3)
		want, err := strconv.Atoi(pos[2])
		if err != nil || want < 0 {
			ts.Fatalf("disk partitions: %q: want a count", pos[2])
		}
		got := 0
		t, err := diskimage.ReadTable(one)
		if err != nil && !errors.Is(err, diskimage.ErrNoTable) {
			ts.Fatalf("disk %s partitions: %v", pos[0], err)
		}
		for _, p := range t.Partitions {
			if p.Flag != diskimage.FlagExtended {
				got++
			}
			fmt.Fprintf(w, "partition %d start %d size %d flag %s name %q\n", p.Number, p.Start, p.Size, p.Flag, p.Name)
		}
		if (got == want) == neg {
			ts.Fatalf("disk %s partitions: %d partition(s), want %s%d", pos[0], got, map[bool]string{true: "not ", false: ""}[neg], want)
		}
	case "fs":
		want := map[string]string{}
		for _, kv := range pos[2:] {
			k, v, ok := strings.Cut(kv, "=")
			switch {
			case !ok:
				ts.Fatalf("disk fs: %q: want type=T, label=L, uuid=U or part=N", kv)
			case k != "type" && k != "label" && k != "uuid" && k != "part":
				ts.Fatalf("disk fs: key %q: want type, label, uuid or part", k)
			}
			want[k] = v
		}
		found := false
		for _, p := range paths {
			fss, err := diskimage.Probe(p)
			if err != nil {
				ts.Fatalf("disk %s fs: %v", pos[0], err)
			}
			for _, f := range fss {
				line := fsLine(f)
				fmt.Fprintln(w, line)
				if fsMatches(f, want) {
					found = true
				}
			}
		}
		if found == neg {
			if neg {
				ts.Fatalf("disk %s fs: a filesystem matches %v, want none", pos[0], want)
			}
			ts.Fatalf("disk %s fs: no filesystem matches %v (listed above in stdout)", pos[0], want)
		}
	case "root":
		wantArgs(ts, "disk root", usage, pos, 2, 2)
		img, root, err := rootFS(paths)
		if err != nil {
			if neg {
				return
			}
			ts.Fatalf("disk %s root: %v", pos[0], err)
		}
		if neg {
			ts.Fatalf("disk %s root: found a root filesystem (%s), want none", pos[0], fsLine(root))
		}
		fmt.Fprintf(w, "%s %s\n", filepath.Base(img), fsLine(root))
		ts.Setenv("ROOT_UUID_"+envName(pos[0]), root.UUID)
	case "ls":
		wantArgs(ts, "disk ls", usage, pos, 3, 3)
		img, root, err := rootFS(paths)
		if err != nil {
			ts.Fatalf("disk %s ls %s: %v", pos[0], pos[2], err)
		}
		entries, err := diskimage.ReadDir(img, root, pos[2])
		if err != nil {
			if neg {
				return
			}
			ts.Fatalf("disk %s ls %s: %v", pos[0], pos[2], err)
		}
		if neg {
			ts.Fatalf("disk %s ls %s: the directory exists, want it absent", pos[0], pos[2])
		}
		for _, e := range entries {
			fmt.Fprintln(w, e.Name)
		}
	case "file":
		wantArgs(ts, "disk file", usage, pos, 3, 4)
		var re *regexp.Regexp
		if len(pos) == 4 {
			re = compile(ts, "disk file", pos[3])
		}
		img, root, err := rootFS(paths)
		if err != nil {
			ts.Fatalf("disk %s file %s: %v", pos[0], pos[2], err)
		}
		ok, err := diskimage.Exists(img, root, pos[2])
		if err != nil {
			ts.Fatalf("disk %s file %s: %v", pos[0], pos[2], err)
		}
		if !ok {
			if neg {
				return
			}
			ts.Fatalf("disk %s file %s: no such file on the root filesystem (%s)", pos[0], pos[2], fsLine(root))
		}
		b, err := diskimage.ReadFile(img, root, pos[2])
		if err != nil {
			ts.Fatalf("disk %s file %s: %v", pos[0], pos[2], err)
		}
		w.Write(b)
		if len(b) > 0 && b[len(b)-1] != '\n' {
			fmt.Fprintln(w)
		}
		switch {
		case re == nil && neg:
			ts.Fatalf("disk %s file %s: the file exists, want it absent", pos[0], pos[2])
		case re != nil && re.Match(b) == neg:
			if neg {
				ts.Fatalf("disk %s file %s: matches %q, want no match", pos[0], pos[2], re)
			}
			ts.Fatalf("disk %s file %s: does not match %q", pos[0], pos[2], re)
		}
	default:
		ts.Fatalf("disk: %q: want ptable, partitions, fs, file, ls or root\nusage: %s", what, usage)
	}
}

func fsLine(f diskimage.FS) string {
	return fmt.Sprintf("part=%d type=%s label=%s uuid=%s flag=%s", f.Partition, f.Type, f.Label, f.UUID, f.PartFlag)
}

func fsMatches(f diskimage.FS, want map[string]string) bool {
	for k, v := range want {
		var got string
		switch k {
		case "type":
			got = f.Type
		case "label":
			got = f.Label
		case "uuid":
			got = f.UUID
		case "part":
			got = strconv.Itoa(f.Partition)
		}
		if !strings.EqualFold(got, v) {
			return false
		}
	}
	return true
}

// rootFS finds the installed system's root filesystem among the disk images: the first
// ext filesystem holding etc/fstab or etc/os-release, else the first holding etc/.
func rootFS(paths []string) (string, diskimage.FS, error) {
	type cand struct {
		img string
		fs  diskimage.FS
	}
	var withEtc []cand
	var seen []string
	for _, p := range paths {
		fss, err := diskimage.Probe(p)
		if err != nil {
			return "", diskimage.FS{}, err
		}
		for _, f := range fss {
			seen = append(seen, filepath.Base(p)+" "+fsLine(f))
			if f.Type != diskimage.FSExt2 && f.Type != diskimage.FSExt3 && f.Type != diskimage.FSExt4 {
				continue
			}
			for _, marker := range []string{"etc/fstab", "etc/os-release"} {
				if ok, _ := diskimage.Exists(p, f, marker); ok {
					return p, f, nil
				}
			}
			if ok, _ := diskimage.Exists(p, f, "etc"); ok {
				withEtc = append(withEtc, cand{p, f})
			}
		}
	}
	if len(withEtc) > 0 {
		return withEtc[0].img, withEtc[0].fs, nil
	}
	if len(seen) == 0 {
		seen = []string{"(no filesystems)"}
	}
	return "", diskimage.FS{}, fmt.Errorf("no root filesystem (an ext filesystem with etc/) on the disks; found:\n  %s", strings.Join(seen, "\n  "))
}

// fsck MACHINE [-disk N]
func cmdFsck(sc *script, ts *testscript.TestScript, neg bool, args []string) {
	const usage = "fsck MACHINE [-disk N]"
	fs := flag.NewFlagSet("fsck", flag.ContinueOnError)
	index := fs.Int("disk", -1, "which disk (default: every disk)")
	pos := parseArgs(ts, fs, usage, args)
	wantArgs(ts, "fsck", usage, pos, 1, 1)
	ms := sc.machine(ts, "fsck", pos[0])
	paths := ms.m.Driver().DiskPaths()
	if *index >= len(paths) {
		ts.Fatalf("fsck %s: -disk %d: the machine has %d disk(s)", pos[0], *index, len(paths))
	}
	if *index >= 0 {
		paths = []string{paths[*index]}
	}
	tmp := filepath.Join(sc.work, ".tmp", "fsck")
	ts.Check(os.MkdirAll(tmp, 0o755))
	defer os.RemoveAll(tmp)
	checked, bad := 0, 0
	w := ts.Stdout()
	for _, p := range paths {
		fss, err := diskimage.Probe(p)
		if err != nil {
			ts.Fatalf("fsck %s: %v", pos[0], err)
		}
		for _, f := range fss {
			res, err := fsckOne(sc.ctx, p, f, tmp)
			if err != nil {
				ts.Fatalf("fsck %s: %s: %v", pos[0], fsLine(f), err)
			}
			if res == "" {
				continue
			}
			checked++
			fmt.Fprintf(w, "%s %s: %s\n", filepath.Base(p), fsLine(f), res)
			if !strings.HasPrefix(res, "clean") {
				bad++
			}
		}
	}
	if checked == 0 && !neg {
		ts.Fatalf("fsck %s: no ext or vfat filesystem to check", pos[0])
	}
	if (bad > 0) != neg {
		if neg {
			ts.Fatalf("fsck %s: every filesystem is clean, want errors", pos[0])
		}
		ts.Fatalf("fsck %s: %d of %d filesystem(s) have errors (details in stdout)", pos[0], bad, checked)
	}
}

// fsckOne checks one filesystem read-only: e2fsck -fn or fsck.fat -n on the partition
// extracted (sparsely) into tmp. It returns "" for filesystems it does not check,
// "clean" or "errors: <output>".
func fsckOne(ctx context.Context, img string, f diskimage.FS, tmp string) (string, error) {
	var tool []string
	switch f.Type {
	case diskimage.FSExt2, diskimage.FSExt3, diskimage.FSExt4:
		tool = []string{"e2fsck", "-fn"}
	case diskimage.FSVFAT:
		tool = []string{"fsck.fat", "-n"}
	default:
		return "", nil
	}
	if _, err := exec.LookPath(tool[0]); err != nil {
		return "", fmt.Errorf("%s is not installed (e2fsprogs / dosfstools): %w", tool[0], err)
	}
	part := filepath.Join(tmp, fmt.Sprintf("%s-p%d.img", filepath.Base(img), f.Partition))
	if err := extractSparse(img, f.Offset, f.Size, part); err != nil {
		return "", err
	}
	defer os.Remove(part)
	cmd := exec.CommandContext(ctx, tool[0], append(tool[1:], part)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return "", fmt.Errorf("%s: %w", tool[0], err)
	}
	if err == nil {
		return "clean", nil
	}
	msg := strings.ReplaceAll(string(bytes.TrimSpace(out)), part, "<partition>")
	return fmt.Sprintf("errors (%s exit %d): %s", tool[0], ee.ExitCode(), msg), nil
}

// extractSparse copies [off, off+size) of src into a new sparse file dst, reading only the
// data extents (SEEK_DATA/SEEK_HOLE), so a mostly empty 8 GiB partition costs what it holds.
func extractSparse(src string, off, size int64, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if err := out.Truncate(size); err != nil {
		out.Close()
		return err
	}
	end := off + size
	fd := int(in.Fd())
	pos := off
	buf := make([]byte, 1<<20)
	for pos < end {
		data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if err != nil {
			if errors.Is(err, unix.ENXIO) {
				break // only a hole remains
			}
			// no SEEK_DATA on this filesystem: copy everything
			data = pos
		}
		if data >= end {
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil || hole > end {
			hole = end
		}
		for p := data; p < hole; {
			n := int64(len(buf))
			if hole-p < n {
				n = hole - p
			}
			r, err := in.ReadAt(buf[:n], p)
			if r > 0 {
				if _, werr := out.WriteAt(buf[:r], p-off); werr != nil {
					out.Close()
					return werr
				}
			}
			if err != nil && !errors.Is(err, io.EOF) {
				out.Close()
				return err
			}
			if r == 0 {
				break
			}
			p += int64(r)
		}
		pos = hole
	}
	return out.Close()
}
