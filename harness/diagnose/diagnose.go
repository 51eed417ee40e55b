// Package diagnose turns what a failed deployment left behind (events, console, curtin's
// install log) into one-line diagnoses that name the cause, with the evidence lines.
package diagnose

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/maasemu/maasemu/harness/timeline"
	"github.com/maasemu/maasemu/trace"
)

// Input is everything known about one machine's deployment.
type Input struct {
	Events        []trace.Event // the machine's events, in order
	Console       []string      // serial console lines
	InstallLog    string        // curtin's install log as posted to the webhook
	Status        string        // final status name, e.g. "Failed deployment"
	StatusMessage string
	FailedPhase   timeline.Phase
	Stall         *timeline.Stall
}

// Finding is one diagnosis.
type Finding struct {
	ID       string         `json:"id"`
	Severity string         `json:"severity"` // "error" or "warning"
	Phase    timeline.Phase `json:"phase,omitempty"`
	Summary  string         `json:"summary"`
	Hint     string         `json:"hint,omitempty"`
	Evidence []string       `json:"evidence,omitempty"`
	// Issue names the public reports of the same failure.
	Issue string `json:"issue,omitempty"`
}

func (f Finding) String() string { return f.Summary }

// signature recognises one failure.
type signature struct {
	id    string
	issue string
	match func(in *Input) (Finding, bool)
}

// Diagnose returns the findings for in, most specific first. A failed or stalled deployment
// always gets at least one error finding; a deployed one gets warnings only.
func Diagnose(in Input) []Finding {
	var out []Finding
	for _, s := range catalogue {
		if f, ok := s.match(&in); ok {
			f.ID = s.id
			if f.Issue == "" {
				f.Issue = s.issue
			}
			if f.Severity == "" {
				f.Severity = "error"
			}
			out = append(out, f)
		}
	}
	failed := in.Status != "" && in.Status != "Deployed"
	if !failed {
		var warns []Finding
		for _, f := range out {
			if f.Severity == "warning" {
				warns = append(warns, f)
			}
		}
		return warns
	}
	for _, f := range out {
		if f.Severity == "error" {
			return out
		}
	}
	return append(out, generic(&in))
}

// Primary returns the first error finding, or the zero Finding.
func Primary(fs []Finding) Finding {
	for _, f := range fs {
		if f.Severity == "error" {
			return f
		}
	}
	return Finding{}
}

var catalogue = []signature{
	{id: "needs-real-curtin", match: logMatch(`No module named '?curtin'?`, func(m []string, in *Input) Finding {
		return Finding{Phase: timeline.CurtinHooks,
			Summary: "a curtin hook imports the curtin Python package, which MAAS packs into the installer; none was supplied",
			Hint:    "run with --curtin DIR (a checkout of canonical/curtin) so the hook can import it, as on a real MAAS"}
	})},
	{id: "filetype-mismatch", issue: "canonical/packer-maas#271", match: logMatch(
		`This does not look like a tar archive|not in gzip format|File format not recognized|is not a bzip2 file|Unrecognized archive format`,
		func(m []string, in *Input) Finding {
			return Finding{Phase: phaseOr(in, timeline.CurtinPart),
				Summary: "the image's content does not match its declared filetype: curtin could not unpack it (" + strings.TrimSpace(m[0]) + ")",
				Hint:    "upload with the filetype that matches the artifact (e.g. a gzip-compressed raw disk is ddgz, not ddtgz); `maasemu lint` tells which"}
		})},
	{id: "truncated-image", match: logMatch(`Unexpected EOF in archive|unexpected end of file|Compressed data is corrupt|premature end`,
		func(m []string, in *Input) Finding {
			return Finding{Phase: phaseOr(in, timeline.CurtinExtr),
				Summary: "the image archive is truncated or corrupt: " + strings.TrimSpace(m[0]),
				Hint:    "re-upload the image and compare its sha256 with the artifact's"}
		})},
	{id: "no-curtin-partition", issue: "canonical/packer-maas#302", match: logMatch(
		`Did not find any filesystem on .* that contained one of .*`,
		func(m []string, in *Input) Finding {
			return Finding{Phase: timeline.CurtinPart,
				Summary: "the disk image has no partition containing curtin/: curtin cannot find its root filesystem (" + strings.TrimSpace(m[0]) + ")",
				Hint:    "put the curtin hooks directory (/curtin) on the image's root filesystem, or check the filetype"}
		})},
	{id: "no-cloud-init", match: logMatch(`cloud-init not detected, MAAS will not be able to configure this machine properly`,
		func(m []string, in *Input) Finding {
			return Finding{Phase: timeline.CurtinLate,
				Summary: "the image has no cloud-init: MAAS's late command 98-validate-custom-image-has-cloud-init failed",
				Hint:    "install cloud-init in the image; MAAS needs it to configure the deployed machine"}
		})},
	{id: "no-netplan", match: logMatch(`netplan not detected, MAAS will not be able to configure this machine properly`,
		func(m []string, in *Input) Finding {
			return Finding{Phase: timeline.CurtinLate,
				Summary: "the image has no netplan: MAAS's late command 99-validate-custom-image-has-netplan failed (ubuntu base image)",
				Hint:    "install netplan.io in the image, or upload it with a non-ubuntu base_image if it does not use netplan"}
		})},
	{id: "grub-install-failed", issue: "canonical/packer-maas#246", match: logMatch(`grub2?-install: error: .*|Could not prepare Boot variable.*`,
		func(m []string, in *Input) Finding {
			return Finding{Phase: phaseOr(in, timeline.CurtinHooks),
				Summary: "installing the bootloader failed: " + strings.TrimSpace(m[0])}
		})},
	{id: "disk-full", match: duringInstall(logMatch(`No space left on device`, func(m []string, in *Input) Finding {
		return Finding{Phase: phaseOr(in, timeline.CurtinExtr),
			Summary: "the target disk ran out of space while installing the image",
			Hint:    "give the machine a bigger disk, or shrink the image"}
	}))},
	{id: "hook-failed", match: hookFailed},
	{id: "curtin-stage-failed", match: curtinStageFailed},
	{id: "missing-boot-image", issue: "canonical/packer-maas#193", match: missingBootImage},
	{id: "auth-refused", issue: "cloudbase/cloudbase-init#119", match: authRefused},
	{id: "kernel-panic", match: consoleMatch(`Kernel panic - not syncing: .*`, func(m []string, in *Input) Finding {
		f := Finding{Phase: in.FailedPhase, Summary: "the kernel panicked: " + strings.TrimSpace(m[0])}
		if strings.Contains(m[0], "Unable to mount root fs") || strings.Contains(m[0], "VFS") {
			f.Hint = "the kernel found no root filesystem: a missing initrd, missing storage drivers, or a root= that does not match the disk"
		}
		return f
	})},
	{id: "fstab-mount-failed", match: consoleMatch(`Failed to mount (\S+)\.`,
		func(m []string, in *Input) Finding {
			return Finding{Phase: timeline.FirstBoot,
				Summary: "the installed OS could not mount " + m[1] + " from its fstab and stopped in emergency mode",
				Hint:    "the kernel messages before it say why (a filesystem driver or character set missing from the image's kernel or initramfs, wrong mount options)"}
		})},
	{id: "fstab-device-missing", issue: "canonical/packer-maas#362", match: consoleMatch(
		`Timed out waiting for device .*|You are in emergency mode.*|Give root password for maintenance|mount: .*: can't find (LABEL|UUID)=.*|fstab: device .* not found.*`,
		func(m []string, in *Input) Finding {
			return Finding{Phase: timeline.FirstBoot,
				Summary: "the installed OS waited for a device that does not exist on this machine (an fstab baked into the image?): " + strings.TrimSpace(m[0]),
				Hint:    "do not ship /etc/fstab entries for the build machine's disks; curtin writes fstab for the disks MAAS partitions"}
		})},
	{id: "uefi-loader-not-found", issue: "canonical/packer-maas#108", match: uefiLoaderNotFound},
	{id: "no-dhcp-answer", match: noDHCPAnswer},
	{id: "no-pxe", match: noPXE},
	{id: "first-boot-no-contact", issue: "canonical/packer-maas#232", match: firstBootNoContact},
	{id: "power-lost", match: powerLost},
	{id: "missing-firmware", issue: "canonical/packer-maas#195", match: func(in *Input) (Finding, bool) {
		re := regexp.MustCompile(`W: Possible missing firmware .*`)
		lines := grep(re, splitLines(in.InstallLog), in.Console)
		if len(lines) == 0 {
			return Finding{}, false
		}
		return Finding{Severity: "warning", Summary: fmt.Sprintf("%d firmware files may be missing from the image's initramfs", len(lines)),
			Hint: "real NICs or disks may not work on metal without them", Evidence: first(lines, 5)}, true
	}},
}

// duringInstall keeps a match only when the deployment failed in an install (curtin)
// phase, or in no known phase: a message the install survived is not the reason.
func duringInstall(match func(*Input) (Finding, bool)) func(*Input) (Finding, bool) {
	return func(in *Input) (Finding, bool) {
		if in.FailedPhase != "" && !strings.HasPrefix(string(in.FailedPhase), "curtin-") {
			return Finding{}, false
		}
		return match(in)
	}
}

// logMatch matches a regexp against the install log and the console.
func logMatch(expr string, build func(m []string, in *Input) Finding) func(*Input) (Finding, bool) {
	re := regexp.MustCompile(expr)
	return func(in *Input) (Finding, bool) {
		for _, src := range [][]string{splitLines(in.InstallLog), in.Console} {
			for i, line := range src {
				if m := re.FindStringSubmatch(line); m != nil {
					f := build(m, in)
					f.Evidence = context(src, i, 2)
					return f, true
				}
			}
		}
		return Finding{}, false
	}
}

// consoleMatch matches a regexp against the console only.
func consoleMatch(expr string, build func(m []string, in *Input) Finding) func(*Input) (Finding, bool) {
	re := regexp.MustCompile(expr)
	return func(in *Input) (Finding, bool) {
		for i, line := range in.Console {
			if m := re.FindStringSubmatch(line); m != nil {
				f := build(m, in)
				f.Evidence = context(in.Console, i, 3)
				return f, true
			}
		}
		return Finding{}, false
	}
}

var (
	reCommand  = regexp.MustCompile(`^Command: \[?'?([^',\]]+)`)
	reExitCode = regexp.MustCompile(`^Exit code: (\d+)`)
)

// hookFailed recognises curtin's "Unexpected error while running command." for an image hook.
func hookFailed(in *Input) (Finding, bool) {
	lines := splitLines(in.InstallLog)
	for i, line := range lines {
		if !strings.Contains(line, "Unexpected error while running command.") {
			continue
		}
		var cmd, code, stderr string
		for j := i + 1; j < len(lines) && j < i+40; j++ {
			l := strings.TrimSpace(lines[j])
			if m := reCommand.FindStringSubmatch(l); m != nil && cmd == "" {
				cmd = m[1]
			}
			if m := reExitCode.FindStringSubmatch(l); m != nil && code == "" {
				code = m[1]
			}
			if s, ok := strings.CutPrefix(l, "Stderr:"); ok && stderr == "" {
				stderr = strings.TrimSpace(s)
				for k := j + 1; k < len(lines) && k < j+20 && stderr == ""; k++ {
					stderr = strings.TrimSpace(lines[k])
				}
			}
		}
		stderr = strings.Trim(stderr, `'"`)
		if (stderr == "" || stderr == "-") && cmd != "" {
			stderr = lastOutput(lines[:i], cmd)
		}
		hook := ""
		for _, h := range []string{"curtin-hooks", "finalize", "network-config"} {
			if strings.HasSuffix(cmd, "/curtin/"+h) {
				hook = h
			}
		}
		if hook == "" {
			continue
		}
		stage := map[string]string{"curtin-hooks": "curthooks", "finalize": "hook", "network-config": "network"}[hook]
		sum := fmt.Sprintf("the image's curtin/%s exited %s in stage %s", hook, code, stage)
		if stderr != "" {
			sum += ": " + stderr
		}
		return Finding{Phase: curtinPhase(stage), Summary: sum, Evidence: context(lines, i, 8)}, true
	}
	return Finding{}, false
}

// curtinStageFailed recognises a curtin stage that finished FAIL on the webhook.
// lastOutput returns the last line a command printed: curtin runs hooks without capturing,
// so their output sits in the log between "Running command [cmd...]" and curtin's report.
func lastOutput(lines []string, cmd string) string {
	start := -1
	for k := len(lines) - 1; k >= 0; k-- {
		if strings.Contains(lines[k], "Running command") && strings.Contains(lines[k], cmd) {
			start = k
			break
		}
	}
	if start < 0 {
		return ""
	}
	last := ""
	for _, l := range lines[start+1:] {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "finish:") || strings.HasPrefix(l, "Traceback") || strings.Contains(l, "Unexpected error while running command") {
			break
		}
		if l != "" {
			last = l
		}
	}
	return last
}

func curtinStageFailed(in *Input) (Finding, bool) {
	for _, e := range in.Events {
		if e.Kind != trace.KindWebhookEvent || attr(e, "event_type") != "finish" || attr(e, "result") != "FAIL" {
			continue
		}
		name := attr(e, "name")
		stage, ok := strings.CutPrefix(name, "cmd-install/stage-")
		if !ok || strings.Contains(stage, "/") {
			continue
		}
		return Finding{Phase: curtinPhase(stage),
			Summary:  fmt.Sprintf("curtin failed in stage %s (%s)", stage, attr(e, "description")),
			Hint:     "the curtin install log has the details",
			Evidence: append([]string{name + ": FAIL"}, tail(splitLines(in.InstallLog), 6)...)}, true
	}
	return Finding{}, false
}

func missingBootImage(in *Input) (Finding, bool) {
	for _, e := range in.Events {
		if e.Kind == trace.KindBootImageMissing {
			img := attr(e, "image")
			return Finding{Phase: timeline.Config,
				Summary:  "MAAS has no boot image for this machine: Missing boot image " + img,
				Hint:     "import or publish the ephemeral the image needs (its base_image selects it), and check name, architecture and subarch",
				Evidence: []string{e.Message}}, true
		}
	}
	if strings.Contains(in.StatusMessage, "Missing boot image") || strings.Contains(in.StatusMessage, "is unavailable") {
		return Finding{Phase: timeline.Config, Summary: in.StatusMessage, Evidence: []string{in.StatusMessage}}, true
	}
	return Finding{}, false
}

func authRefused(in *Input) (Finding, bool) {
	var ev []string
	for _, e := range in.Events {
		if (e.Kind == trace.KindMetadataRead || e.Kind == trace.KindWebhookEvent || e.Kind == trace.KindHTTPGet) && attrInt(e, "status") == 401 {
			ev = append(ev, e.Kind+": "+e.Message)
		}
	}
	if len(ev) < 2 || in.Status == "Deployed" {
		return Finding{}, false
	}
	return Finding{Phase: in.FailedPhase,
		Summary:  fmt.Sprintf("MAAS refused the machine's OAuth credentials %d times (401 Unauthorized)", len(ev)),
		Hint:     "the credentials in the installed OS's datasource config do not match the node's token (stale image config? clock skew?)",
		Evidence: first(ev, 5)}, true
}

// uefiLoaderNotFound recognises MAAS's UEFI local boot finding no loader: GRUB's search fails,
// or the machine comes back to PXE after the local config.
func uefiLoaderNotFound(in *Input) (Finding, bool) {
	localConfigs := 0
	for _, e := range in.Events {
		if e.Kind == trace.KindBootConfig && attr(e, "purpose") == "local" && strings.Contains(attr(e, "file"), "grub") {
			localConfigs++
		}
	}
	if localConfigs == 0 {
		return Finding{}, false
	}
	re := regexp.MustCompile(`error: (no such device|file .* not found|no server is specified).*|Failed to load image.*|Could not install security protocol.*`)
	if lines := grep(re, in.Console); len(lines) > 0 || localConfigs > 1 {
		f := Finding{Phase: timeline.FirstBoot,
			Summary: "MAAS's UEFI local boot found no EFI loader where it looks (/efi/boot/bootx64.efi, /efi/ubuntu/shimx64.efi, /efi/ubuntu/grubx64.efi, ...)",
			Hint:    "install the loader at EFI/BOOT/BOOTX64.EFI (or EFI/ubuntu/) on the ESP; vendor paths such as EFI/rocky are searched only in some cases"}
		if len(lines) > 0 {
			f.Evidence = first(lines, 5)
		} else {
			f.Evidence = []string{fmt.Sprintf("the local-boot GRUB config was served %d times: the machine came back to PXE", localConfigs)}
		}
		return f, true
	}
	return Finding{}, false
}

func noDHCPAnswer(in *Input) (Finding, bool) {
	var discovers, offers int
	var ignored []string
	for _, e := range in.Events {
		switch e.Kind {
		case trace.KindDHCPDiscover:
			discovers++
		case trace.KindDHCPOffer:
			offers++
		case trace.KindDHCPIgnored:
			ignored = append(ignored, e.Message)
		}
	}
	if discovers == 0 || offers > 0 {
		return Finding{}, false
	}
	f := Finding{Phase: timeline.DHCP, Summary: fmt.Sprintf("the machine sent %d DHCP DISCOVERs and got no offer", discovers)}
	if len(ignored) > 0 {
		f.Summary += ": " + ignored[0]
		f.Evidence = first(ignored, 3)
	}
	return f, true
}

func noPXE(in *Input) (Finding, bool) {
	if in.FailedPhase != timeline.Power && in.FailedPhase != timeline.DHCP {
		return Finding{}, false
	}
	for _, e := range in.Events {
		if e.Kind == trace.KindDHCPDiscover {
			return Finding{}, false
		}
	}
	return Finding{Phase: timeline.Power,
		Summary:  "the machine never sent a DHCP DISCOVER: its firmware did not network boot",
		Hint:     "check the boot order (network first) and that the NIC has a PXE ROM",
		Evidence: tail(in.Console, 5)}, true
}

func firstBootNoContact(in *Input) (Finding, bool) {
	if in.FailedPhase != timeline.FirstBoot && in.FailedPhase != timeline.LocalBoot && in.FailedPhase != timeline.Reboot {
		return Finding{}, false
	}
	for _, e := range in.Events {
		if e.Kind == trace.KindUserDataRead {
			return Finding{}, false
		}
	}
	f := Finding{Phase: in.FailedPhase,
		Summary: "the installed OS never contacted MAAS (no user-data read after install): it did not boot, its network did not come up, or its cloud-init has no MAAS datasource",
		Hint:    "check the console: did it boot, which interfaces came up; the image needs cloud-init with a network config it can apply"}
	re := regexp.MustCompile(`(?i)maasemu-probe: .*|network .*(down|not|fail).*|no (carrier|link)|cloud-init.*(error|fail).*`)
	f.Evidence = first(grep(re, in.Console), 6)
	if len(f.Evidence) == 0 {
		f.Evidence = tail(in.Console, 6)
	}
	if in.Stall != nil {
		f.Evidence = append([]string{in.Stall.Error()}, f.Evidence...)
	}
	return f, true
}

func powerLost(in *Input) (Finding, bool) {
	for _, e := range in.Events {
		if e.Kind == trace.KindMachineDestroyed || e.Kind == trace.KindMachineCrashed ||
			(e.Kind == trace.KindMachineStopped && attr(e, "detail") != "reboot") {
			if in.Status == "Deployed" {
				return Finding{}, false
			}
			return Finding{Phase: in.FailedPhase,
				Summary:  fmt.Sprintf("the machine lost power during %s (%s)", phaseTitle(in.FailedPhase), e.Message),
				Evidence: []string{e.Kind + ": " + e.Message}}, true
		}
	}
	return Finding{}, false
}

func generic(in *Input) Finding {
	f := Finding{ID: "failed", Severity: "error", Phase: in.FailedPhase}
	switch {
	case in.Stall != nil:
		f.ID = "stalled"
		f.Summary = in.Stall.Error()
		f.Evidence = tail(in.Console, 5)
	case in.StatusMessage != "":
		f.Summary = fmt.Sprintf("%s during %s: %s", in.Status, phaseTitle(in.FailedPhase), in.StatusMessage)
		f.Evidence = tail(splitLines(in.InstallLog), 6)
	default:
		f.Summary = fmt.Sprintf("%s during %s", in.Status, phaseTitle(in.FailedPhase))
	}
	return f
}

func phaseTitle(p timeline.Phase) string {
	if t, ok := timeline.Titles[p]; ok {
		return t
	}
	return "an unknown phase"
}

func phaseOr(in *Input, p timeline.Phase) timeline.Phase {
	if in.FailedPhase != "" {
		return in.FailedPhase
	}
	return p
}

func curtinPhase(stage string) timeline.Phase {
	p := timeline.Phase("curtin-" + stage)
	if _, ok := timeline.Titles[p]; ok {
		return p
	}
	return ""
}

func attr(e trace.Event, k string) string {
	s, _ := e.Attrs[k].(string)
	return s
}

func attrInt(e trace.Event, k string) int {
	switch v := e.Attrs[k].(type) {
	case int:
		return v
	case int64:
		return int(v)
	case float64:
		return int(v)
	}
	return 0
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
}

func grep(re *regexp.Regexp, sources ...[]string) []string {
	var out []string
	for _, src := range sources {
		for _, l := range src {
			if re.MatchString(l) {
				out = append(out, strings.TrimSpace(l))
			}
		}
	}
	return out
}

// context returns lines[i-before .. i+before] trimmed of blank lines.
func context(lines []string, i, n int) []string {
	var out []string
	for j := max(0, i-n); j < len(lines) && j <= i+n; j++ {
		if l := strings.TrimRight(lines[j], " \t"); strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

func first(lines []string, n int) []string {
	if len(lines) > n {
		return lines[:n]
	}
	return lines
}

func tail(lines []string, n int) []string {
	var out []string
	for i := len(lines) - 1; i >= 0 && len(out) < n; i-- {
		if strings.TrimSpace(lines[i]) != "" {
			out = append([]string{lines[i]}, out...)
		}
	}
	return out
}
