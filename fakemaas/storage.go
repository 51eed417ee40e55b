package fakemaas

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/maasemu/maasemu/fakemaas/curtincfg"
	"github.com/maasemu/maasemu/fakemaas/nodestatus"
)

// Hardware and storage through the API, so that a harness can describe a machine
// without commissioning it: nodes/<sid>/blockdevices/, nodes/<sid>/interfaces/ and
// machines/<sid>/?op=set_storage_layout.

// CustomStorageParam is the project's extension to set_storage_layout: with
// storage_layout=custom, a curtin storage configuration (YAML, a mapping with a storage
// key or the {version, config} mapping) passed to curtin as it is. MAAS 3.7 takes a
// custom layout only from commissioning data (the "storage-extra" of the commissioning
// output, in MAAS's own format); it has no API to give one.
const CustomStorageParam = "maasemu_curtin_storage"

const (
	minBlockDeviceSize = 4 * 1024 * 1024
	efiPartitionSize   = 512 * 1024 * 1024
)

var storageLayouts = []string{"flat", "lvm", "bcache", "vmfs6", "vmfs7", "custom", "blank"}

// parseSize is machine_readable_bytes (SI suffixes), or a percentage of whole.
func parseSize(v string, whole int64) (int64, error) {
	v = strings.TrimSpace(v)
	if strings.HasSuffix(v, "%") {
		p, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
		if err != nil || p < 0 {
			return 0, fmt.Errorf("%q is not a percentage", v)
		}
		return int64(float64(whole) * p / 100), nil
	}
	mult := int64(1)
	if n := len(v); n > 0 {
		switch v[n-1] {
		case 'K', 'k':
			mult = 1000
		case 'M', 'm':
			mult = 1000 * 1000
		case 'G', 'g':
			mult = 1000 * 1000 * 1000
		case 'T', 't':
			mult = 1000 * 1000 * 1000 * 1000
		case 'P', 'p':
			mult = 1000 * 1000 * 1000 * 1000 * 1000
		case 'E', 'e':
			mult = 1000 * 1000 * 1000 * 1000 * 1000 * 1000
		}
		if mult != 1 {
			v = v[:n-1]
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (a number of bytes, optionally with K, M, G, T, P or E)", v)
	}
	return n * mult, nil
}

// setStorageLayout is POST machines/<sid>/?op=set_storage_layout.
func (r *Region) setStorageLayout(sid string, q *request) error {
	layout, ok := q.get("storage_layout")
	if !ok || layout == "" {
		return validation(fieldErrors{"storage_layout": {"This field is required."}})
	}
	if !contains(storageLayouts, layout) {
		return validation(fieldErrors{"storage_layout": {fmt.Sprintf("Select a valid choice. %s is not one of the available choices.", layout)}})
	}
	return r.updateMachine(sid, func(w *writer, m *machine) error {
		if m.Status != nodestatus.Ready {
			return conflict("Cannot change the storage layout on a machine that is not Ready.")
		}
		if len(m.BlockDevices) == 0 {
			return badRequest("Machine is missing a boot disk; no storage layout can be applied.")
		}
		fail := func(format string, args ...any) error {
			return badRequest(fmt.Sprintf("Failed to configure storage layout '%s': %s", layout, fmt.Sprintf(format, args...)))
		}
		switch layout {
		case "bcache", "vmfs6", "vmfs7":
			return fail("the %s layout is not supported by maasemu (flat, lvm, custom and blank are)", layout)
		}
		st := storageLayout{Layout: layout}
		boot := m.BlockDevices[0]
		var err error
		size := func(k string, whole int64) int64 {
			v := q.str(k)
			if v == "" || err != nil {
				return 0
			}
			var n int64
			if n, err = parseSize(v, whole); err != nil {
				err = fmt.Errorf("%s: %v", k, err)
			}
			return n
		}
		st.BootSize = size("boot_size", boot.Size-efiPartitionSize)
		st.RootSize = size("root_size", boot.Size-efiPartitionSize)
		root := st.RootSize
		if root == 0 {
			root = boot.Size - efiPartitionSize - st.BootSize
		}
		st.LVSize = size("lv_size", root)
		if err != nil {
			return fail("%v", err)
		}
		st.VGName, st.LVName = q.str("vg_name"), q.str("lv_name")
		if dev := q.str("root_device"); dev != "" {
			name := strings.TrimPrefix(dev, "/dev/")
			found := false
			for _, d := range m.BlockDevices {
				if d.Name == name || strconv.Itoa(d.ID) == dev {
					st.RootDevice, found = d.Name, true
				}
			}
			if !found {
				return fail("root_device: no block device %s on this machine", dev)
			}
		}
		if layout == "custom" {
			st.Custom = q.str(CustomStorageParam)
			if st.Custom == "" {
				return fail("No custom storage layout configuration found (give the curtin storage configuration in %s, maasemu's extension)", CustomStorageParam)
			}
		}
		if layout != "blank" {
			// Render the storage now, so that a layout that does not fit is refused here.
			in := r.machineInput(m, &token{ConsumerKey: "check", Key: "check", Secret: "check"}, "127.0.0.1")
			in.Storage = curtincfg.Storage{Layout: st.Layout, BootSize: st.BootSize, RootSize: st.RootSize,
				RootDevice: st.RootDevice, VGName: st.VGName, LVName: st.LVName, LVSize: st.LVSize, Custom: st.Custom}
			if in.Deployment.OSystem == "" {
				in.Deployment.OSystem, in.Deployment.Series = "ubuntu", r.configString("default_distro_series")
				in.Deployment.Image = curtincfg.Image{Filetype: "squashfs"}
			}
			if _, err := curtincfg.CurtinConfig(in); err != nil {
				return fail("%v", err)
			}
		}
		m.Storage = st
		return nil
	})
}

// blockDeviceJSON renders a physical block device as MAAS's block device handler does.
func blockDeviceJSON(m *machine, d BlockDevice) map[string]any {
	tags := d.Tags
	if tags == nil {
		tags = []string{}
	}
	used := "Unused"
	if m.Storage.Layout != "" && m.Storage.Layout != "blank" && len(m.BlockDevices) > 0 && m.BlockDevices[0].ID == d.ID {
		used = "GPT partitioned with partitions for the " + m.Storage.Layout + " storage layout"
	}
	return map[string]any{"id": d.ID, "name": d.Name, "type": "physical", "model": d.Model,
		"serial": d.Serial, "id_path": nilIfEmpty(d.IDPath), "path": "/dev/disk/by-dname/" + d.Name, "size": d.Size,
		"block_size": d.BlockSize, "used_size": 0, "available_size": d.Size, "partition_table_type": nil,
		"partitions": []any{}, "filesystem": nil, "tags": tags, "uuid": nil, "storage_pool": nil,
		"used_for": used, "system_id": m.SystemID, "numa_node": 0, "firmware_version": nilIfEmpty(d.FirmwareVersion),
		"resource_uri": fmt.Sprintf("%snodes/%s/blockdevices/%d/", APIPrefix, m.SystemID, d.ID)}
}

// apiNodes serves nodes/<sid>/{blockdevices,interfaces,results}/...
func (r *Region) apiNodes(w http.ResponseWriter, q *request) error {
	if len(q.path) < 3 {
		return notFound("Unknown API endpoint: " + q.URL.Path + ".")
	}
	sid := q.path[1]
	r.mu.RLock()
	_, ok := r.machines[sid]
	r.mu.RUnlock()
	if !ok {
		return notFound("No Node matches the given query.")
	}
	switch q.path[2] {
	case "blockdevices":
		return r.apiBlockDevices(w, q, sid)
	case "interfaces":
		return r.apiInterfaces(w, q, sid)
	case "results":
		return r.apiResults(w, q, sid)
	}
	return notFound("Unknown API endpoint: " + q.URL.Path + ".")
}

func (r *Region) machineItem(sid string, f func(m *machine) any) any {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if m := r.machines[sid]; m != nil {
		return f(m)
	}
	return nil
}

func (r *Region) apiBlockDevices(w http.ResponseWriter, q *request, sid string) error {
	if len(q.path) == 3 {
		switch {
		case q.Method == http.MethodGet && q.op == "":
			writeJSON(w, http.StatusOK, r.machineItem(sid, func(m *machine) any {
				out := []any{}
				for _, d := range m.BlockDevices {
					out = append(out, blockDeviceJSON(m, d))
				}
				return out
			}))
			return nil
		case q.Method == http.MethodPost && q.op == "":
			var created BlockDevice
			err := r.updateMachine(sid, func(wr *writer, m *machine) error {
				d, err := blockDeviceForm(q, m)
				if err != nil {
					return err
				}
				d.ID = int(wr.next("blockdevice"))
				m.BlockDevices = append(m.BlockDevices, d)
				created = d
				return nil
			})
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, r.machineItem(sid, func(m *machine) any { return blockDeviceJSON(m, created) }))
			return nil
		}
		return unknownOp(q)
	}
	if len(q.path) != 4 {
		return notFound("Unknown API endpoint: " + q.URL.Path + ".")
	}
	id, err := strconv.Atoi(q.path[3])
	var found *BlockDevice
	r.mu.RLock()
	for _, d := range r.machines[sid].BlockDevices {
		if err == nil && d.ID == id || d.Name == q.path[3] {
			d := d
			found = &d
		}
	}
	r.mu.RUnlock()
	if found == nil {
		return notFound("No BlockDevice matches the given query.")
	}
	switch {
	case q.Method == http.MethodGet && q.op == "":
		writeJSON(w, http.StatusOK, r.machineItem(sid, func(m *machine) any { return blockDeviceJSON(m, *found) }))
		return nil
	case q.Method == http.MethodDelete && q.op == "":
		err := r.updateMachine(sid, func(wr *writer, m *machine) error {
			if m.Status != nodestatus.Ready {
				return conflict("Cannot delete block device because the machine is not Ready.")
			}
			var keep []BlockDevice
			for _, d := range m.BlockDevices {
				if d.ID != found.ID {
					keep = append(keep, d)
				}
			}
			m.BlockDevices = keep
			if len(keep) == 0 {
				m.Storage = storageLayout{}
			}
			return nil
		})
		if err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return unknownOp(q)
}

// blockDeviceForm is CreatePhysicalBlockDeviceForm with the model's validation.
func blockDeviceForm(q *request, m *machine) (BlockDevice, error) {
	fe := fieldErrors{}
	d := BlockDevice{Name: q.str("name"), Model: q.str("model"), Serial: q.str("serial"), IDPath: q.str("id_path")}
	if d.Name == "" {
		fe.add("name", "This field is required.")
	}
	for _, o := range m.BlockDevices {
		if d.Name != "" && o.Name == d.Name {
			fe.add("__all__", "Block device with this Node config and Name already exists.")
		}
	}
	if d.IDPath != "" && !strings.HasPrefix(d.IDPath, "/") {
		fe.add("id_path", fmt.Sprintf("'%s' is not an absolute path.", d.IDPath))
	}
	num := func(k string, min int64) int64 {
		v, ok := q.get(k)
		if !ok || v == "" {
			fe.add(k, "This field is required.")
			return 0
		}
		n, err := parseSize(v, 0)
		if err != nil || strings.HasSuffix(v, "%") {
			fe.add(k, "Enter a whole number.")
			return 0
		}
		if n < min {
			fe.add(k, fmt.Sprintf("Ensure this value is greater than or equal to %d.", min))
		}
		return n
	}
	d.Size = num("size", minBlockDeviceSize)
	d.BlockSize = int(num("block_size", 512))
	if len(fe) == 0 && d.IDPath == "" && (d.Serial == "" || d.Model == "") {
		fe.add("__all__", "serial/model are required if id_path is not provided.")
	}
	if len(fe) > 0 {
		return d, validation(fe)
	}
	return d, nil
}
