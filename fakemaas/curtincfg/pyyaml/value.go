// Package pyyaml renders Go values as YAML text exactly as PyYAML's yaml.safe_dump does
// with its defaults, so that documents generated here are byte-for-byte what MAAS serves.
//
// MAAS builds its preseeds and curtin configuration as Python dicts and renders them with
// yaml.safe_dump: block style, keys sorted, two-space indentation, sequences inside a
// mapping not indented, a line width of 80 that folds long quoted scalars, single quotes
// for strings that would otherwise read back as another type or span lines, double quotes
// (with escapes) for anything non-ASCII or holding special characters. This package
// reproduces those rules; its tests compare against real PyYAML when python3-yaml is
// installed.
package pyyaml

import (
	"fmt"
	"slices"
)

// Map is a YAML mapping with string keys. By default it is emitted with its keys sorted,
// as safe_dump does for a Python dict; Ordered keeps insertion order, as MAAS's
// OrderedDict representer does (network v2: version, ethernets, vlans, bonds, bridges).
type Map struct {
	keys    []string
	vals    map[string]any
	Ordered bool
}

// NewMap returns an empty, sorted Map.
func NewMap() *Map { return &Map{vals: map[string]any{}} }

// NewOrderedMap returns an empty Map that keeps insertion order.
func NewOrderedMap() *Map { return &Map{vals: map[string]any{}, Ordered: true} }

// Set stores v under k (replacing an existing value in place) and returns m.
func (m *Map) Set(k string, v any) *Map {
	if m.vals == nil {
		m.vals = map[string]any{}
	}
	if _, ok := m.vals[k]; !ok {
		m.keys = append(m.keys, k)
	}
	m.vals[k] = v
	return m
}

// Get returns the value stored under k.
func (m *Map) Get(k string) (any, bool) {
	v, ok := m.vals[k]
	return v, ok
}

// Has reports whether k is present.
func (m *Map) Has(k string) bool {
	_, ok := m.vals[k]
	return ok
}

// Delete removes k.
func (m *Map) Delete(k string) {
	if _, ok := m.vals[k]; !ok {
		return
	}
	delete(m.vals, k)
	m.keys = slices.DeleteFunc(m.keys, func(s string) bool { return s == k })
}

// Len is the number of keys.
func (m *Map) Len() int { return len(m.keys) }

// Keys returns the keys in emission order.
func (m *Map) Keys() []string {
	ks := slices.Clone(m.keys)
	if !m.Ordered {
		slices.Sort(ks) // byte order of UTF-8 equals Python's code-point order
	}
	return ks
}

// InsertionKeys returns the keys in the order they were first set, whatever Ordered says
// (Python dicts iterate in insertion order even when safe_dump sorts them).
func (m *Map) InsertionKeys() []string { return slices.Clone(m.keys) }

// Update copies every key of o into m (Python's dict.update).
func (m *Map) Update(o *Map) *Map {
	for _, k := range o.keys {
		m.Set(k, o.vals[k])
	}
	return m
}

// Copy returns a shallow copy of m.
func (m *Map) Copy() *Map {
	c := &Map{keys: slices.Clone(m.keys), vals: make(map[string]any, len(m.vals)), Ordered: m.Ordered}
	for k, v := range m.vals {
		c.vals[k] = v
	}
	return c
}

// M builds a sorted Map from alternating keys and values: M("a", 1, "b", "x").
// It panics on an odd count or a non-string key: it is meant for literals in code.
func M(kv ...any) *Map {
	if len(kv)%2 != 0 {
		panic("pyyaml.M: odd number of arguments")
	}
	m := NewMap()
	for i := 0; i < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			panic(fmt.Sprintf("pyyaml.M: key %v is not a string", kv[i]))
		}
		m.Set(k, kv[i+1])
	}
	return m
}

// L builds a sequence from its arguments.
func L(v ...any) []any { return v }

// Strings converts a string slice to a sequence.
func Strings(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
