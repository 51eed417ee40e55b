package libvirt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// ErrNotInstalled is returned (wrapped) by EnsureDaemons when libvirt is not installed.
var ErrNotInstalled = errors.New("libvirt is not installed")

// VirtlogdSocket is virtlogd's socket; QEMU's file and pty consoles go through it.
const VirtlogdSocket = "/var/run/libvirt/virtlogd-sock"

// daemonStartTimeout bounds waiting for a started daemon's socket.
const daemonStartTimeout = 30 * time.Second

// findDaemon finds a daemon binary in PATH or the sbin directories, which a non-login
// shell's PATH may lack.
func findDaemon(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: no %s in PATH or /usr/sbin (install Debian's libvirt-daemon-system)", ErrNotInstalled, name)
}

// socketAlive reports whether something accepts connections on the unix socket.
func socketAlive(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// EnsureDaemons makes sure virtlogd and libvirtd serve qemu:///system, starting them
// (`virtlogd -d`, `libvirtd -d`) when they are installed and not running, as on hosts
// without systemd. Starting them needs root; daemons already running are enough for
// anyone. The daemons it starts keep running after it returns, as system services do.
// An error wrapping ErrNotInstalled means libvirt is absent.
func EnsureDaemons(ctx context.Context) error {
	libvirtd, err := findDaemon("libvirtd")
	if err != nil {
		return err
	}
	virtlogd, err := findDaemon("virtlogd")
	if err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if err := fixKVMNode(); err != nil {
			return err
		}
	}
	if socketAlive(VirtlogdSocket) && socketAlive(SystemSocket) {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("libvirt daemons: %s or %s is not answering and only root can start them", VirtlogdSocket, SystemSocket)
	}
	if !socketAlive(VirtlogdSocket) {
		if err := startDaemon(ctx, virtlogd, VirtlogdSocket); err != nil {
			return err
		}
	}
	if !socketAlive(SystemSocket) {
		if err := startDaemon(ctx, libvirtd, SystemSocket); err != nil {
			return err
		}
	}
	return nil
}

// fixKVMNode applies Debian's udev rule for /dev/kvm (group kvm, mode 0660) where no
// udev ran. Without it QEMU's user (libvirt-qemu, in group kvm) cannot open /dev/kvm
// while libvirtd's QEMU probe, run as root, could: libvirt 9.0 then finds its cached
// capabilities stale ("KVM was enabled when probing ..., but it is not available now")
// and probes QEMU again on every call, which makes each define take a minute under
// load. A host without a kvm group or without /dev/kvm is left as it is.
func fixKVMNode() error {
	const node = "/dev/kvm"
	st, err := os.Stat(node)
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	g, err := user.LookupGroup("kvm")
	if err != nil {
		return nil
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return nil
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if ok && int(sys.Gid) == gid && st.Mode().Perm()&0o060 == 0o060 {
		return nil
	}
	if err := os.Chown(node, -1, gid); err != nil {
		return fmt.Errorf("giving %s to group kvm (as udev does): %w", node, err)
	}
	if err := os.Chmod(node, st.Mode().Perm()|0o660); err != nil {
		return fmt.Errorf("making %s group read-write (as udev does): %w", node, err)
	}
	return nil
}

// startDaemon runs `bin -d` (which forks into the background and returns) and waits
// for its socket.
func startDaemon(ctx context.Context, bin, socket string) error {
	out, err := exec.CommandContext(ctx, bin, "-d").CombinedOutput()
	if err != nil {
		return fmt.Errorf("starting %s -d: %w: %s", bin, err, out)
	}
	ctx, cancel := context.WithTimeout(ctx, daemonStartTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !socketAlive(socket) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("started %s -d, but %s did not answer: %w", bin, socket, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}
