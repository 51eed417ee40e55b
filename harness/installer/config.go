package installer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Version is the curtin version this installer reports being compatible with.
const Version = "23.1.1"

// VersionString is what "curtin: Installation started. (<version>)" shows.
const VersionString = Version + "~maasemu"

// Stage descriptions, from curtin/commands/install.py STAGE_DESCRIPTIONS.
var stageDescriptions = map[string]string{
	"early":        "preparing for installation",
	"partitioning": "configuring storage",
	"network":      "configuring network",
	"extract":      "writing install sources to disk",
	"curthooks":    "configuring installed system",
	"hook":         "finalizing installation",
	"late":         "executing late commands",
}

// Paths curtin uses by default (install.py).
const (
	DefaultInstallLog   = "/var/log/curtin/install.log"
	DefaultErrorTarfile = "/var/log/curtin/curtin-error-logs.tar"
	SaveInstallLog      = "/root/curtin-install.log"
	SaveInstallConfig   = "/root/curtin-install-cfg.yaml"
)

// builtinConfig is install.py CONFIG_BUILTIN.
func builtinConfig() map[string]any {
	return map[string]any{
		"sources":               map[string]any{},
		"stages":                []any{"early", "partitioning", "network", "extract", "curthooks", "hook", "late"},
		"extract_commands":      map[string]any{"builtin": []any{"curtin", "extract"}},
		"hook_commands":         map[string]any{"builtin": []any{"curtin", "hook"}},
		"partitioning_commands": map[string]any{"builtin": []any{"curtin", "block-meta", "simple"}},
		"curthooks_commands":    map[string]any{"builtin": []any{"curtin", "curthooks"}},
		"late_commands":         map[string]any{"builtin": []any{}},
		"network_commands":      map[string]any{"builtin": []any{"curtin", "net-meta", "auto"}},
		"apply_net_commands":    map[string]any{"builtin": []any{}},
		"install": map[string]any{
			"log_file":        DefaultInstallLog,
			"log_file_append": false,
			"error_tarfile":   DefaultErrorTarfile,
		},
	}
}

// MergeConfig merges src over dst in place with curtin's config.merge_config semantics:
// mappings merge recursively, anything else (lists included) is replaced by the later value.
func MergeConfig(dst, src map[string]any) {
	for k, v := range src {
		if vm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				MergeConfig(dm, vm)
				continue
			}
		}
		dst[k] = v
	}
}

// ParseConfig parses one YAML configuration document; like curtin's merge_config_str it
// must be a mapping. name labels errors (a file name or "configs[2]").
func ParseConfig(name string, doc []byte) (map[string]any, error) {
	var v any
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	if err := dec.Decode(&v); err != nil {
		if err.Error() == "EOF" {
			return nil, fmt.Errorf("config %s: Failed reading config. not a dictionary: empty document", name)
		}
		return nil, fmt.Errorf("config %s: invalid YAML: %w", name, err)
	}
	m, ok := normalize(v).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("config %s: Failed reading config. not a dictionary: %s", name, strings.TrimSpace(abbrev(string(doc), 80)))
	}
	return m, nil
}

// MergeConfigs parses and merges documents in order over curtin's builtin configuration.
func MergeConfigs(docs []string) (map[string]any, error) {
	cfg := builtinConfig()
	for i, d := range docs {
		m, err := ParseConfig(fmt.Sprintf("configs[%d]", i), []byte(d))
		if err != nil {
			return nil, err
		}
		MergeConfig(cfg, m)
	}
	return cfg, nil
}

// normalize turns yaml's map[any]any (non-string keys) into map[string]any, recursively.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = normalize(e)
		}
		return out
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
		return x
	}
	return v
}

// DeepCopy returns a deep copy of a config value.
func DeepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = DeepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = DeepCopy(e)
		}
		return out
	}
	return v
}

// Source is a sanitized install source.
type Source struct {
	Type string `json:"type"`
	URI  string `json:"uri"`
}

// sourcePrefixes is util.sanitize_source's supported list, in its order.
var sourcePrefixes = []string{"tgz", "dd-tgz", "tbz", "dd-tbz", "txz", "dd-txz", "dd-tar",
	"dd-bz2", "dd-gz", "dd-xz", "dd-raw", "fsimage", "fsimage-layered"}

// SanitizeSource is curtin's util.sanitize_source: a mapping is taken as is (it must have
// type and uri); a string is matched against the type prefixes, then the squashfs forms,
// else it is a tgz URL. cp:// keeps type tgz; extract recognises it by its scheme.
func SanitizeSource(src any) (Source, error) {
	switch x := src.(type) {
	case map[string]any:
		t, _ := x["type"].(string)
		u, _ := x["uri"].(string)
		if t == "" || u == "" {
			return Source{}, fmt.Errorf("source %v: a mapping source needs 'type' and 'uri'", x)
		}
		return Source{Type: t, URI: u}, nil
	case string:
		for _, p := range sourcePrefixes {
			if strings.HasPrefix(x, p+":") {
				return Source{Type: p, URI: x[len(p)+1:]}, nil
			}
		}
		if strings.HasPrefix(x, "squashfs://") {
			return Source{Type: "fsimage", URI: x[len("squashfs://"):]}, nil
		}
		if strings.HasPrefix(x, "squashfs:") {
			return Source{Type: "fsimage", URI: x[len("squashfs:"):]}, nil
		}
		if strings.HasSuffix(x, "squashfs") || strings.HasSuffix(x, "squash") {
			return Source{Type: "fsimage", URI: x}, nil
		}
		return Source{Type: "tgz", URI: x}, nil
	}
	return Source{}, fmt.Errorf("source %v: must be a string or a mapping with type and uri, got %T", src, src)
}

// sortedSources returns cfg.sources sanitized, in sorted key order.
func sortedSources(cfg map[string]any) ([]Source, error) {
	raw, _ := cfg["sources"].(map[string]any)
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []Source
	for _, k := range keys {
		s, err := SanitizeSource(raw[k])
		if err != nil {
			return nil, fmt.Errorf("sources/%s: %w", k, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// ddImages is util.get_dd_images.
func ddImages(cfg map[string]any) []Source {
	raw, _ := cfg["sources"].(map[string]any)
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []Source
	for _, k := range keys {
		m, ok := raw[k].(map[string]any)
		if !ok {
			continue
		}
		if t, _ := m["type"].(string); strings.HasPrefix(t, "dd-") {
			u, _ := m["uri"].(string)
			out = append(out, Source{Type: t, URI: u})
		}
	}
	return out
}

// sourceMap is the mapping form curtin stores in cfg.sources.
func (s Source) sourceMap() map[string]any { return map[string]any{"type": s.Type, "uri": s.URI} }

// DumpYAML is curtin's config.dump_config (block style, indent 2).
func DumpYAML(v any) (string, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	if err := enc.Close(); err != nil {
		return "", err
	}
	return b.String(), nil
}

// dumpJSON is json.dump of the config (the CONFIG file).
func dumpJSON(v any) ([]byte, error) { return json.Marshal(v) }

func abbrev(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func mapOf(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func strOf(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}
