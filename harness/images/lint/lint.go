// Package lint checks a MAAS custom image before any boot and predicts the failures MAAS,
// curtin and the installed system would show: filetype against content, archive integrity,
// curtin hooks, cloud-init and netplan, a kernel, an EFI loader where MAAS's local boot
// looks, fstab entries that will not resolve, and filesystems the ephemeral can mount.
package lint

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/maasemu/maasemu/harness/compression"
)

// Severities.
const (
	Error   = "error"
	Warning = "warning"
	Info    = "info"
)

// Finding is one problem found in an image.
type Finding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
	// Predicts is the failure MAAS, curtin or the installed OS would show.
	Predicts string `json:"predicts,omitempty"`
}

// Report is the result of linting one image.
type Report struct {
	Image    string    `json:"image"`
	Filetype string    `json:"filetype"` // normalised: tgz, tbz, txz, ddtgz, ...
	Content  string    `json:"content"`  // what the file really is, e.g. "xz-compressed tar of a root filesystem"
	Findings []Finding `json:"findings"`
}

// Errors counts the error-level findings.
func (r *Report) Errors() int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == Error {
			n++
		}
	}
	return n
}

// IDs returns the finding ids of the given severities (all when none given), sorted.
func (r *Report) IDs(severities ...string) []string {
	var out []string
	for _, f := range r.Findings {
		if (len(severities) == 0 || contains(severities, f.Severity)) && !contains(out, f.ID) {
			out = append(out, f.ID)
		}
	}
	sort.Strings(out)
	return out
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func (r *Report) add(id, sev, msg, predicts string) {
	for _, f := range r.Findings {
		if f.ID == id && f.Message == msg {
			return
		}
	}
	r.Findings = append(r.Findings, Finding{ID: id, Severity: sev, Message: msg, Predicts: predicts})
}

// spec is what a filetype must contain.
type spec struct {
	comp string // gzip, bzip2, xz, "" (none); "any" for smtar's auto-detection
	tar  bool   // a tar archive
	disk bool   // a raw disk image (inside the tar when tar)
}

// Filetypes maps every filetype MAAS accepts to its normal form.
var Filetypes = map[string]string{
	"tgz": "tgz", "root-tgz": "tgz", "root.tgz": "tgz",
	"tbz": "tbz", "root-tbz": "tbz", "txz": "txz", "root-txz": "txz",
	"ddtgz": "ddtgz", "root-dd": "ddtgz", "ddtbz": "ddtbz", "root-dd.tar.bz2": "ddtbz",
	"ddtxz": "ddtxz", "root-dd.tar.xz": "ddtxz", "ddtar": "ddtar", "root-dd.tar": "ddtar",
	"ddbz2": "ddbz2", "root-dd.bz2": "ddbz2", "ddgz": "ddgz", "root-dd.gz": "ddgz",
	"ddxz": "ddxz", "root-dd.xz": "ddxz", "ddraw": "ddraw", "root-dd.raw": "ddraw",
}

var specs = map[string]spec{
	"tgz": {"gzip", true, false}, "tbz": {"bzip2", true, false}, "txz": {"xz", true, false},
	"ddtgz": {"gzip", true, true}, "ddtbz": {"bzip2", true, true}, "ddtxz": {"xz", true, true},
	"ddtar": {"", true, true}, "ddgz": {"gzip", false, true}, "ddxz": {"xz", false, true},
	"ddbz2": {"bzip2", false, true}, "ddraw": {"", false, true},
}

// curtin's extractor for each dd filetype (curtin/commands/block_meta.py).
var ddExtractor = map[string]string{
	"ddtgz": "tar -xOzf -", "ddtxz": "tar -xOJf -", "ddtbz": "tar -xOjf -", "ddtar": "smtar -xOf -",
	"ddbz2": "bzcat", "ddgz": "zcat", "ddxz": "xzcat", "ddraw": "dd",
}

// filetypeFor names the filetype for content (compression, tar, disk).
func filetypeFor(comp string, isTar, isDisk bool) string {
	short := map[string]string{"gzip": "gz", "bzip2": "bz2", "xz": "xz", "zstd": "zst"}[comp]
	switch {
	case isTar && isDisk && comp == "":
		return "ddtar"
	case isTar && isDisk:
		return map[string]string{"gzip": "ddtgz", "bzip2": "ddtbz", "xz": "ddtxz"}[comp]
	case isTar:
		return map[string]string{"gzip": "tgz", "bzip2": "tbz", "xz": "txz", "": "tgz"}[comp]
	case isDisk && comp == "":
		return "ddraw"
	case isDisk:
		return "dd" + short
	}
	return ""
}

// Usage errors (exit code 2 in the CLI).
var ErrUsage = errors.New("usage")

// Options tune a lint run.
type Options struct {
	// TempDir holds the sparse spool of a dd image's disk (default os.TempDir()).
	TempDir string
}

// Lint checks the image file at path declared as filetype.
func Lint(ctx context.Context, path, filetype string, o Options) (*Report, error) {
	ft, ok := Filetypes[strings.ToLower(filetype)]
	if !ok {
		names := make([]string, 0, len(specs))
		for k := range specs {
			names = append(names, k)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("%w: filetype %q is not one MAAS accepts (%s)", ErrUsage, filetype, strings.Join(names, ", "))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%w: %s is a directory, not an image file", ErrUsage, path)
	}
	r := &Report{Image: path, Filetype: ft, Findings: []Finding{}}
	want := specs[ft]
	if st.Size() == 0 {
		r.Content = "empty file"
		r.add("empty-image", Error, path+" is empty", "curtin would write or extract nothing: the deployment fails")
		return r, nil
	}
	br := bufio.NewReaderSize(f, 1<<20)
	head, _ := br.Peek(8)
	comp := compression.Sniff(head)
	dec, err := compression.NewReader(comp, br)
	if err != nil {
		r.Content = comp + "-compressed data"
		r.add("archive-corrupt", Error, fmt.Sprintf("the %s stream cannot be opened: %v", comp, err), comp+": stdin: not in "+comp+" format")
		return r, nil
	}
	inner := bufio.NewReaderSize(dec, 1<<20)
	ihead, _ := inner.Peek(1024)
	isTar := len(ihead) >= 262 && bytes.HasPrefix(ihead[257:], []byte("ustar"))
	kind := sniffInner(ihead)
	if comp == "zstd" {
		r.add("unsupported-compression", Error, "the image is zstd-compressed; MAAS filetypes use gzip, bzip2 or xz",
			"curtin's extractors (tar -xOzf/-xOJf/-xOjf, zcat/xzcat/bzcat) cannot read zstd")
	}

	cdesc := map[string]string{"": "uncompressed", "gzip": "gzip-compressed", "bzip2": "bzip2-compressed", "xz": "xz-compressed", "zstd": "zstd-compressed"}[comp]
	var facts *tree
	switch {
	case isTar:
		tf, diskMember, err := scanTar(ctx, inner, o)
		if diskMember != "" {
			defer os.Remove(diskMember)
		}
		if tf != nil && tf.diskInTar {
			r.Content = cdesc + " tar of a raw disk image (" + tf.diskMemberName + ")"
		} else {
			r.Content = cdesc + " tar of a root filesystem"
		}
		if err != nil {
			// an incomplete member list would give false findings: report only the stream
			addStreamError(r, comp, true, err)
		}
		isDisk := tf != nil && tf.diskInTar
		checkFiletype(r, ft, want, comp, true, isDisk)
		if isDisk {
			if diskMember != "" && err == nil {
				lintDisk(ctx, r, diskMember)
			}
		} else if tf != nil && err == nil {
			facts = tf
		}
	case kind == "disk":
		r.Content = cdesc + " raw disk image (" + partitionKind(ihead) + ")"
		spool, err := spoolDisk(inner, o.TempDir)
		if spool != "" {
			defer os.Remove(spool)
		}
		if err != nil {
			addStreamError(r, comp, false, err)
		}
		checkFiletype(r, ft, want, comp, false, true)
		if err == nil {
			lintDisk(ctx, r, spool)
		}
	default:
		// drain to check integrity anyway
		_, err := io.Copy(io.Discard, inner)
		if err != nil {
			addStreamError(r, comp, false, err)
		}
		switch kind {
		case "filesystem":
			r.Content = cdesc + " filesystem image without a partition table"
			r.add("no-partition-table", Error, "the content is a bare filesystem, not a disk with a partition table",
				"curtin writes it over the whole disk: block-meta finds no partitions ('Did not find any filesystem on [...] that contained one of ['curtin', ...]')")
		default:
			r.Content = cdesc + " data that is neither a tar archive nor a disk image"
			pred := "curtin cannot use it"
			if want.tar {
				pred = "tar: This does not look like a tar archive"
			}
			r.add("filetype-mismatch", Error, fmt.Sprintf("filetype %s but the content is %s", ft, r.Content), pred)
		}
	}
	if facts != nil {
		lintTree(r, facts, ft)
	}
	sort.SliceStable(r.Findings, func(i, j int) bool { return sevRank(r.Findings[i].Severity) < sevRank(r.Findings[j].Severity) })
	return r, nil
}

func sevRank(s string) int { return map[string]int{Error: 0, Warning: 1, Info: 2}[s] }

// sniffInner classifies decompressed content: "disk" (MBR/GPT), "filesystem", or "".
func sniffInner(b []byte) string {
	if len(b) >= 520 && string(b[512:520]) == "EFI PART" {
		return "disk"
	}
	if len(b) >= 512 && b[510] == 0x55 && b[511] == 0xaa {
		// an MBR with at least one valid entry (a FAT boot sector also ends in 55AA)
		for i := 0; i < 4; i++ {
			e := b[446+16*i : 462+16*i]
			if (e[0] == 0 || e[0] == 0x80) && e[4] != 0 {
				return "disk"
			}
		}
	}
	if len(b) >= 1082 && b[1080] == 0x53 && b[1081] == 0xef {
		return "filesystem"
	}
	if len(b) >= 4 && string(b[:4]) == "XFSB" {
		return "filesystem"
	}
	return ""
}

func partitionKind(b []byte) string {
	if len(b) >= 520 && string(b[512:520]) == "EFI PART" {
		return "GPT"
	}
	return "MBR"
}

// checkFiletype compares the declared filetype with the content.
func checkFiletype(r *Report, ft string, want spec, comp string, isTar, isDisk bool) {
	actual := filetypeFor(comp, isTar, isDisk)
	fix := ""
	if actual != "" {
		fix = "; upload with --filetype " + actual
	}
	switch {
	case want.disk && !isDisk && isTar:
		r.add("filetype-mismatch", Error, fmt.Sprintf("filetype %s but content is a root filesystem tarball%s", ft, fix),
			"curtin writes the tarball's bytes to the disk: block-meta 'Did not find any filesystem on [...] that contained one of ['curtin', ...]'")
	case !want.disk && isDisk:
		r.add("filetype-mismatch", Error, fmt.Sprintf("filetype %s but content is %s%s", ft, r.Content, fix),
			"curtin extracts it as a root tarball: 'tar: This does not look like a tar archive'")
	case want.tar && !isTar:
		r.add("filetype-mismatch", Error, fmt.Sprintf("filetype %s but content is %s%s", ft, r.Content, fix),
			fmt.Sprintf("curtin will fail with 'tar: This does not look like a tar archive' (it runs `wget ... | %s | dd ...`)", ddExtractor[ft]))
	case !want.tar && isTar && want.disk:
		r.add("filetype-mismatch", Error, fmt.Sprintf("filetype %s but content is %s%s", ft, r.Content, fix),
			"curtin writes the tar archive itself to the disk: block-meta 'Did not find any filesystem on [...] that contained one of ['curtin', ...]'")
	case want.comp != comp:
		if !want.disk || ft == "ddtar" {
			// tgz/tbz/txz and dd-tar go through smtar, which detects the compression
			r.add("filetype-compression", Warning, fmt.Sprintf("filetype %s but content is %s%s", ft, r.Content, fix),
				"curtin's smtar detects the compression, so this deploys, but other tools trust the filetype")
			return
		}
		pred := fmt.Sprintf("curtin runs `%s` on it: ", ddExtractor[ft])
		switch ft {
		case "ddraw":
			pred += "the compressed bytes are written to the disk as they are and nothing boots"
		case "ddgz":
			pred += "'gzip: stdin: not in gzip format'"
		case "ddxz", "ddtxz":
			pred += "'xz: (stdin): File format not recognized'"
		case "ddbz2", "ddtbz":
			pred += "'bzip2: (stdin) is not a bzip2 file.'"
		default:
			pred += "'gzip: stdin: not in gzip format' / 'tar: Child returned status 1'"
		}
		r.add("filetype-mismatch", Error, fmt.Sprintf("filetype %s but content is %s%s", ft, r.Content, fix), pred)
	}
}

func addStreamError(r *Report, comp string, isTar bool, err error) {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "unexpected EOF") {
		pred := "curtin's extraction stops at the end of the data: "
		if isTar {
			pred += "'tar: Unexpected EOF in archive'"
		} else {
			pred += map[string]string{"gzip": "'gzip: stdin: unexpected end of file'", "xz": "'xz: (stdin): Unexpected end of input'", "bzip2": "'bzip2: Compressed file ends unexpectedly'"}[comp]
		}
		r.add("archive-truncated", Error, "the image is truncated: "+err.Error()+" (an upload or copy cut short?)", pred)
		return
	}
	r.add("archive-corrupt", Error, "the image is corrupt: "+err.Error(), "curtin's extraction fails with a "+orDefault(comp, "tar")+" error")
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// tree is what lint learns about a root filesystem: every path's mode, symlink targets, and
// the contents of the few small files it inspects.
type tree struct {
	modes          map[string]os.FileMode
	links          map[string]string
	files          map[string][]byte
	diskInTar      bool
	diskMemberName string
}

func newTree() *tree {
	return &tree{modes: map[string]os.FileMode{}, links: map[string]string{}, files: map[string][]byte{}}
}

// interesting files lint reads (at most 64 KiB each).
var interesting = regexp.MustCompile(`^(etc/fstab|curtin/curtin-hooks|curtin/finalize|etc/os-release|usr/lib/os-release|etc/cloud/cloud\.cfg|etc/cloud/cloud\.cfg\.d/[^/]+)$`)

// scanTar reads a tar stream to the end. A tar whose first regular member is a disk image
// is a dd tar: that member is spooled to a sparse file whose path is returned.
func scanTar(ctx context.Context, r io.Reader, o Options) (*tree, string, error) {
	t := newTree()
	tr := tar.NewReader(r)
	spool := ""
	first := true
	for {
		if err := ctx.Err(); err != nil {
			return t, spool, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return t, spool, nil
		}
		if err != nil {
			return t, spool, err
		}
		name := strings.TrimSuffix(strings.TrimPrefix(path.Clean("/"+h.Name), "/"), "/")
		if h.Typeflag == tar.TypeReg && first {
			first = false
			br := bufio.NewReaderSize(tr, 1<<16)
			peek, _ := br.Peek(1024)
			if sniffInner(peek) == "disk" {
				t.diskInTar, t.diskMemberName = true, h.Name
				spool, err = spoolDisk(br, o.TempDir)
				if err != nil {
					return t, spool, err
				}
				continue
			}
			if err := t.addReg(name, h, br); err != nil {
				return t, spool, err
			}
			continue
		}
		switch h.Typeflag {
		case tar.TypeReg:
			first = false
			if err := t.addReg(name, h, tr); err != nil {
				return t, spool, err
			}
		case tar.TypeSymlink:
			t.modes[name] = os.ModeSymlink | 0o777
			t.links[name] = h.Linkname
		case tar.TypeLink:
			t.modes[name] = os.FileMode(h.Mode & 0o7777)
			target := strings.TrimPrefix(path.Clean("/"+h.Linkname), "/")
			if b, ok := t.files[target]; ok {
				t.files[name] = b
			}
		case tar.TypeDir:
			t.modes[name] = os.ModeDir | os.FileMode(h.Mode&0o7777)
		default:
			t.modes[name] = os.FileMode(h.Mode & 0o7777)
		}
	}
}

func (t *tree) addReg(name string, h *tar.Header, r io.Reader) error {
	t.modes[name] = os.FileMode(h.Mode & 0o7777)
	if interesting.MatchString(name) {
		b, err := io.ReadAll(io.LimitReader(r, 64<<10))
		if err != nil {
			return err
		}
		t.files[name] = b
	}
	// read the rest: this is where a truncated archive shows
	_, err := io.Copy(io.Discard, r)
	return err
}

// spoolDisk copies a disk stream into a sparse temporary file (all-zero blocks become
// holes, so only the data costs space).
func spoolDisk(r io.Reader, dir string) (string, error) {
	f, err := os.CreateTemp(dir, "maasemu-lint-disk-")
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf := make([]byte, 1<<16)
	var off int64
	for {
		n, rerr := r.Read(buf)
		if n > 0 && !allZero(buf[:n]) {
			if _, err := f.WriteAt(buf[:n], off); err != nil {
				return f.Name(), err
			}
		}
		off += int64(n)
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			f.Truncate(off)
			return f.Name(), rerr
		}
	}
	if err := f.Truncate(off); err != nil {
		return f.Name(), err
	}
	return f.Name(), f.Close()
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
