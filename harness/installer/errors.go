package installer

import (
	"archive/tar"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ProcessExecutionError is curtin's util.ProcessExecutionError; its message is curtin's.
type ProcessExecutionError struct {
	Description string
	Cmd         string // Python repr of the command
	ExitCode    int    // -1 when the command did not run
	Reason      string
	Stdout      string
	Stderr      string
}

func (e *ProcessExecutionError) Error() string {
	desc := e.Description
	if desc == "" {
		desc = "Unexpected error while running command."
	}
	code := fmt.Sprint(e.ExitCode)
	if e.ExitCode < 0 {
		code = "-"
	}
	reason := e.Reason
	if reason == "" {
		reason = "-"
	}
	indent := func(s string) string {
		if s == "" {
			return "''"
		}
		return strings.ReplaceAll(s, "\n", "\n"+strings.Repeat(" ", 8))
	}
	return fmt.Sprintf("%s\nCommand: %s\nExit code: %s\nReason: %s\nStdout: %s\nStderr: %s",
		desc, e.Cmd, code, reason, indent(e.Stdout), indent(e.Stderr))
}

// cmdRepr is how Python prints the command: a list repr, or the shell string.
func cmdRepr(argv []string, shell string) string {
	if shell != "" {
		return shell
	}
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = pyStr(a)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// pyStr is Python's repr of a str (single quotes unless the string has one).
func pyStr(s string) string {
	if strings.Contains(s, "'") && !strings.Contains(s, `"`) {
		return `"` + s + `"`
	}
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
}

// setProcessGroup puts cmd in its own process group and kills the group on cancel, so
// that nothing a command started outlives a cancelled install.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 5 * time.Second
}

// redactKeys are config values collect_logs redacts (MAAS OAuth values).
var redactKeys = map[string]bool{"consumer_key": true, "token_key": true, "token_secret": true, "consumer_secret": true}

func redact(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if redactKeys[k] {
				out[k] = "<REDACTED>"
				continue
			}
			out[k] = redact(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redact(e)
		}
		return out
	case string:
		if strings.Contains(x, "oauth_token_secret=") || strings.Contains(x, "maas-metadata-credentials") {
			return "<REDACTED>"
		}
	}
	return v
}

// createErrorTarfile is collect_logs.create_log_tarfile: curtin-logs-<date>/ with the
// install log, the redacted config and some system information.
func createErrorTarfile(path, logPath string, cfg map[string]any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	now := time.Now().UTC()
	dir := "curtin-logs-" + now.Format("2006-01-02-15-04") + "/"
	add := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: dir + name, Mode: 0o644, Size: int64(len(b)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: dir, Mode: 0o755, ModTime: now, Typeflag: tar.TypeDir}); err != nil {
		return err
	}
	if b, err := os.ReadFile(logPath); err == nil {
		if err := add(filepath.Base(logPath), b); err != nil {
			return err
		}
	}
	if y, err := DumpYAML(redact(cfg)); err == nil {
		if err := add("curtin-config", []byte(y)); err != nil {
			return err
		}
	}
	var info strings.Builder
	fmt.Fprintf(&info, "curtin version: %s\n", VersionString)
	for _, p := range []string{"/proc/cmdline", "/proc/partitions", "/proc/mounts"} {
		if b, err := os.ReadFile(p); err == nil {
			fmt.Fprintf(&info, "== %s ==\n%s", p, b)
		}
	}
	if err := add("sysinfo", []byte(info.String())); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}
