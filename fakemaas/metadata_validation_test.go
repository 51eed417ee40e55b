package fakemaas_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/canonical/gomaasclient/entity"
	"github.com/google/go-cmp/cmp"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/fakemaas/commissioning"
	"github.com/maasemu/maasemu/fakemaas/oauth"
	"github.com/maasemu/maasemu/fakemaas/regiontest"
)

// stateSnapshot is everything a refused request must leave unchanged: the API's
// machines and resources, every machine's event log and script results.
func stateSnapshot(t *testing.T, env *regiontest.Env, sids ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(snapshot(t, env))
	for _, sid := range sids {
		ev := call(t, env, env.APIKey, http.MethodGet, "/MAAS/api/2.0/events/?op=query&level=DEBUG&limit=1000&id="+sid, nil, false)
		fmt.Fprintf(&b, "\nevents %s: %s", sid, ev.Body)
		rs := call(t, env, env.APIKey, http.MethodGet, "/MAAS/api/2.0/nodes/"+sid+"/results/?include_output=1", nil, false)
		fmt.Fprintf(&b, "\nresults %s: %s", sid, rs.Body)
	}
	return b.String()
}

// machineSnapshot is one machine's record, event log and script results.
func machineSnapshot(t *testing.T, env *regiontest.Env, sid string) string {
	t.Helper()
	m := call(t, env, env.APIKey, http.MethodGet, "/MAAS/api/2.0/machines/"+sid+"/", nil, false)
	ev := call(t, env, env.APIKey, http.MethodGet, "/MAAS/api/2.0/events/?op=query&level=DEBUG&limit=1000&id="+sid, nil, false)
	rs := call(t, env, env.APIKey, http.MethodGet, "/MAAS/api/2.0/nodes/"+sid+"/results/?include_output=1", nil, false)
	return m.Body + "\n" + ev.Body + "\n" + rs.Body
}

// rawRequest sends a request with the given Authorization header (none when empty).
func rawRequest(t *testing.T, method, u, auth, ctype string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	return send(t, req)
}

func TestMetadataBadInput(t *testing.T) {
	env := regiontest.Start(t)
	env.ImportDefaultStream(t)
	rack := env.StartRack(t)
	c := env.Client
	if _, err := regiontest.UploadCustomImage(c, "img", "amd64/generic", "tgz", "ubuntu/noble", []byte("tarball")); err != nil {
		t.Fatal(err)
	}
	deployed := func(host, mac string) (string, *nodeAgent) {
		sid := readyMachine(t, env, host, mac)
		if _, err := c.Machine.Deploy(sid, &entity.MachineDeployParams{DistroSeries: "img"}); err != nil {
			t.Fatal(err)
		}
		kp, err := env.Region.BootConfig(t.Context(), fakemaas.BootRequest{MAC: mac, LocalIP: rack})
		if err != nil {
			t.Fatal(err)
		}
		return sid, bootNode(t, kp.PreseedURL)
	}
	sidA, a := deployed("a", "52:54:00:0a:00:01")
	sidB, b := deployed("b", "52:54:00:0a:00:02")
	sidC := readyMachine(t, env, "c", "52:54:00:0a:00:03")
	if _, err := c.Machines.Allocate(&entity.MachineAllocateParams{SystemID: sidC}); err != nil {
		t.Fatal(err)
	}
	credsC, err := env.Region.NodeToken(sidC)
	if err != nil {
		t.Fatal(err)
	}
	allocated := &nodeAgent{t: t, creds: credsC, metadataURL: a.metadataURL, statusURL: a.statusURL}
	base := "http://" + rack + ":5248/MAAS/metadata/"
	user, _ := oauth.ParseKey(env.APIKey)
	hdr := oauth.Header
	withCreds := func(f func(*oauth.Credentials)) string { cr := a.creds; f(&cr); return hdr(cr) }
	event := func(ev map[string]any) []byte { return []byte(mustJSON(t, ev)) }
	good := start("curtin", "cmd-install", "curtin command install")
	sigCT, sigBody, _ := commissioning.Signal{Status: commissioning.StatusOK}.Body()
	sig := func(fields url.Values) (string, []byte) {
		return "application/x-www-form-urlencoded", []byte(fields.Encode())
	}
	bad := func(st string) (string, []byte) { return sig(url.Values{"op": {"signal"}, "status": {st}}) }
	unknownCT, unknownBody := bad("DEPLOYING")
	noStatusCT, noStatusBody := sig(url.Values{"op": {"signal"}})
	exitCT, exitBody := sig(url.Values{"op": {"signal"}, "status": {"WORKING"}, "exit_status": {"one"}})

	cases := []struct {
		name                  string
		method, url, auth, ct string
		body                  []byte
		status                int
		want                  string // body, exactly; "*" + s: contains s
	}{
		{"wrong token key", "GET", base + "curtin/2012-03-01/meta-data/instance-id",
			withCreds(func(c *oauth.Credentials) { c.TokenKey = "nope" }), "", nil, 401, "Authorization Error: 'Invalid access token: nope'"},
		{"wrong secret", "GET", base + "curtin/2012-03-01/user-data",
			withCreds(func(c *oauth.Credentials) { c.TokenSecret = "wrong" }), "", nil, 401, "Authorization Error: 'Invalid signature.'"},
		{"unknown consumer", "GET", base + "2012-03-01/meta-data/",
			withCreds(func(c *oauth.Credentials) { c.ConsumerKey = "nobody" }), "", nil, 401, "Authorization Error: Invalid API key."},
		{"a user's API key", "GET", base + "2012-03-01/meta-data/instance-id", hdr(user), "", nil, 403, "Not authenticated as a known node."},
		{"no key on curtin user-data", "GET", base + "curtin/2012-03-01/user-data", "", "", nil, 401, "Forbidden"},
		{"no key on the installer", "GET", base + "curtin/2012-03-01/" + fakemaas.InstallerRoute, "", "", nil, 401, "Forbidden"},
		{"unknown version", "GET", base + "2009-04-04/meta-data/instance-id", hdr(a.creds), "", nil, 404, "Unknown metadata version: 2009-04-04"},
		{"unknown attribute", "GET", base + "latest/meta-data/bogus", hdr(a.creds), "", nil, 404, "Unknown metadata attribute: bogus"},
		{"by-mac", "GET", base + "latest/by-mac/52:54:00:0a:00:01/meta-data/", "", "", nil, 403, "Unauthenticated metadata access is not allowed on this MAAS."},
		{"preseed of no node", "GET", base + "latest/by-id/nosuch/?op=get_preseed", "", "", nil, 404, "No Node matches the given query."},
		{"netboot_off of no node", "POST", base + "latest/by-id/nosuch/", "", "application/x-www-form-urlencoded", []byte("op=netboot_off"), 404, "No Node matches the given query."},
		{"anonymous netboot_on", "POST", base + "latest/by-id/" + sidA + "/", "", "application/x-www-form-urlencoded", []byte("op=netboot_on"), 400, "*Unrecognised signature: method=POST op=netboot_on"},
		{"unknown op", "POST", base + "2012-03-01/", hdr(a.creds), "application/x-www-form-urlencoded", []byte("op=reboot"), 400, "Unrecognised signature: method=POST op=reboot"},
		{"signal: unknown status", "POST", base + "2012-03-01/", hdr(a.creds), unknownCT, unknownBody, 400, "Unknown status: 'DEPLOYING'"},
		{"signal: no status", "POST", base + "2012-03-01/", hdr(a.creds), noStatusCT, noStatusBody, 400, "No provided status!"},
		{"signal: bad exit status", "POST", base + "2012-03-01/", hdr(a.creds), exitCT, exitBody, 400, "Invalid exit_status: Please enter an integer value"},
		{"signal: state forbids it", "POST", base + "2012-03-01/", hdr(allocated.creds), sigCT, sigBody, 409, "Machine status isn't valid (status is Allocated)"},
		{"signal: anonymous", "POST", base + "2012-03-01/", "", sigCT, sigBody, 400, "Unrecognised signature: method=POST op=signal"},
		{"webhook: GET", "GET", a.statusURL, hdr(a.creds), "", nil, 405, "Method Not Allowed"},
		{"webhook: no Authorization", "POST", a.statusURL, "", "application/json", event(good), 401, ""},
		{"webhook: no oauth_token", "POST", a.statusURL, `OAuth oauth_consumer_key="x"`, "application/json", event(good), 401, ""},
		{"webhook: non-ASCII", "POST", a.statusURL, hdr(a.creds), "application/json",
			[]byte(`{"event_type": "start", "origin": "curtin", "name": "x", "description": "café"}`), 400,
			"Status payload must be ASCII-only: 'ascii' codec can't decode byte 0xc3 in position 76: ordinal not in range(128)"},
		{"webhook: bad JSON", "POST", a.statusURL, hdr(a.creds), "application/json", []byte(`{"event_type": `), 400,
			"Status payload is not valid JSON:\n{\"event_type\": \n\n"},
		{"webhook: missing keys", "POST", a.statusURL, hdr(a.creds), "application/json",
			[]byte(`{"event_type": "start", "description": "d"}`), 400, "Missing parameter(s) origin, name in status message."},
		{"webhook: not an object", "POST", a.statusURL, hdr(a.creds), "application/json", []byte(`[1, 2]`), 400,
			"Missing parameter(s) event_type, origin, name, description in status message."},
		{"webhook: bad file encoding", "POST", a.statusURL, hdr(a.creds), "application/json",
			event(map[string]any{"event_type": "finish", "origin": "curtin", "name": "cmd-install", "description": "d", "result": "SUCCESS",
				"files": []any{map[string]any{"path": "/tmp/install.log", "content": "aGk=", "encoding": "hex"}}}), 400,
			`*Invalid encoding: hex`},
		{"webhook: bad base64", "POST", a.statusURL, hdr(a.creds), "application/json",
			event(map[string]any{"event_type": "finish", "origin": "curtin", "name": "cmd-install", "description": "d", "result": "FAIL",
				"files": []any{map[string]any{"path": "/tmp/install.log", "content": "!!!", "encoding": "base64"}}}), 400,
			`*content is not valid base64`},
		{"webhook: timestamp not a number", "POST", a.statusURL, hdr(a.creds), "application/json",
			event(map[string]any{"event_type": "finish", "origin": "curtin", "name": "cmd-install", "description": "d", "result": "FAIL", "timestamp": "now"}), 400,
			`*"timestamp" must be a number`},
		{"webhook: unknown token (a released or deleted node)", "POST", a.statusURL,
			withCreds(func(c *oauth.Credentials) { c.TokenKey = "gone" }), "application/json",
			event(finish("curtin", "cmd-install", "curtin command install", "FAIL")), 204, ""},
	}
	sids := []string{sidA, sidB, sidC}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := stateSnapshot(t, env, sids...)
			res := rawRequest(t, tc.method, tc.url, tc.auth, tc.ct, tc.body)
			got := string(res.Body)
			switch {
			case res.Status != tc.status:
				t.Errorf("status %d, want %d (body %q)", res.Status, tc.status, got)
			case strings.HasPrefix(tc.want, "*"):
				if !strings.Contains(got, tc.want[1:]) {
					t.Errorf("body %q lacks %q", got, tc.want[1:])
				}
			case got != tc.want:
				t.Errorf("body %q, want %q", got, tc.want)
			}
			if after := stateSnapshot(t, env, sids...); after != before {
				t.Errorf("state changed:\n%s", cmp.Diff(before, after))
			}
		})
	}

	// The webhook trusts the token key alone, as MAAS does: a wrong secret is accepted,
	// and the event lands on the token's node whatever the URL's system_id.
	beforeB := machineSnapshot(t, env, sidB)
	res := rawRequest(t, "POST", b.statusURL, withCreds(func(c *oauth.Credentials) { c.TokenSecret = "wrong" }), "application/json",
		event(start("curtin", "cmd-install/stage-partitioning", "configuring storage")))
	if res.Status != http.StatusNoContent {
		t.Fatalf("event with A's key on B's URL: %s", res)
	}
	if after := machineSnapshot(t, env, sidB); after != beforeB {
		t.Errorf("an event with A's key changed B:\n%s", cmp.Diff(beforeB, after))
	}
	if evs := eventDescriptions(t, env, sidA); !containsAll(evs, "Configuring storage", "Node installation - 'curtin' configuring storage") {
		t.Errorf("A's events lack the event posted with A's key:\n%s", strings.Join(evs, "\n"))
	}
	// A node reads only its own data: A's key gives A's instance-id on any route.
	if got := string(a.mustGet("2012-03-01/meta-data/instance-id")); got != sidA {
		t.Errorf("A's instance-id = %q", got)
	}
}

func containsAll(list []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, l := range list {
			if l == w {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
