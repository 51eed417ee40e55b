package fakemaas

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"

	"github.com/maasemu/maasemu/fakemaas/nodestatus"
	"github.com/maasemu/maasemu/trace"
)

// BootConfig answers the rack's "what should this machine boot?" as MAAS's GetBootConfig
// (src/maasserver/rpc/boot.py:get_config) does: the purpose from the machine's status and
// netboot flag, the ephemeral image (commissioning OS for commissioning, the deploy
// target's series for Ubuntu xinstall, a custom image's ubuntu base_image or else the
// commissioning OS), MAAS ≥3.5 image paths, and the preseed URL. A machine whose image is
// missing is marked failed ("Missing boot image ...") and the label is "no-such-image".
// An unknown MAC or UUID without an architecture returns ErrNoBootConfig; an unknown
// machine on a default file gets the enlistment purpose.
func (r *Region) BootConfig(ctx context.Context, req BootRequest) (KernelParams, error) {
	if err := ctx.Err(); err != nil {
		return KernelParams{}, err
	}
	mac := normMAC(req.MAC)
	r.mu.RLock()
	var m *machine
	if mac != "" {
		if sid, ok := r.macIndex[mac]; ok {
			m = r.machines[sid]
		}
	}
	if m == nil && req.HardwareUUID != "" {
		for _, c := range r.machines {
			if c.HardwareUUID != "" && strings.EqualFold(c.HardwareUUID, req.HardwareUUID) {
				m = c
				break
			}
		}
	}
	if m == nil && req.Arch == "" && (mac != "" || req.HardwareUUID != "") {
		r.mu.RUnlock()
		return KernelParams{}, ErrNoBootConfig
	}
	logHost, logPort := req.LocalIP, r.configInt("maas_syslog_port")
	if rs := r.configString("remote_syslog"); rs != "" {
		host, port, err := net.SplitHostPort(rs)
		if err != nil {
			host, port = rs, "514"
		}
		logHost = host
		fmt.Sscanf(port, "%d", &logPort)
	}
	if logPort == 0 {
		logPort = 5247
	}
	var kp KernelParams
	var missing []string
	if m == nil {
		kp = r.enlistParams(req)
	} else {
		kp, missing = r.machineParams(m, req)
	}
	kp.LogHost, kp.LogPort, kp.FSHost, kp.HTTPBoot = logHost, logPort, req.LocalIP, true
	var sid string
	if m != nil {
		sid = m.SystemID
	}
	r.mu.RUnlock()
	if m == nil {
		for _, msg := range missing {
			r.log.Error("enlistment failed to boot: " + msg)
		}
		return kp, nil
	}
	// Record the request: boot interface, rack address, PXE events; a missing image fails
	// the machine.
	err := r.updateMachine(sid, func(w *writer, m *machine) error {
		if mac != "" {
			m.BootMAC = mac
		}
		m.BootClusterIP = req.LocalIP
		// Every boot config request restarts the operation's clock (rpc/boot.py).
		w.resetStatusExpires(m)
		if req.Bootloader != "" {
			m.BiosBootMethod = req.Bootloader
		}
		if kp.Purpose != PurposeLocal {
			desc := map[string]string{PurposeCommissioning: "commissioning", PurposeXInstall: "installation", PurposePoweroff: "power off"}[kp.Purpose]
			w.nodeEvent(m, "NODE_PXE_REQUEST", desc, "")
			w.nodeEvent(m, "PERFORMING_PXE_BOOT", "", "")
		}
		for _, msg := range missing {
			if err := w.markFailed(m, "", msg); err != nil {
				r.log.Warn("cannot mark machine failed for a missing image", "machine", m.SystemID, "err", err)
			}
		}
		return nil
	})
	if err != nil {
		return KernelParams{}, err
	}
	for _, msg := range missing {
		r.sink.Emit(trace.Event{Source: trace.SourceRegion, Kind: trace.KindBootImageMissing, Level: trace.LevelError,
			Machine: sid, MAC: mac, Message: msg, Attrs: map[string]any{"image": strings.TrimSuffix(strings.SplitN(msg, " image ", 2)[1], ".")}})
	}
	return kp, nil
}

func (r *Region) preseedBase(localIP string) string {
	if ip := net.ParseIP(localIP); ip != nil && ip.To4() == nil {
		return "http://[" + localIP + "]:5248/"
	}
	return "http://" + localIP + ":5248/"
}

func (r *Region) enlistParams(req BootRequest) KernelParams {
	osys, series := r.configString("commissioning_osystem"), r.configString("commissioning_distro_series")
	arch, sub := req.Arch, req.Subarch
	if arch == "" {
		arch = "i386"
		for _, id := range sortedIntKeys(r.resources) {
			res := r.resources[id]
			if res.Name == osys+"/"+series && res.latestComplete() != nil {
				arch, _ = res.arch()
				break
			}
		}
	}
	if sub == "" {
		sub = "generic"
	}
	sub = r.kernelSubarch(arch, sub, osys, series, r.configString("default_min_hwe_kernel"))
	kp := KernelParams{Purpose: PurposeCommissioning, Hostname: "maas-enlist", Domain: "local", Arch: arch, Subarch: sub,
		OSystem: osys, Release: series, KernelOSystem: osys, KernelRelease: series,
		PreseedURL: r.preseedBase(req.LocalIP) + "MAAS/metadata/latest/enlist-preseed/?op=get_enlist_preseed",
		ExtraOpts:  r.configString("kernel_opts")}
	if arch == "i386" {
		kp.Purpose = PurposeEnlist
	}
	r.fillFiles(&kp, osys, series, arch, sub)
	return kp
}

// machineParams computes the boot parameters of a known machine (r.mu held). missing
// lists the "Missing ... image" messages for images that are not there.
func (r *Region) machineParams(m *machine, req BootRequest) (KernelParams, []string) {
	arch, sub := m.archParts()
	kp := KernelParams{SystemID: m.SystemID, Hostname: m.Hostname, Domain: m.Domain, Arch: arch, Subarch: sub,
		PreseedURL: r.preseedBase(req.LocalIP) + "MAAS/metadata/latest/by-id/" + m.SystemID + "/?op=get_preseed"}
	purpose := m.bootPurpose()
	if purpose == PurposeLocal && m.EphemeralDeploy {
		purpose = PurposeXInstall
	}
	if purpose == PurposeLocal {
		kp.Purpose = PurposeLocal
		kp.OSystem, kp.Release = m.OSystem, m.DistroSeries
		kp.KernelOSystem, kp.KernelRelease = m.OSystem, m.DistroSeries
		kp.Label, kp.KernelLabel = "local", "local"
		return kp, nil
	}
	bootOS, bootSeries, finalOS, finalSeries, subarch := r.bootOS(m, purpose)
	kp.Subarch = subarch
	if purpose == PurposePoweroff {
		purpose = PurposeCommissioning
	}
	kp.Purpose = purpose
	kp.ExtraOpts = r.configString("kernel_opts")
	if finalOS == "centos" {
		kp.EphemeralOpts = "nvme-core.multipath=0"
	}
	if m.EphemeralDeploy && kp.ExtraOpts != "" {
		kp.EphemeralOpts = strings.TrimSpace(kp.EphemeralOpts + " " + kp.ExtraOpts)
		kp.ExtraOpts = ""
	}
	filesOS, filesSeries := bootOS, bootSeries
	if m.EphemeralDeploy {
		filesOS, filesSeries = finalOS, finalSeries
	}
	kp.OSystem, kp.Release = bootOS, bootSeries
	kp.KernelOSystem, kp.KernelRelease = bootOS, bootSeries
	var missing []string
	r.fillFiles(&kp, filesOS, filesSeries, arch, subarch)
	if kp.Kernel == "" {
		kp.KernelLabel = "no-such-image"
		missing = append(missing, fmt.Sprintf("Missing kernel image %s/%s/%s/%s.", kp.KernelOSystem, arch, subarch, kp.KernelRelease))
	}
	if kp.XInstallPath == "" {
		kp.Label = "no-such-image"
		missing = append(missing, fmt.Sprintf("Missing boot image %s/%s/%s/%s.", kp.OSystem, arch, subarch, kp.Release))
	}
	return kp, missing
}

func (m *machine) archParts() (string, string) {
	a, s, _ := cut(m.Architecture, "/")
	if s == "" {
		s = "generic"
	}
	return a, s
}

// bootPurpose is Node.get_boot_purpose.
func (m *machine) bootPurpose() string {
	switch {
	case nodestatus.CommissioningLike(m.Status):
		return PurposeCommissioning
	case m.Status == nodestatus.Deploying:
		if m.Netboot {
			return PurposeXInstall
		}
		return PurposeLocal
	case m.Status == nodestatus.Deployed:
		return PurposeLocal
	}
	return PurposePoweroff
}

// bootOS is get_boot_config_for_machine: the ephemeral's os/series, the final (deployed)
// os/series and the kernel subarch.
func (r *Region) bootOS(m *machine, purpose string) (bootOS, bootSeries, finalOS, finalSeries, subarch string) {
	arch, sub := m.archParts()
	useHWE := true
	commOS, commSeries := r.configString("commissioning_osystem"), r.configString("commissioning_distro_series")
	if purpose == PurposeCommissioning {
		if m.OSystem == "ubuntu" && m.Status == nodestatus.DiskErasing {
			bootOS, bootSeries = orDefault(m.OSystem, r.configString("default_osystem")), orDefault(m.DistroSeries, r.configString("default_distro_series"))
		} else {
			bootOS, bootSeries = commOS, commSeries
			useHWE = false
		}
		finalOS, finalSeries = bootOS, bootSeries
	} else {
		bootOS, bootSeries = orDefault(m.OSystem, r.configString("default_osystem")), orDefault(m.DistroSeries, r.configString("default_distro_series"))
		finalOS, finalSeries = bootOS, bootSeries
		if purpose == PurposeXInstall && finalOS != "ubuntu" {
			var install *resource
			if finalOS == "custom" {
				for _, id := range sortedIntKeys(r.resources) {
					res := r.resources[id]
					if res.Type == rtypeUploaded && res.Name == finalSeries && strings.HasPrefix(res.Architecture, arch+"/") {
						install = res
						break
					}
				}
				if install != nil {
					bos, bser, ok := cut(install.BaseImage, "/")
					if !ok {
						bos, bser = commOS, commSeries
					}
					bootOS, bootSeries = bos, bser
				}
				useHWE = false
			}
			if install == nil || bootOS != "ubuntu" {
				if !m.EphemeralDeploy {
					bootOS, bootSeries = commOS, commSeries
				}
				useHWE = false
			}
		}
	}
	if useHWE && m.HWEKernel != "" {
		sub = m.HWEKernel
	}
	subarch = r.kernelSubarch(arch, sub, bootOS, bootSeries, m.MinHWEKernel)
	return
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// kernelSubarch is a simplified get_working_kernel: the requested subarch when a complete
// image has it; for "generic" (or a subarch no image has) the newest ga- kernel among
// the images of os/series on arch, then hwe-, then any.
func (r *Region) kernelSubarch(arch, sub, osys, series, minHWE string) string {
	name := osys + "/" + series
	if osys == "custom" {
		name = series
	}
	var subs []string
	for _, res := range r.resources {
		if res.Name != name || !strings.HasPrefix(res.Architecture, arch+"/") || res.latestComplete() == nil {
			continue
		}
		_, s := res.arch()
		if s == sub {
			return sub
		}
		subs = append(subs, s)
	}
	if sub != "generic" && sub != "" && len(subs) == 0 {
		return sub
	}
	if len(subs) == 0 {
		return orDefault(sub, "generic")
	}
	if sub != "generic" && sub != "" && (strings.HasPrefix(sub, "hwe-") || strings.HasPrefix(sub, "ga-")) {
		return sub // a specific kernel was asked for and is missing
	}
	sort.Slice(subs, func(i, j int) bool { return kernelRank(subs[i]) > kernelRank(subs[j]) })
	if minHWE != "" {
		for _, s := range subs {
			if s >= minHWE || strings.TrimPrefix(s, "ga-") >= strings.TrimPrefix(strings.TrimPrefix(minHWE, "hwe-"), "ga-") {
				return s
			}
		}
	}
	return subs[0]
}

func kernelRank(s string) string {
	switch {
	case strings.HasPrefix(s, "ga-"):
		return "3" + s
	case s == "generic":
		return "2" + s
	case strings.HasPrefix(s, "hwe-"):
		return "1" + s
	}
	return "0" + s
}

// fillFiles sets kernel, initrd, dtb and root paths from the latest complete set of the
// resource os/series on arch/subarch (_get_files_map + get_boot_filenames).
func (r *Region) fillFiles(kp *KernelParams, osys, series, arch, subarch string) {
	name := osys + "/" + series
	if osys == "custom" {
		name = series
	}
	var res *resource
	for _, id := range sortedIntKeys(r.resources) {
		c := r.resources[id]
		if c.Name == name && c.Architecture == arch+"/"+subarch && c.BootloaderType == "" {
			if res == nil || c.Type == rtypeSynced {
				res = c
			}
		}
	}
	if res == nil {
		return
	}
	set := res.latestComplete()
	if set == nil {
		return
	}
	p := func(f *resourceFile) string {
		return strings.Join([]string{f.FilenameOnDisk, osys, arch, subarch, series, set.Label, f.Filename}, "/")
	}
	if f := set.file("boot-kernel"); f != nil {
		kp.Kernel, kp.KernelLabel = p(f), set.Label
	}
	if f := set.file("boot-initrd"); f != nil {
		kp.Initrd = p(f)
	}
	if f := set.file("boot-dtb"); f != nil {
		kp.BootDTB = p(f)
	}
	for _, t := range []string{"squashfs", "root-image.gz", "root-tgz", "root-tbz", "root-txz", "root-dd", "root-dd.tar",
		"root-dd.raw", "root-dd.gz", "root-dd.xz", "root-dd.bz2", "root-dd.tar.xz", "root-dd.tar.bz2"} {
		if f := set.file(t); f != nil {
			kp.XInstallPath, kp.Label = p(f), set.Label
			break
		}
	}
}
