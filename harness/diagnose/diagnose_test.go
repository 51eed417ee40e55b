package diagnose

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/maasemu/maasemu/harness/timeline"
	"github.com/maasemu/maasemu/trace"
)

const hookLog = `start: cmd-install/stage-curthooks/builtin/cmd-curthooks: curtin command curthooks
Running command ['/tmp/tmpabc/target/curtin/curtin-hooks'] with allowed return codes [0] (capture=False)
installing bootloader for debian
grub-probe: error: failed to get canonical path of '/dev/root'.
finish: cmd-install/stage-curthooks/builtin/cmd-curthooks: FAIL: curtin command curthooks
Traceback (most recent call last):
  File "/curtin/curtin/commands/main.py", line 202, in main
curtin.util.ProcessExecutionError: Unexpected error while running command.
Command: ['/tmp/tmpabc/target/curtin/curtin-hooks']
Exit code: 1
Reason: -
Stdout: ''
Stderr: ''
`

func webhook(name, typ, result, desc string) trace.Event {
	return trace.Event{Kind: trace.KindWebhookEvent, Attrs: map[string]any{
		"name": name, "event_type": typ, "result": result, "description": desc, "origin": "curtin"}}
}

func TestDiagnose(t *testing.T) {
	failed := "Failed deployment"
	tests := []struct {
		name  string
		in    Input
		id    string
		phase timeline.Phase
		// substrings the summary must contain
		says []string
	}{
		{
			name:  "hook exit",
			in:    Input{Status: failed, InstallLog: hookLog, FailedPhase: timeline.CurtinHooks},
			id:    "hook-failed",
			phase: timeline.CurtinHooks,
			says:  []string{"curtin/curtin-hooks exited 1 in stage curthooks", "grub-probe: error: failed to get canonical path"},
		},
		{
			name: "lying filetype",
			in: Input{Status: failed, FailedPhase: timeline.CurtinPart, InstallLog: "Running command ['sh', '-c', 'wget \"$1\" --progress=dot:mega -O - | tar -xOzf - | dd bs=4M of=\"$2\"']\n" +
				"gzip: stdin: not in gzip format\ntar: Child returned status 1\ntar: Error is not recoverable: exiting now\n"},
			id: "filetype-mismatch", phase: timeline.CurtinPart,
			says: []string{"does not match its declared filetype", "not in gzip format"},
		},
		{
			name: "tar of raw disk",
			in:   Input{Status: failed, InstallLog: "tar: This does not look like a tar archive\ntar: Exiting with failure status due to previous errors\n"},
			id:   "filetype-mismatch", phase: timeline.CurtinPart,
			says: []string{"This does not look like a tar archive"},
		},
		{
			name: "no curtin partition",
			in: Input{Status: failed, FailedPhase: timeline.CurtinPart,
				InstallLog: "ValueError: Did not find any filesystem on ['sda'] that contained one of ['curtin', 'system-data/var/lib/snapd', 'snaps']\n"},
			id: "no-curtin-partition", phase: timeline.CurtinPart, says: []string{"no partition containing curtin/"},
		},
		{
			name: "no cloud-init",
			in: Input{Status: failed, FailedPhase: timeline.CurtinLate,
				InstallLog: "bash: line 1: cloud-init: command not found\ncloud-init not detected, MAAS will not be able to configure this machine properly\n"},
			id: "no-cloud-init", phase: timeline.CurtinLate, says: []string{"has no cloud-init", "98-validate-custom-image-has-cloud-init"},
		},
		{
			name: "no netplan",
			in:   Input{Status: failed, InstallLog: "netplan not detected, MAAS will not be able to configure this machine properly\n"},
			id:   "no-netplan", phase: timeline.CurtinLate, says: []string{"no netplan"},
		},
		{
			name: "needs curtin",
			in:   Input{Status: failed, InstallLog: "Traceback (most recent call last):\n  File \"/tmp/t/target/curtin/curtin-hooks\", line 5\n    from curtin import distro\nModuleNotFoundError: No module named 'curtin'\n" + hookLog[strings.Index(hookLog, "curtin.util"):]},
			id:   "needs-real-curtin", phase: timeline.CurtinHooks, says: []string{"imports the curtin Python package"},
		},
		{
			name: "truncated",
			in:   Input{Status: failed, FailedPhase: timeline.CurtinExtr, InstallLog: "gzip: stdin: unexpected end of file\ntar: Unexpected EOF in archive\n"},
			id:   "truncated-image", phase: timeline.CurtinExtr, says: []string{"truncated or corrupt"},
		},
		{
			name: "stage failed without a known cause",
			in: Input{Status: failed, FailedPhase: timeline.CurtinNet,
				Events: []trace.Event{webhook("cmd-install/stage-network", "finish", "FAIL", "configuring network")}},
			id: "curtin-stage-failed", phase: timeline.CurtinNet, says: []string{"curtin failed in stage network (configuring network)"},
		},
		{
			name: "missing boot image",
			in: Input{Status: failed, FailedPhase: timeline.Config, Events: []trace.Event{{Kind: trace.KindBootImageMissing,
				Message: "Missing boot image custom/amd64/ga-22.04/debian-12", Attrs: map[string]any{"image": "custom/amd64/ga-22.04/debian-12"}}}},
			id: "missing-boot-image", phase: timeline.Config, says: []string{"Missing boot image custom/amd64/ga-22.04/debian-12"},
		},
		{
			name: "kernel panic",
			in: Input{Status: failed, FailedPhase: timeline.Ephemeral, Console: []string{"[    2.1] VFS: Cannot open root device",
				"[    2.2] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"}},
			id: "kernel-panic", phase: timeline.Ephemeral, says: []string{"Unable to mount root fs"},
		},
		{
			name: "baked-in fstab",
			in: Input{Status: failed, FailedPhase: timeline.FirstBoot, Console: []string{
				"[ TIME ] Timed out waiting for device /dev/disk/by-label/UEFI.", "You are in emergency mode."}},
			id: "fstab-device-missing", phase: timeline.FirstBoot, says: []string{"/dev/disk/by-label/UEFI"},
		},
		{
			name: "fstab entry that fails to mount",
			in: Input{Status: failed, FailedPhase: timeline.FirstBoot, Console: []string{
				"[    7.66] FAT-fs (vda1): IO charset ascii not found", "[FAILED] Failed to mount /boot/efi.", "You are in emergency mode."}},
			id: "fstab-mount-failed", phase: timeline.FirstBoot, says: []string{"could not mount /boot/efi"},
		},
		{
			name: "disk full in extract",
			in:   Input{Status: failed, FailedPhase: timeline.CurtinExtr, InstallLog: "tar: ./usr/lib/x: Cannot write: No space left on device\n"},
			id:   "disk-full", phase: timeline.CurtinExtr, says: []string{"ran out of space"},
		},
		{
			name: "a no-space message the install survived is not the reason",
			in: Input{Status: failed, FailedPhase: timeline.FirstBoot, InstallLog: "dd: error writing '/dev/vda1': No space left on device\n",
				Stall: &timeline.Stall{Phase: timeline.FirstBoot, Elapsed: time.Minute, Budget: time.Minute}},
			id: "first-boot-no-contact", phase: timeline.FirstBoot, says: []string{"never contacted MAAS"},
		},
		{
			name: "uefi loader not found",
			in: Input{Status: failed, FailedPhase: timeline.FirstBoot, Events: []trace.Event{
				{Kind: trace.KindBootConfig, Attrs: map[string]any{"purpose": "local", "file": "grub/grub.cfg-52:54:00:00:00:01"}},
				{Kind: trace.KindBootConfig, Attrs: map[string]any{"purpose": "local", "file": "grub/grub.cfg-52:54:00:00:00:01"}}}},
			id: "uefi-loader-not-found", phase: timeline.FirstBoot, says: []string{"no EFI loader"},
		},
		{
			name: "no dhcp offer",
			in: Input{Status: failed, FailedPhase: timeline.DHCP, Events: []trace.Event{{Kind: trace.KindDHCPDiscover},
				{Kind: trace.KindDHCPIgnored, Message: "unknown MAC 52:54:00:00:00:09 (enlistment disabled)"}, {Kind: trace.KindDHCPDiscover}}},
			id: "no-dhcp-answer", phase: timeline.DHCP, says: []string{"2 DHCP DISCOVERs", "unknown MAC"},
		},
		{
			name: "no pxe",
			in: Input{Status: failed, FailedPhase: timeline.Power, Stall: &timeline.Stall{Phase: timeline.Power, Elapsed: time.Minute, Budget: time.Minute},
				Console: []string{"Booting from Hard Disk..."}},
			id: "no-pxe", phase: timeline.Power, says: []string{"never sent a DHCP DISCOVER"},
		},
		{
			name: "first boot no contact",
			in: Input{Status: failed, FailedPhase: timeline.FirstBoot, Stall: &timeline.Stall{Phase: timeline.FirstBoot, Elapsed: 5 * time.Minute, Budget: 5 * time.Minute},
				Console: []string{"maasemu-probe: network config disabled by /etc/cloud/cloud.cfg.d/99-disable-network.cfg"}},
			id: "first-boot-no-contact", phase: timeline.FirstBoot, says: []string{"never contacted MAAS"},
		},
		{
			name: "power cut",
			in:   Input{Status: failed, FailedPhase: timeline.CurtinExtr, Events: []trace.Event{{Kind: trace.KindMachineDestroyed, Message: "domain destroyed"}}},
			id:   "power-lost", phase: timeline.CurtinExtr, says: []string{"lost power during curtin extract"},
		},
		{
			name: "nothing known",
			in:   Input{Status: failed, FailedPhase: timeline.CurtinExtr, StatusMessage: "Installation failed (refer to the installation log for more information)."},
			id:   "failed", phase: timeline.CurtinExtr, says: []string{"Failed deployment during curtin extract: Installation failed"},
		},
		{
			name: "stall",
			in:   Input{Status: failed, FailedPhase: timeline.Kernel, Stall: &timeline.Stall{Phase: timeline.Kernel, Elapsed: 3 * time.Minute, Budget: 2 * time.Minute}},
			id:   "stalled", phase: timeline.Kernel, says: []string{`no progress in phase "kernel and initrd"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := Diagnose(tt.in)
			p := Primary(fs)
			if diff := cmp.Diff([]string{tt.id, string(tt.phase)}, []string{p.ID, string(p.Phase)}); diff != "" {
				t.Errorf("primary finding id/phase (-want +got):\n%s\nall: %+v", diff, fs)
			}
			for _, s := range tt.says {
				if !strings.Contains(p.Summary, s) {
					t.Errorf("summary %q does not say %q", p.Summary, s)
				}
			}
			if p.ID != "failed" && p.ID != "stalled" && p.ID != "curtin-stage-failed" && len(p.Evidence) == 0 {
				t.Errorf("finding %s has no evidence", p.ID)
			}
		})
	}
}

func TestDeployedGetsWarningsOnly(t *testing.T) {
	fs := Diagnose(Input{Status: "Deployed", InstallLog: "W: Possible missing firmware /lib/firmware/bnx2x/bnx2x-e2-7.13.1.0.fw for module bnx2x\n" +
		"cloud-init not detected, MAAS will not be able to configure this machine properly\n"})
	var ids []string
	for _, f := range fs {
		ids = append(ids, f.ID+"/"+f.Severity)
	}
	if diff := cmp.Diff([]string{"missing-firmware/warning"}, ids); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
}
