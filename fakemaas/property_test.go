package fakemaas_test

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canonical/gomaasclient/entity"
	"go.yaml.in/yaml/v3"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/fakemaas/commissioning"
	"github.com/maasemu/maasemu/fakemaas/nodestatus"
	"github.com/maasemu/maasemu/fakemaas/oauth"
	"github.com/maasemu/maasemu/fakemaas/regiontest"
	"github.com/maasemu/maasemu/trace"
)

// fastStateDir puts the region's database on tmpfs when there is one (every change is
// fsynced; the property test makes thousands).
func fastStateDir(t *testing.T) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "maasemu-property-")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

// propMachine is what the test tracks about one machine.
type propMachine struct {
	sid, mac, host string
	tokens         []oauth.Credentials // every key its preseeds handed out, newest last
	tokenOwner     []string            // the owner when each was handed out
	lastDeploy     int                 // step of the last accepted deploy
	lastNetbootOff int                 // step of the last accepted netboot_off
	status         string
}

// TestPropertyLifecycle drives four machines with seeded random sequences of API calls,
// boot config requests, metadata reads, signals, webhook events and clock jumps, and
// checks after every step that the region is in a state MAAS can be in.
func TestPropertyLifecycle(t *testing.T) {
	steps := 1500
	if testing.Short() {
		steps = 300
	}
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runProperty(t, seed, steps) })
	}
}

func runProperty(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, seed*7919))
	var mu sync.Mutex
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	env := regiontest.Start(t, regiontest.Options{StateDir: fastStateDir(t), Now: clock, MonitorInterval: time.Hour})
	env.ImportDefaultStream(t)
	rack := env.StartRack(t)
	c := env.Client
	if _, err := regiontest.UploadCustomImage(c, "img", "amd64/generic", "tgz", "ubuntu/noble", []byte("tarball")); err != nil {
		t.Fatal(err)
	}
	var ms []*propMachine
	for i := range 4 {
		mac := fmt.Sprintf("52:54:00:77:00:%02x", i+1)
		host := fmt.Sprintf("p%d", i)
		params := map[string]any{"power_parameters_power_id": host}
		if i%2 == 1 {
			params["commission"] = "false"
		}
		m, err := c.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: host, PowerType: "test",
			MACAddresses: []string{mac}}, params)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, &propMachine{sid: m.SystemID, mac: mac, host: host, status: "New"})
	}
	seen := 0 // trace events checked so far
	names := []string{"cmd-install", "cmd-install/stage-early", "cmd-install/stage-partitioning", "cmd-install/stage-extract",
		"cmd-install/stage-late", "modules-final", "init-network", "modules-final/config-scripts-user"}
	results := []string{"SUCCESS", "SUCCESS", "SUCCESS", "WARN", "FAIL"}
	statuses := append(append([]string{}, commissioning.Statuses...), "DEPLOYING", "BOGUS")

	latest := func(m *propMachine) (oauth.Credentials, bool) {
		if len(m.tokens) == 0 {
			return oauth.Credentials{}, false
		}
		if rng.IntN(5) == 0 { // sometimes an old key
			return m.tokens[rng.IntN(len(m.tokens))], true
		}
		return m.tokens[len(m.tokens)-1], true
	}
	agent := func(m *propMachine, creds oauth.Credentials, curtin bool) *nodeAgent {
		u := "http://" + rack + ":5248/MAAS/metadata/"
		if curtin {
			u += "curtin"
		}
		return &nodeAgent{t: t, creds: creds, metadataURL: u, statusURL: "http://" + rack + ":5248/MAAS/metadata/status/" + m.sid}
	}

	reached := map[string]int{}
	defer func() {
		for _, e := range env.Events.Events() {
			if e.Kind == trace.KindStatusChange {
				reached[fmt.Sprint(e.Attrs["from"], " -> ", e.Attrs["to"])]++
			}
		}
		t.Logf("transitions taken: %v", reached)
	}()
	m := ms[0]
	for step := 0; step < steps; step++ {
		if rng.IntN(10) < 3 { // mostly stay with one machine, so sequences go deep
			m = ms[rng.IntN(len(ms))]
		}
		var action string
		var status int
		// Weighted actions: the destructive ones are rarer, so deployments get far.
		weights := []int{2, 1, 4, 1, 1, 2, 2, 3, 3, 4, 4, 4, 2, 4, 3, 3, 3, 1, 1, 1}
		total := 0
		for _, w := range weights {
			total += w
		}
		k := 0
		for r := rng.IntN(total); r >= weights[k]; k++ {
			r -= weights[k]
		}
		switch k {
		case 0:
			action = "commission"
			status = op(t, env, m.sid, "commission", nil).Status
		case 1:
			action = "abort"
			status = op(t, env, m.sid, "abort", nil).Status
		case 2:
			action = "deploy"
			f := url.Values{"distro_series": {[]string{"img", "noble", "nosuch"}[rng.IntN(3)]}}
			if rng.IntN(2) == 0 {
				f.Set("user_data", base64.StdEncoding.EncodeToString([]byte("#cloud-config\n")))
			}
			status = op(t, env, m.sid, "deploy", f).Status
			if status == http.StatusOK {
				m.lastDeploy = step
			}
		case 3:
			action = "release"
			status = op(t, env, m.sid, "release", nil).Status
		case 4:
			action = []string{"mark_broken", "mark_fixed"}[rng.IntN(2)]
			status = op(t, env, m.sid, action, nil).Status
		case 5:
			action = "allocate"
			status = call(t, env, env.APIKey, http.MethodPost, "/MAAS/api/2.0/machines/?op=allocate", url.Values{"system_id": {m.sid}}, false).Status
		case 6:
			action = "disk+layout"
			status = call(t, env, env.APIKey, http.MethodPost, "/MAAS/api/2.0/nodes/"+m.sid+"/blockdevices/",
				url.Values{"name": {fmt.Sprintf("sd%c", 'a'+rng.IntN(3))}, "model": {"M"}, "serial": {fmt.Sprint("S", rng.IntN(1000))},
					"size": {"20G"}, "block_size": {"512"}}, false).Status
			op(t, env, m.sid, "set_storage_layout", url.Values{"storage_layout": {[]string{"flat", "lvm", "blank"}[rng.IntN(3)]}})
		case 7, 8:
			action = "boot"
			_, err := env.Region.BootConfig(t.Context(), fakemaas.BootRequest{MAC: m.mac, LocalIP: rack})
			if err != nil && err != fakemaas.ErrNoBootConfig {
				t.Fatalf("step %d: boot config: %v", step, err)
			}
		case 9:
			action = "preseed"
			req, _ := http.NewRequest(http.MethodGet, "http://"+rack+":5248/MAAS/metadata/latest/by-id/"+m.sid+"/?op=get_preseed", nil)
			res := send(t, req)
			status = res.Status
			if res.Status == http.StatusOK {
				n := bootNodeFromBody(t, res.Body)
				owner := machineMap(t, env, m.sid)["owner"]
				if len(m.tokens) == 0 || m.tokens[len(m.tokens)-1] != n.creds {
					m.tokens = append(m.tokens, n.creds)
					m.tokenOwner = append(m.tokenOwner, fmt.Sprint(owner))
				}
			}
		case 10, 11:
			creds, ok := latest(m)
			if !ok {
				continue
			}
			curtin := rng.IntN(2) == 0
			action = "user-data"
			if curtin {
				action = "curtin user-data"
			}
			status = agent(m, creds, curtin).get("2012-03-01/user-data").Status
		case 12:
			action = "netboot_off"
			req, _ := http.NewRequest(http.MethodPost, "http://"+rack+":5248/MAAS/metadata/latest/by-id/"+m.sid+"/", strings.NewReader("op=netboot_off"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			status = send(t, req).Status
			if status == http.StatusOK {
				m.lastNetbootOff = step
			}
		case 13:
			creds, ok := latest(m)
			if !ok {
				continue
			}
			action = "signal"
			s := commissioning.Signal{Status: statuses[rng.IntN(len(statuses))]}
			if rng.IntN(2) == 0 {
				s.Status = commissioning.StatusOK
			}
			switch rng.IntN(3) {
			case 0:
				report, err := commissioning.BuildResources(hardware(m.mac))
				if err != nil {
					t.Fatal(err)
				}
				s = commissioning.ResourcesResult(report)
			case 1:
				s.Files = map[string][]byte{"/tmp/install.log": []byte("log")}
			}
			status = agent(m, creds, rng.IntN(2) == 0).signal(s).Status
		case 14, 15, 16:
			creds, ok := latest(m)
			if !ok {
				continue
			}
			action = "event"
			ev := map[string]any{"event_type": []string{"start", "finish"}[rng.IntN(2)], "origin": []string{"curtin", "cloudinit"}[rng.IntN(2)],
				"name": names[rng.IntN(len(names))], "description": "d"}
			if ev["event_type"] == "finish" {
				ev["result"] = results[rng.IntN(len(results))]
			}
			if rng.IntN(4) == 0 {
				ev["files"] = []any{map[string]any{"path": "/tmp/install.log", "encoding": "base64", "content": base64.StdEncoding.EncodeToString([]byte("x"))}}
			}
			status = agent(m, creds, true).event(ev).Status
		case 17:
			action = "netboot_on/off (OAuth)"
			creds, ok := latest(m)
			if !ok {
				continue
			}
			o := []string{"netboot_on", "netboot_off"}[rng.IntN(2)]
			req, _ := http.NewRequest(http.MethodPost, "http://"+rack+":5248/MAAS/metadata/2012-03-01/", strings.NewReader("op="+o))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			oauth.Sign(req, creds)
			status = send(t, req).Status
			if status == http.StatusOK && o == "netboot_off" {
				m.lastNetbootOff = step
			}
		case 18:
			action = "time passes"
			mu.Lock()
			now = now.Add(time.Duration(rng.IntN(40)) * time.Minute)
			mu.Unlock()
			env.Region.CheckTimeouts(t.Context())
		case 19:
			action = "power_on"
			status = op(t, env, m.sid, "power_on", nil).Status
		}
		if status >= 500 {
			t.Fatalf("seed step %d: %s on %s answered %d", step, action, m.host, status)
		}
		seen = checkProperty(t, env, ms, step, action, m, seen)
	}
}

func bootNodeFromBody(t *testing.T, body []byte) *nodeAgent {
	t.Helper()
	var p struct {
		Datasource struct {
			MAAS struct {
				ConsumerKey string `yaml:"consumer_key"`
				TokenKey    string `yaml:"token_key"`
				TokenSecret string `yaml:"token_secret"`
			} `yaml:"MAAS"`
		} `yaml:"datasource"`
	}
	if err := yaml.Unmarshal(body, &p); err != nil {
		t.Fatalf("preseed: %v", err)
	}
	d := p.Datasource.MAAS
	return &nodeAgent{t: t, creds: oauth.Credentials{ConsumerKey: d.ConsumerKey, TokenKey: d.TokenKey, TokenSecret: d.TokenSecret}}
}

// checkProperty checks the invariants after step; it returns how many trace events it has
// looked at.
func checkProperty(t *testing.T, env *regiontest.Env, ms []*propMachine, step int, action string, acted *propMachine, seen int) int {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Fatalf("step %d (%s on %s): %s", step, action, acted.host, fmt.Sprintf(format, args...))
	}
	bySID := map[string]*propMachine{}
	for _, m := range ms {
		bySID[m.sid] = m
	}
	// Every status change is one MAAS's transition table allows, continues from the last
	// status, and Deployed is entered only from Deploying by the installed OS's user-data
	// read (or restored from Broken by mark_fixed, as MAAS does).
	evs := env.Events.Events()
	for _, e := range evs[seen:] {
		if e.Kind != trace.KindStatusChange {
			continue
		}
		m := bySID[e.Machine]
		from, _ := nodestatus.Parse(fmt.Sprint(e.Attrs["from"]))
		to, _ := nodestatus.Parse(fmt.Sprint(e.Attrs["to"]))
		if !nodestatus.CanTransition(from, to) {
			fail("transition %s -> %s is not in MAAS's table", from, to)
		}
		if m != nil && m.status != from.String() {
			fail("%s changed from %s but was %s", m.host, from, m.status)
		}
		if to == nodestatus.Deployed {
			okUserData := from == nodestatus.Deploying && action == "user-data"
			okFixed := from == nodestatus.Broken && action == "mark_fixed"
			if !okUserData && !okFixed {
				fail("%s became Deployed from %s by %s", m.host, from, action)
			}
		}
		if m != nil {
			m.status = to.String()
		}
	}
	for _, m := range ms {
		j := machineMap(t, env, m.sid)
		st := fmt.Sprint(j["status_name"])
		if st != m.status {
			fail("%s is %s but its status changes say %s", m.host, st, m.status)
		}
		owner := j["owner"]
		switch st {
		case "New", "Ready":
			if owner != nil {
				fail("%s is %s with owner %v", m.host, st, owner)
			}
		case "Allocated", "Deploying", "Deployed", "Failed deployment":
			// (MAAS's mark_fixed restores Deployed after a release emptied the owner and
			// the OS; a machine that signals COMMISSIONING while New commissions itself
			// without an owner, as an enlisting machine does.)
			if owner == nil && !(st == "Deployed" && j["osystem"] == "") {
				fail("%s is %s without an owner", m.host, st)
			}
		}
		if st == "Deploying" && (j["osystem"] == "" || j["distro_series"] == "") {
			fail("%s is Deploying nothing", m.host)
		}
		if j["netboot"] == false && m.lastNetbootOff <= m.lastDeploy {
			fail("%s has netboot off without a netboot_off since its deployment (step %d, netboot_off %d)", m.host, m.lastDeploy, m.lastNetbootOff)
		}
		if st == "Deploying" && j["ephemeral_deploy"] == false && j["current_installation_result_id"] == nil {
			fail("%s is deploying to disk without an installation script set", m.host)
		}
		// A key handed out before the owner changed no longer works.
		for i := max(0, len(m.tokens)-4); i < len(m.tokens)-1; i++ {
			creds := m.tokens[i]
			res := (&nodeAgent{t: t, creds: creds, metadataURL: env.Server.URL + "/MAAS/metadata/"}).get("2012-03-01/meta-data/instance-id")
			if res.Status == http.StatusOK && m.tokenOwner[i] != fmt.Sprint(owner) {
				fail("%s's old key (handed out with owner %s) still reads meta-data with owner %v", m.host, m.tokenOwner[i], owner)
			}
		}
	}
	return len(evs)
}
