package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/maasemu/maasemu/harness/libvirt"
)

// Conditions are the scenario conditions besides testscript's own, with what they test.
var Conditions = map[string]string{
	"libvirt": "libvirt's daemons run or can be started here, and QEMU is installed",
	"kvm":     "KVM works here (the libvirt driver's cached probe verdict, else /dev/kvm creates a VM)",
	"root":    "the scenario runs as root",
	"uefi":    "OVMF (UEFI firmware for VMs) is installed",
	"sim":     "simulated machines can run: root, or unprivileged user namespaces",
	"long":    "the run has time for VM deployments: no deadline, or at least 30 minutes left (go test -timeout 40m; maasemu run)",
}

// condition answers the scenario conditions, each probed once per run.
func (s *suite) condition(cond string) (bool, error) {
	probe, ok := map[string]func() (bool, error){
		"libvirt": s.condLibvirt,
		"kvm":     condKVM,
		"root":    func() (bool, error) { return os.Geteuid() == 0, nil },
		"uefi":    condUEFI,
		"sim":     condSim,
		"long":    s.condLong,
	}[cond]
	if !ok {
		return false, fmt.Errorf("unknown condition %q (scenario conditions: libvirt, kvm, root, uefi, sim, long)", cond)
	}
	s.condMu.Lock()
	defer s.condMu.Unlock()
	if r, ok := s.condCache[cond]; ok {
		return r.ok, r.err
	}
	v, err := probe()
	s.condCache[cond] = condResult{v, err}
	return v, err
}

// condLong: VM scenarios take minutes each (2-3 under TCG); they need a deadline far
// enough away, judged once, when the first script asks.
func (s *suite) condLong() (bool, error) {
	return s.o.Deadline.IsZero() || time.Until(s.o.Deadline) >= 30*time.Minute, nil
}

func (s *suite) condLibvirt() (bool, error) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ensureLibvirt(ctx); err != nil {
		s.log.Info("scenario: [libvirt] is false", "reason", err)
		return false, nil
	}
	return true, nil
}

// condKVM trusts the libvirt driver's probe verdict when there is one (it boots a guest
// to find out; an openable /dev/kvm is not proof); without one it asks the kernel for a VM.
func condKVM() (bool, error) {
	b, err := os.ReadFile(filepath.Join(libvirt.CacheRoot(), "libvirt", "accel.json"))
	if err == nil {
		var verdicts map[string]struct {
			Accel string `json:"accel"`
		}
		if json.Unmarshal(b, &verdicts) == nil && len(verdicts) > 0 {
			for _, v := range verdicts {
				if v.Accel != "kvm" {
					return false, nil
				}
			}
			return true, nil
		}
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false, nil
	}
	defer f.Close()
	const kvmGetAPIVersion, kvmCreateVM = 0xAE00, 0xAE01
	v, err := unix.IoctlRetInt(int(f.Fd()), kvmGetAPIVersion)
	if err != nil || v != 12 {
		return false, nil
	}
	vm, err := unix.IoctlRetInt(int(f.Fd()), kvmCreateVM)
	if err != nil {
		return false, nil
	}
	unix.Close(vm)
	return true, nil
}

func condUEFI() (bool, error) {
	_, err := libvirt.FindUEFIFirmware()
	return err == nil, nil
}

// condSim: sims sandbox their ephemeral in a mount namespace; without root that takes a
// user namespace, which the kernel may refuse to unprivileged users.
func condSim() (bool, error) {
	if os.Geteuid() == 0 {
		return true, nil
	}
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}}
	return cmd.Run() == nil, nil
}
