package scenario_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/maasemu/maasemu/harness/scenario"
)

// Bad input to the commands fails the script with a message naming the input and the
// rule, before anything is started. None of these needs root or a lab.
func TestCommandsRefuseBadInput(t *testing.T) {
	p := scenario.Params(scenario.Options{AgentPath: "/nonexistent/maasemu-agent", SharedDir: t.TempDir()})
	cases := []struct{ name, script, want string }{
		{"no lab", "machine m1\n", "machine: no lab: run `lab` first"},
		{"unknown driver", "lab -driver qemu\n", `lab: -driver "qemu": want sim or libvirt`},
		{"bad subnet", "lab -subnet 10.0.0.0/30\n", `lab: -subnet "10.0.0.0/30": want an IPv4 CIDR from /8 to /29`},
		{"bad budget", "lab -budget extract=5s\n", `phase "extract": want one of power dhcp`},
		{"bad budget duration", "lab -budget curtin-extract=soon\n", `"soon" is not a positive duration`},
		{"extra lab argument", "lab now\n", "lab: 1 argument(s) [\"now\"]"},
		{"upload usage", "upload only-a-name\n", "usage: upload [-sha256 HEX]"},
		{"await without a machine", "await\n", "usage: await MACHINE STATUS"},
		{"negated lab", "! lab\n", "unsupported: ! lab"},
		{"unknown condition", "[nosuch] lab\n", `unknown condition "nosuch"`},
		{"api without a lab", "api GET machines/\n", "api: no lab"},
		{"fault without a lab", "fault loss=10%\n", "fault: no lab"},
		{"cut usage", "cut\n", "usage: cut [lab|rack|PORT|MACHINE] DUR"},
		{"power-cut usage", "power-cut\n", "usage: power-cut MACHINE [-at PHASE]"},
		{"capture usage", "capture dhcp-option\n", "usage: capture dhcp-option MACHINE CODE"},
		{"phase usage", "phase m1 deployed\n", "usage: phase MACHINE PHASE"},
	}
	scripts := map[string]string{}
	for i, c := range cases {
		scripts[strings.ReplaceAll(c.name, " ", "-")] = c.script
		_ = i
	}
	rs := scenario.Run(p, writeScripts(t, scripts), scenario.RunOptions{})
	byName := map[string]scenario.ScriptResult{}
	for _, r := range rs {
		byName[r.Name] = r
	}
	for _, c := range cases {
		r, ok := byName[strings.ReplaceAll(c.name, " ", "-")]
		if !ok {
			t.Errorf("%s: no result", c.name)
			continue
		}
		if r.Status != scenario.Fail || !strings.Contains(r.Log, c.want) {
			t.Errorf("%s: status %s, want FAIL with %q in the log:\n%s", c.name, r.Status, c.want, r.Log)
		}
	}
}

func TestJSONPath(t *testing.T) {
	doc := map[string]any{
		"system_id": "abc123",
		"interfaces": []any{
			map[string]any{"name": "eth0", "id": 7.0, "links": []any{map[string]any{"id": 3.0, "mode": "auto"}}},
			map[string]any{"name": "eth1", "id": 8.0},
		},
		"subnets": []any{map[string]any{"cidr": "198.18.0.0/24", "id": 1.0}},
		"ok":      true,
	}
	cases := []struct{ path, want, err string }{
		{"system_id", "abc123", ""},
		{"interfaces.name=eth1.id", "8", ""},
		{"interfaces.0.links.0.mode", "auto", ""},
		{"[subnets].[cidr=198.18.0.0/24].id", "1", ""},
		{"subnets.[cidr=198.18.0.0/24]", `{"cidr":"198.18.0.0/24","id":1}`, ""},
		{"ok", "true", ""},
		{"interfaces.5", "", "want an index below 2"},
		{"interfaces.name=eth9.id", "", "no element with name=eth9"},
		{"nope", "", `no key "nope"`},
		{"system_id.x", "", "is not an object or an array"},
		{"interfaces..id", "", "empty step"},
		{"[subnets", "", "unclosed ["},
		{"subnets.", "", "ends with a dot"},
	}
	for _, c := range cases {
		got, err := scenario.JSONPath(doc, c.path)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("JSONPath(%q) = %q, %v; want an error with %q", c.path, got, err, c.err)
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("JSONPath(%q) = %q, %v; want %q", c.path, got, err, c.want)
		}
	}
}

func TestMergeCurtinConfigs(t *testing.T) {
	got, err := scenario.MergeCurtinConfigs([]string{
		"install: {log_file: /tmp/install.log, post_files: [a]}\nverbosity: 1\n",
		"install: {post_files: [b, c]}\nlate_commands: {maas: [wget]}\n",
		"verbosity: 3\nlate_commands: {98-check: [true]}\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"install":       map[string]any{"log_file": "/tmp/install.log", "post_files": []any{"b", "c"}},
		"verbosity":     3,
		"late_commands": map[string]any{"maas": []any{"wget"}, "98-check": []any{true}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("merged (-want +got):\n%s", diff)
	}
	if _, err := scenario.MergeCurtinConfigs([]string{"a: 1\n", "- not a mapping\n"}); err == nil || !strings.Contains(err.Error(), "document 1 is not a YAML mapping") {
		t.Errorf("a list document: err %v, want one naming document 1", err)
	}
}

func TestUsageListsEveryCommand(t *testing.T) {
	u := strings.Join(scenario.Usage(), "\n")
	for _, c := range []string{"lab ", "images", "upload ", "machine ", "layout ", "deploy ", "release ", "await ", "await-event ",
		"api ", "curtin-config ", "phase ", "diagnosis ", "events ", "console ", "install-log ", "capture ", "disk ", "fsck ",
		"fault ", "cut ", "power-cut ", "slow-http "} {
		if !strings.Contains(u, c) {
			t.Errorf("Usage has no %q", c)
		}
	}
}
