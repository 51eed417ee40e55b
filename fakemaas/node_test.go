package fakemaas_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/maasemu/maasemu/fakemaas/commissioning"
	"github.com/maasemu/maasemu/fakemaas/oauth"
)

// nodeAgent is a Go client doing what a machine's ephemeral environment and installed OS do
// on the wire: fetch the preseed, read the metadata service with the node's OAuth key,
// signal, post webhook events.
type nodeAgent struct {
	t           testing.TB
	creds       oauth.Credentials
	metadataURL string // datasource.MAAS.metadata_url
	statusURL   string // reporting.maas.endpoint
	preseed     map[string]any
}

type response struct {
	Status      int
	ContentType string
	Body        []byte
}

func (r response) String() string { return fmt.Sprintf("%d %s %q", r.Status, r.ContentType, r.Body) }

func send(t testing.TB, req *http.Request) response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header.Get("Content-Type"), b}
}

// bootNode fetches the preseed at url (anonymously, as cloud-init's cloud-config-url) and
// returns a node configured from it.
func bootNode(t testing.TB, preseedURL string) *nodeAgent {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, preseedURL, nil)
	res := send(t, req)
	if res.Status != http.StatusOK || !bytes.HasPrefix(res.Body, []byte("#cloud-config\n")) {
		t.Fatalf("preseed %s: %s", preseedURL, res)
	}
	var p map[string]any
	if err := yaml.Unmarshal(res.Body, &p); err != nil {
		t.Fatalf("preseed is not YAML: %v\n%s", err, res.Body)
	}
	ds := p["datasource"].(map[string]any)["MAAS"].(map[string]any)
	rep := p["reporting"].(map[string]any)["maas"].(map[string]any)
	return &nodeAgent{t: t, preseed: p, metadataURL: ds["metadata_url"].(string), statusURL: rep["endpoint"].(string),
		creds: oauth.Credentials{ConsumerKey: ds["consumer_key"].(string), TokenKey: ds["token_key"].(string),
			TokenSecret: ds["token_secret"].(string)}}
}

func (n *nodeAgent) url(rel string) string { return strings.TrimSuffix(n.metadataURL, "/") + "/" + rel }

func (n *nodeAgent) get(rel string) response {
	n.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, n.url(rel), nil)
	oauth.Sign(req, n.creds)
	return send(n.t, req)
}

func (n *nodeAgent) mustGet(rel string) []byte {
	n.t.Helper()
	res := n.get(rel)
	if res.Status != http.StatusOK {
		n.t.Fatalf("GET %s: %s", rel, res)
	}
	return res.Body
}

func (n *nodeAgent) signal(s commissioning.Signal) response {
	n.t.Helper()
	req, err := s.Request(n.t.Context(), n.metadataURL)
	if err != nil {
		n.t.Fatal(err)
	}
	oauth.Sign(req, n.creds)
	return send(n.t, req)
}

// event posts a webhook event as curtin's and cloud-init's reporters do.
func (n *nodeAgent) event(ev map[string]any) response {
	n.t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		n.t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, n.statusURL, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	oauth.Sign(req, n.creds)
	return send(n.t, req)
}

func (n *nodeAgent) mustEvent(ev map[string]any) {
	n.t.Helper()
	if res := n.event(ev); res.Status != http.StatusNoContent {
		n.t.Fatalf("event %v: %s", ev, res)
	}
}

func start(origin, name, desc string) map[string]any {
	return map[string]any{"event_type": "start", "origin": origin, "name": name, "description": desc, "timestamp": 1716242172.12}
}

func finish(origin, name, desc, result string) map[string]any {
	return map[string]any{"event_type": "finish", "origin": origin, "name": name, "description": desc, "result": result,
		"timestamp": 1716242180.5}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
