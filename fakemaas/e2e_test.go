package fakemaas_test

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/canonical/gomaasclient/entity"
	"github.com/google/go-cmp/cmp"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/fakemaas/commissioning"
	"github.com/maasemu/maasemu/fakemaas/curtincfg"
	"github.com/maasemu/maasemu/fakemaas/regiontest"
	"github.com/maasemu/maasemu/trace"
)

// hardware is the machine the end-to-end tests commission: two disks, two NICs.
func hardware(mac string) commissioning.Hardware {
	return commissioning.Hardware{Arch: "amd64", Hostname: "ubuntu", CPUCount: 2, CPUModel: "QEMU Virtual CPU version 2.5+",
		CPUSpeedMHz: 2400, MemoryBytes: 2 << 30,
		Disks: []commissioning.Disk{
			{Name: "sda", Model: "QEMU HARDDISK", Serial: "QM00001", DeviceID: "scsi-0QEMU_QEMU_HARDDISK_QM00001",
				DevicePath: "pci-0000:00:05.0-scsi-0:0:0:0", Size: 20 << 30},
			{Name: "sdb", Model: "QEMU HARDDISK", Serial: "QM00002", DeviceID: "scsi-0QEMU_QEMU_HARDDISK_QM00002", Size: 8 << 30},
		},
		NICs: []commissioning.NIC{
			{Name: "ens3", MAC: mac, SpeedMbps: 1000, Addresses: []string{"198.18.0.50/24"}},
			{Name: "ens4", MAC: strings.Replace(mac, "52:54:00", "52:54:01", 1), Disconnected: true},
		}}
}

// commissionNode boots a Commissioning machine through its commissioning ephemeral: boot
// config, preseed, meta-data, user-data, maas-scripts, the resources result and OK.
func commissionNode(t *testing.T, env *regiontest.Env, rack, mac string, hw commissioning.Hardware) *nodeAgent {
	t.Helper()
	kp, err := env.Region.BootConfig(t.Context(), fakemaas.BootRequest{MAC: mac, LocalIP: rack, Bootloader: "pxe"})
	if err != nil {
		t.Fatal(err)
	}
	if kp.Purpose != fakemaas.PurposeCommissioning {
		t.Fatalf("commissioning boot purpose = %q", kp.Purpose)
	}
	n := bootNode(t, kp.PreseedURL)
	if want := "http://" + rack + ":5248/MAAS/metadata/"; n.metadataURL != want {
		t.Errorf("commissioning metadata_url = %q, want %q", n.metadataURL, want)
	}
	if ps := n.preseed["power_state"].(map[string]any); ps["mode"] != "poweroff" {
		t.Errorf("commissioning power_state = %v", ps)
	}
	if got := string(n.mustGet("2012-03-01/meta-data/instance-id")); got != kp.SystemID {
		t.Errorf("instance-id = %q, want %q", got, kp.SystemID)
	}
	if ud := n.mustGet("2012-03-01/user-data"); !bytes.HasPrefix(ud, []byte("#!/usr/bin/env python3")) || !bytes.Contains(ud, []byte(n.creds.TokenKey)) {
		t.Errorf("commissioning user-data is not the script runner with the node's key:\n%.200s", ud)
	}
	tarball := n.mustGet("2012-03-01/maas-scripts")
	index := readTarIndex(t, tarball)
	scripts := index["1.0"].(map[string]any)["commissioning_scripts"].([]any)
	if len(scripts) != 1 || scripts[0].(map[string]any)["name"] != commissioning.ScriptName {
		t.Fatalf("commissioning scripts = %v", scripts)
	}
	resultID := int(scripts[0].(map[string]any)["script_result_id"].(float64))
	start := commissioning.Signal{Status: commissioning.StatusWorking, ScriptResultID: resultID, Name: commissioning.ScriptName}
	if res := n.signal(start); res.Status != http.StatusOK || string(res.Body) != "OK" {
		t.Fatalf("signal WORKING: %s", res)
	}
	report, err := commissioning.BuildResources(hw)
	if err != nil {
		t.Fatal(err)
	}
	result := commissioning.ResourcesResult(report)
	result.ScriptResultID = resultID
	if res := n.signal(result); res.Status != http.StatusOK {
		t.Fatalf("signal the resources: %s", res)
	}
	if res := n.signal(commissioning.Signal{Status: commissioning.StatusOK}); res.Status != http.StatusOK {
		t.Fatalf("signal OK: %s", res)
	}
	return n
}

func readTarIndex(t *testing.T, b []byte) map[string]any {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatal("maas-scripts has no index.json")
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "index.json" {
			var idx map[string]any
			if err := json.NewDecoder(tr).Decode(&idx); err != nil {
				t.Fatal(err)
			}
			return idx
		}
	}
}

func eventDescriptions(t *testing.T, env *regiontest.Env, sid string) []string {
	t.Helper()
	ev, err := env.Client.Events.Get(&entity.EventParams{ID: sid, Level: "DEBUG", Limit: "1000"})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := len(ev.Events) - 1; i >= 0; i-- {
		e := ev.Events[i]
		out = append(out, strings.TrimSuffix(e.Type+" - "+e.Description, " - "))
	}
	return out
}

// TestEndToEndCommissionDeploy walks a machine through commissioning and the deployment of
// a custom image with a Go client acting as the machine's agent, over HTTP through a
// rack address, and checks each step against what MAAS does.
func TestEndToEndCommissionDeploy(t *testing.T) {
	env := regiontest.Start(t)
	env.ImportDefaultStream(t)
	rack := env.StartRack(t)
	c := env.Client
	const mac = "52:54:00:12:34:56"

	image := bytes.Repeat([]byte("dd image "), 1000)
	if _, err := regiontest.UploadCustomImage(c, "myimage", "amd64/generic", "ddgz", "ubuntu/noble", image); err != nil {
		t.Fatal(err)
	}

	// Create: commissioning starts and the machine is powered on.
	m, err := c.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: "node1", PowerType: "test",
		MACAddresses: []string{mac}}, map[string]any{"power_parameters_power_id": "vm-1"})
	if err != nil {
		t.Fatal(err)
	}
	sid := m.SystemID
	if m.StatusName != "Commissioning" || m.Owner != "admin" {
		t.Fatalf("created machine: status %q owner %q, want Commissioning owned by admin", m.StatusName, m.Owner)
	}
	if diff := cmp.Diff([]string{"on vm-1"}, env.Power.Calls()); diff != "" {
		t.Errorf("power calls (-want +got):\n%s", diff)
	}

	cn := commissionNode(t, env, rack, mac, hardware(mac))
	m, err = c.Machine.Get(sid)
	if err != nil {
		t.Fatal(err)
	}
	if m.StatusName != "Ready" || m.Owner != "" || m.CPUCount != 2 || m.Memory != 2048 {
		t.Errorf("commissioned machine: status %q owner %q cpus %d memory %d", m.StatusName, m.Owner, m.CPUCount, m.Memory)
	}
	type disk struct {
		Name, Model, Serial, IDPath string
		Size                        int64
		BlockSize                   int
		Tags                        []string
	}
	var disks []disk
	for _, d := range m.BlockDeviceSet {
		disks = append(disks, disk{d.Name, d.Model, d.Serial, d.IDPath, d.Size, d.BlockSize, d.Tags})
	}
	wantDisks := []disk{
		{"sda", "QEMU HARDDISK", "QM00001", "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_QM00001", 20 << 30, 512, []string{"ssd"}},
		{"sdb", "QEMU HARDDISK", "QM00002", "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_QM00002", 8 << 30, 512, []string{"ssd"}},
	}
	if diff := cmp.Diff(wantDisks, disks); diff != "" {
		t.Errorf("commissioned disks (-want +got):\n%s", diff)
	}
	var nics []string
	for _, i := range m.InterfaceSet {
		nics = append(nics, i.Name+" "+i.MACAddress)
	}
	if diff := cmp.Diff([]string{"ens3 " + mac, "ens4 52:54:01:12:34:56"}, nics); diff != "" {
		t.Errorf("commissioned interfaces (-want +got):\n%s", diff)
	}
	// The commissioning key died with the owner change at Ready.
	if res := cn.get("2012-03-01/meta-data/instance-id"); res.Status != http.StatusUnauthorized {
		t.Errorf("commissioning key after Ready: %s, want 401", res)
	}

	// Deploy the custom image with user-data for the installed OS.
	userData := "#cloud-config\nruncmd: [touch /etc/deployed-by-maasemu]\n"
	dep, err := c.Machine.Deploy(sid, &entity.MachineDeployParams{DistroSeries: "myimage",
		UserData: base64.StdEncoding.EncodeToString([]byte(userData))})
	if err != nil {
		t.Fatal(err)
	}
	if dep.StatusName != "Deploying" || dep.EphemeralDeploy || !dep.Netboot {
		t.Fatalf("deploy: status %q ephemeral %v netboot %v", dep.StatusName, dep.EphemeralDeploy, dep.Netboot)
	}
	if calls := env.Power.Calls(); calls[len(calls)-1] != "on vm-1" || len(calls) != 2 {
		t.Errorf("power calls = %v, want a second power on", calls)
	}

	// The ephemeral: xinstall boot, the curtin preseed, the curtin metadata tree.
	kp, err := env.Region.BootConfig(t.Context(), fakemaas.BootRequest{MAC: mac, LocalIP: rack, Bootloader: "pxe"})
	if err != nil || kp.Purpose != fakemaas.PurposeXInstall {
		t.Fatalf("deploying boot config = %+v, %v", kp, err)
	}
	eph := bootNode(t, kp.PreseedURL)
	if want := "http://" + rack + ":5248/MAAS/metadata/curtin"; eph.metadataURL != want {
		t.Errorf("deploy metadata_url = %q, want %q", eph.metadataURL, want)
	}
	if want := "http://" + rack + ":5248/MAAS/metadata/status/" + sid; eph.statusURL != want {
		t.Errorf("webhook endpoint = %q, want %q", eph.statusURL, want)
	}
	if got := string(eph.mustGet("2012-03-01/meta-data/local-hostname")); got != "node1.maas" {
		t.Errorf("local-hostname = %q", got)
	}
	vd := eph.get("2012-03-01/meta-data/vendor-data")
	if vd.Status != http.StatusOK || vd.ContentType != "application/x-yaml; charset=utf-8" || !bytes.HasPrefix(vd.Body, []byte("cloud-init: ")) {
		t.Errorf("vendor-data: %s", vd)
	}
	if m, _ := c.Machine.Get(sid); m.StatusName != "Deploying" {
		t.Errorf("reading the curtin user-data changed the status to %q", m.StatusName)
	}

	// The installer spec is curtincfg's for this machine.
	var spec curtincfg.InstallerSpec
	if err := json.Unmarshal(eph.mustGet("2012-03-01/"+fakemaas.InstallerRoute), &spec); err != nil {
		t.Fatal(err)
	}
	m, _ = c.Machine.Get(sid)
	in := &curtincfg.Input{
		Machine: curtincfg.Machine{SystemID: sid, Hostname: "node1", Domain: "maas", Arch: "amd64", Subarch: "generic", Firmware: "bios",
			BootInterface: "ens3"},
		Deployment: curtincfg.Deployment{OSystem: "custom", Series: "myimage", BaseImage: "ubuntu/noble",
			Image: curtincfg.Image{Filetype: "root-dd.gz", Filename: "root-dd.gz", FilenameOnDisk: sha(image)[:7], Subarch: "generic", Label: "uploaded"}},
		Storage:     curtincfg.Storage{Layout: "flat"},
		Credentials: curtincfg.Credentials{ConsumerKey: eph.creds.ConsumerKey, TokenKey: eph.creds.TokenKey, TokenSecret: eph.creds.TokenSecret},
		URLs:        curtincfg.URLs{RackIP: rack},
		Settings: curtincfg.Settings{MainArchive: "http://archive.ubuntu.com/ubuntu", PortsArchive: "http://ports.ubuntu.com/ubuntu-ports",
			SyslogPort: 5247, CommissioningOS: "ubuntu", CommissioningSeries: "noble", NTPServers: []string{"ntp.ubuntu.com"}},
	}
	for _, d := range m.BlockDeviceSet {
		in.Machine.BlockDevices = append(in.Machine.BlockDevices, curtincfg.BlockDevice{ID: d.ID, Name: d.Name, IDPath: d.IDPath,
			Model: d.Model, Serial: d.Serial, Size: d.Size, BlockSize: d.BlockSize})
	}
	for _, i := range m.InterfaceSet {
		ci := curtincfg.Interface{ID: i.ID, Type: curtincfg.IfacePhysical, Name: i.Name, MAC: i.MACAddress, Disconnected: !i.LinkConnected}
		if i.Name == "ens3" {
			ci.Links = []curtincfg.Link{{Mode: curtincfg.LinkDHCP}}
		}
		in.Machine.Interfaces = append(in.Machine.Interfaces, ci)
	}
	want, err := curtincfg.CurtinConfig(in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.InstallerSpec(), spec); diff != "" {
		t.Errorf("installer spec (-want +got):\n%s", diff)
	}
	wantSource := "dd-gz:http://" + rack + ":5248/images/" + sha(image)[:7] + "/custom/amd64/generic/myimage/uploaded/root-dd.gz"
	if len(spec.Args) != 1 || spec.Args[0] != wantSource {
		t.Errorf("source = %v, want %s", spec.Args, wantSource)
	}
	joined := strings.Join(spec.Configs, "\n")
	for _, s := range []string{"serial: QM00001", "serial: QM00002", "macaddress: '" + mac + "'", "status/" + sid} {
		if !strings.Contains(joined, s) {
			t.Errorf("curtin configuration lacks %q:\n%s", s, joined)
		}
	}

	// The curtin user-data (MAAS 3.7: the curtin pack): a pack where real curtin is
	// installed; otherwise a refusal (404 to this Go client, which is not cloud-init) that
	// says so in the event log.
	inst := eph.get("2012-03-01/user-data")
	switch inst.Status {
	case http.StatusOK:
		if !bytes.HasPrefix(inst.Body, []byte("#!/bin/sh")) {
			t.Errorf("curtin user-data is not a shell archive: %.100q", inst.Body)
		}
	case http.StatusNotFound:
		if !strings.Contains(string(inst.Body), "real curtin is unavailable on this host") {
			t.Errorf("curtin user-data refusal: %s", inst)
		}
		if evs := eventDescriptions(t, env, sid); !slices.ContainsFunc(evs, func(e string) bool {
			return strings.Contains(e, "real curtin is unavailable on this host")
		}) {
			t.Errorf("no event says curtin is unavailable: %v", evs)
		}
	default:
		t.Errorf("curtin user-data: %s", inst)
	}

	// curtin reports the install; the log arrives with the final event, one file bzip2'd.
	log := []byte("curtin: Installation started. (23.1.1)\n...\ncurtin: Installation finished.\n")
	eph.mustEvent(start("curtin", "cmd-install", "curtin command install"))
	for _, st := range []struct{ name, desc string }{{"stage-early", "preparing for installation"},
		{"stage-partitioning", "configuring storage"}, {"stage-extract", "writing install sources to disk"},
		{"stage-curthooks", "configuring installed system"}, {"stage-late", "executing late commands"}} {
		eph.mustEvent(start("curtin", "cmd-install/"+st.name, st.desc))
		eph.mustEvent(finish("curtin", "cmd-install/"+st.name, st.desc, "SUCCESS"))
	}
	files := []map[string]any{{"path": "/tmp/install.log", "content": base64.StdEncoding.EncodeToString(log), "encoding": "base64"},
		{"path": "/tmp/curtin-logs.tar", "content": nil, "encoding": "base64"}}
	if bz, err := exec.Command("sh", "-c", "printf 'compressed notes\\n' | bzip2 -c").Output(); err == nil {
		files = append(files, map[string]any{"path": "notes.txt", "content": base64.StdEncoding.EncodeToString(bz),
			"encoding": "base64", "compression": "bzip2"})
	} else {
		t.Logf("bzip2 is not available (%v): the compressed-file case is not exercised", err)
	}
	done := finish("curtin", "cmd-install", "curtin command install", "SUCCESS")
	done["files"] = files
	eph.mustEvent(done)

	// MAAS's late command: the anonymous netboot_off.
	req, _ := http.NewRequest(http.MethodPost, "http://"+rack+":5248/MAAS/metadata/latest/by-id/"+sid+"/",
		strings.NewReader(url.Values{"op": {"netboot_off"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if res := send(t, req); res.Status != http.StatusOK {
		t.Fatalf("netboot_off: %s", res)
	}
	eph.mustEvent(start("cloudinit", "modules-final", "running modules for final"))
	eph.mustEvent(finish("cloudinit", "modules-final", "running modules for final", "SUCCESS"))
	m, _ = c.Machine.Get(sid)
	if m.StatusName != "Deploying" || m.Netboot {
		t.Errorf("after install: status %q netboot %v, want Deploying without netboot", m.StatusName, m.Netboot)
	}

	// The reboot: local boot, then the installed OS reads its user-data.
	kp, err = env.Region.BootConfig(t.Context(), fakemaas.BootRequest{MAC: mac, LocalIP: rack, Bootloader: "pxe"})
	if err != nil || kp.Purpose != fakemaas.PurposeLocal {
		t.Fatalf("boot config after netboot_off = %+v, %v", kp, err)
	}
	installed := &nodeAgent{t: t, creds: eph.creds, metadataURL: "http://" + rack + ":5248/MAAS/metadata/", statusURL: eph.statusURL}
	if got := string(installed.mustGet("2012-03-01/user-data")); got != userData {
		t.Errorf("installed OS user-data = %q, want %q", got, userData)
	}
	m, _ = c.Machine.Get(sid)
	if m.StatusName != "Deployed" || m.Owner != "admin" {
		t.Errorf("after the user-data read: status %q owner %q", m.StatusName, m.Owner)
	}
	evs := eventDescriptions(t, env, sid)
	for _, want := range []string{
		"Node installation - 'curtin' curtin command install",
		"Configuring storage", "Installing OS", "Configuring OS",
		"Node installation - 'curtin' configuring storage",
		"Installation complete - Node disabled netboot",
		"Node installation - 'cloudinit' running modules for final",
		"Node changed status - From 'Deploying' to 'Deployed'",
		"Image Deployed - deployed custom/myimage/amd64/generic",
		"Deployed",
	} {
		if !slices.Contains(evs, want) {
			t.Errorf("event %q missing from:\n%s", want, strings.Join(evs, "\n"))
		}
	}

	// The install log is downloadable, as MAAS's results API serves it.
	dl := call(t, env, env.APIKey, http.MethodGet, "/MAAS/api/2.0/nodes/"+sid+"/results/current-installation/?op=download&filters=/tmp/install.log", nil, false)
	if dl.Status != http.StatusOK || dl.Body != string(log) {
		t.Errorf("install log download: %+v", dl)
	}
	if _, ok := exec.LookPath("bzip2"); ok == nil {
		notes := call(t, env, env.APIKey, http.MethodGet, "/MAAS/api/2.0/nodes/"+sid+"/results/current-installation/?op=download&filters=notes.txt", nil, false)
		if notes.Body != "compressed notes\n" {
			t.Errorf("bzip2 file = %+v", notes)
		}
	}
	results, err := c.NodeResults.Get(&entity.NodeResultParams{SystemID: sid, ResultType: entity.INSTALLATION})
	if err != nil {
		t.Fatal(err)
	}
	var gotLog string
	for _, r := range results {
		if r.Name == "/tmp/install.log" {
			b, _ := base64.StdEncoding.DecodeString(r.Data)
			gotLog = string(b)
		}
	}
	if gotLog != string(log) {
		t.Errorf("installation-results install log = %q", gotLog)
	}
	var set map[string]any
	sr := call(t, env, env.APIKey, http.MethodGet, "/MAAS/api/2.0/nodes/"+sid+"/results/current-installation/", nil, false)
	if err := json.Unmarshal([]byte(sr.Body), &set); err != nil {
		t.Fatalf("results: %+v", sr)
	}
	if set["status_name"] != "Passed" || set["type_name"] != "Installation" {
		t.Errorf("installation script set = %v", set)
	}

	// The image's deployment is recorded.
	brs, err := c.BootResources.Get(&entity.BootResourcesReadParams{})
	if err != nil {
		t.Fatal(err)
	}
	for _, br := range brs {
		if br.Name != "myimage" {
			continue
		}
		raw := call(t, env, env.APIKey, http.MethodGet, "/MAAS/api/2.0/boot-resources/"+strconv.Itoa(br.ID)+"/", nil, false)
		var j map[string]any
		json.Unmarshal([]byte(raw.Body), &j)
		if j["last_deployed"] == nil || j[fakemaas.DeploymentsField] != 1.0 {
			t.Errorf("myimage: last_deployed %v, %s %v", j["last_deployed"], fakemaas.DeploymentsField, j[fakemaas.DeploymentsField])
		}
	}

	// The trace saw the metadata service's and the webhook's work.
	kinds := map[string]int{}
	for _, e := range env.Events.Events() {
		if e.Machine == sid {
			kinds[e.Kind]++
		}
	}
	for _, k := range []string{trace.KindMetadataRead, trace.KindSignal, trace.KindNetbootOff, trace.KindUserDataRead,
		trace.KindWebhookEvent, trace.KindStatusChange, trace.KindNodeEvent} {
		if kinds[k] == 0 {
			t.Errorf("no %s trace event for the machine (kinds: %v)", k, kinds)
		}
	}

	// Release: Ready, powered off, and the node key is gone: the installed OS's events
	// are dropped (204, nothing recorded) and its metadata reads refused.
	if _, err := c.Machine.Release(sid, &entity.MachineReleaseParams{}); err != nil {
		t.Fatal(err)
	}
	if got := env.Power.State("vm-1"); got != "off" {
		t.Errorf("power after release = %q", got)
	}
	released := snapshot(t, env)
	if res := installed.event(finish("cloudinit", "modules-final", "late", "FAIL")); res.Status != http.StatusNoContent {
		t.Errorf("event after release: %s, want 204", res)
	}
	if after := snapshot(t, env); after != released {
		t.Errorf("an event for a released machine changed the state")
	}
	if res := installed.get("2012-03-01/user-data"); res.Status != http.StatusUnauthorized {
		t.Errorf("user-data after release: %s, want 401", res)
	}
}
