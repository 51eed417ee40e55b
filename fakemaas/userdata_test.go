package fakemaas_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/canonical/gomaasclient/entity"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/fakemaas/commissioning"
	"github.com/maasemu/maasemu/fakemaas/curtincfg"
	"github.com/maasemu/maasemu/fakemaas/regiontest"
)

func python3(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("user-data scripts: needs python3")
	return ""
}

// runUserData runs a served user-data script as cloud-init would (an executable in the
// ephemeral), with dir first in PATH.
func runUserData(t *testing.T, py string, script []byte, dir string) (string, error) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(f, script, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), py, f)
	cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// scriptPacker packs a shell script that exits with code.
type scriptPacker struct{ code string }

func (p scriptPacker) Pack(context.Context, curtincfg.InstallerSpec) ([]byte, error) {
	return []byte("#!/bin/sh\necho curtin install from the pack\nexit " + p.code + "\n"), nil
}

// TestUserDataScripts runs the user-data the fake serves: the commissioning script runner
// (with a machine-resources stand-in printing the report) takes the machine to Ready; the
// deploying ephemeral's curtin user-data is the packer's installer itself (MAAS 3.7), which
// reports nothing by its exit status: only cloud-init's events do.
func TestUserDataScripts(t *testing.T) {
	py := python3(t)
	env := regiontest.Start(t, regiontest.Options{Packer: scriptPacker{"1"}})
	env.ImportDefaultStream(t)
	rack := env.StartRack(t)
	const mac = "52:54:00:12:00:01"

	m, err := env.Client.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: "ud", PowerType: "test",
		MACAddresses: []string{mac}}, map[string]any{"power_parameters_power_id": "ud"})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := env.Region.BootConfig(t.Context(), fakemaas.BootRequest{MAC: mac, LocalIP: rack})
	if err != nil {
		t.Fatal(err)
	}
	n := bootNode(t, kp.PreseedURL)
	report, err := commissioning.BuildResources(hardware(mac))
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "report.json"), report, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "machine-resources"), []byte("#!/bin/sh\ncat "+filepath.Join(bin, "report.json")+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := runUserData(t, py, n.mustGet("2012-03-01/user-data"), bin)
	if err != nil {
		t.Fatalf("commissioning user-data: %v\n%s", err, out)
	}
	mm := machineMap(t, env, m.SystemID)
	if mm["status_name"] != "Ready" || len(mm["blockdevice_set"].([]any)) != 2 {
		t.Fatalf("after the commissioning script runner: %v with %d disks\n%s", mm["status_name"], len(mm["blockdevice_set"].([]any)), out)
	}

	// Deploy: the curtin user-data is the pack, verbatim.
	if _, err := regiontest.UploadCustomImage(env.Client, "img", "amd64/generic", "tgz", "ubuntu/noble", []byte("t")); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.Machine.Deploy(m.SystemID, &entity.MachineDeployParams{DistroSeries: "img"}); err != nil {
		t.Fatal(err)
	}
	kp, _ = env.Region.BootConfig(t.Context(), fakemaas.BootRequest{MAC: mac, LocalIP: rack})
	eph := bootNode(t, kp.PreseedURL)
	ud := eph.mustGet("2012-03-01/user-data")
	want, _ := scriptPacker{"1"}.Pack(t.Context(), curtincfg.InstallerSpec{})
	if string(ud) != string(want) {
		t.Errorf("deploying curtin user-data = %q, want the pack %q", ud, want)
	}
	sh := filepath.Join(t.TempDir(), "pack")
	if err := os.WriteFile(sh, ud, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(t.Context(), sh).CombinedOutput(); err == nil || !strings.Contains(string(out), "curtin install from the pack") {
		t.Errorf("running the curtin user-data: %v\n%s", err, out)
	}
	if st := machineStatus(t, env, m.SystemID); st != "Deploying" {
		t.Errorf("after reading and running the curtin user-data: %s, want Deploying", st)
	}
	// MAAS learns of the failure from cloud-init's webhook, as it would here.
	eph.mustEvent(finish("cloudinit", "modules-final", "running modules for final", "FAIL"))
	if st := machineStatus(t, env, m.SystemID); st != "Failed deployment" {
		t.Errorf("after cloud-init reported the failure: %s", st)
	}

	// Without machine-resources the commissioning script fails, and so does commissioning.
	if r := op(t, env, m.SystemID, "release", nil); r.Status != 200 {
		t.Fatalf("release: %+v", r)
	}
	if r := op(t, env, m.SystemID, "commission", nil); r.Status != 200 {
		t.Fatalf("commission: %+v", r)
	}
	kp, _ = env.Region.BootConfig(t.Context(), fakemaas.BootRequest{MAC: mac, LocalIP: rack})
	n = bootNode(t, kp.PreseedURL)
	out, err = runUserData(t, py, n.mustGet("2012-03-01/user-data"), t.TempDir())
	if err == nil {
		t.Errorf("commissioning without machine-resources succeeded:\n%s", out)
	}
	if st := machineStatus(t, env, m.SystemID); st != "Failed commissioning" {
		t.Errorf("after commissioning without machine-resources: %s\n%s", st, out)
	}
	res := call(t, env, env.APIKey, "GET", "/MAAS/api/2.0/nodes/"+m.SystemID+"/results/current-commissioning/?op=download&output=stderr", nil, false)
	if !strings.Contains(res.Body, "machine-resources is not available") {
		t.Errorf("commissioning stderr result: %+v", res)
	}
}
