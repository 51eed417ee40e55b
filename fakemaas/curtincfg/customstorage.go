package curtincfg

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/maasemu/maasemu/fakemaas/curtincfg/pyyaml"
)

// curtinStorageTypes are the item types curtin's storage schema knows
// (curtin/block/schemas.py).
var curtinStorageTypes = []string{
	"bcache", "dasd", "device", "disk", "dm_crypt", "format", "image", "lvm_partition",
	"lvm_volgroup", "mount", "nvme_controller", "partition", "raid", "zfs", "zpool",
}

// Fields of storage items that name other items, which curtin needs defined earlier in
// the list (it applies the config in order).
var (
	storageRefFields     = []string{"device", "volume", "volgroup", "backing_device", "cache_device", "pool", "container", "nvme_controller"}
	storageRefListFields = []string{"devices", "spare_devices", "vdevs"}
)

// parseCustomStorage reads a custom curtin storage configuration (a mapping with a
// "storage" key, or the {version, config} mapping itself), checks it the way curtin will
// consume it, and converts it to values that render as PyYAML would render what
// yaml.safe_load read from it.
func parseCustomStorage(text string) (*pyyaml.Map, error) {
	const field = "storage.custom"
	if strings.TrimSpace(text) == "" {
		return nil, bad(field, "", "layout custom needs a curtin storage configuration")
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return nil, bad(field, firstLine(text), "is not valid YAML: %v", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, bad(field, firstLine(text), "must hold one YAML document")
	}
	v, err := convertNode(doc.Content[0], "storage")
	if err != nil {
		return nil, bad(field, firstLine(text), "%v", err)
	}
	top, ok := v.(*pyyaml.Map)
	if !ok {
		return nil, bad(field, firstLine(text), "must be a mapping with a storage key, or with version and config")
	}
	storage := top
	if top.Has("storage") {
		if top.Len() != 1 {
			return nil, bad(field, strings.Join(top.Keys(), ","), "only the storage key is passed through to curtin; give the other settings elsewhere")
		}
		s, _ := top.Get("storage")
		if storage, ok = s.(*pyyaml.Map); !ok {
			return nil, bad(field+".storage", fmt.Sprint(s), "must be a mapping with version and config")
		}
	}
	for _, k := range storage.Keys() {
		if k != "version" && k != "config" {
			return nil, bad(field, k, "unknown key in the storage mapping: curtin's schema allows only version and config")
		}
	}
	version, _ := storage.Get("version")
	if version != int64(1) && version != int64(2) {
		return nil, bad(field+".version", fmt.Sprint(version), "must be 1 or 2")
	}
	c, _ := storage.Get("config")
	items, ok := c.([]any)
	if !ok || len(items) == 0 {
		return nil, bad(field+".config", fmt.Sprint(c), "must be a non-empty list of storage items")
	}
	ids := map[string]bool{}
	disks := 0
	for i, it := range items {
		f := fmt.Sprintf("%s.config[%d]", field, i)
		m, ok := it.(*pyyaml.Map)
		if !ok {
			return nil, bad(f, fmt.Sprint(it), "must be a mapping with id and type")
		}
		id, _ := m.Get("id")
		ids2, ok := id.(string)
		if !ok || ids2 == "" {
			return nil, bad(f+".id", fmt.Sprint(id), "must be a non-empty string")
		}
		if ids[ids2] {
			return nil, bad(f+".id", ids2, "is used by two storage items")
		}
		t, _ := m.Get("type")
		ts, _ := t.(string)
		if !slices.Contains(curtinStorageTypes, ts) {
			return nil, bad(f+".type", fmt.Sprint(t), "must be one of curtin's storage types %v", curtinStorageTypes)
		}
		if ts == "disk" {
			disks++
		}
		for _, rf := range storageRefFields {
			r, ok := m.Get(rf)
			if !ok {
				continue
			}
			if rs, isStr := r.(string); !isStr || !ids[rs] {
				return nil, bad(f+"."+rf, fmt.Sprint(r), "refers to no storage item defined before it")
			}
		}
		for _, rf := range storageRefListFields {
			r, ok := m.Get(rf)
			if !ok {
				continue
			}
			l, isList := r.([]any)
			if !isList {
				return nil, bad(f+"."+rf, fmt.Sprint(r), "must be a list of storage item ids")
			}
			for _, e := range l {
				es, isStr := e.(string)
				if !isStr || !ids[es] {
					return nil, bad(f+"."+rf, fmt.Sprint(e), "refers to no storage item defined before it")
				}
			}
		}
		ids[ids2] = true
	}
	if disks == 0 {
		return nil, bad(field+".config", "", "has no disk item: curtin would have nothing to install to")
	}
	return storage, nil
}

// convertNode turns a parsed YAML node into pyyaml values with YAML 1.1 (PyYAML) typing:
// plain scalars resolve as yaml.safe_load would resolve them, quoted ones are strings.
func convertNode(n *yaml.Node, path string) (any, error) {
	switch n.Kind {
	case yaml.MappingNode:
		m := pyyaml.NewMap()
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("%s: mapping keys must be scalars (line %d)", path, k.Line)
			}
			if k.Value == "<<" && k.Style == 0 {
				return nil, fmt.Errorf("%s: merge keys (<<) are not supported (line %d)", path, k.Line)
			}
			if m.Has(k.Value) {
				return nil, fmt.Errorf("%s: duplicate key %q (line %d)", path, k.Value, k.Line)
			}
			cv, err := convertNode(v, path+"."+k.Value)
			if err != nil {
				return nil, err
			}
			m.Set(k.Value, cv)
		}
		return m, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for i, c := range n.Content {
			cv, err := convertNode(c, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			out = append(out, cv)
		}
		return out, nil
	case yaml.ScalarNode:
		if n.Style&yaml.TaggedStyle != 0 {
			if n.Tag != "!!str" {
				return nil, fmt.Errorf("%s: explicit tag %s is not supported (line %d)", path, n.Tag, n.Line)
			}
			return n.Value, nil
		}
		if n.Style != 0 { // quoted, literal or folded: a string
			return n.Value, nil
		}
		v, err := pyyaml.ParsePlain(n.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %v (line %d)", path, err, n.Line)
		}
		return v, nil
	case yaml.AliasNode:
		return convertNode(n.Alias, path)
	default:
		return nil, fmt.Errorf("%s: unsupported YAML node (line %d)", path, n.Line)
	}
}
