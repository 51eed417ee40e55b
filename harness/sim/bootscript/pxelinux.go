// Package bootscript reads boot configs as the bootloaders do (pxelinux config files and
// GRUB scripts) so that a simulated machine follows exactly what the rack served.
package bootscript

import (
	"bufio"
	"fmt"
	"net"
	"strings"
)

// Action is what a bootloader decided to do.
type Action struct {
	Kind    string // "linux", "chain" (chainload a disk or a file), "local" (boot the next device), "halt", "exit"
	Kernel  string // linux: kernel path or URL as written
	Initrd  string // linux: initrd path or URL as written
	Cmdline string // linux: the kernel command line, BOOTIF included
	Device  string // chain: "hd0" or a GRUB device such as "(hd0,gpt1)"; linux: GRUB root device
	Path    string // chain: the file chainloaded (GRUB), empty for a whole disk
	Code    int    // exit: the exit code
	Output  []string
}

// PXELinux interprets a pxelinux config the way lpxelinux.0 does for a machine with mac:
// the DEFAULT label (or the first), its KERNEL, INITRD, APPEND and IPAPPEND 2 (which adds
// BOOTIF=01-aa-bb-...), LOCALBOOT, and chain.c32.
func PXELinux(cfg string, mac net.HardwareAddr) (Action, error) {
	type label struct {
		name                    string
		kernel, initrd, append_ string
		ipappend                string
		localboot               string
		say                     []string
		seen                    bool
	}
	var (
		def    string
		labels []*label
		cur    *label
		global []string
	)
	sc := bufio.NewScanner(strings.NewReader(cfg))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, _ := strings.Cut(line, " ")
		key = strings.ToUpper(key)
		val = strings.TrimSpace(val)
		switch key {
		case "DEFAULT":
			def = val
		case "LABEL":
			cur = &label{name: val}
			labels = append(labels, cur)
		case "SAY":
			if cur != nil {
				cur.say = append(cur.say, val)
			} else {
				global = append(global, val)
			}
		case "KERNEL", "LINUX":
			if cur == nil {
				return Action{}, fmt.Errorf("pxelinux config: %s outside a LABEL", key)
			}
			cur.kernel = val
			cur.seen = true
		case "INITRD":
			if cur != nil {
				cur.initrd = val
			}
		case "APPEND":
			if cur != nil {
				cur.append_ = val
			}
		case "IPAPPEND", "SYSAPPEND":
			if cur != nil {
				cur.ipappend = val
			}
		case "LOCALBOOT":
			if cur != nil {
				cur.localboot = val
				cur.seen = true
			}
		case "TIMEOUT", "PROMPT", "TOTALTIMEOUT", "ONTIMEOUT", "MENU", "SERIAL", "CONSOLE", "UI", "NOESCAPE", "PATH", "IMPLICIT":
			// Presentation and timing: nothing a simulated machine acts on.
		default:
			return Action{}, fmt.Errorf("pxelinux config: unknown directive %q", key)
		}
	}
	if err := sc.Err(); err != nil {
		return Action{}, err
	}
	var pick *label
	for _, l := range labels {
		if strings.EqualFold(l.name, def) {
			pick = l
		}
	}
	if pick == nil && def == "" && len(labels) > 0 {
		pick = labels[0]
	}
	if pick == nil {
		return Action{}, fmt.Errorf("pxelinux config: DEFAULT %q names no LABEL", def)
	}
	out := append(global, pick.say...)
	switch {
	case pick.localboot != "":
		return Action{Kind: "local", Output: out}, nil
	case strings.EqualFold(baseName(pick.kernel), "chain.c32"):
		return Action{Kind: "chain", Device: strings.Fields(pick.append_ + " hd0")[0], Output: out}, nil
	case pick.kernel == "":
		return Action{}, fmt.Errorf("pxelinux config: LABEL %q has no KERNEL", pick.name)
	}
	cmdline := pick.append_
	initrd := pick.initrd
	// pxelinux also takes initrd= from APPEND.
	var rest []string
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "initrd="); ok && initrd == "" {
			initrd = v
			continue
		}
		rest = append(rest, f)
	}
	cmdline = strings.Join(rest, " ")
	if pick.ipappend == "2" || pick.ipappend == "3" {
		cmdline += " BOOTIF=01-" + strings.ReplaceAll(strings.ToLower(mac.String()), ":", "-")
	}
	return Action{Kind: "linux", Kernel: pick.kernel, Initrd: initrd, Cmdline: strings.TrimSpace(cmdline), Output: out}, nil
}

func baseName(p string) string {
	if i := strings.LastIndexAny(p, "/"); i >= 0 {
		return p[i+1:]
	}
	return p
}
