package fakemaas

import (
	"errors"
	"fmt"
	"strings"

	"github.com/maasemu/maasemu/fakemaas/commissioning"
	"github.com/maasemu/maasemu/fakemaas/nodestatus"
)

// Commissioning: the machine boots the commissioning ephemeral, runs the builtin
// commissioning script and posts its result (LXD's machine-resources JSON) with
// op=signal; the region records the hardware, applies the default storage layout and,
// on the final OK signal, makes the machine Ready.

// startCommissioning is Node.start_commissioning: events, a new commissioning script
// set, the storage layout and link configuration cleared (unless skipped), status
// Commissioning owned by user. The caller powers the machine on after the commit.
func (w *writer) startCommissioning(m *machine, user string, enableSSH, skipNetworking, skipStorage bool) error {
	if m.PowerType == "" {
		return badRequest("Unconfigured power type. Please configure the power type and try again.")
	}
	w.nodeEvent(m, "REQUEST_NODE_START_COMMISSIONING", requestDescription(user, ""), "start commissioning")
	w.nodeEvent(m, "COMMISSIONING", "", "")
	m.EnableSSH, m.SkipNetworking, m.SkipStorage = enableSSH, skipNetworking, skipStorage
	s := w.newScriptSet(m, resultCommissioning, builtinCommissioning)
	w.replaceScriptSet(m, s)
	if !skipStorage {
		m.Storage = storageLayout{}
	}
	if !skipNetworking {
		for i := range m.Interfaces {
			clearAllLinks(&m.Interfaces[i]) // _clear_networking_configuration
		}
	}
	if err := w.setStatus(m, nodestatus.Commissioning); err != nil {
		return err
	}
	m.Owner = user
	if m.MinHWEKernel == "" {
		m.MinHWEKernel = w.r.configString("default_min_hwe_kernel")
	}
	return nil
}

// commissioningHook runs the post-processing of a builtin commissioning script whose
// stdout was just stored (ScriptResult.store_result -> NODE_INFO_SCRIPTS hook). A
// report MAAS cannot process fails the result and says why in the event log.
func (w *writer) commissioningHook(m *machine, res *scriptResult) {
	if res.Name != commissioning.ScriptName {
		return
	}
	if res.ExitStatus == nil || *res.ExitStatus != 0 {
		w.r.log.Error("commissioning script failed", "machine", m.SystemID, "script", res.Name, "exit_status", res.ExitStatus)
		return
	}
	err := w.applyHardware(m, res.Stdout)
	if err == nil {
		return
	}
	reason := strings.TrimPrefix(err.Error(), commissioning.ErrInvalidReport.Error()+": ")
	if strings.HasPrefix(reason, "invalid JSON data") {
		reason = "invalid JSON data"
	}
	if !strings.HasPrefix(reason, "Data not from LXD") && !strings.HasPrefix(reason, "Missing required LXD API extensions") {
		w.nodeEvent(m, "SCRIPT_RESULT_ERROR", "Failed processing commissioning data: "+reason, "")
	}
	w.nodeEvent(m, "SCRIPT_RESULT_ERROR", fmt.Sprintf("%s.%s(%s): commissioning script '%s' failed during post-processing.",
		m.Hostname, m.Domain, m.SystemID, res.Name), "")
	res.Status = scriptFailed
}

// errMACInUse is a reported interface whose MAC another machine has.
var errMACInUse = errors.New("MAC address in use")

// applyHardware is process_lxd_results: architecture, CPU, memory, physical interfaces
// (matched by MAC; new ones added, missing ones removed) and physical block devices
// (matched by serial or id_path, keeping their ids; missing ones removed), then the
// default storage layout while commissioning.
func (w *writer) applyHardware(m *machine, stdout []byte) error {
	rep, err := commissioning.ParseResources(stdout)
	if err != nil {
		return err
	}
	curArch, curSub := m.archParts()
	sub := "generic"
	if curArch == rep.Architecture && curSub != "generic" {
		sub = curSub
	}
	m.Architecture = rep.Architecture + "/" + sub
	m.CPUCount, m.CPUSpeed, m.CPUModel, m.Memory = rep.CPUCount, rep.CPUSpeedMHz, rep.CPUModel, rep.MemoryMiB

	if m.SkipNetworking {
		m.SkipNetworking = false
	} else {
		var ifaces []Interface
		for _, ri := range rep.Interfaces {
			if owner, used := w.r.macIndex[ri.MAC]; used && owner != m.SystemID {
				return fmt.Errorf("%w: interface %s: MAC address %s already in use on %s", errMACInUse, ri.Name, ri.MAC, w.r.machines[owner].Hostname)
			}
			var iface *Interface
			for i := range m.Interfaces {
				if m.Interfaces[i].MAC == ri.MAC && m.Interfaces[i].kind() == ifacePhysical {
					iface = &m.Interfaces[i]
				}
			}
			n := Interface{ID: int(w.next("interface")), MAC: ri.MAC}
			if iface != nil {
				n = *iface
			}
			n.Name, n.Disconnected, n.LinkSpeed, n.Vendor, n.Product = ri.Name, !ri.LinkConnected, ri.LinkSpeed, ri.Vendor, ri.Product
			n.Discovered = ri.Addresses
			ifaces = append(ifaces, n)
		}
		m.Interfaces = ifaces
		w.commissionedInterfaces(m)
	}

	if m.SkipStorage {
		m.SkipStorage = false
		return nil
	}
	prev := m.BlockDevices
	var disks []BlockDevice
	used := map[int]bool{}
	for _, rd := range rep.Disks {
		d := BlockDevice{Name: rd.Name, Model: rd.Model, Serial: rd.Serial, IDPath: rd.IDPath, Size: rd.Size,
			BlockSize: rd.BlockSize, Tags: rd.Tags, FirmwareVersion: rd.FirmwareVersion}
		for _, p := range prev {
			if used[p.ID] {
				continue
			}
			if (rd.Serial != "" && p.Serial == rd.Serial) || (rd.Serial == "" && rd.IDPath != "" && p.IDPath == rd.IDPath) {
				d.ID = p.ID
				used[p.ID] = true
				break
			}
		}
		if d.ID == 0 {
			d.ID = int(w.next("blockdevice"))
		}
		disks = append(disks, d)
	}
	m.BlockDevices = disks
	if m.Status == nodestatus.Commissioning {
		m.Storage = storageLayout{}
		if len(disks) > 0 {
			m.Storage.Layout = w.r.configString("default_storage_layout")
		}
	}
	return nil
}
