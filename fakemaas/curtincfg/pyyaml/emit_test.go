package pyyaml

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os/exec"
	"strconv"
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
	_, err := Dump(M("f", float32(1.5)))
	if err == nil || !strings.Contains(err.Error(), "float32") {
		t.Fatalf("Dump(float32) error = %v, want one naming float32", err)
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
	case float64:
		// JSON would turn 1.0 into 1, an int for Python: pass floats as text.
		return map[string]any{"__float__": strconv.FormatFloat(x, 'g', -1, 64)}
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
    if list(d.keys()) == ["__float__"]:
        return float(d["__float__"])
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
		switch r.IntN(7) {
		case 0:
			return r.IntN(2) == 0
		case 1:
			return r.IntN(100000) - 500
		case 6:
			floats := []float64{1.0, 100.0, 1e16, 1e15, 123456789012345680.0, 0.0001, 0.00001, 1.5e-7, 2.5, 1e22, -3.25, 3.14159, math.Inf(1), math.Inf(-1), 0.1 + 0.2}
			if r.IntN(2) == 0 {
				return floats[r.IntN(len(floats))]
			}
			return (r.Float64() - 0.5) * math.Pow(10, float64(r.IntN(40)-20))
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

func TestParsePlain(t *testing.T) {
	tests := []struct {
		in   string
		want any
	}{
		{"yes", true}, {"Off", false}, {"true", true}, {"~", nil}, {"", nil}, {"null", nil},
		{"0755", int64(493)}, {"0x1F", int64(31)}, {"0b101", int64(5)}, {"1_000", int64(1000)},
		{"1:30", int64(90)}, {"-12", int64(-12)}, {"1.5", 1.5}, {"1e3", "1e3"}, {"1.0e+3", 1000.0},
		{"abc", "abc"}, {"12:34:56:78:90:12", "12:34:56:78:90:12"},
	}
	for _, tt := range tests {
		got, err := ParsePlain(tt.in)
		if err != nil {
			t.Errorf("ParsePlain(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParsePlain(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
	if _, err := ParsePlain("2024-01-02"); err == nil || !strings.Contains(err.Error(), "timestamp") {
		t.Errorf("ParsePlain(timestamp) error = %v, want one naming timestamp", err)
	}
}

// TestParsePlainMatchesPyYAML checks the loader side against real yaml.safe_load.
func TestParsePlainMatchesPyYAML(t *testing.T) {
	py := pythonYAML(t)
	inputs := []string{"yes", "No", "on", "OFF", "y", "n", "0755", "0x1f", "0b11", "+12", "-0", "1_0",
		"190:20:30", "1.5", "-.inf", ".NaN", "6.8523015e+5", "685.230_15e+03", "190:20:30.15",
		"null", "Null", "~", "abc", "1e3", "0o17", "0.", ".5", "12:34:56:18:20:12"}
	script := `import json, sys, yaml, math
out = []
for s in json.load(sys.stdin):
    v = yaml.safe_load("k: " + s)["k"]
    kind = type(v).__name__
    if isinstance(v, float) and math.isnan(v):
        v = "NaN"
    elif isinstance(v, float) and math.isinf(v):
        v = "inf" if v > 0 else "-inf"
    out.append([kind, v])
json.dump(out, sys.stdout)`
	body, _ := json.Marshal(inputs)
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	var want [][2]any
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	for i, s := range inputs {
		got, err := ParsePlain(s)
		if err != nil {
			t.Errorf("ParsePlain(%q): %v", s, err)
			continue
		}
		kind, val := want[i][0].(string), want[i][1]
		switch kind {
		case "bool", "str":
			if got != val {
				t.Errorf("ParsePlain(%q) = %#v, PyYAML %s %#v", s, got, kind, val)
			}
		case "NoneType":
			if got != nil {
				t.Errorf("ParsePlain(%q) = %#v, PyYAML None", s, got)
			}
		case "int":
			if g, ok := got.(int64); !ok || float64(g) != val.(float64) {
				t.Errorf("ParsePlain(%q) = %#v, PyYAML int %v", s, got, val)
			}
		case "float":
			g, ok := got.(float64)
			switch val {
			case "NaN":
				ok = ok && math.IsNaN(g)
			case "inf":
				ok = ok && math.IsInf(g, 1)
			case "-inf":
				ok = ok && math.IsInf(g, -1)
			default:
				ok = ok && g == val.(float64)
			}
			if !ok {
				t.Errorf("ParsePlain(%q) = %#v, PyYAML float %v", s, got, val)
			}
		default:
			t.Errorf("ParsePlain(%q): PyYAML gave unexpected type %s", s, kind)
		}
	}
}
