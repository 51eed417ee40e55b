package installer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/maasemu/maasemu/harness/installer/storage"
)

// cmdEnv is what one in-process `curtin <subcommand>` sees: the environment the stage
// gave it, its report stack prefix, and the config loaded from $CONFIG.
type cmdEnv struct {
	r      *run
	env    map[string]string
	out    io.Writer
	prefix string
	cfg    map[string]any
	target string
}

// exitCode is a subcommand's explicit exit status (in-target passes its child's through).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// curtinMain runs `curtin ARGS...` in-process the way curtin/commands/main.py does: a
// "cmd-<sub>" event stack under $CURTIN_REPORTSTACK, exceptions printed and exit 3.
func (r *run) curtinMain(ctx context.Context, env map[string]string, args []string, out io.Writer) int {
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		switch args[i] {
		case "-c", "--config", "--set":
			i++
		}
		i++
	}
	if i >= len(args) {
		fmt.Fprintln(out, "usage: curtin [-h] [--showtrace] [--verbose] [--log-file LOG_FILE] [--install-deps] [--set key=val] {subcommand} ...")
		return 1
	}
	sub, rest := args[i], args[i+1:]
	prefix := strings.TrimPrefix(env["CURTIN_REPORTSTACK"]+"/cmd-"+sub, "/")
	env = copyEnv(env)
	env["CURTIN_REPORTSTACK"] = prefix
	st := newStack(r.reporter, r.now, nil, prefix, "curtin command "+sub, "DEBUG")
	st.enter(ctx)
	c := &cmdEnv{r: r, env: env, out: out, prefix: prefix, target: env["TARGET_MOUNT_POINT"]}
	err := c.loadConfig()
	if err == nil {
		switch sub {
		case "block-meta":
			err = c.blockMeta(ctx, rest)
		case "net-meta":
			err = c.netMeta(ctx, rest)
		case "extract":
			err = c.extract(ctx, rest)
		case "curthooks":
			err = c.curthooks(ctx, rest)
		case "hook":
			err = c.hook(ctx, rest)
		case "in-target":
			err = c.inTarget(ctx, rest)
		default:
			fmt.Fprintf(out, "curtin: maasemu implements the subcommands block-meta, net-meta, extract, curthooks, hook and in-target; not %q\n", sub)
			err = exitCode(2)
		}
	}
	code := 0
	var ec exitCode
	switch {
	case err == nil:
	case errors.As(err, &ec):
		code = int(ec)
	default:
		fmt.Fprintf(out, "%s\n", err)
		code = 3
	}
	st.exit(ctx, code != 0)
	return code
}

// loadConfig is config.load_command_config: the JSON (or YAML) at $CONFIG.
func (c *cmdEnv) loadConfig() error {
	p := c.env["CONFIG"]
	if p == "" {
		c.cfg = map[string]any{}
		return nil
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("reading CONFIG %s: %w", p, err)
	}
	var m map[string]any
	if jerr := json.Unmarshal(b, &m); jerr != nil {
		m, err = ParseConfig(p, b)
		if err != nil {
			return err
		}
	}
	c.cfg = m
	return nil
}

func (c *cmdEnv) logf(format string, args ...any) {
	fmt.Fprintf(c.out, format+"\n", args...)
}

// itemStack is a ReportEventStack named after the command's prefix (no parent), as
// block-meta, extract and curthooks create them.
func (c *cmdEnv) itemStack(name, desc string) *reportStack {
	return newStack(c.r.reporter, c.r.now, nil, name, desc, "INFO")
}

// withStack runs fn inside an INFO event stack.
func (c *cmdEnv) withStack(ctx context.Context, name, desc string, fn func() error) error {
	st := c.itemStack(name, desc)
	st.enter(ctx)
	err := fn()
	st.exit(ctx, err != nil)
	return err
}

func (c *cmdEnv) storageConfig() (*storage.Config, error) {
	s, ok := c.cfg["storage"]
	if !ok || s == nil {
		return nil, nil
	}
	return storage.Parse(s)
}

// blockMeta is `curtin block-meta MODE`.
func (c *cmdEnv) blockMeta(ctx context.Context, args []string) error {
	mode := "simple"
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--target" || a == "-t":
			if i+1 < len(args) {
				c.target = args[i+1]
				i++
			}
		case strings.HasPrefix(a, "--target="):
			c.target = strings.TrimPrefix(a, "--target=")
		case strings.HasPrefix(a, "-"):
		default:
			mode = a
		}
	}
	sc, err := c.storageConfig()
	if err != nil {
		return err
	}
	be := c.r.opts.Backend
	if sc != nil && len(sc.Disks()) > 0 {
		if err := c.withStack(ctx, c.prefix+"/clear-holders", "removing previous storage devices", func() error {
			return be.ClearHolders(ctx, sc, c.out)
		}); err != nil {
			return err
		}
	}
	if dd := ddImages(c.cfg); len(dd) > 0 {
		c.logf("blockmeta: detected dd-images, using mode=simple")
		return c.metaSimpleDD(ctx, sc, dd[0])
	}
	if sc != nil {
		c.logf("blockmeta: detected storage config, using mode=custom")
		return c.metaCustom(ctx, sc)
	}
	if mode == "custom" {
		return errors.New("storage configuration is required by mode 'custom' but not provided in the config file")
	}
	return fmt.Errorf("block-meta %s without a dd image and without a storage config: maasemu needs a storage config (MAAS always sends one)", mode)
}

// metaSimpleDD streams the image onto the disk (block_meta.write_image_to_disk).
func (c *cmdEnv) metaSimpleDD(ctx context.Context, sc *storage.Config, src Source) error {
	if c.target == "" {
		return exitCode(2)
	}
	c.logf("writing image to disk %v", map[string]string{"type": src.Type, "uri": src.URI})
	rc, err := c.r.openDD(ctx, src, c.out)
	if err != nil {
		return err
	}
	defer rc.Close()
	werr := c.r.opts.Backend.WriteImage(ctx, sc, rc, c.target, c.out)
	var full *storage.DiskFullError
	if errors.As(werr, &full) {
		return &ProcessExecutionError{Cmd: cmdRepr(ddCommand(src, full.Device), ""), ExitCode: 1,
			Stderr: fmt.Sprintf("dd: error writing '%s': No space left on device", full.Device)}
	}
	return werr
}

// ddCommand is the sh -c command curtin runs for a dd source.
func ddCommand(src Source, dev string) []string {
	extract := map[string]string{"dd-tgz": "| tar -xOzf -", "dd-txz": "| tar -xOJf -", "dd-tbz": "| tar -xOjf -",
		"dd-tar": "| smtar -xOf -", "dd-bz2": "| bzcat", "dd-gz": "| zcat", "dd-xz": "| xzcat", "dd-raw": ""}[src.Type]
	uri := src.URI
	fetch := `wget "$1" --progress=dot:mega -O - `
	if strings.HasPrefix(uri, "file://") {
		uri = strings.TrimPrefix(uri, "file://")
		fetch = `cat "$1"`
	}
	return []string{"sh", "-c", fetch + extract + ` | dd bs=4M of="$2"`, "--", uri, dev}
}

// unsupportedTypes are storage types curtin has and maasemu does not build.
var unsupportedTypes = map[string]bool{"raid": true, "bcache": true, "dm_crypt": true, "zfs": true, "zpool": true,
	"dasd": true, "nvme_controller": true, "device": true, "image": true}

// metaCustom is block_meta.meta_custom.
func (c *cmdEnv) metaCustom(ctx context.Context, sc *storage.Config) error {
	be := c.r.opts.Backend
	fstabPath := c.env["OUTPUT_FSTAB"]
	for _, it := range sc.Items {
		switch it.Type {
		case "disk", "partition", "format", "mount", "lvm_volgroup", "lvm_partition":
		default:
			if unsupportedTypes[it.Type] {
				return fmt.Errorf("storage entry %q: type '%s' is not supported by maasemu", it.ID, it.Type)
			}
			return fmt.Errorf("unknown command type '%s'", it.Type)
		}
		err := c.withStack(ctx, c.prefix, fmt.Sprintf("configuring %s: %s", it.Type, it.ID), func() error {
			var fd storage.FstabData
			if it.Type == "mount" {
				var err error
				if fd, err = sc.MountData(it); err != nil {
					return err
				}
			}
			ap, err := be.Apply(ctx, sc, it, c.target, c.out)
			if err != nil {
				return err
			}
			if it.Type != "mount" || fstabPath == "" {
				return nil
			}
			fd.Device = ap.Device
			line, err := storage.FstabLine(fd, ap.Spec)
			if err != nil {
				return err
			}
			f, err := os.OpenFile(fstabPath, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
			if err != nil {
				return err
			}
			_, err = f.WriteString(line)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return err
		})
		if err != nil {
			c.logf("An error occurred handling '%s': %s - %s", it.ID, pyTypeName(err), err)
			return err
		}
	}
	if p := strOf(mapOf(c.cfg["storage"])["device_map_path"]); p != "" {
		m := map[string]string{}
		for _, it := range sc.Items {
			if it.Type == "disk" || it.Type == "partition" {
				if d, err := be.DevicePath(ctx, sc, it.ID); err == nil {
					m[it.ID] = d
				}
			}
		}
		b, _ := json.Marshal(m)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func pyTypeName(err error) string {
	var pe *ProcessExecutionError
	if errors.As(err, &pe) {
		return "ProcessExecutionError"
	}
	return "ValueError"
}

// netMeta is `curtin net-meta MODE`.
func (c *cmdEnv) netMeta(ctx context.Context, args []string) error {
	mode := "auto"
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			mode = a
		}
	}
	ran, err := c.runHookIfExists(ctx, "network-config")
	if err != nil || ran {
		return err
	}
	if mode == "disabled" {
		return nil
	}
	if c.cfg["network"] != nil {
		mode = "custom"
	}
	out := c.env["OUTPUT_NETWORK_CONFIG"]
	var content string
	switch mode {
	case "custom":
		nc := c.cfg["network"]
		if nc == nil || (mapOf(nc) != nil && len(mapOf(nc)) == 0) {
			return fmt.Errorf("network configuration is required by mode '%s' but not provided in the config file", "custom")
		}
		s, err := DumpYAML(map[string]any{"network": nc})
		if err != nil {
			return err
		}
		content = s
	case "auto", "dhcp":
		eni := filepath.Join(c.target, "etc/network/interfaces")
		if st, err := os.Stat(eni); mode == "auto" && err == nil && st.Mode().IsRegular() {
			c.logf("net-meta mode is 'copy', static network interfaces files can be brittle.")
			b, err := os.ReadFile(eni)
			if err != nil {
				return err
			}
			return os.WriteFile(c.env["OUTPUT_INTERFACES"], b, 0o644)
		}
		s, err := DumpYAML(map[string]any{"network": map[string]any{"version": 1, "config": connectedDHCP()}})
		if err != nil {
			return err
		}
		content = s
	default:
		return fmt.Errorf("Unexpected network config mode '%s'.", mode)
	}
	if out == "" {
		return fmt.Errorf("No target given for mode = '%s'. Nowhere to write content: %s", mode, content)
	}
	c.logf("writing to file %s with network config", out)
	return os.WriteFile(out, []byte(content), 0o644)
}

// connectedDHCP is interfaces_basic_dhcp over the up physical NICs of this machine.
func connectedDHCP() []any {
	var cfg []any
	ents, _ := os.ReadDir("/sys/class/net")
	for _, e := range ents {
		n := e.Name()
		if _, err := os.Stat(filepath.Join("/sys/class/net", n, "device")); err != nil {
			continue
		}
		op, _ := os.ReadFile(filepath.Join("/sys/class/net", n, "operstate"))
		if strings.TrimSpace(string(op)) != "up" {
			continue
		}
		mac, _ := os.ReadFile(filepath.Join("/sys/class/net", n, "address"))
		cfg = append(cfg, map[string]any{"type": "physical", "name": n, "mac_address": strings.TrimSpace(string(mac)), "subnets": []any{map[string]any{"type": "dhcp4"}}})
	}
	return cfg
}

// runHookIfExists is util.run_hook_if_exists: <target>/curtin/<hook>, not chrooted.
func (c *cmdEnv) runHookIfExists(ctx context.Context, hook string) (bool, error) {
	p := filepath.Join(c.target, "curtin", hook)
	st, err := os.Stat(p)
	if err != nil || !st.Mode().IsRegular() {
		return false, nil
	}
	c.logf("running %s", p)
	c.r.hooksRan = append(c.r.hooksRan, hook)
	var buf strings.Builder
	w := io.MultiWriter(c.out, &tailWriter{b: &buf, max: 64 << 10})
	rc, err := c.r.execCommand(ctx, c.env, []string{p}, "", w)
	if err != nil {
		reason := err.Error()
		if errors.Is(err, os.ErrPermission) || strings.Contains(reason, "permission denied") {
			reason = fmt.Sprintf("[Errno 13] Permission denied: '%s'", p)
		}
		return true, &ProcessExecutionError{Cmd: cmdRepr([]string{p}, ""), Reason: reason, ExitCode: -1}
	}
	if rc != 0 {
		out := buf.String()
		if strings.Contains(out, "No module named 'curtin'") || strings.Contains(out, "No module named curtin") {
			if !c.r.curtinAvailable() {
				c.r.diag = fmt.Sprintf("maasemu: the image's /curtin/%s imports the curtin Python package (packer-maas style hooks); MAAS packs its own curtin for them. A real curtin is needed: run with --curtin DIR (a canonical/curtin checkout) or install python3-curtin.", hook)
			}
		}
		return true, &ProcessExecutionError{Cmd: cmdRepr([]string{p}, ""), ExitCode: rc}
	}
	return true, nil
}

// tailWriter keeps the last max bytes written.
type tailWriter struct {
	b   *strings.Builder
	max int
}

func (t *tailWriter) Write(p []byte) (int, error) {
	if t.b.Len()+len(p) > t.max {
		s := t.b.String() + string(p)
		t.b.Reset()
		t.b.WriteString(s[len(s)-t.max:])
		return len(p), nil
	}
	t.b.Write(p)
	return len(p), nil
}

// hook is `curtin hook`: run <target>/curtin/finalize if present.
func (c *cmdEnv) hook(ctx context.Context, args []string) error {
	for i := 0; i < len(args); i++ {
		if (args[i] == "-t" || args[i] == "--target") && i+1 < len(args) {
			c.target = args[i+1]
			i++
		}
	}
	if c.target == "" {
		fmt.Fprintln(c.out, "Unable to find target.  Use --target or set TARGET_MOUNT_POINT")
		return exitCode(2)
	}
	_, err := c.runHookIfExists(ctx, "finalize")
	return err
}

// inTarget is `curtin in-target [-a] [--capture] [-t TARGET] -- CMD...`.
func (c *cmdEnv) inTarget(ctx context.Context, args []string) error {
	target, argv, err := parseInTargetArgs(args, c.target)
	if err != nil {
		fmt.Fprintln(c.out, err)
		return exitCode(2)
	}
	if target == "" {
		fmt.Fprintln(c.out, "Unable to find target.  Use --target or set TARGET_MOUNT_POINT")
		return exitCode(2)
	}
	rc, err := InTarget(ctx, target, argv, c.env, nil, c.out, c.out)
	if err != nil {
		return err
	}
	if rc != 0 {
		return exitCode(rc)
	}
	return nil
}

// parseInTargetArgs parses in-target's options; the command follows "--" or the first
// non-option.
func parseInTargetArgs(args []string, target string) (string, []string, error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return target, args[i+1:], nil
		case a == "-t" || a == "--target":
			if i+1 >= len(args) {
				return "", nil, errors.New("curtin in-target: error: argument -t/--target: expected one argument")
			}
			target = args[i+1]
			i++
		case strings.HasPrefix(a, "--target="):
			target = strings.TrimPrefix(a, "--target=")
		case a == "-a" || a == "--allow-daemons" || a == "-i" || a == "--interactive" || a == "--capture":
		case strings.HasPrefix(a, "-"):
			return "", nil, fmt.Errorf("curtin in-target: error: unrecognized arguments: %s", a)
		default:
			return target, args[i:], nil
		}
	}
	return target, nil, nil
}
