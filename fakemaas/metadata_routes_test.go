package fakemaas_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/canonical/gomaasclient/entity"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.yaml.in/yaml/v3"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/fakemaas/commissioning"
	"github.com/maasemu/maasemu/fakemaas/curtincfg"
	"github.com/maasemu/maasemu/fakemaas/regiontest"
	"github.com/maasemu/maasemu/trace"
)

// TestMetadataRoutes checks the metadata tree's listings, the anonymous (enlistment)
// variants and the routes' tolerance of extra slashes.
func TestMetadataRoutes(t *testing.T) {
	env := regiontest.Start(t)
	env.ImportDefaultStream(t)
	rack := env.StartRack(t)
	if _, err := regiontest.UploadCustomImage(env.Client, "img", "amd64/generic", "tgz", "ubuntu/noble", []byte("t")); err != nil {
		t.Fatal(err)
	}
	sid := readyMachine(t, env, "r1", "52:54:00:0f:00:01")
	if _, err := env.Client.Machine.Deploy(sid, &entity.MachineDeployParams{DistroSeries: "img",
		UserData: base64.StdEncoding.EncodeToString([]byte("#!/bin/sh\n"))}); err != nil {
		t.Fatal(err)
	}
	kp, err := env.Region.BootConfig(t.Context(), fakemaas.BootRequest{MAC: "52:54:00:0f:00:01", LocalIP: rack})
	if err != nil {
		t.Fatal(err)
	}
	n := bootNode(t, kp.PreseedURL)
	base := "http://" + rack + ":5248/MAAS/metadata/"
	anon := func(path string) response {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		return send(t, req)
	}
	keyed := func(path string) response {
		a := &nodeAgent{t: t, creds: n.creds, metadataURL: base}
		return a.get(path)
	}
	cases := []struct {
		name string
		res  response
		want response
	}{
		{"index", keyed(""), response{200, "text/plain", []byte("2012-03-01\nlatest")}},
		{"index without a key", anon(""), response{401, "text/plain; charset=utf-8", []byte("Forbidden")}},
		{"version index (user-data given)", keyed("2012-03-01/"), response{200, "text/plain", []byte("maas-commissioning-scripts\nmeta-data\nuser-data")}},
		{"curtin version index", keyed("curtin/latest/"), response{200, "text/plain", []byte("maas-commissioning-scripts\nmeta-data\nuser-data")}},
		{"anonymous version index", anon("latest/"), response{200, "text/plain", []byte("meta-data\nuser-data")}},
		{"meta-data listing (no SSH keys)", keyed("latest/meta-data/"), response{200, "text/plain", []byte("instance-id\nlocal-hostname\nvendor-data\nx509")}},
		{"public-keys without keys", keyed("latest/meta-data/public-keys"), response{200, "text/plain", nil}},
		{"leading slashes", keyed("//2012-03-01/meta-data/instance-id"), response{200, "text/plain", []byte(sid)}},
		// Like Django's patterns, a doubled inner slash falls through to the version index.
		{"inner double slash", keyed("2012-03-01//meta-data/instance-id"), response{200, "text/plain", []byte("maas-commissioning-scripts\nmeta-data\nuser-data")}},
		{"maas-scripts while deploying", keyed("2012-03-01/maas-scripts"), response{204, "", nil}},
		{"anonymous meta-data: enlistment", anon("2012-03-01/meta-data/instance-id"), response{200, "text/plain", []byte("i-maas-enlistment")}},
		{"enlist listing", anon("enlist/2012-03-01/meta-data/"), response{200, "text/plain", []byte("instance-id\nlocal-hostname")}},
		{"enlist hostname", anon("enlist/latest/meta-data/local-hostname"), response{200, "text/plain", []byte("maas-enlisting-node")}},
		{"enlist public-keys", anon("enlist/latest/meta-data/public-keys"), response{200, "text/plain", nil}},
		{"enlist unknown item", anon("enlist/latest/meta-data/vendor-data"), response{404, "text/plain; charset=utf-8", []byte("Unknown metadata attribute: vendor-data")}},
		{"enlist bad version", anon("enlist/2000-01-01/meta-data/"), response{404, "text/plain; charset=utf-8", []byte("Unknown metadata version: 2000-01-01")}},
		{"enlist version index", anon("enlist/latest/"), response{200, "text/plain", []byte("meta-data\nuser-data")}},
		{"enlist index", anon("enlist/"), response{200, "text/plain", []byte("2012-03-01\nlatest")}},
	}
	for _, tc := range cases {
		if diff := cmp.Diff(tc.want, tc.res, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	if ud := anon("enlist/latest/user-data"); ud.Status != 200 || !strings.HasPrefix(string(ud.Body), "#!/bin/sh") {
		t.Errorf("enlist user-data: %s", ud)
	}
	pre := anon("latest/enlist-preseed/?op=get_enlist_preseed")
	var p map[string]any
	if err := yaml.Unmarshal(pre.Body, &p); pre.Status != 200 || err != nil {
		t.Fatalf("enlist preseed: %s (%v)", pre, err)
	}
	if got := p["datasource"].(map[string]any)["MAAS"].(map[string]any)["metadata_url"]; got != base {
		t.Errorf("enlist preseed metadata_url = %v, want %s", got, base)
	}
	scripts := anon("2012-03-01/maas-scripts")
	if scripts.Status != 200 || scripts.ContentType != "application/x-tar" {
		t.Fatalf("anonymous maas-scripts: %s", scripts)
	}
	tr := tar.NewReader(bytes.NewReader(scripts.Body))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	if diff := cmp.Diff([]string{"commissioning/" + commissioning.ScriptName, "index.json"}, names); diff != "" {
		t.Errorf("anonymous maas-scripts (-want +got):\n%s", diff)
	}
}

// TestSignalByStatus checks op=signal's effect in each kind of status.
func TestSignalByStatus(t *testing.T) {
	env := regiontest.Start(t)
	env.ImportDefaultStream(t)
	rack := env.StartRack(t)
	newCommissioning := func(host, mac string) (string, *nodeAgent) {
		m, err := env.Client.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: host, PowerType: "test",
			MACAddresses: []string{mac}}, map[string]any{"power_parameters_power_id": host})
		if err != nil {
			t.Fatal(err)
		}
		kp, err := env.Region.BootConfig(t.Context(), fakemaas.BootRequest{MAC: mac, LocalIP: rack})
		if err != nil {
			t.Fatal(err)
		}
		return m.SystemID, bootNode(t, kp.PreseedURL)
	}
	sig := func(n *nodeAgent, status string) int { return n.signal(commissioning.Signal{Status: status}).Status }

	// Commissioning: WORKING, INSTALLING, APPLYING_NETCONF, TIMEDOUT and COMMISSIONING
	// change nothing; TESTING starts testing; testing OK returns to Ready (tested from
	// commissioning), FAILED fails testing.
	sid, n := newCommissioning("s1", "52:54:00:10:00:01")
	for _, s := range []string{"WORKING", "INSTALLING", "APPLYING_NETCONF", "TIMEDOUT", "COMMISSIONING", "RELEASING"} {
		if code := sig(n, s); code != 200 || machineStatus(t, env, sid) != "Commissioning" {
			t.Errorf("%s while commissioning: %d, %s", s, code, machineStatus(t, env, sid))
		}
	}
	report, _ := commissioning.BuildResources(hardware("52:54:00:10:00:01"))
	n.signal(commissioning.ResourcesResult(report))
	if code := sig(n, "TESTING"); code != 200 || machineStatus(t, env, sid) != "Testing" {
		t.Errorf("TESTING: %d, %s", code, machineStatus(t, env, sid))
	}
	if code := sig(n, "OK"); code != 200 || machineStatus(t, env, sid) != "Ready" {
		t.Errorf("OK while testing: %d, %s", code, machineStatus(t, env, sid))
	}
	sid2, n2 := newCommissioning("s2", "52:54:00:10:00:02")
	sig(n2, "TESTING")
	if code := sig(n2, "FAILED"); code != 200 || machineStatus(t, env, sid2) != "Failed testing" {
		t.Errorf("FAILED while testing: %d, %s", code, machineStatus(t, env, sid2))
	}
	// Failed testing accepts signals without effect; New self-commissions on COMMISSIONING.
	if code := sig(n2, "OK"); code != 200 || machineStatus(t, env, sid2) != "Failed testing" {
		t.Errorf("OK on Failed testing: %d, %s", code, machineStatus(t, env, sid2))
	}
	sid3, n3 := newCommissioning("s3", "52:54:00:10:00:03")
	if r := op(t, env, sid3, "abort", nil); r.Status != 200 {
		t.Fatalf("abort: %+v", r)
	}
	// The abort cleared the owner, and with it the key; a new preseed gives a new one.
	if code := sig(n3, "COMMISSIONING"); code != http.StatusUnauthorized {
		t.Errorf("signal with the key of before the abort: %d", code)
	}
	kp, _ := env.Region.BootConfig(t.Context(), fakemaas.BootRequest{MAC: "52:54:00:10:00:03", LocalIP: rack})
	n3 = bootNode(t, kp.PreseedURL)
	if code := sig(n3, "OK"); code != 200 || machineStatus(t, env, sid3) != "New" {
		t.Errorf("OK while New: %d, %s", code, machineStatus(t, env, sid3))
	}
	if code := sig(n3, "COMMISSIONING"); code != 200 || machineStatus(t, env, sid3) != "Commissioning" {
		t.Errorf("COMMISSIONING while New: %d, %s", code, machineStatus(t, env, sid3))
	}
}

// recordingPacker stands in for real curtin: it records what it was asked to pack.
type recordingPacker struct {
	specs []curtincfg.InstallerSpec
}

func (p *recordingPacker) Pack(_ context.Context, spec curtincfg.InstallerSpec) ([]byte, error) {
	p.specs = append(p.specs, spec)
	return []byte(fmt.Sprintf("#!/bin/sh\n# pack of %d configs\n", len(spec.Configs))), nil
}

// TestCurtinUserDataPack: as MAAS 3.7.3, the deploying ephemeral's curtin user-data is
// the packer's pack of the same configuration the maasemu-installer route serves, and
// there is no curtin-installer or curtin maas-scripts route (those paths are the curtin
// version index, as Django's prefix pattern makes them).
func TestCurtinUserDataPack(t *testing.T) {
	packer := &recordingPacker{}
	env := regiontest.Start(t, regiontest.Options{Packer: packer})
	env.ImportDefaultStream(t)
	if _, err := regiontest.UploadCustomImage(env.Client, "img", "amd64/generic", "tgz", "ubuntu/noble", []byte("t")); err != nil {
		t.Fatal(err)
	}
	sid := readyMachine(t, env, "pk", "52:54:00:11:00:01")
	if _, err := env.Client.Machine.Deploy(sid, &entity.MachineDeployParams{DistroSeries: "img"}); err != nil {
		t.Fatal(err)
	}
	creds, err := env.Region.NodeToken(sid)
	if err != nil {
		t.Fatal(err)
	}
	n := &nodeAgent{t: t, creds: creds, metadataURL: env.Server.URL + "/MAAS/metadata/curtin/"}
	if res := n.get("2012-03-01/user-data"); res.Status != 200 || res.ContentType != "application/octet-stream" ||
		string(res.Body) != "#!/bin/sh\n# pack of 8 configs\n" {
		t.Fatalf("curtin user-data: %s", res)
	}
	var spec curtincfg.InstallerSpec
	if err := json.Unmarshal(n.mustGet("2012-03-01/"+fakemaas.InstallerRoute), &spec); err != nil {
		t.Fatal(err)
	}
	if len(packer.specs) != 1 {
		t.Fatalf("packer called %d times, want once", len(packer.specs))
	}
	if diff := cmp.Diff(spec, packer.specs[0]); diff != "" {
		t.Errorf("packed spec differs from the installer route's (-route +packed):\n%s", diff)
	}
	for _, p := range []string{"2012-03-01/curtin-installer", "2012-03-01/maas-scripts"} {
		if res := n.get(p); res.Status != 200 || string(res.Body) != "maas-commissioning-scripts\nmeta-data" {
			t.Errorf("GET curtin/%s = %s, want the version index (MAAS 3.7 has no such route)", p, res)
		}
	}
	if st := machineStatus(t, env, sid); st != "Deploying" {
		t.Errorf("reading the curtin user-data changed the status to %q", st)
	}
}

// packer is fakemaas.Options.Packer.
type packer interface {
	Pack(context.Context, curtincfg.InstallerSpec) ([]byte, error)
}

// unavailablePacker is a packer on a host without curtin.
type unavailablePacker struct{}

func (unavailablePacker) Pack(context.Context, curtincfg.InstallerSpec) ([]byte, error) {
	return nil, fmt.Errorf("%w (test: no curtin here)", curtincfg.ErrCurtinUnavailable)
}

// failingPacker is a curtin whose pack_install fails.
type failingPacker struct{}

func (failingPacker) Pack(context.Context, curtincfg.InstallerSpec) ([]byte, error) {
	return nil, errors.New("curtin pack_install failed: OSError: test")
}

// TestCurtinUserDataWithoutCurtin: without real curtin there is no installer to serve: the
// curtin user-data is 404 (cloud-init's "no user-data", so neither a real ephemeral's nor
// maasemu's agent's datasource read fails) with a body naming the problem, the node's
// event log and the trace say real curtin is unavailable, the installer route still
// serves the configuration, and the machine is unchanged. A pack_install failure with
// curtin present is a 500.
func TestCurtinUserDataWithoutCurtin(t *testing.T) {
	for _, tc := range []struct {
		name        string
		packer      packer
		status      int
		body        string
		traceLevel  string
		unavailable bool
	}{
		{"no curtin", unavailablePacker{}, 404, "real curtin is unavailable on this host", trace.LevelWarn, true},
		{"--curtin without curtin", curtincfg.Packer{CurtinDir: t.TempDir()}, 404, "holds no curtin/__init__.py", trace.LevelWarn, true},
		{"python without curtin", curtincfg.Packer{Python: "maasemu-no-such-python"}, 404, "no Python interpreter", trace.LevelWarn, true},
		{"pack_install fails", failingPacker{}, 500, "packing the curtin installer failed: curtin pack_install failed: OSError: test", trace.LevelError, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := regiontest.Start(t, regiontest.Options{Packer: tc.packer})
			env.ImportDefaultStream(t)
			if _, err := regiontest.UploadCustomImage(env.Client, "img", "amd64/generic", "tgz", "ubuntu/noble", []byte("t")); err != nil {
				t.Fatal(err)
			}
			sid := readyMachine(t, env, "nc", "52:54:00:11:00:02")
			if _, err := env.Client.Machine.Deploy(sid, &entity.MachineDeployParams{DistroSeries: "img"}); err != nil {
				t.Fatal(err)
			}
			creds, err := env.Region.NodeToken(sid)
			if err != nil {
				t.Fatal(err)
			}
			n := &nodeAgent{t: t, creds: creds, metadataURL: env.Server.URL + "/MAAS/metadata/curtin/"}
			before := machineMap(t, env, sid)
			res := n.get("2012-03-01/user-data")
			if res.Status != tc.status || !strings.HasPrefix(string(res.Body), "curtin user-data cannot be served: ") ||
				!strings.Contains(string(res.Body), tc.body) || strings.Contains(string(res.Body), "#!") {
				t.Fatalf("curtin user-data = %s, want %d naming %q", res, tc.status, tc.body)
			}
			evs := eventDescriptions(t, env, sid)
			if !slices.ContainsFunc(evs, func(e string) bool {
				return strings.HasPrefix(e, "Node installation failure - 'maasemu' curtin user-data cannot be served: ") && strings.Contains(e, tc.body)
			}) {
				t.Errorf("no installation failure event names the problem:\n%s", strings.Join(evs, "\n"))
			}
			var got []trace.Event
			for _, e := range env.Events.Events() {
				if e.Kind == trace.KindInstallerUnavailable {
					got = append(got, e)
				}
			}
			if len(got) != 1 || got[0].Machine != sid || got[0].Level != tc.traceLevel || got[0].Attrs["status"] != tc.status ||
				got[0].Attrs["curtin_unavailable"] != tc.unavailable || !strings.Contains(got[0].Message, tc.body) {
				t.Errorf("%s trace events = %+v", trace.KindInstallerUnavailable, got)
			}
			// The agent's route is unaffected; the machine is still Deploying.
			var spec curtincfg.InstallerSpec
			if err := json.Unmarshal(n.mustGet("2012-03-01/"+fakemaas.InstallerRoute), &spec); err != nil || len(spec.Args) != 1 {
				t.Errorf("installer route: %+v, %v", spec, err)
			}
			after := machineMap(t, env, sid)
			for _, k := range []string{"status_name", "netboot"} {
				if before[k] != after[k] {
					t.Errorf("%s changed from %v to %v", k, before[k], after[k])
				}
			}
		})
	}
}
