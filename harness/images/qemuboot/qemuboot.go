// Package qemuboot boots a disk image or a kernel in QEMU under TCG and follows its serial
// console, so that tests can prove that images and ephemerals really boot.
package qemuboot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/maasemu/maasemu/trace"
)

// OVMF firmware files from Debian's ovmf package.
var (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// Config describes one boot.
type Config struct {
	Firmware string // "bios" (SeaBIOS, the default) or "uefi" (OVMF)
	Disk     string // raw disk image, attached as virtio (may be empty for kernel boots)
	// DiskSnapshot makes the disk read-only to the host (-snapshot semantics for the drive).
	DiskSnapshot bool
	Kernel       string // direct kernel boot when not empty
	Initrd       string
	Append       string
	MemoryMiB    int    // default 1024
	NetUser      bool   // a virtio NIC on QEMU user networking (guest 10.0.2.15, host 10.0.2.2)
	MAC          string // NIC MAC when NetUser; default 52:54:00:12:34:56
	Extra        []string
	// WorkDir holds the OVMF variable store copy; default a temporary directory.
	WorkDir string
	// Sink receives every console line as a console.line event (nil: none).
	Sink trace.Sink
	// Machine names the machine in those events.
	Machine string
}

// Result is what a boot printed and how long it took.
type Result struct {
	Lines    []string
	Matched  string        // the line that stopped the boot, if any
	Duration time.Duration // from QEMU start to the match or exit
	Args     []string
}

// Available reports why QEMU boots cannot run here, or "" when they can.
func Available(firmware string) string {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return "needs qemu-system-x86_64 (apt-get install qemu-system-x86)"
	}
	if firmware == "uefi" {
		for _, f := range []string{OVMFCode, OVMFVars} {
			if _, err := os.Stat(f); err != nil {
				return "needs " + f + " (apt-get install ovmf)"
			}
		}
	}
	return ""
}

// Args returns the QEMU command line for c.
func (c Config) Args(varsCopy string) []string {
	mem := c.MemoryMiB
	if mem == 0 {
		mem = 1024
	}
	args := []string{"-accel", "tcg", "-machine", "pc", "-m", fmt.Sprint(mem), "-smp", "1",
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot", "-nodefaults"}
	if c.Firmware == "uefi" {
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+qesc(OVMFCode),
			"-drive", "if=pflash,format=raw,unit=1,file="+qesc(varsCopy))
	}
	if c.Disk != "" {
		d := "file=" + qesc(c.Disk) + ",format=raw,if=virtio"
		if c.DiskSnapshot {
			d += ",snapshot=on"
		}
		args = append(args, "-drive", d)
	}
	if c.Kernel != "" {
		args = append(args, "-kernel", c.Kernel)
		if c.Initrd != "" {
			args = append(args, "-initrd", c.Initrd)
		}
		if c.Append != "" {
			args = append(args, "-append", c.Append)
		}
	}
	if c.NetUser {
		mac := c.MAC
		if mac == "" {
			mac = "52:54:00:12:34:56"
		}
		args = append(args, "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,mac="+mac)
	} else {
		args = append(args, "-nic", "none")
	}
	return append(args, c.Extra...)
}

// Run boots c and calls stop for every console line (carriage returns and escape
// sequences removed); when stop returns true QEMU is killed and Run returns. Run also
// returns when QEMU exits or ctx ends (then with ctx's error).
func Run(ctx context.Context, c Config, stop func(line string) bool) (Result, error) {
	if why := Available(c.Firmware); why != "" {
		return Result{}, errors.New("qemuboot: " + why)
	}
	work := c.WorkDir
	if work == "" {
		d, err := os.MkdirTemp("", "qemuboot-")
		if err != nil {
			return Result{}, err
		}
		defer os.RemoveAll(d)
		work = d
	}
	vars := filepath.Join(work, "OVMF_VARS.fd")
	if c.Firmware == "uefi" {
		b, err := os.ReadFile(OVMFVars)
		if err != nil {
			return Result{}, fmt.Errorf("qemuboot: %w", err)
		}
		if err := os.WriteFile(vars, b, 0o644); err != nil {
			return Result{}, fmt.Errorf("qemuboot: %w", err)
		}
	}
	res := Result{Args: c.Args(vars)}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(runCtx, "qemu-system-x86_64", res.Args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("qemuboot: start: %w", err)
	}
	var mu sync.Mutex
	sink := trace.OrNop(c.Sink)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := CleanLine(sc.Text())
			sink.Emit(trace.Event{Source: trace.SourceConsole, Kind: trace.KindConsoleLine, Machine: c.Machine, Message: line})
			mu.Lock()
			res.Lines = append(res.Lines, line)
			mu.Unlock()
			if stop != nil && stop(line) {
				mu.Lock()
				res.Matched = line
				res.Duration = time.Since(start)
				mu.Unlock()
				cancel()
				break
			}
		}
		io.Copy(io.Discard, out)
	}()
	<-done
	werr := cmd.Wait()
	mu.Lock()
	defer mu.Unlock()
	if res.Duration == 0 {
		res.Duration = time.Since(start)
	}
	if res.Matched != "" {
		return res, nil
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("qemuboot: %w (last lines: %s)", ctx.Err(), tail(res.Lines, 15))
	}
	if werr != nil {
		return res, fmt.Errorf("qemuboot: qemu: %w: %s (last lines: %s)", werr, strings.TrimSpace(stderr.String()), tail(res.Lines, 15))
	}
	return res, nil
}

// qesc escapes a file name for a QEMU option value (commas are doubled).
func qesc(s string) string { return strings.ReplaceAll(s, ",", ",,") }

func tail(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// CleanLine removes carriage returns and ANSI escape sequences from a console line.
func CleanLine(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch == 0x1b {
			// skip ESC [ ... final byte, or ESC + one char
			j := i + 1
			if j < len(s) && s[j] == '[' {
				j++
				for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
					j++
				}
			}
			i = j
			continue
		}
		if ch == '\r' || ch == 0 {
			continue
		}
		b.WriteByte(ch)
	}
	return b.String()
}
