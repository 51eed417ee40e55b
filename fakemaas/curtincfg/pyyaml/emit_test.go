package pyyaml

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDumpKnownOutputs(t *testing.T) {
	// Expected texts are what PyYAML 6.0 prints for the same Python values.
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"scalars", M("b", true, "i", 42, "n", nil, "s", "x", "e", ""),
			"b: true\ne: ''\ni: 42\nn: null\ns: x\n"},
		{"sorted keys", M("z", 1, "a", 2), "a: 2\nz: 1\n"},
		{"ordered keys", NewOrderedMap().Set("version", 2).Set("ethernets", M("a", 1)),
			"version: 2\nethernets:\n  a: 1\n"},
		{"indentless sequence under key", M("builtin", L("curtin", "block-meta", "custom")),
			"builtin:\n- curtin\n- block-meta\n- custom\n"},
		{"sequence of maps", M("config", L(M("id", "sda", "type", "disk"))),
			"config:\n- id: sda\n  type: disk\n"},
		{"empty collections", M("l", L(), "m", NewMap()), "l: []\nm: {}\n"},
		{"type-looking strings quoted", M("a", "true", "b", "123", "c", "null", "d", "1.5", "e", "~", "f", "2024-01-02", "g", "on"),
			"a: 'true'\nb: '123'\nc: 'null'\nd: '1.5'\ne: '~'\nf: '2024-01-02'\ng: 'on'\n"},
		{"sexagesimal mac quoted", M("m", "12:34:56:18:20:12", "n", "00:01:02:03:04:05"),
			"m: '12:34:56:18:20:12'\nn: 00:01:02:03:04:05\n"},
		{"indicators", M("a", "-O", "b", "^metadata_csum", "c", "- x", "d", "a: b", "e", "#c", "f", "x #y"),
			"a: -O\nb: ^metadata_csum\nc: '- x'\nd: 'a: b'\ne: '#c'\nf: 'x #y'\n"},
		{"quote in single quoted", M("a", "it's: x"), "a: 'it''s: x'\n"},
		{"multiline", M("a", "l1\nl2\n"), "a: 'l1\n\n  l2\n\n  '\n"},
		{"non-ascii", M("a", "café"), "a: \"caf\\xE9\"\n"},
		{"tab", M("a", "x\ty"), "a: \"x\\ty\"\n"},
		{"long single-quoted folds", M("k", "'"+strings.Repeat("word ", 20)+"'"),
			"k: '''word word word word word word word word word word word word word word word word\n  word word word word '''\n"},
		{"root list", L(1, "a"), "- 1\n- a\n"},
		{"root scalar", "x", "x\n...\n"},
		{"nested lists", L(L(1, 2), L()), "- - 1\n  - 2\n- []\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Dump(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Dump mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDumpRejectsUnsupportedType(t *testing.T) {
	_, err := Dump(M("f", 1.5))
	if err == nil || !strings.Contains(err.Error(), "float64") {
		t.Fatalf("Dump(float) error = %v, want one naming float64", err)
	}
}

func TestMapOperations(t *testing.T) {
	m := M("b", 1, "a", 2)
	m.Set("b", 3)
	m.Delete("a")
	m.Delete("missing")
	c := m.Copy().Set("c", 4)
	if diff := cmp.Diff([]string{"b"}, m.Keys()); diff != "" {
		t.Errorf("keys after delete (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"b", "c"}, c.Keys()); diff != "" {
		t.Errorf("copy keys (-want +got):\n%s", diff)
	}
	if v, _ := m.Get("b"); v != 3 {
		t.Errorf("b = %v, want 3", v)
	}
}

// pythonYAML returns a python3 that can import yaml, or skips the test.
func pythonYAML(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		if exec.Command(path, "-c", "import yaml").Run() == nil {
			return path
		}
	}
	t.Skip("comparison with real PyYAML: needs python3 with the yaml module (Debian python3-yaml)")
	return ""
}

// toJSON converts a value for the Python side: an ordered Map becomes
// {"__ordered__": [[k, v], ...]}, which the script turns into an OrderedDict dumped in
// insertion order (the representer MAAS installs in maasserver/monkey.py).
func toJSON(v any) any {
	switch x := v.(type) {
	case *Map:
		if x.Ordered {
			pairs := []any{}
			for _, k := range x.Keys() {
				val, _ := x.Get(k)
				pairs = append(pairs, []any{k, toJSON(val)})
			}
			return map[string]any{"__ordered__": pairs}
		}
		out := map[string]any{}
		for _, k := range x.Keys() {
			val, _ := x.Get(k)
			out[k] = toJSON(val)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = toJSON(e)
		}
		return out
	default:
		return v
	}
}

const pyDumpScript = `
import json, sys, yaml
from collections import OrderedDict
def rep(dumper, data):
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items())
yaml.add_representer(OrderedDict, rep, Dumper=yaml.SafeDumper)
def hook(d):
    if list(d.keys()) == ["__ordered__"]:
        return OrderedDict((k, v) for k, v in d["__ordered__"])
    return d
docs = json.load(sys.stdin, object_hook=hook)
sys.stdout.write("\x00".join(yaml.safe_dump(d) for d in docs))
`

// PyDump renders values with the real PyYAML, for comparisons in tests.
func pyDump(t *testing.T, py string, docs []any) []string {
	t.Helper()
	in := make([]any, len(docs))
	for i, d := range docs {
		in[i] = toJSON(d)
	}
	body, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-c", pyDumpScript)
	cmd.Stdin = bytes.NewReader(body)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python yaml.safe_dump: %v: %s", err, stderr.String())
	}
	return strings.Split(string(out), "\x00")
}

func randomString(r *rand.Rand) string {
	pieces := []string{"a", "word", " ", " ", "  ", ":", ": ", "-", "- ", "#", " #", "'", "\"", "\\",
		"\n", "\n\n", "\t", "é", "☃", "true", "1", "0x1F", "12:30", ".5", "null", "~", "?", ",",
		"[", "]", "{", "}", "&", "*", "!", "|", ">", "%", "@", "`", "=", "<<", "---", "...",
		"http://10.0.0.1:5248/MAAS/metadata/", "oauth_consumer_key=abc&oauth_token_key=def",
		strings.Repeat("long", 12), "\x00", "\u0085", "\u2028", "\uFEFF", "\x7f"}
	n := r.IntN(30)
	var b strings.Builder
	for range n {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	return b.String()
}

func randomValue(r *rand.Rand, depth int) any {
	switch k := r.IntN(10); {
	case depth > 3 || k < 4:
		switch r.IntN(6) {
		case 0:
			return r.IntN(2) == 0
		case 1:
			return r.IntN(100000) - 500
		case 2:
			return nil
		default:
			return randomString(r)
		}
	case k < 6:
		n := r.IntN(4)
		l := make([]any, n)
		for i := range l {
			l[i] = randomValue(r, depth+1)
		}
		return l
	default:
		m := NewMap()
		m.Ordered = r.IntN(4) == 0
		for range r.IntN(5) {
			m.Set(randomString(r), randomValue(r, depth+1))
		}
		return m
	}
}

// TestDumpMatchesPyYAML compares this emitter with real PyYAML on MAAS-shaped documents
// and on thousands of random ones full of quoting and folding edge cases.
func TestDumpMatchesPyYAML(t *testing.T) {
	py := pythonYAML(t)
	r := rand.New(rand.NewPCG(1, 2))
	docs := []any{
		M("debconf_selections", M("maas", "cloud-init   cloud-init/maas-metadata-url  string http://10.0.0.2:5248/MAAS/metadata/\ncloud-init-base   cloud-init-base/local-cloud-config  string manage_etc_hosts: true\\nmanual_cache_clean: true\\n\n"),
			"late_commands", M("98-validate-custom-image-has-cloud-init", L("curtin", "in-target", "--", "bash", "-c",
				`cloud-init --version || (echo "cloud-init not detected, MAAS will not be able to configure this machine properly" && exit 1)`))),
		M("cloud-init", "#cloud-config\nntp:\n  pools: []\n  servers:\n  - 10.0.0.2\n"),
	}
	for range 3000 {
		m := NewMap()
		for range 1 + r.IntN(4) {
			m.Set(randomString(r), randomValue(r, 0))
		}
		docs = append(docs, m)
	}
	want := pyDump(t, py, docs)
	if len(want) != len(docs) {
		t.Fatalf("python returned %d documents, want %d", len(want), len(docs))
	}
	failures := 0
	for i, d := range docs {
		got, err := Dump(d)
		if err != nil {
			t.Fatal(err)
		}
		if got != want[i] {
			failures++
			if failures <= 5 {
				t.Errorf("document %d differs from PyYAML (-pyyaml +go):\n%s", i, cmp.Diff(want[i], got))
			}
		}
	}
	if failures > 0 {
		t.Errorf("%d of %d documents differ from PyYAML", failures, len(docs))
	}
}

func BenchmarkDumpStorageDocument(b *testing.B) {
	cfg := []any{}
	for i := range 20 {
		cfg = append(cfg, M("id", "sda-part"+string(rune('0'+i%10)), "type", "partition", "size", "8581545984B",
			"uuid", "6efc2c3d-bc9d-4ee5-a7ed-c6e1574d5398", "device", "sda", "wipe", "superblock"))
	}
	doc := M("storage", M("version", 1, "config", cfg))
	for b.Loop() {
		if _, err := Dump(doc); err != nil {
			b.Fatal(err)
		}
	}
}
