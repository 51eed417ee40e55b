package installer

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/maasemu/maasemu/harness/compression"
)

// fetch opens a source URI: http(s) through the install's client, file:// or a path.
// Errors are worded like wget's, which is what curtin's log shows.
func (r *run) fetch(ctx context.Context, uri string) (io.ReadCloser, error) {
	switch {
	case strings.HasPrefix(uri, "http://") || strings.HasPrefix(uri, "https://"):
		hc := r.opts.HTTPClient
		if hc == nil {
			hc = http.DefaultClient
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: Invalid URL: %w", uri, err)
		}
		req.Header.Set("User-Agent", "Wget/1.21.3")
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("wget: unable to fetch %s: %w", uri, err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("%s:\nERROR %d: %s.", uri, resp.StatusCode, http.StatusText(resp.StatusCode))
		}
		return resp.Body, nil
	case strings.HasPrefix(uri, "file://"):
		return os.Open(strings.TrimPrefix(uri, "file://"))
	case strings.Contains(uri, "://"):
		return nil, fmt.Errorf("%s: Unsupported scheme", uri)
	default:
		return os.Open(uri)
	}
}

// sniffCompression names br's compression by its magic number, as curtin's helpers/smtar
// does.
func sniffCompression(br *bufio.Reader) string {
	b, _ := br.Peek(6)
	return compression.Sniff(b)
}

// decompress wraps r with the decoder for kind (a compression name, None = as is), its
// failure worded like the tool curtin would run (zcat, xzcat).
func decompress(r io.Reader, kind string) (io.Reader, error) {
	if kind == compression.Zstd {
		return nil, errors.New("zstd-compressed sources are not supported by maasemu")
	}
	d, err := compression.NewReader(kind, r)
	if err != nil {
		switch kind {
		case compression.Gzip:
			return nil, errors.New("gzip: stdin: not in gzip format")
		case compression.XZ:
			return nil, errors.New("xzcat: (stdin): File format not recognized")
		}
		return nil, err
	}
	return d, nil
}

// ddStream is the `<fetch> | <extractor>` part of curtin's dd pipeline. Like the shell
// pipeline (no pipefail), a failing fetch or extractor does not fail the write: its message
// goes to the log and the stream ends, so the install fails later on finding no root.
type ddStream struct {
	r      io.Reader
	closer io.Closer
	out    io.Writer
	failed bool
}

func (d *ddStream) Read(p []byte) (int, error) {
	if d.failed {
		return 0, io.EOF
	}
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		d.failed = true
		fmt.Fprintln(d.out, err)
		return n, io.EOF
	}
	return n, err
}

func (d *ddStream) Close() error {
	if d.closer != nil {
		return d.closer.Close()
	}
	return nil
}

// openDD opens the dd source as a stream of raw disk bytes.
func (r *run) openDD(ctx context.Context, src Source, out io.Writer) (io.ReadCloser, error) {
	body, err := r.fetch(ctx, src.URI)
	if err != nil {
		fmt.Fprintln(out, err)
		return &ddStream{r: bytes.NewReader(nil), out: out}, nil
	}
	br := bufio.NewReaderSize(body, 1<<20)
	d := &ddStream{closer: body, out: out}
	var rd io.Reader
	switch src.Type {
	case "dd-raw":
		rd = br
	case "dd-gz":
		rd, err = decompress(br, compression.Gzip)
	case "dd-xz":
		rd, err = decompress(br, compression.XZ)
	case "dd-bz2":
		rd, err = decompress(br, compression.Bzip2)
	case "dd-tgz", "dd-txz", "dd-tbz", "dd-tar":
		kind := map[string]string{"dd-tgz": compression.Gzip, "dd-txz": compression.XZ, "dd-tbz": compression.Bzip2, "dd-tar": sniffCompression(br)}[src.Type]
		var z io.Reader
		z, err = decompress(br, kind)
		if err == nil {
			rd = &tarFilesReader{tr: tar.NewReader(z)}
		}
	default:
		body.Close()
		return nil, fmt.Errorf("unknown dd source type '%s'", src.Type)
	}
	if err != nil {
		fmt.Fprintln(out, err)
		if src.Type == "dd-tgz" || src.Type == "dd-txz" || src.Type == "dd-tbz" {
			fmt.Fprintln(out, "tar: Child returned status 1\ntar: Error is not recoverable: exiting now")
		}
		d.r = bytes.NewReader(nil)
		return d, nil
	}
	d.r = rd
	return d, nil
}

// tarFilesReader is `tar -xOf -`: the contents of every regular file, concatenated.
type tarFilesReader struct {
	tr      *tar.Reader
	started bool
	inFile  bool
}

func (t *tarFilesReader) Read(p []byte) (int, error) {
	for {
		if t.inFile {
			n, err := t.tr.Read(p)
			if err == io.EOF {
				t.inFile = false
				if n > 0 {
					return n, nil
				}
				continue
			}
			return n, err
		}
		h, err := t.tr.Next()
		if err == io.EOF {
			if !t.started {
				return 0, errors.New("tar: This does not look like a tar archive\ntar: Exiting with failure status due to previous errors")
			}
			return 0, io.EOF
		}
		if err != nil {
			if !t.started {
				return 0, errors.New("tar: This does not look like a tar archive\ntar: Skipping to next header\ntar: Exiting with failure status due to previous errors")
			}
			return 0, fmt.Errorf("tar: %v\ntar: Exiting with failure status due to previous errors", err)
		}
		t.started = true
		if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeGNUSparse {
			t.inFile = true
		}
	}
}

// extract is `curtin extract`.
func (c *cmdEnv) extract(ctx context.Context, args []string) error {
	var cmdSources []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-t" || a == "--target":
			if i+1 < len(args) {
				c.target = args[i+1]
				i++
			}
		case strings.HasPrefix(a, "--target="):
			c.target = strings.TrimPrefix(a, "--target=")
		case strings.HasPrefix(a, "-"):
		default:
			cmdSources = append(cmdSources, a)
		}
	}
	if c.target == "" {
		return errors.New("Target must be defined or set in environment")
	}
	var sources []Source
	if len(cmdSources) > 0 {
		for _, s := range cmdSources {
			src, err := SanitizeSource(s)
			if err != nil {
				return err
			}
			sources = append(sources, src)
		}
	} else {
		if len(mapOf(c.cfg["sources"])) == 0 {
			return errors.New("'sources' must be on cmdline or in config")
		}
		var err error
		if sources, err = sortedSources(c.cfg); err != nil {
			return err
		}
	}
	for _, src := range sources {
		err := c.withStack(ctx, c.prefix, "acquiring and extracting image from "+src.URI, func() error {
			if strings.HasPrefix(src.Type, "dd-") {
				return nil
			}
			return c.extractSource(ctx, src)
		})
		if err != nil {
			return err
		}
	}
	if wf := mapOf(c.cfg["write_files"]); len(wf) > 0 {
		c.logf("Applying write_files from config.")
		return writeFiles(wf, c.target)
	}
	c.logf("No write_files in config.")
	return nil
}

func (c *cmdEnv) extractSource(ctx context.Context, src Source) error {
	switch {
	case strings.HasPrefix(src.URI, "cp://"):
		return c.copyTree(ctx, strings.TrimPrefix(src.URI, "cp://"))
	case src.Type == "fsimage":
		return c.extractFSImage(ctx, src)
	case src.Type == "fsimage-layered":
		return fmt.Errorf("source type fsimage-layered (%s) is not supported by maasemu", src.URI)
	case src.Type == "tgz" || src.Type == "tbz" || src.Type == "txz":
		return c.extractTar(ctx, src)
	}
	return fmt.Errorf("Unknown source type %s", src.Type)
}

// smtarCommand is what curtin runs for a tarball URL (for error messages).
func smtarCommand(uri, target string) []string {
	return []string{"sh", "-cf", `wget "$1" --progress=dot:mega -O - |smtar -C "$2" --xattrs --xattrs-include=* -Sxpf - --numeric-owner`, "--", uri, target}
}

// extractTar streams a tarball into the target: decompression sniffed like smtar, then
// GNU tar with numeric owners, permissions, xattrs and sparse files.
func (c *cmdEnv) extractTar(ctx context.Context, src Source) error {
	body, err := c.r.fetch(ctx, src.URI)
	if err != nil {
		fmt.Fprintln(c.out, err)
		return &ProcessExecutionError{Cmd: cmdRepr(smtarCommand(src.URI, c.target), ""), ExitCode: 2,
			Stderr: err.Error() + "\ntar: This does not look like a tar archive\ntar: Exiting with failure status due to previous errors"}
	}
	defer body.Close()
	br := bufio.NewReaderSize(body, 1<<20)
	rd, derr := decompress(br, sniffCompression(br))
	if derr != nil {
		return &ProcessExecutionError{Cmd: cmdRepr(smtarCommand(src.URI, c.target), ""), ExitCode: 2, Stderr: derr.Error()}
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "tar", "-C", c.target, "--xattrs", "--xattrs-include=*", "-Sxpf", "-", "--numeric-owner")
	cmd.Stdin = rd
	cmd.Stdout = c.out
	cmd.Stderr = io.MultiWriter(c.out, &stderr)
	setProcessGroup(cmd)
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		code := -1
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		return &ProcessExecutionError{Cmd: cmdRepr(smtarCommand(src.URI, c.target), ""), ExitCode: code, Stderr: strings.TrimSpace(stderr.String()), Reason: reasonIf(code, err)}
	}
	return nil
}

func reasonIf(code int, err error) string {
	if code < 0 {
		return err.Error()
	}
	return ""
}

// copyTree is the cp:// handler (curtin runs rsync -aXHAS --one-file-system DIR/ .): a
// tar pipe with the same preservation.
func (c *cmdEnv) copyTree(ctx context.Context, dir string) error {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("cp:// source %s: not a directory", dir)
	}
	sh := `tar -C "$1" --one-file-system --xattrs --acls -cf - . | tar -C "$2" --xattrs --xattrs-include=* --acls -xpf - --numeric-owner`
	argv := []string{"sh", "-c", sh, "--", dir, c.target}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout = c.out
	cmd.Stderr = io.MultiWriter(c.out, &stderr)
	setProcessGroup(cmd)
	if err := cmd.Run(); err != nil {
		return &ProcessExecutionError{Cmd: cmdRepr([]string{"rsync", "-aXHAS", "--one-file-system", dir + "/", "."}, ""), ExitCode: exitOf(err), Stderr: stderr.String()}
	}
	return nil
}

func exitOf(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// extractFSImage downloads a squashfs and unpacks it into the target (curtin loop-mounts
// it and rsyncs; unsquashfs gives the same tree without a loop device).
func (c *cmdEnv) extractFSImage(ctx context.Context, src Source) error {
	path := src.URI
	if strings.Contains(src.URI, "://") && !strings.HasPrefix(src.URI, "file://") {
		body, err := c.r.fetch(ctx, src.URI)
		if err != nil {
			return err
		}
		f, err := os.CreateTemp(c.env["WORKING_DIR"], "fsimage")
		if err != nil {
			body.Close()
			return err
		}
		_, err = io.Copy(f, body)
		body.Close()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		defer os.Remove(f.Name())
		if err != nil {
			return fmt.Errorf("downloading %s: %w", src.URI, err)
		}
		path = f.Name()
	}
	path = strings.TrimPrefix(path, "file://")
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("fsimage %s: %w", src.URI, err)
	}
	if st.Size() == 0 {
		return fmt.Errorf("fsimage %s: image is empty", src.URI)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "unsquashfs", "-f", "-n", "-d", c.target, path)
	cmd.Stdout = io.Discard
	cmd.Stderr = io.MultiWriter(c.out, &stderr)
	setProcessGroup(cmd)
	if err := cmd.Run(); err != nil {
		return &ProcessExecutionError{Cmd: cmdRepr(cmd.Args, ""), ExitCode: exitOf(err), Stderr: stderr.String()}
	}
	return nil
}

// writeFiles is futil.write_files: each entry's path under base, content, permissions
// (octal string or int, default 0644) and owner (user:group, resolved on the host).
func writeFiles(files map[string]any, base string) error {
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	sortStrings(keys)
	for _, k := range keys {
		info := mapOf(files[k])
		p := strOf(info["path"])
		if p == "" {
			continue
		}
		dst := filepath.Join(base, p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("write_files[%s]: %w", k, err)
		}
		perm := decodePerms(info["permissions"])
		if info["permissions"] == nil && info["perms"] != nil {
			perm = decodePerms(info["perms"])
		}
		content := strOf(info["content"])
		_ = os.Remove(dst)
		if err := os.WriteFile(dst, []byte(content), perm); err != nil {
			return fmt.Errorf("write_files[%s]: %w", k, err)
		}
		if err := os.Chmod(dst, perm); err != nil {
			return err
		}
		if owner := strOf(info["owner"]); owner != "" && owner != "-1:-1" {
			uid, gid := lookupOwner(owner)
			if uid >= 0 || gid >= 0 {
				_ = os.Lchown(dst, uid, gid)
			}
		}
	}
	return nil
}

func decodePerms(v any) os.FileMode {
	switch x := v.(type) {
	case nil:
		return 0o644
	case int:
		return os.FileMode(x)
	case float64:
		return os.FileMode(int(x))
	}
	n, err := strconv.ParseInt(strOf(v), 8, 32)
	if err != nil {
		return 0o644
	}
	return os.FileMode(n)
}

// lookupOwner resolves "user:group" by name on the host, as curtin's chownbyname does;
// only root is known without /etc/passwd parsing.
func lookupOwner(s string) (int, int) {
	u, g, _ := strings.Cut(s, ":")
	id := func(name, file string) int {
		if name == "" || name == "-1" {
			return -1
		}
		if n, err := strconv.Atoi(name); err == nil {
			return n
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return -1
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Split(line, ":")
			if len(f) > 2 && f[0] == name {
				n, _ := strconv.Atoi(f[2])
				return n
			}
		}
		return -1
	}
	return id(u, "/etc/passwd"), id(g, "/etc/group")
}

func sortStrings(xs []string) {
	for i := 1; i < len(xs); i++ {
		for j := i; j > 0 && xs[j] < xs[j-1]; j-- {
			xs[j], xs[j-1] = xs[j-1], xs[j]
		}
	}
}
