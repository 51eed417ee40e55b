package fakemaas_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canonical/gomaasclient/entity"
	"github.com/google/go-cmp/cmp"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/fakemaas/commissioning"
	"github.com/maasemu/maasemu/fakemaas/regiontest"
)

func machineMap(t *testing.T, env *regiontest.Env, sid string) map[string]any {
	t.Helper()
	res := call(t, env, env.APIKey, http.MethodGet, "/MAAS/api/2.0/machines/"+sid+"/", nil, false)
	var m map[string]any
	if err := json.Unmarshal([]byte(res.Body), &m); err != nil {
		t.Fatalf("machine %s: %+v", sid, res)
	}
	return m
}

func op(t *testing.T, env *regiontest.Env, sid, operation string, form url.Values) apiResult {
	t.Helper()
	if form == nil {
		form = url.Values{}
	}
	return call(t, env, env.APIKey, http.MethodPost, "/MAAS/api/2.0/machines/"+sid+"/?op="+operation, form, false)
}

// waitStatus polls until the machine has status want (the monitor works in the
// background); the test's own deadline bounds it.
func waitStatus(t *testing.T, env *regiontest.Env, sid, want string) map[string]any {
	t.Helper()
	for {
		m := machineMap(t, env, sid)
		if m["status_name"] == want {
			return m
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("machine never became %s (is %v)", want, m["status_name"])
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestCommissioningOutcomes(t *testing.T) {
	env := regiontest.Start(t)
	env.ImportDefaultStream(t)
	rack := env.StartRack(t)
	c := env.Client
	create := func(host, mac, power string) string {
		m, err := c.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: host, PowerType: power,
			MACAddresses: []string{mac}}, map[string]any{"power_parameters_power_id": host})
		if err != nil {
			t.Fatal(err)
		}
		return m.SystemID
	}

	// manual power: MAAS cannot start the machine; it waits, Commissioning, for the operator.
	manual := create("manual1", "52:54:00:0c:00:01", "manual")
	if m := machineMap(t, env, manual); m["status_name"] != "Commissioning" {
		t.Errorf("manual machine: %v", m["status_name"])
	}
	if calls := env.Power.Calls(); len(calls) != 0 {
		t.Errorf("power calls for a manual machine: %v", calls)
	}
	// Abort: New, owner cleared.
	if res := op(t, env, manual, "abort", nil); res.Status != http.StatusOK {
		t.Fatalf("abort: %+v", res)
	}
	if m := machineMap(t, env, manual); m["status_name"] != "New" || m["owner"] != nil {
		t.Errorf("aborted commissioning: %v owner %v", m["status_name"], m["owner"])
	}

	// Commissioning data MAAS cannot process fails the script, so the final OK fails
	// commissioning.
	badData := create("bad1", "52:54:00:0c:00:02", "test")
	kp, err := env.Region.BootConfig(t.Context(), fakemaas.BootRequest{MAC: "52:54:00:0c:00:02", LocalIP: rack})
	if err != nil {
		t.Fatal(err)
	}
	n := bootNode(t, kp.PreseedURL)
	if res := n.signal(commissioning.ResourcesResult([]byte(`{"api_version": "1.0", "api_extensions": [`))); res.Status != http.StatusOK {
		t.Fatalf("signal: %s", res)
	}
	if res := n.signal(commissioning.Signal{Status: commissioning.StatusOK}); res.Status != http.StatusOK {
		t.Fatalf("signal OK: %s", res)
	}
	if m := machineMap(t, env, badData); m["status_name"] != "Failed commissioning" || m["commissioning_status_name"] != "Failed" {
		t.Errorf("bad commissioning data: %v, commissioning status %v", m["status_name"], m["commissioning_status_name"])
	}
	evs := eventDescriptions(t, env, badData)
	for _, want := range []string{"Script result lookup or storage error - Failed processing commissioning data: invalid JSON data",
		"Script result lookup or storage error - bad1.maas(" + badData + "): commissioning script '50-maas-01-commissioning' failed during post-processing.",
		"Failed commissioning"} {
		if !slices.Contains(evs, want) {
			t.Errorf("event %q missing:\n%s", want, strings.Join(evs, "\n"))
		}
	}

	// A FAILED signal fails commissioning; commissioning again from there works.
	if res := n.signal(commissioning.Signal{Status: commissioning.StatusFailed}); res.Status != http.StatusOK {
		t.Fatalf("signal on Failed commissioning: %s", res)
	}
	if res := op(t, env, badData, "commission", nil); res.Status != http.StatusOK {
		t.Fatalf("commission again: %+v", res)
	}
	commissionNode(t, env, rack, "52:54:00:0c:00:02", hardware("52:54:00:0c:00:02"))
	if m := machineMap(t, env, badData); m["status_name"] != "Ready" || len(m["blockdevice_set"].([]any)) != 2 {
		t.Errorf("recommissioned: %v with %d disks", m["status_name"], len(m["blockdevice_set"].([]any)))
	}
	// Recommissioning with skip_storage keeps the disks (and their ids) and the layout.
	before := machineMap(t, env, badData)["blockdevice_set"]
	if res := op(t, env, badData, "commission", url.Values{"skip_storage": {"true"}}); res.Status != http.StatusOK {
		t.Fatalf("commission skip_storage: %+v", res)
	}
	hw := hardware("52:54:00:0c:00:02")
	hw.Disks = hw.Disks[:1]
	commissionNode(t, env, rack, "52:54:00:0c:00:02", hw)
	if diff := cmp.Diff(before, machineMap(t, env, badData)["blockdevice_set"]); diff != "" {
		t.Errorf("skip_storage changed the disks (-before +after):\n%s", diff)
	}

	// A failed power on fails commissioning.
	env.Power.Fail("on", errors.New("BMC unreachable"))
	failing := create("pwr1", "52:54:00:0c:00:03", "test")
	env.Power.Fail("on", nil)
	m := machineMap(t, env, failing)
	if m["status_name"] != "Failed commissioning" || !strings.Contains(m["error_description"].(string), "BMC unreachable") {
		t.Errorf("power failure: %v %v", m["status_name"], m["error_description"])
	}
}

func TestDeploymentOutcomes(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	env := regiontest.Start(t, regiontest.Options{Now: clock, MonitorInterval: 2 * time.Millisecond})
	env.ImportDefaultStream(t)
	rack := env.StartRack(t)
	c := env.Client
	if _, err := regiontest.UploadCustomImage(c, "img", "amd64/generic", "tgz", "ubuntu/noble", []byte("tarball")); err != nil {
		t.Fatal(err)
	}

	// Ubuntu needs a layout that mounts /.
	noLayout, err := c.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: "nolayout",
		MACAddresses: []string{"52:54:00:0d:00:01"}}, map[string]any{"commission": "false"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.BlockDevices.Create(noLayout.SystemID, &entity.BlockDeviceParams{Name: "sda", Model: "M", Serial: "S1",
		Size: 20 << 30, BlockSize: 512}); err != nil {
		t.Fatal(err)
	}
	res := op(t, env, noLayout.SystemID, "deploy", url.Values{"distro_series": {"noble"}})
	if res.Status != http.StatusBadRequest || res.Body != `{"storage": ["Mount the root '/' filesystem to be able to deploy this node."]}` {
		t.Errorf("deploy without a layout: %+v", res)
	}
	if m := machineMap(t, env, noLayout.SystemID); m["status_name"] != "Ready" || m["owner"] != nil {
		t.Errorf("refused deploy changed the machine: %v owner %v", m["status_name"], m["owner"])
	}

	// A diskless machine is deployed to memory: the commissioning-shaped preseed, and its
	// own user-data read (from /MAAS/metadata/) ends the deployment.
	diskless, err := c.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: "diskless",
		MACAddresses: []string{"52:54:00:0d:00:02"}}, map[string]any{"commission": "false"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Machine.Deploy(diskless.SystemID, &entity.MachineDeployParams{DistroSeries: "noble"})
	if err != nil || !d.EphemeralDeploy {
		t.Fatalf("diskless deploy: ephemeral %v, %v", d.EphemeralDeploy, err)
	}
	kp, err := env.Region.BootConfig(t.Context(), fakemaas.BootRequest{MAC: "52:54:00:0d:00:02", LocalIP: rack})
	if err != nil || kp.Purpose != fakemaas.PurposeXInstall {
		t.Fatalf("ephemeral boot: %+v %v", kp, err)
	}
	eph := bootNode(t, kp.PreseedURL)
	if !strings.HasSuffix(eph.metadataURL, "/MAAS/metadata/") || eph.preseed["power_state"] != nil {
		t.Errorf("ephemeral preseed: metadata_url %s power_state %v", eph.metadataURL, eph.preseed["power_state"])
	}
	if r := eph.get("2012-03-01/user-data"); r.Status != http.StatusNotFound {
		t.Errorf("ephemeral user-data without user data: %s, want 404", r)
	}
	if m := machineMap(t, env, diskless.SystemID); m["status_name"] != "Deployed" {
		t.Errorf("ephemeral deployment after its user-data read: %v", m["status_name"])
	}

	// The deployment timeout: 30 minutes of no progress.
	slow := readyMachine(t, env, "slow", "52:54:00:0d:00:03")
	if _, err := c.Machine.Deploy(slow, &entity.MachineDeployParams{DistroSeries: "img"}); err != nil {
		t.Fatal(err)
	}
	advance(31 * time.Minute)
	m := waitStatus(t, env, slow, "Failed deployment")
	if m["error_description"] != "Node operation 'Deploying' timed out after 30 minutes." {
		t.Errorf("timeout reason: %v", m["error_description"])
	}

	// A FAILED signal from the ephemeral fails the deployment.
	sig := readyMachine(t, env, "sig", "52:54:00:0d:00:04")
	if _, err := c.Machine.Deploy(sig, &entity.MachineDeployParams{DistroSeries: "img"}); err != nil {
		t.Fatal(err)
	}
	kp, _ = env.Region.BootConfig(t.Context(), fakemaas.BootRequest{MAC: "52:54:00:0d:00:04", LocalIP: rack})
	sn := bootNode(t, kp.PreseedURL)
	if r := sn.signal(commissioning.Signal{Status: commissioning.StatusFailed, Error: "1 deployment script failed"}); r.Status != http.StatusOK {
		t.Fatalf("signal FAILED: %s", r)
	}
	m = machineMap(t, env, sig)
	if m["status_name"] != "Failed deployment" || m["error_description"] != "Installation failed (refer to the installation log for more information)." {
		t.Errorf("after FAILED: %v %v", m["status_name"], m["error_description"])
	}
	// MAAS's transitions from there: release -> Ready and powered off; mark_broken and
	// mark_fixed.
	if r := op(t, env, sig, "release", nil); r.Status != http.StatusOK {
		t.Fatalf("release: %+v", r)
	}
	if m := machineMap(t, env, sig); m["status_name"] != "Ready" || m["owner"] != nil || env.Power.State("sig") != "off" {
		t.Errorf("released: %v owner %v power %s", m["status_name"], m["owner"], env.Power.State("sig"))
	}
	if r := op(t, env, sig, "mark_broken", url.Values{"comment": {"bad disk"}}); r.Status != http.StatusOK {
		t.Fatalf("mark_broken: %+v", r)
	}
	if r := op(t, env, sig, "mark_fixed", nil); r.Status != http.StatusOK || machineMap(t, env, sig)["status_name"] != "Ready" {
		t.Errorf("mark_fixed: %+v", r)
	}

	// MarkFailed during a deployment: the harness's reason shows.
	stall := readyMachine(t, env, "stall", "52:54:00:0d:00:05")
	if _, err := c.Machine.Deploy(stall, &entity.MachineDeployParams{DistroSeries: "img"}); err != nil {
		t.Fatal(err)
	}
	if err := env.Region.MarkFailed(t.Context(), stall, "no DHCP request within 60s of power on"); err != nil {
		t.Fatal(err)
	}
	m = machineMap(t, env, stall)
	if m["status_name"] != "Failed deployment" || m["error_description"] != "no DHCP request within 60s of power on" {
		t.Errorf("MarkFailed: %v %v", m["status_name"], m["error_description"])
	}
	// Abort a deployment: Allocated.
	ab := readyMachine(t, env, "ab", "52:54:00:0d:00:06")
	if _, err := c.Machine.Deploy(ab, &entity.MachineDeployParams{DistroSeries: "img"}); err != nil {
		t.Fatal(err)
	}
	if r := op(t, env, ab, "abort", nil); r.Status != http.StatusOK || machineMap(t, env, ab)["status_name"] != "Allocated" {
		t.Errorf("abort deploying: %+v", r)
	}
	if r := op(t, env, ab, "abort", nil); r.Status != http.StatusConflict ||
		r.Body != "Cannot abort in current state: node "+ab+" is in state Allocated." {
		t.Errorf("abort an allocated machine: %+v", r)
	}
}

func TestStorageAndInterfaceAPI(t *testing.T) {
	env := regiontest.Start(t)
	env.ImportDefaultStream(t)
	c := env.Client
	m, err := c.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: "hw",
		MACAddresses: []string{"52:54:00:0e:00:01"}}, map[string]any{"commission": "false"})
	if err != nil {
		t.Fatal(err)
	}
	sid := m.SystemID
	bd := "/MAAS/api/2.0/nodes/" + sid + "/blockdevices/"
	post := func(path string, f url.Values) apiResult {
		return call(t, env, env.APIKey, http.MethodPost, path, f, false)
	}
	cases := []struct {
		name string
		path string
		form url.Values
		want apiResult
	}{
		{"disk without size", bd, url.Values{"name": {"sda"}, "model": {"M"}, "serial": {"S"}, "block_size": {"512"}},
			apiResult{400, "application/json", `{"size": ["This field is required."]}`}},
		{"disk too small", bd, url.Values{"name": {"sda"}, "model": {"M"}, "serial": {"S"}, "size": {"1000"}, "block_size": {"512"}},
			apiResult{400, "application/json", `{"size": ["Ensure this value is greater than or equal to 4194304."]}`}},
		{"disk without serial or id_path", bd, url.Values{"name": {"sda"}, "size": {"10G"}, "block_size": {"512"}},
			apiResult{400, "application/json", `{"__all__": ["serial/model are required if id_path is not provided."]}`}},
		{"relative id_path", bd, url.Values{"name": {"sda"}, "id_path": {"disk/by-id/x"}, "size": {"10G"}, "block_size": {"512"}},
			apiResult{400, "application/json", `{"id_path": ["'disk/by-id/x' is not an absolute path."]}`}},
		{"layout without disks", "/MAAS/api/2.0/machines/" + sid + "/?op=set_storage_layout", url.Values{"storage_layout": {"flat"}},
			apiResult{400, "text/plain", "Machine is missing a boot disk; no storage layout can be applied."}},
		{"unknown layout", "/MAAS/api/2.0/machines/" + sid + "/?op=set_storage_layout", url.Values{"storage_layout": {"zfs"}},
			apiResult{400, "application/json", `{"storage_layout": ["Select a valid choice. zfs is not one of the available choices."]}`}},
		{"interface with a bad MAC", "/MAAS/api/2.0/nodes/" + sid + "/interfaces/?op=create_physical", url.Values{"mac_address": {"zz"}},
			apiResult{400, "application/json", `{"mac_address": ["'zz' is not a valid MAC address."]}`}},
		{"interface with a MAC in use", "/MAAS/api/2.0/nodes/" + sid + "/interfaces/?op=create_physical", url.Values{"mac_address": {"52:54:00:0e:00:01"}},
			apiResult{400, "application/json", `{"mac_address": ["This MAC address is already in use by eth0 (physical) on hw."]}`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := stateSnapshot(t, env, sid)
			if diff := cmp.Diff(tc.want, post(tc.path, tc.form)); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
			if after := stateSnapshot(t, env, sid); after != before {
				t.Errorf("state changed:\n%s", cmp.Diff(before, after))
			}
		})
	}

	if r := post(bd, url.Values{"name": {"sda"}, "model": {"QEMU HARDDISK"}, "serial": {"QM1"}, "size": {"20G"}, "block_size": {"512"}}); r.Status != 200 {
		t.Fatalf("create disk: %+v", r)
	}
	if r := post(bd, url.Values{"name": {"sdb"}, "id_path": {"/dev/disk/by-id/wwn-0x1"}, "size": {"8000000000"}, "block_size": {"4096"}}); r.Status != 200 {
		t.Fatalf("create disk by id_path: %+v", r)
	}
	if r := post("/MAAS/api/2.0/nodes/"+sid+"/interfaces/?op=create_physical", url.Values{"mac_address": {"52:54:00:0e:00:02"}, "name": {"eth1"}}); r.Status != 200 {
		t.Fatalf("create_physical: %+v", r)
	}
	layout := "/MAAS/api/2.0/machines/" + sid + "/?op=set_storage_layout"
	for _, tc := range []struct {
		name string
		form url.Values
		want string
	}{
		{"lv larger than the disk", url.Values{"storage_layout": {"lvm"}, "lv_size": {"30G"}}, "Failed to configure storage layout 'lvm': "},
		{"custom without configuration", url.Values{"storage_layout": {"custom"}}, "No custom storage layout configuration found"},
		{"custom that is not YAML", url.Values{"storage_layout": {"custom"}, fakemaas.CustomStorageParam: {"storage: [unclosed"}}, "is not valid YAML"},
		{"bcache", url.Values{"storage_layout": {"bcache"}}, "not supported by maasemu"},
		{"root device unknown", url.Values{"storage_layout": {"flat"}, "root_device": {"/dev/sdz"}}, "no block device /dev/sdz"},
	} {
		r := post(layout, tc.form)
		if r.Status != 400 || !strings.Contains(r.Body, tc.want) {
			t.Errorf("%s: %+v, want 400 with %q", tc.name, r, tc.want)
		}
	}
	if r := post(layout, url.Values{"storage_layout": {"lvm"}, "vg_name": {"vg0"}, "lv_size": {"50%"}}); r.Status != 200 {
		t.Fatalf("lvm layout: %+v", r)
	}
	// The layout reaches the curtin configuration.
	if _, err := regiontest.UploadCustomImage(c, "img", "amd64/generic", "tgz", "ubuntu/noble", []byte("tarball")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Machine.Deploy(sid, &entity.MachineDeployParams{DistroSeries: "img"}); err != nil {
		t.Fatal(err)
	}
	creds, err := env.Region.NodeToken(sid)
	if err != nil {
		t.Fatal(err)
	}
	n := &nodeAgent{t: t, creds: creds, metadataURL: env.Server.URL + "/MAAS/metadata/curtin"}
	var spec struct{ Configs []string }
	if err := json.Unmarshal(n.mustGet("2012-03-01/"+fakemaas.InstallerRoute), &spec); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(spec.Configs[0], "type: lvm_volgroup") || !strings.Contains(spec.Configs[0], "name: vg0") ||
		!strings.Contains(spec.Configs[0], "serial: QM1") || !strings.Contains(spec.Configs[0], "path: /dev/disk/by-id/wwn-0x1") {
		t.Errorf("storage document does not reflect the API's disks and lvm layout:\n%s", spec.Configs[0])
	}

	// SSH keys reach meta-data/public-keys.
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0Ae3kz8Y0z8L2b3c4d5e6f7g8h9i0j1k2l3m4n5o6p test@maasemu"
	if _, err := c.SSHKeys.Create(key); err != nil {
		t.Fatal(err)
	}
	if r := post("/MAAS/api/2.0/account/prefs/sshkeys/", url.Values{"key": {"not a key"}}); r.Status != 400 {
		t.Errorf("bad SSH key: %+v", r)
	}
	if got := string(n.mustGet("2012-03-01/meta-data/public-keys")); got != key {
		t.Errorf("public-keys = %q", got)
	}
	if list := string(n.mustGet("2012-03-01/meta-data/")); list != "instance-id\nlocal-hostname\npublic-keys\nvendor-data\nx509" {
		t.Errorf("meta-data listing = %q", list)
	}
}
