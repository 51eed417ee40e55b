package installer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// InTarget runs argv chrooted into target the way curtin's ChrootableTarget does: /dev,
// /proc, /run and /sys bind-mounted (and efivars when booted with UEFI), daemons disabled
// through usr/sbin/policy-rc.d, the host's resolv.conf in place, all undone afterwards. It
// returns the command's exit status. It needs root.
func InTarget(ctx context.Context, target string, argv []string, env map[string]string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if len(argv) == 0 {
		return 0, errors.New("in-target: no command given")
	}
	if os.Geteuid() != 0 {
		return -1, fmt.Errorf("in-target: chroot into %s needs root (running as uid %d)", target, os.Geteuid())
	}
	ct, err := enterChroot(target)
	if err != nil {
		return -1, err
	}
	defer ct.exit()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: target, Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.Dir = "/"
	if env != nil {
		e := copyEnv(env)
		if e["PATH"] == "" {
			e["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
		}
		cmd.Env = envList(e)
	}
	// exec.Command resolved argv[0] on the host PATH; inside the chroot it must be resolved
	// against the target instead.
	cmd.Path = argv[0]
	if filepath.Base(argv[0]) == argv[0] {
		p, err := lookPathIn(target, argv[0])
		if err != nil {
			return -1, &ProcessExecutionError{Cmd: cmdRepr(argv, ""), ExitCode: -1, Reason: err.Error()}
		}
		cmd.Path = p
	}
	cmd.Err = nil
	cmd.Stdin = stdin
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, &ProcessExecutionError{Cmd: cmdRepr(argv, ""), ExitCode: -1, Reason: err.Error()}
	}
	return 0, nil
}

// lookPathIn finds name in the target's standard PATH directories (path inside target).
func lookPathIn(target, name string) (string, error) {
	for _, d := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(d, name)
		st, err := os.Stat(filepath.Join(target, p))
		if err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
		// A symlink may point at an absolute path valid only inside the target.
		if fi, err := os.Lstat(filepath.Join(target, p)); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("[Errno 2] No such file or directory: '%s' (not found in the target's PATH)", name)
}

// inTargetWhich reports whether name exists on the target's PATH.
func inTargetWhich(target, name string) bool {
	_, err := lookPathIn(target, name)
	return err == nil
}

type chrootTarget struct {
	target   string
	umounts  []string
	policy   string
	rconf    string
	rconfBak string
}

const policyRCD = "#!/bin/sh\necho \"All runlevel operations denied by policy\" >&2\nexit 101\n"

func enterChroot(target string) (*chrootTarget, error) {
	ct := &chrootTarget{target: target}
	mounts := []string{"/dev", "/proc", "/run", "/sys"}
	if _, err := os.Stat("/sys/firmware/efi/efivars"); err == nil {
		mounts = append(mounts, "/sys/firmware/efi/efivars")
	}
	for _, m := range mounts {
		tp := filepath.Join(target, m)
		if err := os.MkdirAll(tp, 0o755); err != nil {
			ct.exit()
			return nil, fmt.Errorf("in-target: %w", err)
		}
		flags := uintptr(syscall.MS_BIND)
		if m == "/sys" {
			// Recursive, so what is mounted under /sys (the simulated ephemeral's
			// /sys/firmware, securityfs, ...) is visible in the target too.
			flags |= syscall.MS_REC
		}
		if err := syscall.Mount(m, tp, "", flags, ""); err != nil {
			ct.exit()
			return nil, fmt.Errorf("in-target: bind-mounting %s on %s: %w", m, tp, err)
		}
		ct.umounts = append(ct.umounts, tp)
	}
	if target != "/" {
		p := filepath.Join(target, "usr/sbin/policy-rc.d")
		if _, err := os.Lstat(p); os.IsNotExist(err) {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				if os.WriteFile(p, []byte(policyRCD), 0o755) == nil {
					ct.policy = p
				}
			}
		}
		etc := filepath.Join(target, "etc")
		if st, err := os.Stat(etc); err == nil && st.IsDir() {
			if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
				rc := filepath.Join(etc, "resolv.conf")
				if _, err := os.Lstat(rc); err == nil {
					bak := filepath.Join(etc, ".resolv.conf.curtin")
					if os.Rename(rc, bak) == nil {
						ct.rconfBak = bak
					}
				}
				if os.WriteFile(rc, b, 0o644) == nil {
					ct.rconf = rc
				}
			}
		}
	}
	return ct, nil
}

func (ct *chrootTarget) exit() {
	if ct.policy != "" {
		os.Remove(ct.policy)
	}
	if ct.rconf != "" {
		os.Remove(ct.rconf)
		if ct.rconfBak != "" {
			os.Rename(ct.rconfBak, ct.rconf)
		}
	}
	for i := len(ct.umounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(ct.umounts[i], 0); err != nil {
			_ = syscall.Unmount(ct.umounts[i], syscall.MNT_DETACH)
		}
	}
}
