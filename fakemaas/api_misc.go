package fakemaas

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// configItem is one MAAS setting the fake knows: its default and kind.
type configItem struct {
	def  any
	kind string // "str", "bool", "int"
}

// configItems are the settings the deploy path reads (and a few clients read).
var configItems = map[string]configItem{
	"maas_name":                        {"maas", "str"},
	"default_osystem":                  {"ubuntu", "str"},
	"default_distro_series":            {"noble", "str"},
	"commissioning_osystem":            {"ubuntu", "str"},
	"commissioning_distro_series":      {"noble", "str"},
	"default_min_hwe_kernel":           {"", "str"},
	"kernel_opts":                      {"", "str"},
	"enable_http_proxy":                {true, "bool"},
	"use_peer_proxy":                   {false, "bool"},
	"http_proxy":                       {"", "str"},
	"use_rack_proxy":                   {true, "bool"},
	"maas_internal_domain":             {"maas-internal", "str"},
	"maas_syslog_port":                 {5247, "int"},
	"remote_syslog":                    {"", "str"},
	"node_timeout":                     {30, "int"},
	"enable_third_party_drivers":       {true, "bool"},
	"enable_kernel_crash_dump":         {false, "bool"},
	"curtin_verbose":                   {true, "bool"},
	"default_storage_layout":           {"flat", "str"},
	"enable_disk_erasing_on_release":   {false, "bool"},
	"disk_erase_with_secure_erase":     {false, "bool"},
	"disk_erase_with_quick_erase":      {false, "bool"},
	"upstream_dns":                     {"", "str"},
	"dnssec_validation":                {"auto", "str"},
	"ntp_servers":                      {"ntp.ubuntu.com", "str"},
	"ntp_external_only":                {false, "bool"},
	"main_archive":                     {"http://archive.ubuntu.com/ubuntu", "str"},
	"ports_archive":                    {"http://ports.ubuntu.com/ubuntu-ports", "str"},
	"boot_images_auto_import":          {true, "bool"},
	"completed_intro":                  {true, "bool"},
	"force_v1_network_yaml":            {false, "bool"},
	"network_discovery":                {"enabled", "str"},
	"default_domain":                   {"maas", "str"},
	"default_boot_interface_link_type": {"auto", "str"},
}

func configNames() []string {
	var out []string
	for n := range configItems {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func invalidSetting(name string) *apiError {
	return validation(fieldErrors{name: {fmt.Sprintf("%s is not a valid config setting (valid settings are: %s).", name, strings.Join(configNames(), ", "))}})
}

// configValue returns a setting (r.mu held for reading or writing).
func (r *Region) configValue(name string) any {
	if v, ok := r.config[name]; ok {
		return v
	}
	return configItems[name].def
}

func (r *Region) configString(name string) string {
	switch v := r.configValue(name).(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

func (r *Region) configInt(name string) int {
	switch v := r.configValue(name).(type) {
	case float64:
		return int(v)
	case int:
		return v
	}
	return 0
}

// Config returns a MAAS setting's value.
func (r *Region) Config(name string) (any, bool) {
	if _, ok := configItems[name]; !ok {
		return nil, false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.configValue(name), true
}

// SetConfig changes a MAAS setting, validated as set_config validates it.
func (r *Region) SetConfig(name, value string) error {
	item, ok := configItems[name]
	if !ok {
		return invalidSetting(name)
	}
	var v any
	switch item.kind {
	case "bool":
		switch strings.ToLower(value) {
		case "true", "1", "yes", "on":
			v = true
		case "false", "0", "no", "off", "":
			v = false
		default:
			return validation(fieldErrors{name: {fmt.Sprintf("'%s' value must be either True or False.", value)}})
		}
	case "int":
		n, err := strconv.Atoi(value)
		if err != nil {
			return validation(fieldErrors{name: {"Enter a whole number."}})
		}
		v = n
	default:
		v = value
	}
	if (name == "default_osystem" || name == "commissioning_osystem") && value == "" {
		return validation(fieldErrors{name: {"This field is required."}})
	}
	return r.locked(func() error {
		if err := r.commit(func(w *writer) error { w.putConfig(name, v); return nil }); err != nil {
			return err
		}
		if f, ok := v.(int); ok {
			r.config[name] = float64(f)
		} else {
			r.config[name] = v
		}
		return nil
	})
}

func (r *Region) apiMAAS(w http.ResponseWriter, q *request) error {
	switch {
	case q.Method == http.MethodGet && q.op == "get_config":
		name, ok := q.get("name")
		if !ok {
			return badRequest("No provided name!")
		}
		v, ok := r.Config(name)
		if !ok {
			return invalidSetting(name)
		}
		writeJSON(w, http.StatusOK, v)
	case q.Method == http.MethodPost && q.op == "set_config":
		name, ok := q.get("name")
		if !ok || name == "" {
			return badRequest("No provided name!")
		}
		value, ok := q.get("value")
		if !ok {
			return badRequest("No provided value!")
		}
		if err := r.SetConfig(name, value); err != nil {
			return err
		}
		writeText(w, http.StatusOK, "OK")
	default:
		return unknownOp(q)
	}
	return nil
}

// Static objects: one zone, one pool, one domain, no tags or subnets of their own. ------

func zoneJSON(name string) map[string]any {
	return map[string]any{"name": name, "description": "", "id": 1, "resource_uri": APIPrefix + "zones/" + name + "/"}
}

func poolJSON(name string) map[string]any {
	return map[string]any{"name": name, "description": "Default pool", "id": 0, "resource_uri": APIPrefix + "resourcepool/0/"}
}

func domainJSON(name string) map[string]any {
	return map[string]any{"authoritative": true, "ttl": nil, "resource_record_count": 0, "name": name, "id": 0,
		"is_default": true, "resource_uri": APIPrefix + "domains/0/"}
}

func (r *Region) apiStatic(w http.ResponseWriter, q *request) error {
	if q.Method != http.MethodGet {
		return methodNotAllowed("GET")
	}
	list := len(q.path) == 1
	switch q.path[0] {
	case "zones":
		if list {
			writeJSON(w, http.StatusOK, []any{zoneJSON("default")})
			return nil
		}
		if q.path[1] == "default" {
			writeJSON(w, http.StatusOK, zoneJSON("default"))
			return nil
		}
		return notFound("No Zone matches the given query.")
	case "resourcepools":
		if list {
			writeJSON(w, http.StatusOK, []any{poolJSON("default")})
			return nil
		}
		if q.path[1] == "0" || q.path[1] == "default" {
			writeJSON(w, http.StatusOK, poolJSON("default"))
			return nil
		}
		return notFound("No ResourcePool matches the given query.")
	case "domains":
		if list {
			writeJSON(w, http.StatusOK, []any{domainJSON("maas")})
			return nil
		}
		if q.path[1] == "0" {
			writeJSON(w, http.StatusOK, domainJSON("maas"))
			return nil
		}
		return notFound("No Domain matches the given query.")
	case "tags":
		if list {
			r.mu.RLock()
			names := map[string]bool{}
			for _, m := range r.machines {
				for _, t := range m.Tags {
					names[t] = true
				}
			}
			r.mu.RUnlock()
			out := []any{}
			for _, n := range sortedKeys(names) {
				out = append(out, map[string]any{"name": n, "definition": "", "comment": "", "kernel_opts": "", "resource_uri": APIPrefix + "tags/" + n + "/"})
			}
			writeJSON(w, http.StatusOK, out)
			return nil
		}
		return notFound("No Tag matches the given query.")
	default: // spaces: the fake models none (every VLAN is in the undefined space)
		if list {
			writeJSON(w, http.StatusOK, []any{})
			return nil
		}
		return notFound("No " + strings.TrimSuffix(q.path[0], "s") + " matches the given query.")
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// events --------------------------------------------------------------------------------

const eventTimeFormat = "Mon, 02 Jan. 2006 15:04:05"

func (r *Region) apiEvents(w http.ResponseWriter, q *request) error {
	if len(q.path) != 1 || q.Method != http.MethodGet || q.op != "query" {
		return unknownOp(q)
	}
	intParam := func(k string) (int64, bool, error) {
		v, ok := q.get(k)
		if !ok || v == "" {
			return 0, false, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, false, badRequest(fmt.Sprintf("Invalid %s: Please enter an integer value", k))
		}
		return n, true, nil
	}
	after, hasAfter, err := intParam("after")
	if err != nil {
		return err
	}
	before, hasBefore, err := intParam("before")
	if err != nil {
		return err
	}
	limit, hasLimit, err := intParam("limit")
	if err != nil {
		return err
	}
	if !hasLimit {
		limit = 100
	}
	if limit > 1000 {
		return badRequest(fmt.Sprintf("Requested number of events %d is greater than limit: 1000", limit))
	}
	if limit < 1 {
		limit = 1
	}
	if hasAfter && hasBefore {
		return badRequest("There is undetermined behaviour when both `after` and `before` are specified.")
	}
	levelName := q.str("level")
	if levelName == "" {
		levelName = "INFO"
	}
	minLevel := -1
	for l, n := range levelNames {
		if n == levelName {
			minLevel = l
		}
	}
	if minLevel < 0 {
		return badRequest("Unrecognised log level: " + levelName)
	}
	r.mu.RLock()
	nodes := r.filterMachines(q.form)
	sids := map[string]bool{}
	for _, m := range nodes {
		sids[m.SystemID] = true
	}
	owner, hasOwner := q.get("owner")
	var sel []*event
	match := func(e *event) bool {
		if minLevel == levelAudit {
			if e.Level != levelAudit {
				return false
			}
		} else if !sids[e.SystemID] || e.Level < minLevel {
			return false
		}
		if hasOwner && e.User != owner {
			return false
		}
		return true
	}
	switch {
	case hasAfter:
		for _, e := range r.events {
			if e.ID > after && match(e) {
				sel = append(sel, e)
				if int64(len(sel)) == limit {
					break
				}
			}
		}
		for i, j := 0, len(sel)-1; i < j; i, j = i+1, j-1 {
			sel[i], sel[j] = sel[j], sel[i]
		}
	default:
		for i := len(r.events) - 1; i >= 0; i-- {
			e := r.events[i]
			if hasBefore && e.ID >= before {
				continue
			}
			if match(e) {
				sel = append(sel, e)
				if int64(len(sel)) == limit {
					break
				}
			}
		}
	}
	out := make([]any, 0, len(sel))
	for _, e := range sel {
		out = append(out, eventJSON(e))
	}
	r.mu.RUnlock()
	base := url0(q, "before")
	var next, prev any
	if len(sel) == 0 {
		if hasBefore {
			next = withParam(base, "after", strconv.FormatInt(before-1, 10))
		} else {
			next = base.String()
		}
		if hasAfter {
			prev = withParam(url0(q, "after"), "before", strconv.FormatInt(after+1, 10))
		}
	} else {
		next = withParam(base, "after", strconv.FormatInt(sel[0].ID, 10))
		prev = withParam(url0(q, "after"), "before", strconv.FormatInt(sel[len(sel)-1].ID, 10))
	}
	writeJSON(w, http.StatusOK, map[string]any{"count": len(sel), "events": out, "next_uri": next, "prev_uri": prev})
	return nil
}

func eventJSON(e *event) map[string]any {
	desc := e.Description
	return map[string]any{"username": nilIfEmpty(e.User), "node": e.SystemID, "hostname": e.Hostname, "id": e.ID,
		"level": levelNames[e.Level], "created": e.Created.Format(eventTimeFormat), "type": e.TypeDesc, "description": desc}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

type uriBuilder struct {
	path string
	vals map[string][]string
}

func (u uriBuilder) String() string {
	var parts []string
	for _, k := range sortedKeys(u.vals) {
		for _, v := range u.vals[k] {
			parts = append(parts, urlEscape(k)+"="+urlEscape(v))
		}
	}
	if len(parts) == 0 {
		return u.path
	}
	return u.path + "?" + strings.Join(parts, "&")
}

func url0(q *request, drop string) uriBuilder {
	vals := map[string][]string{"op": {"query"}}
	for _, k := range []string{"agent_name", "domain", "hostname", "id", "level", "limit", "mac_address", "zone", "owner"} {
		if v, ok := q.form[k]; ok && k != drop {
			vals[k] = v
		}
	}
	return uriBuilder{path: APIPrefix + "events/", vals: vals}
}

func withParam(u uriBuilder, k, v string) string {
	u.vals[k] = []string{v}
	return u.String()
}

// boot sources ----------------------------------------------------------------------------

func bootSourceJSON(s *bootSource) map[string]any {
	return map[string]any{"id": s.ID, "url": s.URL, "keyring_filename": s.KeyringFilename, "keyring_data": s.KeyringData,
		"priority": s.Priority, "skip_keyring_verification": s.SkipKeyring, "enabled": true, "name": fmt.Sprintf("Boot Source %d", s.ID),
		"created": s.Created.Format("2006-01-02T15:04:05.000"), "updated": s.Updated.Format("2006-01-02T15:04:05.000"),
		"resource_uri": fmt.Sprintf("%sboot-sources/%d/", APIPrefix, s.ID)}
}

func selectionJSON(src int, s *BootSourceSelection) map[string]any {
	return map[string]any{"id": s.ID, "boot_source_id": src, "os": s.OS, "release": s.Release, "arches": s.Arches,
		"subarches": s.Subarches, "labels": s.Labels,
		"resource_uri": fmt.Sprintf("%sboot-sources/%d/selections/%d/", APIPrefix, src, s.ID)}
}

func (r *Region) apiBootSources(w http.ResponseWriter, q *request) error {
	switch {
	case len(q.path) == 1 && q.Method == http.MethodGet:
		r.mu.RLock()
		out := []any{}
		for _, id := range sortedIntKeys(r.bootSources) {
			out = append(out, bootSourceJSON(r.bootSources[id]))
		}
		r.mu.RUnlock()
		writeJSON(w, http.StatusOK, out)
		return nil
	case len(q.path) == 1 && q.Method == http.MethodPost && q.op == "":
		u, ok := q.get("url")
		if !ok || u == "" {
			return validation(fieldErrors{"url": {"This field is required."}})
		}
		now := r.now().UTC()
		s := &bootSource{URL: u, KeyringFilename: q.str("keyring_filename"), KeyringData: q.str("keyring_data"), Priority: 1, Created: now, Updated: now}
		if s.KeyringFilename == "" && s.KeyringData == "" {
			if skip, _ := q.boolParam("skip_keyring_verification", false); !skip {
				return validation(fieldErrors{"__all__": {"One of keyring_data or keyring_filename must be specified."}})
			}
			s.SkipKeyring = true
		}
		err := r.locked(func() error {
			for _, o := range r.bootSources {
				if o.URL == u {
					return validation(fieldErrors{"url": {"Boot source with this Url already exists."}})
				}
			}
			if err := r.commit(func(wr *writer) error { s.ID = int(wr.next("bootsource")); wr.putBootSource(s); return nil }); err != nil {
				return err
			}
			r.bootSources[s.ID] = s
			return nil
		})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, bootSourceJSON(s))
		return nil
	}
	if len(q.path) < 2 {
		return unknownOp(q)
	}
	id, err := strconv.Atoi(q.path[1])
	if err != nil {
		return notFound("No BootSource matches the given query.")
	}
	r.mu.RLock()
	src := r.bootSources[id]
	r.mu.RUnlock()
	if src == nil {
		return notFound("No BootSource matches the given query.")
	}
	switch {
	case len(q.path) == 2 && q.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, bootSourceJSON(src))
	case len(q.path) == 2 && q.Method == http.MethodDelete:
		err := r.locked(func() error {
			if err := r.commit(func(wr *writer) error { wr.delBootSource(id); return nil }); err != nil {
				return err
			}
			delete(r.bootSources, id)
			return nil
		})
		if err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
	case len(q.path) == 2 && q.Method == http.MethodPut:
		return r.updateBootSource(w, id, func(s *bootSource) error {
			if v, ok := q.get("url"); ok {
				s.URL = v
			}
			if v, ok := q.get("keyring_filename"); ok {
				s.KeyringFilename = v
			}
			if v, ok := q.get("keyring_data"); ok {
				s.KeyringData = v
			}
			return nil
		}, func(s *bootSource) { writeJSON(w, http.StatusOK, bootSourceJSON(s)) })
	case len(q.path) == 3 && q.path[2] == "selections" && q.Method == http.MethodGet:
		out := []any{}
		r.mu.RLock()
		for _, s := range src.Selections {
			out = append(out, selectionJSON(id, s))
		}
		r.mu.RUnlock()
		writeJSON(w, http.StatusOK, out)
	case len(q.path) == 3 && q.path[2] == "selections" && q.Method == http.MethodPost:
		sel := &BootSourceSelection{OS: q.str("os"), Release: q.str("release"), Arches: q.form["arches"], Subarches: q.form["subarches"], Labels: q.form["labels"]}
		fe := fieldErrors{}
		if sel.OS == "" {
			fe.add("os", "This field is required.")
		}
		if sel.Release == "" {
			fe.add("release", "This field is required.")
		}
		if len(fe) > 0 {
			return validation(fe)
		}
		for _, p := range []*[]string{&sel.Arches, &sel.Subarches, &sel.Labels} {
			if len(*p) == 0 {
				*p = []string{"*"}
			}
		}
		return r.updateBootSource(w, id, func(s *bootSource) error {
			for _, o := range s.Selections {
				if o.OS == sel.OS && o.Release == sel.Release {
					return validation(fieldErrors{"__all__": {"Boot source selection with this Boot source, Os and Release already exists."}})
				}
			}
			s.Selections = append(s.Selections, sel)
			return nil
		}, func(*bootSource) { writeJSON(w, http.StatusCreated, selectionJSON(id, sel)) })
	case len(q.path) == 4 && q.path[2] == "selections":
		sid, _ := strconv.Atoi(q.path[3])
		var sel *BootSourceSelection
		r.mu.RLock()
		for _, s := range src.Selections {
			if s.ID == sid {
				sel = s
			}
		}
		r.mu.RUnlock()
		if sel == nil {
			return notFound("No BootSourceSelection matches the given query.")
		}
		switch q.Method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, selectionJSON(id, sel))
		case http.MethodDelete:
			return r.updateBootSource(w, id, func(s *bootSource) error {
				var keep []*BootSourceSelection
				for _, o := range s.Selections {
					if o.ID != sid {
						keep = append(keep, o)
					}
				}
				s.Selections = keep
				return nil
			}, func(*bootSource) { w.WriteHeader(http.StatusNoContent) })
		default:
			return methodNotAllowed("GET, DELETE")
		}
	default:
		return unknownOp(q)
	}
	return nil
}

func (r *Region) updateBootSource(w http.ResponseWriter, id int, f func(*bootSource) error, done func(*bootSource)) error {
	var out *bootSource
	err := r.locked(func() error {
		old := r.bootSources[id]
		if old == nil {
			return notFound("No BootSource matches the given query.")
		}
		c := *old
		c.Selections = append([]*BootSourceSelection(nil), old.Selections...)
		if err := f(&c); err != nil {
			return err
		}
		c.Updated = r.now().UTC()
		if err := r.commit(func(wr *writer) error {
			for _, s := range c.Selections {
				if s.ID == 0 {
					s.ID = int(wr.next("selection"))
				}
			}
			wr.putBootSource(&c)
			return nil
		}); err != nil {
			return err
		}
		r.bootSources[id] = &c
		out = &c
		return nil
	})
	if err != nil {
		return err
	}
	done(out)
	return nil
}

func sortedIntKeys[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

func urlEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(
		strings.ReplaceAll(s, "%", "%25"), "&", "%26"), "=", "%3D"), " ", "+")
}
