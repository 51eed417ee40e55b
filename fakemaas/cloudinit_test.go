package fakemaas_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/canonical/gomaasclient/entity"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/fakemaas/regiontest"
)

// cloudInitPython finds a python3 that has Debian's cloud-init (and oauthlib).
func cloudInitPython(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		if exec.Command(path, "-c", "import cloudinit.sources.DataSourceMAAS, cloudinit.reporting.handlers, oauthlib").Run() == nil {
			return path
		}
	}
	t.Skip("cloud-init client test: needs python3 with Debian's cloud-init and oauthlib (python3-cloudinit; make deps installs cloud-init)")
	return ""
}

// runCloudInit runs testdata/cloudinit/maas_client.py with steps.
func runCloudInit(t *testing.T, py string, steps []map[string]any) []map[string]any {
	t.Helper()
	in, err := json.Marshal(steps)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), py, filepath.Join("..", "testdata", "cloudinit", "maas_client.py"))
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("maas_client.py: %v\n%s", err, stderr.String())
	}
	var out []map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("maas_client.py output: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	for i, r := range out {
		if e, ok := r["error"]; ok {
			t.Fatalf("step %d (%s): %v\nlog:\n%s", i, r["op"], e, stderr.String())
		}
	}
	return out
}

// readyMachine creates a Ready machine with one disk and the flat layout through the API.
func readyMachine(t *testing.T, env *regiontest.Env, host, mac string) string {
	t.Helper()
	m, err := env.Client.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: host, PowerType: "test",
		MACAddresses: []string{mac}}, map[string]any{"commission": "false", "power_parameters_power_id": host})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.BlockDevices.Create(m.SystemID, &entity.BlockDeviceParams{Name: "sda", Model: "QEMU HARDDISK",
		Serial: "QM-" + host, Size: 20 << 30, BlockSize: 512}); err != nil {
		t.Fatal(err)
	}
	if res := call(t, env, env.APIKey, http.MethodPost, "/MAAS/api/2.0/machines/"+m.SystemID+"/?op=set_storage_layout",
		url.Values{"storage_layout": {"flat"}}, false); res.Status != http.StatusOK {
		t.Fatalf("set_storage_layout: %+v", res)
	}
	return m.SystemID
}

func machineStatus(t *testing.T, env *regiontest.Env, sid string) string {
	t.Helper()
	m, err := env.Client.Machine.Get(sid)
	if err != nil {
		t.Fatal(err)
	}
	return m.StatusName
}

// TestCloudInitAgainstRegion has Debian's cloud-init read a deploying machine's preseed,
// MAAS datasource (meta-data, vendor-data, and the curtin pack as user-data, with OAuth)
// and post events with its webhook reporting handler, then read the installed OS's
// user-data: the machine goes Deployed; a second machine's FAIL event makes it Failed
// deployment.
func TestCloudInitAgainstRegion(t *testing.T) {
	py := cloudInitPython(t)
	env := regiontest.Start(t, regiontest.Options{Packer: &recordingPacker{}})
	env.ImportDefaultStream(t)
	rack := env.StartRack(t)
	if _, err := regiontest.UploadCustomImage(env.Client, "ciimage", "amd64/generic", "tgz", "ubuntu/noble", []byte("tarball")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	userData := "#cloud-config\nfinal_message: deployed by maasemu\n"

	deploy := func(host, mac string) (string, string) {
		sid := readyMachine(t, env, host, mac)
		if _, err := env.Client.Machine.Deploy(sid, &entity.MachineDeployParams{DistroSeries: "ciimage",
			UserData: base64.StdEncoding.EncodeToString([]byte(userData))}); err != nil {
			t.Fatal(err)
		}
		kp, err := env.Region.BootConfig(t.Context(), fakemaas.BootRequest{MAC: mac, LocalIP: rack})
		if err != nil {
			t.Fatal(err)
		}
		return sid, kp.PreseedURL
	}

	sid, preseedURL := deploy("ci1", "52:54:00:c1:00:01")
	installLog := filepath.Join(dir, "install.log")
	if err := os.WriteFile(installLog, []byte("cloud-init ran\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runCloudInit(t, py, []map[string]any{
		{"op": "cmdline_url", "url": preseedURL, "path": filepath.Join(dir, "91_kernel_cmdline_url.cfg")},
		{"op": "read_seed"},
		{"op": "events", "events": []map[string]any{
			{"event_type": "start", "name": "init-network", "description": "searching for network datasources"},
			{"event_type": "finish", "name": "init-network", "description": "searching for network datasources", "result": "SUCCESS"},
			{"event_type": "start", "name": "modules-final", "description": "running modules for final"},
			{"event_type": "finish", "name": "modules-final", "description": "running modules for final", "result": "SUCCESS",
				"files": []string{installLog}},
		}},
	})
	cfg := res[0]["config"].(map[string]any)
	mcfg := cfg["datasource"].(map[string]any)["MAAS"].(map[string]any)
	if want := "http://" + rack + ":5248/MAAS/metadata/curtin"; mcfg["metadata_url"] != want {
		t.Errorf("cloud-init's datasource config metadata_url = %v, want %s", mcfg["metadata_url"], want)
	}
	md := res[1]["meta_data"].(map[string]any)
	if md["instance-id"] != sid || md["local-hostname"] != "ci1.maas" {
		t.Errorf("meta-data read by cloud-init = %v", md)
	}
	vd, _ := res[1]["vendor_data"].(map[string]any)
	if s, _ := vd["cloud-init"].(string); !strings.HasPrefix(s, "#cloud-config\n") {
		t.Errorf("vendor-data read by cloud-init = %v", res[1]["vendor_data"])
	}
	ud, _ := base64.StdEncoding.DecodeString(res[1]["user_data"].(string))
	if want := "#!/bin/sh\n# pack of 8 configs\n"; string(ud) != want {
		t.Errorf("ephemeral user-data read by cloud-init = %q, want the curtin pack %q", ud, want)
	}
	if st := machineStatus(t, env, sid); st != "Deploying" {
		t.Errorf("after the ephemeral's reads and events: %q, want Deploying", st)
	}
	evs := eventDescriptions(t, env, sid)
	for _, want := range []string{"Node installation - 'cloudinit' searching for network datasources",
		"Node installation - 'cloudinit' running modules for final"} {
		if !slices.Contains(evs, want) {
			t.Errorf("event %q missing:\n%s", want, strings.Join(evs, "\n"))
		}
	}
	// The posted file is stored as an installation result.
	dl := call(t, env, env.APIKey, http.MethodGet, "/MAAS/api/2.0/nodes/"+sid+"/results/current-installation/?op=download&filters="+installLog, nil, false)
	if dl.Status != http.StatusOK || dl.Body != "cloud-init ran\n" {
		t.Errorf("file posted by cloud-init: %+v", dl)
	}

	// netboot off, then the installed OS's cloud-init (datasource on /MAAS/metadata/).
	req, _ := http.NewRequest(http.MethodPost, "http://"+rack+":5248/MAAS/metadata/latest/by-id/"+sid+"/", strings.NewReader("op=netboot_off"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if r := send(t, req); r.Status != http.StatusOK {
		t.Fatalf("netboot_off: %s", r)
	}
	res = runCloudInit(t, py, []map[string]any{
		{"op": "cmdline_url", "url": preseedURL, "path": filepath.Join(dir, "installed.cfg")},
		{"op": "datasource", "metadata_url": "http://" + rack + ":5248/MAAS/metadata/", "cloud_dir": t.TempDir()},
	})
	if res[1]["found"] != true || res[1]["instance_id"] != sid {
		t.Errorf("installed OS datasource = %v", res[1])
	}
	got, _ := base64.StdEncoding.DecodeString(res[1]["user_data"].(string))
	if string(got) != userData {
		t.Errorf("installed OS user-data = %q, want %q", got, userData)
	}
	if st := machineStatus(t, env, sid); st != "Deployed" {
		t.Errorf("after the installed OS read its user-data: %q, want Deployed", st)
	}

	// A failure reported by cloud-init's webhook fails the deployment.
	sid2, preseed2 := deploy("ci2", "52:54:00:c1:00:02")
	runCloudInit(t, py, []map[string]any{
		{"op": "cmdline_url", "url": preseed2, "path": filepath.Join(dir, "ci2.cfg")},
		{"op": "events", "events": []map[string]any{
			{"event_type": "start", "name": "modules-final", "description": "running modules for final"},
			{"event_type": "finish", "name": "modules-final", "description": "running modules for final", "result": "FAIL"},
		}},
	})
	var m map[string]any
	json.Unmarshal([]byte(call(t, env, env.APIKey, http.MethodGet, "/MAAS/api/2.0/machines/"+sid2+"/", nil, false).Body), &m)
	if m["status_name"] != "Failed deployment" || m["error_description"] != "Installation failed (refer to the installation log for more information)." {
		t.Errorf("after a FAIL event: %v %v", m["status_name"], m["error_description"])
	}
	evs = eventDescriptions(t, env, sid2)
	if !slices.Contains(evs, "Node installation failure - 'cloudinit' running modules for final") {
		t.Errorf("failure event missing:\n%s", strings.Join(evs, "\n"))
	}
}

// TestCloudInitWithoutCurtin: on a host without real curtin, Debian's cloud-init reading a
// deploying machine's curtin datasource finds it, with no user-data (so nothing would be
// installed) rather than a script, and the node's event log says why.
func TestCloudInitWithoutCurtin(t *testing.T) {
	py := cloudInitPython(t)
	env := regiontest.Start(t, regiontest.Options{Packer: unavailablePacker{}})
	env.ImportDefaultStream(t)
	rack := env.StartRack(t)
	if _, err := regiontest.UploadCustomImage(env.Client, "ciimage", "amd64/generic", "tgz", "ubuntu/noble", []byte("tarball")); err != nil {
		t.Fatal(err)
	}
	const mac = "52:54:00:c1:00:03"
	sid := readyMachine(t, env, "ci3", mac)
	if _, err := env.Client.Machine.Deploy(sid, &entity.MachineDeployParams{DistroSeries: "ciimage"}); err != nil {
		t.Fatal(err)
	}
	kp, err := env.Region.BootConfig(t.Context(), fakemaas.BootRequest{MAC: mac, LocalIP: rack})
	if err != nil {
		t.Fatal(err)
	}
	res := runCloudInit(t, py, []map[string]any{
		{"op": "cmdline_url", "url": kp.PreseedURL, "path": filepath.Join(t.TempDir(), "91_kernel_cmdline_url.cfg")},
		{"op": "read_seed"},
	})
	if md, _ := res[1]["meta_data"].(map[string]any); md["instance-id"] != sid || res[1]["user_data"] != nil {
		t.Errorf("cloud-init's seed read without curtin = %v, want the meta-data and no user-data", res[1])
	}
	if evs := eventDescriptions(t, env, sid); !slices.ContainsFunc(evs, func(e string) bool {
		return strings.HasPrefix(e, "Node installation failure - ") && strings.Contains(e, "real curtin is unavailable on this host")
	}) {
		t.Errorf("no event says curtin is unavailable:\n%s", strings.Join(evs, "\n"))
	}
	if st := machineStatus(t, env, sid); st != "Deploying" {
		t.Errorf("after the read: %q, want Deploying", st)
	}
}
