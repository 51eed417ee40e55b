package fakemaas_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/canonical/gomaasclient/entity"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/fakemaas/commissioning"
	"github.com/maasemu/maasemu/fakemaas/oauth"
	"github.com/maasemu/maasemu/fakemaas/regiontest"
)

// deployingForBench is a deploying machine (state on disk, as in use) and its node key.
func deployingForBench(b *testing.B) (*regiontest.Env, string, oauth.Credentials) {
	b.Helper()
	env := regiontest.Start(b)
	env.ImportDefaultStream(b)
	if _, err := regiontest.UploadCustomImage(env.Client, "img", "amd64/generic", "tgz", "ubuntu/noble", []byte("t")); err != nil {
		b.Fatal(err)
	}
	m, err := env.Client.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: "bench", PowerType: "test",
		MACAddresses: []string{"52:54:00:be:00:01"}}, map[string]any{"commission": "false"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := env.Client.BlockDevices.Create(m.SystemID, &entity.BlockDeviceParams{Name: "sda", Model: "M", Serial: "S",
		Size: 20 << 30, BlockSize: 512}); err != nil {
		b.Fatal(err)
	}
	if _, err := env.Client.Machine.Deploy(m.SystemID, &entity.MachineDeployParams{DistroSeries: "img"}); err != nil {
		b.Fatal(err)
	}
	creds, err := env.Region.NodeToken(m.SystemID)
	if err != nil {
		b.Fatal(err)
	}
	return env, m.SystemID, creds
}

func benchDo(b *testing.B, hc *http.Client, req *http.Request, want int) {
	resp, err := hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		b.Fatalf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, body)
	}
}

// BenchmarkMetadataRead: one OAuth-signed meta-data read (instance-id), as cloud-init
// makes them.
func BenchmarkMetadataRead(b *testing.B) {
	env, _, creds := deployingForBench(b)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	u := env.Server.URL + "/MAAS/metadata/curtin/2012-03-01/meta-data/instance-id"
	b.ResetTimer()
	for range b.N {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		oauth.Sign(req, creds)
		benchDo(b, hc, req, http.StatusOK)
	}
}

// BenchmarkInstallerSpec: render the machine's curtin configuration (maasemu-installer).
func BenchmarkInstallerSpec(b *testing.B) {
	env, _, creds := deployingForBench(b)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	u := env.Server.URL + "/MAAS/metadata/curtin/2012-03-01/" + fakemaas.InstallerRoute
	b.ResetTimer()
	for range b.N {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		oauth.Sign(req, creds)
		benchDo(b, hc, req, http.StatusOK)
	}
}

// BenchmarkWebhookEvent: curtin's webhook events. "debug" are nested finish events
// (nothing stored); "start" are stage starts, each an event-log entry committed (fsynced)
// before the 204.
func BenchmarkWebhookEvent(b *testing.B) {
	for _, kind := range []struct {
		name string
		ev   map[string]any
	}{
		{"debug", finish("curtin", "cmd-install/stage-curthooks/builtin/cmd-curthooks", "configuring", "SUCCESS")},
		{"start", start("curtin", "cmd-install/stage-partitioning/builtin", "running 'curtin block-meta custom'")},
	} {
		b.Run(kind.name, func(b *testing.B) {
			env, sid, creds := deployingForBench(b)
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			body, _ := json.Marshal(kind.ev)
			u := env.Server.URL + "/MAAS/metadata/status/" + sid
			b.ResetTimer()
			for range b.N {
				req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				oauth.Sign(req, creds)
				benchDo(b, hc, req, http.StatusNoContent)
			}
		})
	}
}

// BenchmarkCommissioningResult: an op=signal carrying a machine-resources report of 8
// disks and 4 NICs, parsed and applied as the commissioning hook does.
func BenchmarkCommissioningResult(b *testing.B) {
	env := regiontest.Start(b)
	env.ImportDefaultStream(b)
	mac := "52:54:00:be:00:02"
	m, err := env.Client.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: "cbench", PowerType: "manual",
		MACAddresses: []string{mac}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	creds, err := env.Region.NodeToken(m.SystemID)
	if err != nil {
		b.Fatal(err)
	}
	hw := hardware(mac)
	for i := range 6 {
		hw.Disks = append(hw.Disks, commissioning.Disk{Name: "vd" + string(rune('a'+i)), Serial: "V" + string(rune('0'+i)), Model: "V", Size: 10 << 30})
	}
	hw.NICs = append(hw.NICs, commissioning.NIC{Name: "ens5", MAC: "52:54:02:00:00:05"}, commissioning.NIC{Name: "ens6", MAC: "52:54:02:00:00:06"})
	report, err := commissioning.BuildResources(hw)
	if err != nil {
		b.Fatal(err)
	}
	sig := commissioning.ResourcesResult(report)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	b.ResetTimer()
	for range b.N {
		req, err := sig.Request(b.Context(), env.Server.URL+"/MAAS/metadata/")
		if err != nil {
			b.Fatal(err)
		}
		oauth.Sign(req, creds)
		benchDo(b, hc, req, http.StatusOK)
	}
}
