package fakemaas

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/maasemu/maasemu/fakemaas/curtincfg"
	"github.com/maasemu/maasemu/fakemaas/nodestatus"
	"github.com/maasemu/maasemu/trace"
)

var adjectives = []string{"able", "brave", "calm", "eager", "fair", "gentle", "happy", "keen", "lively", "merry", "neat", "proud", "quick", "ready", "sharp", "tidy", "vivid", "warm", "wise", "zesty"}
var animals = []string{"ant", "badger", "cod", "deer", "eel", "fox", "gnu", "hare", "ibis", "jay", "koala", "lynx", "mole", "newt", "otter", "puma", "quail", "raven", "seal", "toad"}

var hostnameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)
var macRE = regexp.MustCompile(`^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$`)

const sidAlphabet = "abcdefghjkmnpqrstuvwxy3456789"

func (r *Region) newSystemID() string {
	for {
		b := make([]byte, 6)
		for i := range b {
			b[i] = sidAlphabet[rand.IntN(len(sidAlphabet))]
		}
		if _, dup := r.machines[string(b)]; !dup {
			return string(b)
		}
	}
}

func (r *Region) newHostname() string {
	for {
		h := adjectives[rand.IntN(len(adjectives))] + "-" + animals[rand.IntN(len(animals))]
		taken := false
		for _, m := range r.machines {
			if m.Hostname == h {
				taken = true
				break
			}
		}
		if !taken {
			return h
		}
		h += strconv.Itoa(rand.IntN(1000))
	}
}

// setStatuses are the aggregate statuses of a machine's current script sets (-1: none).
type setStatuses struct{ commissioning, installation int }

func nilIfZero(n int) any {
	if n == 0 {
		return nil
	}
	return n
}

func scriptStatusName(st int) string {
	if n, ok := scriptStatusNames[st]; ok {
		return n
	}
	return "Unknown"
}

// machineJSON renders m with the fields MAAS's machine handler exposes (r.mu held).
func (r *Region) machineJSON(m *machine) map[string]any {
	sets := setStatuses{-1, -1}
	if s := r.scriptSets[m.CommissioningScriptSet]; s != nil {
		sets.commissioning = s.status()
	}
	if s := r.scriptSets[m.InstallationScriptSet]; s != nil {
		sets.installation = s.status()
	}
	return machineJSONWith(r.net, m, sets)
}

func machineJSONWith(n *netModel, m *machine, sets setStatuses) map[string]any {
	uri := APIPrefix + "machines/" + m.SystemID + "/"
	ifaces := make([]any, 0, len(m.Interfaces))
	var boot any
	bootIface := m.bootInterface()
	for x := range m.Interfaces {
		j := interfaceJSON(n, m, &m.Interfaces[x])
		ifaces = append(ifaces, j)
		if bootIface != nil && bootIface.ID == m.Interfaces[x].ID {
			boot = j
		}
	}
	disks := make([]any, 0, len(m.BlockDevices))
	var storage float64
	for _, d := range m.BlockDevices {
		disks = append(disks, blockDeviceJSON(m, d))
		storage += float64(d.Size) / 1e6
	}
	var bootDisk any
	if len(disks) > 0 {
		bootDisk = disks[0]
	}
	tags := m.Tags
	if tags == nil {
		tags = []string{}
	}
	fqdn := m.Hostname + "." + m.Domain
	return map[string]any{
		"system_id": m.SystemID, "hostname": m.Hostname, "description": m.Description,
		"hardware_uuid": nilIfEmpty(m.HardwareUUID), "domain": domainJSON(m.Domain), "fqdn": fqdn,
		"owner": nilIfEmpty(m.Owner), "owner_data": map[string]any{}, "locked": m.Locked,
		"cache_sets": []any{}, "bcaches": []any{}, "bios_boot_method": nilIfEmpty(m.BiosBootMethod),
		"boot_interface": boot, "architecture": m.Architecture, "min_hwe_kernel": nilIfEmpty(m.MinHWEKernel),
		"hwe_kernel": nilIfEmpty(m.HWEKernel), "cpu_count": m.CPUCount, "cpu_speed": m.CPUSpeed, "memory": m.Memory,
		"swap_size": nil, "storage": storage, "status": int(m.Status), "osystem": m.OSystem,
		"distro_series": m.DistroSeries, "ephemeral_deploy": m.EphemeralDeploy,
		"error_description": m.ErrorDescription, "netboot": m.Netboot, "power_type": m.PowerType,
		"power_state": m.PowerState, "tag_names": tags, "address_ttl": nil, "ip_addresses": machineIPAddresses(m),
		"interface_set": ifaces, "zone": zoneJSON(m.Zone), "pool": poolJSON(m.Pool), "disable_ipv4": false,
		"constraints_by_type": map[string]any{}, "boot_disk": bootDisk, "blockdevice_set": disks,
		"physicalblockdevice_set": disks, "virtualblockdevice_set": []any{}, "volume_groups": []any{},
		"raids": []any{}, "status_action": nilIfEmpty(m.StatusEventAction), "status_message": m.statusMessage(),
		"status_name": m.Status.String(), "node_type": 0, "node_type_name": "Machine",
		"special_filesystems": []any{}, "parent": nil,
		"default_gateways":                map[string]any{"ipv4": map[string]any{"gateway_ip": nil, "link_id": nil}, "ipv6": map[string]any{"gateway_ip": nil, "link_id": nil}},
		"current_commissioning_result_id": nilIfZero(m.CommissioningScriptSet), "current_testing_result_id": nil,
		"current_installation_result_id": nilIfZero(m.InstallationScriptSet),
		"commissioning_status":           sets.commissioning, "commissioning_status_name": scriptStatusName(sets.commissioning),
		"installation_status": sets.installation, "installation_status_name": scriptStatusName(sets.installation),
		"testing_status": -1, "testing_status_name": "Unknown",
		"cpu_test_status": -1, "cpu_test_status_name": "Unknown", "memory_test_status": -1, "memory_test_status_name": "Unknown",
		"network_test_status": -1, "network_test_status_name": "Unknown", "storage_test_status": -1, "storage_test_status_name": "Unknown",
		"other_test_status": -1, "other_test_status_name": "Unknown", "interface_test_status": -1, "interface_test_status_name": "Unknown",
		"hardware_info": map[string]any{}, "numanode_set": []any{map[string]any{"index": 0, "cores": []int{}, "memory": m.Memory, "hugepages_set": []any{}}},
		"workload_annotations": map[string]any{}, "last_sync": nil, "sync_interval": nil, "next_sync": nil,
		"enable_hw_sync": false, "enable_kernel_crash_dump": false, "is_dpu": false, "resource_uri": uri,
	}
}

// filterMachines applies the machines list / events filters (r.mu held).
func (r *Region) filterMachines(form map[string][]string) []*machine {
	has := func(k string) ([]string, bool) { v, ok := form[k]; return v, ok && len(v) > 0 }
	in := func(list []string, s string) bool {
		for _, x := range list {
			if x == s {
				return true
			}
		}
		return false
	}
	var out []*machine
	for _, m := range r.machines {
		if v, ok := has("id"); ok && !in(v, m.SystemID) {
			continue
		}
		if v, ok := has("not_id"); ok && in(v, m.SystemID) {
			continue
		}
		if v, ok := has("hostname"); ok && !in(v, m.Hostname) && !in(v, m.Hostname+"."+m.Domain) {
			continue
		}
		if v, ok := has("mac_address"); ok {
			found := false
			for _, i := range m.Interfaces {
				for _, x := range v {
					if normMAC(x) == i.MAC {
						found = true
					}
				}
			}
			if !found {
				continue
			}
		}
		if v, ok := has("domain"); ok && !in(v, m.Domain) {
			continue
		}
		if v, ok := has("zone"); ok && !in(v, m.Zone) {
			continue
		}
		if v, ok := has("pool"); ok && !in(v, m.Pool) {
			continue
		}
		if v, ok := has("agent_name"); ok && !in(v, m.AgentName) {
			continue
		}
		if v, ok := has("owner"); ok && !in(v, m.Owner) {
			continue
		}
		if v, ok := has("arch"); ok {
			match := false
			for _, a := range v {
				if a == m.Architecture || (!strings.Contains(a, "/") && strings.HasPrefix(m.Architecture, a+"/")) {
					match = true
				}
			}
			if !match {
				continue
			}
		}
		if v, ok := has("status"); ok {
			match := false
			for _, s := range v {
				if st, ok := nodestatus.Parse(s); ok && st == m.Status {
					match = true
				}
			}
			if !match {
				continue
			}
		}
		if v, ok := has("tags"); ok {
			all := true
			for _, t := range v {
				if !in(m.Tags, t) {
					all = false
				}
			}
			if !all {
				continue
			}
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].SystemID < out[j].SystemID
	})
	return out
}

func (r *Region) apiMachines(w http.ResponseWriter, q *request) error {
	if len(q.path) == 1 {
		switch {
		case q.Method == http.MethodGet && q.op == "":
			r.mu.RLock()
			ms := r.filterMachines(q.form)
			out := make([]any, 0, len(ms))
			for _, m := range ms {
				out = append(out, r.machineJSON(m))
			}
			r.mu.RUnlock()
			writeJSON(w, http.StatusOK, out)
		case q.Method == http.MethodGet && q.op == "list_allocated":
			r.mu.RLock()
			out := []any{}
			for _, m := range r.filterMachines(nil) {
				if m.Owner == q.user {
					out = append(out, r.machineJSON(m))
				}
			}
			r.mu.RUnlock()
			writeJSON(w, http.StatusOK, out)
		case q.Method == http.MethodPost && q.op == "":
			m, err := r.createMachine(q)
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, m)
		case q.Method == http.MethodPost && q.op == "allocate":
			m, err := r.allocate(q)
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, m)
		case q.Method == http.MethodPost && q.op == "release":
			for _, sid := range q.form["machines"] {
				if err := r.releaseMachine(q.Context(), sid, q.user, q.str("comment")); err != nil {
					return err
				}
			}
			writeJSON(w, http.StatusOK, q.form["machines"])
		default:
			return unknownOp(q)
		}
		return nil
	}
	if len(q.path) != 2 {
		return notFound("Unknown API endpoint: " + q.URL.Path + ".")
	}
	sid := q.path[1]
	r.mu.RLock()
	_, ok := r.machines[sid]
	r.mu.RUnlock()
	if !ok {
		return notFound("No Machine matches the given query.")
	}
	ctx := q.Context()
	comment := q.str("comment")
	var err error
	switch {
	case q.Method == http.MethodGet && q.op == "":
	case q.Method == http.MethodPut && q.op == "":
		err = r.updateMachineFromForm(sid, q)
	case q.Method == http.MethodDelete && q.op == "":
		err = r.locked(func() error {
			m := r.machines[sid]
			if err := r.commit(func(wr *writer) error { wr.delMachine(sid); return nil }); err != nil {
				return err
			}
			for _, i := range m.Interfaces {
				delete(r.macIndex, i.MAC)
			}
			delete(r.machines, sid)
			return nil
		})
		if err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	case q.Method == http.MethodPost && q.op == "deploy":
		err = r.deploy(ctx, sid, q)
	case q.Method == http.MethodPost && q.op == "commission":
		err = r.commission(ctx, sid, q)
	case q.Method == http.MethodPost && q.op == "set_storage_layout":
		err = r.setStorageLayout(sid, q)
	case q.Method == http.MethodPost && q.op == "release":
		err = r.releaseMachine(ctx, sid, q.user, comment)
	case q.Method == http.MethodPost && q.op == "power_on":
		err = r.powerOnOp(ctx, sid, q)
	case q.Method == http.MethodPost && q.op == "power_off":
		err = r.updateMachine(sid, func(w *writer, m *machine) error {
			w.nodeEvent(m, "REQUEST_NODE_STOP", requestDescription(q.user, comment), "stop")
			return nil
		})
		if err == nil {
			r.powerAction(ctx, sid, "off", false)
		}
	case q.Method == http.MethodGet && q.op == "query_power_state":
		state, err := r.queryPower(ctx, sid)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"state": state})
		return nil
	case q.Method == http.MethodGet && q.op == "power_parameters":
		r.mu.RLock()
		p := copyParams(r.machines[sid].PowerParams)
		r.mu.RUnlock()
		writeJSON(w, http.StatusOK, p)
		return nil
	case q.Method == http.MethodPost && q.op == "abort":
		err = r.updateMachine(sid, func(w *writer, m *machine) error { return w.abort(m, q.user, comment) })
		if err == nil {
			r.mu.RLock()
			st := r.machines[sid].Status
			r.mu.RUnlock()
			if st == nodestatus.Allocated || st == nodestatus.New {
				r.powerAction(ctx, sid, "off", false)
			}
		}
	case q.Method == http.MethodPost && q.op == "mark_broken":
		err = r.updateMachine(sid, func(w *writer, m *machine) error { return w.markBroken(m, q.user, comment) })
	case q.Method == http.MethodPost && q.op == "mark_fixed":
		err = r.updateMachine(sid, func(w *writer, m *machine) error { return w.markFixed(m, q.user, comment) })
	case q.Method == http.MethodPost && (q.op == "lock" || q.op == "unlock"):
		err = r.updateMachine(sid, func(w *writer, m *machine) error {
			want := q.op == "lock"
			if m.Locked == want {
				return conflict(fmt.Sprintf("Machine is already %sed", q.op))
			}
			if want && m.Status != nodestatus.Deployed && m.Status != nodestatus.Deploying {
				return conflict("Can't lock, machine is not deployed")
			}
			m.Locked = want
			return nil
		})
	default:
		return unknownOp(q)
	}
	if err != nil {
		return err
	}
	r.mu.RLock()
	m := r.machines[sid]
	var j map[string]any
	if m != nil {
		j = r.machineJSON(m)
	}
	r.mu.RUnlock()
	if j == nil {
		return notFound("No Machine matches the given query.")
	}
	writeJSON(w, http.StatusOK, j)
	return nil
}

// usableArchitectures are the architectures with a usable, xinstallable boot resource, as
// MAAS computes them (r.mu held).
func (r *Region) usableArchitectures() []string {
	set := map[string]bool{}
	for _, res := range r.resources {
		s := res.latestComplete()
		if s == nil || res.BootloaderType != "" {
			continue
		}
		types := map[string]bool{}
		for _, f := range s.Files {
			types[f.Filetype] = true
		}
		usable := types["boot-kernel"] && types["boot-initrd"] && (types["squashfs"] || types["root-image.gz"])
		if !usable || !xinstallable(types) {
			continue
		}
		arch, _ := res.arch()
		if !strings.Contains(res.Architecture, "hwe-") && !strings.Contains(res.Architecture, "ga-") {
			set[res.Architecture] = true
		}
		for _, sa := range strings.Split(res.Extra["subarches"], ",") {
			sa = strings.TrimSpace(sa)
			if sa != "" && !strings.Contains(sa, "hwe-") && !strings.Contains(sa, "ga-") {
				set[arch+"/"+sa] = true
			}
		}
		if p := res.Extra["platform"]; p != "" {
			set[arch+"/"+p] = true
		}
	}
	return sortedKeys(set)
}

func xinstallable(types map[string]bool) bool {
	for t := range types {
		switch t {
		case "squashfs", "root-tgz", "root-tbz", "root-txz", "root-dd", "root-dd.tar", "root-dd.raw",
			"root-dd.bz2", "root-dd.gz", "root-dd.xz", "root-dd.tar.bz2", "root-dd.tar.xz", "root-image.gz":
			return true
		}
	}
	return false
}

func invalidArch(value string, archs []string) string {
	quoted := make([]string, 0, len(archs))
	for _, a := range archs {
		quoted = append(quoted, "'"+a+"'")
	}
	if len(quoted) == 0 {
		quoted = []string{"''"}
	}
	return fmt.Sprintf("'%s' is not a valid architecture.  It should be one of: %s.", value, strings.Join(quoted, ", "))
}

func fixArchitecture(arch, sub string) (string, error) {
	switch {
	case strings.Contains(arch, "/") && sub != "":
		return "", badRequest("Subarchitecture cannot be specified twice.")
	case arch != "" && sub != "":
		return arch + "/" + sub, nil
	case arch != "" && !strings.Contains(arch, "/"):
		return arch + "/generic", nil
	}
	return arch, nil
}

var hweRE = regexp.MustCompile(`(hwe|ga)-.+`)

// machineForm validates the create/update fields MAAS's MachineForm takes. It fills m.
func (r *Region) machineForm(q *request, m *machine, creating bool) error {
	fe := fieldErrors{}
	arch, sub := q.str("architecture"), q.str("subarchitecture")
	if hweRE.MatchString(arch) || hweRE.MatchString(sub) {
		return badRequest("hwe kernel must be specified using the min_hwe_kernel argument.")
	}
	if k := q.str("min_hwe_kernel"); k != "" && !hweRE.MatchString(k) {
		return badRequest(`min_hwe_kernel must start with "hwe-" or "ga-"`)
	}
	if _, given := q.get("architecture"); given || creating {
		a, err := fixArchitecture(arch, sub)
		if err != nil {
			return err
		}
		usable := r.usableArchitectures()
		switch {
		case a == "" && creating:
			fe.add("architecture", "This field is required.")
		case a != "" && !contains(usable, a):
			fe.add("architecture", invalidArch(a, usable))
		default:
			if a != "" {
				m.Architecture = a
			}
		}
	}
	if v, ok := q.get("min_hwe_kernel"); ok {
		m.MinHWEKernel = v
	}
	if h, ok := q.get("hostname"); ok && h != "" {
		name, domain, dotted := cut(h, ".")
		switch {
		case !hostnameRE.MatchString(name):
			fe.add("hostname", fmt.Sprintf("Invalid hostname: Label contains disallowed characters or is too long: %s", name))
		case dotted && domain != "maas":
			fe.add("hostname", "Nonexistant domain.")
		default:
			for _, o := range r.machines {
				if o.SystemID != m.SystemID && o.Hostname == name {
					fe.add("hostname", fmt.Sprintf("Node with hostname \"%s\" already exists", name))
				}
			}
			m.Hostname = name
		}
	}
	if d, ok := q.get("domain"); ok && d != "" {
		if d != "maas" {
			fe.add("domain", "Select a valid choice. That choice is not one of the available choices.")
		} else {
			m.Domain = d
		}
	}
	if z, ok := q.get("zone"); ok && z != "" {
		if z != "default" {
			fe.add("zone", "Select a valid choice. That choice is not one of the available choices.")
		}
	}
	if p, ok := q.get("pool"); ok && p != "" {
		if p != "default" {
			fe.add("pool", "Select a valid choice. That choice is not one of the available choices.")
		}
	}
	if v, ok := q.get("description"); ok {
		m.Description = v
	}
	if v, ok := q.get("cpu_count"); ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			fe.add("cpu_count", "Enter a whole number.")
		} else {
			m.CPUCount = n
		}
	}
	if v, ok := q.get("memory"); ok && v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			fe.add("memory", "Enter a whole number.")
		} else {
			m.Memory = n
		}
	}
	if pt, ok := q.get("power_type"); ok {
		if _, known := r.powerDriver(pt); !known && pt != "" {
			fe.add("power_type", fmt.Sprintf("Select a valid choice. %s is not one of the available choices.", pt))
		} else {
			m.PowerType = pt
		}
	}
	params := map[string]string{}
	for k, v := range q.form {
		if strings.HasPrefix(k, "power_parameters_") && len(v) > 0 {
			params[strings.TrimPrefix(k, "power_parameters_")] = v[len(v)-1]
		}
	}
	if len(params) > 0 {
		if m.PowerParams == nil {
			m.PowerParams = map[string]string{}
		}
		for k, v := range params {
			m.PowerParams[k] = v
		}
	}
	if macs, ok := q.form["mac_addresses"]; ok || creating {
		var ifaces []Interface
		seen := map[string]bool{}
		var bad []string
		for _, raw := range macs {
			if !macRE.MatchString(strings.TrimSpace(raw)) {
				bad = append(bad, fmt.Sprintf("'%s' is not a valid MAC address.", raw))
				continue
			}
			hw, _ := net.ParseMAC(strings.ReplaceAll(strings.TrimSpace(raw), "-", ":"))
			mac := hw.String()
			if seen[mac] {
				continue
			}
			seen[mac] = true
			if owner, used := r.macIndex[mac]; used && owner != m.SystemID {
				bad = append(bad, fmt.Sprintf("MAC address %s already in use on %s.", mac, r.machines[owner].Hostname))
				continue
			}
			ifaces = append(ifaces, Interface{MAC: mac})
		}
		switch {
		case len(bad) > 0:
			fe.add("mac_addresses", "One or more MAC addresses is invalid. ("+strings.Join(bad, " ")+")")
		case len(ifaces) == 0 && creating:
			fe.add("mac_addresses", "This field is required.")
		case len(ifaces) > 0:
			m.Interfaces = withPhysical(m.Interfaces, ifaces)
		}
	}
	if len(fe) > 0 {
		return validation(fe)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (r *Region) createMachine(q *request) (map[string]any, error) {
	commission, err := q.boolParam("commission", true)
	if err != nil {
		return nil, err
	}
	deployed, err := q.boolParam("deployed", false)
	if err != nil {
		return nil, err
	}
	opts, err := commissionOptions(q)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	var sid string
	commissioning := commission && !deployed
	err = r.locked(func() error {
		now := r.now().UTC()
		m := &machine{SystemID: r.newSystemID(), Domain: "maas", Zone: "default", Pool: "default",
			PowerType: "manual", PowerState: "unknown", Netboot: true, Status: nodestatus.New, Created: now, Updated: now}
		if err := r.machineForm(q, m, true); err != nil {
			return err
		}
		if m.Hostname == "" {
			m.Hostname = r.newHostname()
		}
		if m.PowerType == "" {
			m.PowerType = "manual"
		}
		if err := r.commit(func(w *writer) error {
			w.assignInterfaces(m, !commissioning)
			w.nodeEvent(m, "REQUEST_MACHINE_CREATE", requestDescription(q.user, ""), "create")
			switch {
			case deployed:
				// A machine that is already deployed is recorded as Deployed, as MAAS does.
				m.Netboot = false
				if err := w.setStatus(m, nodestatus.Ready); err != nil {
					return err
				}
				m.Status = nodestatus.Deployed
				m.Owner = q.user
			case commissioning:
				if err := w.startCommissioning(m, q.user, opts.enableSSH, opts.skipNetworking, opts.skipStorage); err != nil {
					return err
				}
			default:
				// MAAS 3.7 leaves a machine created with commission=false New; the fake
				// makes it Ready so that hardware can be described through the API.
				if err := w.setStatus(m, nodestatus.Ready); err != nil {
					return err
				}
				w.nodeEvent(m, "READY", "", "")
			}
			w.putMachine(m)
			return nil
		}); err != nil {
			return err
		}
		r.machines[m.SystemID] = m
		for _, i := range m.Interfaces {
			r.macIndex[i.MAC] = m.SystemID
		}
		sid = m.SystemID
		out = r.machineJSON(m)
		return nil
	})
	if err == nil && commissioning {
		r.powerAction(q.Context(), sid, "on", true)
		r.mu.RLock()
		out = r.machineJSON(r.machines[sid])
		r.mu.RUnlock()
	}
	return out, err
}

// commissioningOpts are the CommissionForm fields the fake uses.
type commissioningOpts struct{ enableSSH, skipNetworking, skipStorage bool }

func commissionOptions(q *request) (commissioningOpts, error) {
	var o commissioningOpts
	var err error
	if o.enableSSH, err = q.boolParam("enable_ssh", false); err != nil {
		return o, err
	}
	if o.skipNetworking, err = q.boolParam("skip_networking", false); err != nil {
		return o, err
	}
	if o.skipStorage, err = q.boolParam("skip_storage", false); err != nil {
		return o, err
	}
	return o, nil
}

// commission is POST machines/<sid>/?op=commission.
func (r *Region) commission(ctx context.Context, sid string, q *request) error {
	opts, err := commissionOptions(q)
	if err != nil {
		return err
	}
	err = r.updateMachine(sid, func(w *writer, m *machine) error {
		return w.startCommissioning(m, q.user, opts.enableSSH, opts.skipNetworking, opts.skipStorage)
	})
	if err != nil {
		return err
	}
	r.powerAction(ctx, sid, "on", true)
	return nil
}

func (r *Region) updateMachineFromForm(sid string, q *request) error {
	return r.locked(func() error {
		old := r.machines[sid]
		m := old.clone()
		if err := r.machineForm(q, m, false); err != nil {
			return err
		}
		if err := r.commit(func(w *writer) error {
			w.assignInterfaces(m, !nodestatus.CommissioningLike(m.Status))
			m.Updated = r.now().UTC()
			w.putMachine(m)
			return nil
		}); err != nil {
			return err
		}
		for _, i := range old.Interfaces {
			delete(r.macIndex, i.MAC)
		}
		for _, i := range m.Interfaces {
			r.macIndex[i.MAC] = sid
		}
		r.machines[sid] = m
		return nil
	})
}

// pyConstraints renders the constraints as MAAS's str(list of tuples) does.
func pyConstraints(form map[string][]string) string {
	var parts []string
	for _, k := range sortedKeys(form) {
		var vals []string
		for _, v := range form[k] {
			vals = append(vals, "'"+v+"'")
		}
		parts = append(parts, fmt.Sprintf("('%s', [%s])", k, strings.Join(vals, ", ")))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

var allocateFilters = []string{"name", "system_id", "arch", "cpu_count", "mem", "tags", "not_tags", "zone", "pool", "not_in_zone", "not_in_pool"}

func (r *Region) allocate(q *request) (map[string]any, error) {
	dryRun, err := q.boolParam("dry_run", false)
	if err != nil {
		return nil, err
	}
	intConstraint := func(k string) (float64, bool, error) {
		v, ok := q.get(k)
		if !ok || v == "" {
			return 0, false, nil
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, false, validation(fieldErrors{k: {"Invalid number: " + v}})
		}
		return f, true, nil
	}
	cpu, hasCPU, err := intConstraint("cpu_count")
	if err != nil {
		return nil, err
	}
	mem, hasMem, err := intConstraint("mem")
	if err != nil {
		return nil, err
	}
	if z := q.str("zone"); z != "" && z != "default" {
		return nil, validation(fieldErrors{"zone": {fmt.Sprintf("No such zone: '%s'.", z)}})
	}
	if p := q.str("pool"); p != "" && p != "default" {
		return nil, validation(fieldErrors{"pool": {fmt.Sprintf("No such pool: '%s'.", p)}})
	}
	arch := q.str("arch")
	if arch != "" {
		known := false
		r.mu.RLock()
		for _, a := range r.usableArchitectures() {
			if a == arch || strings.HasPrefix(a, arch+"/") {
				known = true
			}
		}
		r.mu.RUnlock()
		if !known {
			return nil, validation(fieldErrors{"arch": {"Architecture not recognised."}})
		}
	}
	var out map[string]any
	err = r.locked(func() error {
		var pick *machine
		for _, m := range r.filterMachines(nil) {
			if m.Status != nodestatus.Ready || m.Owner != "" || m.Locked {
				continue
			}
			if v := q.str("name"); v != "" && v != m.Hostname && v != m.Hostname+"."+m.Domain {
				continue
			}
			if v := q.str("system_id"); v != "" && v != m.SystemID {
				continue
			}
			if arch != "" && m.Architecture != arch && !strings.HasPrefix(m.Architecture, arch+"/") {
				continue
			}
			if hasCPU && float64(m.CPUCount) < cpu {
				continue
			}
			if hasMem && float64(m.Memory) < mem {
				continue
			}
			ok := true
			for _, t := range q.form["tags"] {
				for _, tt := range strings.Split(t, ",") {
					if tt = strings.TrimSpace(tt); tt != "" && !contains(m.Tags, tt) {
						ok = false
					}
				}
			}
			for _, t := range q.form["not_tags"] {
				if contains(m.Tags, t) {
					ok = false
				}
			}
			if !ok {
				continue
			}
			pick = m
			break
		}
		if pick == nil {
			given := map[string][]string{}
			for k, v := range q.form {
				given[k] = v
			}
			var described []string
			for _, k := range allocateFilters {
				if v := q.str(k); v != "" {
					described = append(described, k+"="+v)
				}
			}
			switch {
			case len(described) == 0:
				return conflict("No machine available.")
			case q.str("system_id") != "":
				return conflict(fmt.Sprintf("No machine with system ID %s available.", q.str("system_id")))
			}
			return conflict(fmt.Sprintf("No available machine matches constraints: %s (resolved to \"%s\")", pyConstraints(given), strings.Join(described, " ")))
		}
		if dryRun {
			out = r.machineJSON(pick)
			return nil
		}
		m := pick.clone()
		if err := r.commit(func(w *writer) error {
			if err := w.acquire(m, q.user, q.str("agent_name"), q.str("comment")); err != nil {
				return err
			}
			m.Updated = r.now().UTC()
			w.putMachine(m)
			return nil
		}); err != nil {
			return err
		}
		r.machines[m.SystemID] = m
		out = r.machineJSON(m)
		return nil
	})
	return out, err
}

// deploy is POST machines/<sid>/?op=deploy.
func (r *Region) deploy(ctx context.Context, sid string, q *request) error {
	var userData []byte
	if ud, ok := q.get("user_data"); ok && ud != "" {
		b, err := base64.StdEncoding.DecodeString(ud)
		if err != nil {
			return validation(fieldErrors{"user_data": {"Invalid user data: not valid base64."}})
		}
		userData = b
	}
	ephemeral, err := q.boolParam("ephemeral_deploy", false)
	if err != nil {
		return err
	}
	err = r.updateMachine(sid, func(w *writer, m *machine) error {
		if m.Status == nodestatus.Ready {
			if m.Owner != "" && m.Owner != q.user {
				return conflict("Can't allocate a machine belonging to another user.")
			}
			if err := w.acquire(m, q.user, q.str("agent_name"), q.str("comment")); err != nil {
				return err
			}
		}
		if !nodestatus.CanTransition(m.Status, nodestatus.Deploying) || m.Status == nodestatus.Deploying {
			return conflict(fmt.Sprintf("Can't deploy a machine that is in the '%s' state", m.Status))
		}
		series := q.str("distro_series")
		if series == "" {
			series = r.configString("default_distro_series")
		}
		osys, rel, ok := r.resolveRelease(series, m.Architecture)
		if !ok {
			return validation(fieldErrors{"distro_series": {fmt.Sprintf("'%s' is not a valid distro_series.  It should be one of: %s.", series, strings.Join(r.releaseChoices(), ", "))}})
		}
		if k := q.str("hwe_kernel"); k != "" {
			if !hweRE.MatchString(k) && k != "generic" {
				return validation(fieldErrors{"hwe_kernel": {fmt.Sprintf("%s is not available for %s/%s on %s.", k, osys, rel, m.Architecture)}})
			}
			m.HWEKernel = k
		}
		m.OSystem, m.DistroSeries = osys, rel
		m.UserData = userData
		// A diskless machine is deployed to memory.
		m.EphemeralDeploy = ephemeral || len(m.BlockDevices) == 0
		if !m.EphemeralDeploy {
			// Check that the curtin configuration renders (get_curtin_merged_config).
			in := r.machineInput(m, &token{ConsumerKey: "check", Key: "check", Secret: "check"}, requestHost(q.Request))
			if err := curtincfg.CheckDeploy(in); err != nil {
				return badRequest(err.Error())
			}
		}
		return w.startDeployment(m, q.user, q.str("comment"))
	})
	if err != nil {
		return err
	}
	r.powerAction(ctx, sid, "on", true)
	return nil
}

func (r *Region) powerOnOp(ctx context.Context, sid string, q *request) error {
	var deploying bool
	err := r.updateMachine(sid, func(w *writer, m *machine) error {
		if m.Owner == "" {
			return conflict("Can't start node: it hasn't been allocated.")
		}
		if ud, ok := q.get("user_data"); ok && ud != "" {
			if b, err := base64.StdEncoding.DecodeString(ud); err == nil {
				m.UserData = b
			} else {
				m.UserData = []byte(ud)
			}
		}
		if m.Status == nodestatus.Allocated {
			deploying = true
			if m.OSystem == "" {
				m.OSystem, m.DistroSeries = r.configString("default_osystem"), r.configString("default_distro_series")
			}
			return w.startDeployment(m, q.user, q.str("comment"))
		}
		w.nodeEvent(m, "REQUEST_NODE_START", requestDescription(q.user, q.str("comment")), "start")
		return nil
	})
	if err != nil {
		return err
	}
	r.powerAction(ctx, sid, "on", deploying)
	return nil
}

func (r *Region) releaseMachine(ctx context.Context, sid, user, comment string) error {
	var powerOff bool
	err := r.updateMachine(sid, func(w *writer, m *machine) error {
		switch {
		case m.Status == nodestatus.Releasing || m.Status == nodestatus.Ready:
			return nil
		case nodestatus.Releasable(m.Status):
			powerOff = true
			return w.release(m, user, comment)
		}
		return conflict(fmt.Sprintf("Machine cannot be released in its current state ('%s').", m.Status))
	})
	if err == nil && powerOff {
		r.powerAction(ctx, sid, "off", false)
	}
	return err
}

func (r *Region) queryPower(ctx context.Context, sid string) (string, error) {
	r.mu.RLock()
	m := r.machines[sid]
	ptype, params := m.PowerType, copyParams(m.PowerParams)
	r.mu.RUnlock()
	d, ok := r.powerDriver(ptype)
	if !ok {
		return "", badRequest(fmt.Sprintf("No power driver for power type %s.", ptype))
	}
	state, err := d.PowerQuery(ctx, params)
	r.sink.Emit(trace.Event{Source: trace.SourcePower, Kind: trace.KindPower, Machine: sid,
		Message: "power query (" + ptype + "): " + state, Attrs: map[string]any{"power_type": ptype, "action": "query", "state": state}})
	if err != nil {
		_ = r.updateMachine(sid, func(w *writer, m *machine) error {
			m.PowerState = "error"
			w.nodeEvent(m, "NODE_POWER_QUERY_FAILED", "Power state could not be queried: "+err.Error(), "")
			return nil
		})
		return "", textError(http.StatusServiceUnavailable, "Power state could not be queried: "+err.Error())
	}
	_ = r.updateMachine(sid, func(w *writer, m *machine) error { m.PowerState = state; return nil })
	return state, nil
}
