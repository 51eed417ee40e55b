package fakemaas

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ulikunitz/xz"
)

// Script results through the API: nodes/<sid>/results/ (NodeScriptResultsHandler),
// nodes/<sid>/results/<id>/ with ?op=download (NodeScriptResultHandler), and the older
// installation-results/ and commissioning-results/ (NodeResultsHandler) gomaasclient
// reads.

// emailTime is email.utils.format_datetime for a UTC time.
func emailTime(t time.Time) string { return t.UTC().Format("Mon, 02 Jan 2006 15:04:05 -0000") }

func fmtTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return emailTime(*t)
}

func scriptSetJSON(s *scriptSet, includeOutput bool, filters []string) map[string]any {
	results := []any{}
	for _, res := range filterResults(s, filters) {
		j := map[string]any{"id": res.ID, "created": emailTime(res.Created), "updated": emailTime(res.Updated),
			"name": res.Name, "status": res.Status, "status_name": scriptStatusNames[res.Status],
			"exit_status": res.ExitStatus, "started": fmtTime(res.Started), "ended": fmtTime(res.Ended),
			"runtime": runtimeText(res), "starttime": unixOrEmpty(res.Started), "endtime": unixOrEmpty(res.Ended),
			"estimated_runtime": runtimeText(res), "parameters": map[string]any{}, "script_id": nil,
			"script_revision_id": nil, "suppressed": false}
		if includeOutput {
			j["output"] = base64.StdEncoding.EncodeToString(res.Output)
			j["stdout"] = base64.StdEncoding.EncodeToString(res.Stdout)
			j["stderr"] = base64.StdEncoding.EncodeToString(res.Stderr)
			j["result"] = base64.StdEncoding.EncodeToString(res.Result)
		}
		results = append(results, j)
	}
	var started, ended *time.Time
	for _, res := range s.Results {
		if res.Started != nil && (started == nil || res.Started.Before(*started)) {
			started = res.Started
		}
		if res.Ended != nil && (ended == nil || res.Ended.After(*ended)) {
			ended = res.Ended
		}
	}
	st := s.status()
	return map[string]any{"id": s.ID, "system_id": s.SystemID, "type": s.ResultType, "type_name": resultTypeNames[s.ResultType],
		"last_ping": fmtTime(s.LastPing), "status": st, "status_name": scriptStatusNames[st], "started": fmtTime(started),
		"ended": fmtTime(ended), "runtime": "", "results": results, "suppressed": false,
		"resource_uri": fmt.Sprintf("%snodes/%s/results/%d/", APIPrefix, s.SystemID, s.ID)}
}

func runtimeText(res *scriptResult) string {
	if res.Started == nil || res.Ended == nil {
		return ""
	}
	d := res.Ended.Sub(*res.Started).Round(time.Second)
	h, m, sec := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	return fmt.Sprintf("%d:%02d:%02d", h, m, sec)
}

func unixOrEmpty(t *time.Time) any {
	if t == nil {
		return ""
	}
	return t.Unix()
}

// filterResults is filter_script_results: by name or id, sorted by name.
func filterResults(s *scriptSet, filters []string) []*scriptResult {
	var out []*scriptResult
	for _, res := range s.Results {
		if filters == nil {
			out = append(out, res)
			continue
		}
		for _, f := range filters {
			if f == res.Name || f == strconv.Itoa(res.ID) {
				out = append(out, res)
				break
			}
		}
	}
	sortResults(out)
	return out
}

func sortResults(rs []*scriptResult) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].Name < rs[j-1].Name; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

var resultTypeByName = map[string]int{"commissioning": resultCommissioning, "installation": resultInstallation,
	"testing": resultTesting, "release": resultRelease, "0": resultCommissioning, "1": resultInstallation,
	"2": resultTesting, "3": resultRelease}

func (r *Region) apiResults(w http.ResponseWriter, q *request, sid string) error {
	var filters []string
	if f := q.str("filters"); f != "" {
		filters = strings.Split(f, ",")
	}
	includeOutput, err := q.boolParam("include_output", false)
	if err != nil {
		return err
	}
	r.mu.RLock()
	m := r.machines[sid]
	var sets []*scriptSet
	for _, id := range []int{m.CommissioningScriptSet, m.InstallationScriptSet} {
		if s := r.scriptSets[id]; s != nil {
			sets = append(sets, s.clone())
		}
	}
	current := map[string]int{"current-commissioning": m.CommissioningScriptSet, "current-testing": 0,
		"current-installation": m.InstallationScriptSet}
	hostname := m.Hostname
	r.mu.RUnlock()
	if len(q.path) == 3 {
		if q.Method != http.MethodGet || q.op != "" {
			return unknownOp(q)
		}
		out := []any{}
		rt := -1
		if t := q.str("type"); t != "" {
			v, ok := resultTypeByName[strings.ToLower(t)]
			if !ok {
				return validation(fieldErrors{"result_type": {fmt.Sprintf("Unknown result type \"%s\"", t)}})
			}
			rt = v
		}
		for _, s := range sets {
			if rt < 0 || s.ResultType == rt {
				out = append(out, scriptSetJSON(s, includeOutput, filters))
			}
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	if len(q.path) != 4 {
		return notFound("Unknown API endpoint: " + q.URL.Path + ".")
	}
	id := q.path[3]
	var set *scriptSet
	if cur, ok := current[id]; ok {
		for _, s := range sets {
			if s.ID == cur && cur != 0 {
				set = s
			}
		}
		if set == nil {
			return badRequest(fmt.Sprintf("No %s script set exists for this node.", strings.ReplaceAll(id, "-", " ")))
		}
	} else if n, err := strconv.Atoi(id); err == nil {
		for _, s := range sets {
			if s.ID == n {
				set = s
			}
		}
		if set == nil {
			return notFound("No ScriptSet matches the given query.")
		}
	} else {
		return badRequest(fmt.Sprintf("Unknown id \"%s\" must be current-commissioning, current-testing, current-installation, or the id number of a specific result.", id))
	}
	switch {
	case q.Method == http.MethodGet && q.op == "":
		writeJSON(w, http.StatusOK, scriptSetJSON(set, includeOutput, filters))
		return nil
	case q.Method == http.MethodGet && q.op == "download":
		return downloadResults(w, q, set, filters, hostname)
	}
	return unknownOp(q)
}

var binaryName = regexp.MustCompile(`.+\.tar(\..+)?`)

// downloadResults is NodeScriptResultHandler.download.
func downloadResults(w http.ResponseWriter, q *request, s *scriptSet, filters []string, hostname string) error {
	output := q.str("output")
	if output == "" {
		output = "combined"
	}
	filetype := q.str("filetype")
	if filetype == "" {
		filetype = "txt"
	}
	type file struct {
		name    string
		content []byte
		mtime   time.Time
	}
	var files []file
	for _, res := range filterResults(s, filters) {
		add := func(ext string, b []byte) {
			name := res.Name
			if ext != "" {
				name += "." + ext
			}
			files = append(files, file{name, b, res.Updated})
		}
		switch {
		case binaryName.MatchString(res.Name):
			add("", res.Output)
		case output == "combined":
			add("", res.Output)
		case output == "stdout":
			add("out", res.Stdout)
		case output == "stderr":
			add("err", res.Stderr)
		case output == "result":
			add("yaml", res.Result)
		case output == "all":
			add("", res.Output)
			add("out", res.Stdout)
			add("err", res.Stderr)
			add("yaml", res.Result)
		}
	}
	switch filetype {
	case "txt":
		if len(files) == 1 {
			writeBinary(w, "application/binary", files[0].content)
			return nil
		}
		var buf bytes.Buffer
		for _, f := range files {
			dashes := strings.Repeat("-", int((80.0-float64(2+len(f.name)))/2))
			fmt.Fprintf(&buf, "%s %s %s\n", dashes, f.name, dashes)
			if binaryName.MatchString(f.name) {
				buf.WriteString("Binary file")
			} else {
				buf.Write(f.content)
			}
			buf.WriteString("\n")
		}
		writeBinary(w, "application/binary", buf.Bytes())
		return nil
	case "tar.xz":
		var buf bytes.Buffer
		xw, err := xz.NewWriter(&buf)
		if err != nil {
			return err
		}
		tw := tar.NewWriter(xw)
		root := fmt.Sprintf("%s-%s-%d", hostname, strings.ToLower(resultTypeNames[s.ResultType]), s.ID)
		for _, f := range files {
			if err := tw.WriteHeader(&tar.Header{Name: path.Join(root, path.Base(f.name)), Size: int64(len(f.content)),
				Mode: 0o644, ModTime: f.mtime, Typeflag: tar.TypeReg}); err != nil {
				return err
			}
			if _, err := tw.Write(f.content); err != nil {
				return err
			}
		}
		if err := tw.Close(); err != nil {
			return err
		}
		if err := xw.Close(); err != nil {
			return err
		}
		writeBinary(w, "application/x-tar", buf.Bytes())
		return nil
	}
	return badRequest(fmt.Sprintf("Unknown filetype \"%s\" must be txt or tar.xz", filetype))
}

// apiNodeResults is NodeResultsHandler: installation-results/ and commissioning-results/,
// the finished results of every node's current sets, output base64.
func (r *Region) apiNodeResults(w http.ResponseWriter, q *request) error {
	if len(q.path) != 1 || q.Method != http.MethodGet || q.op != "" {
		return unknownOp(q)
	}
	sids := q.form["system_id"]
	names := q.form["name"]
	rt := -1
	if v := q.str("result_type"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return badRequest("Invalid result_type: Please enter an integer value")
		}
		rt = n
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := []any{}
	for _, m := range r.filterMachines(map[string][]string{"id": sids}) {
		for _, id := range []int{m.CommissioningScriptSet, m.InstallationScriptSet} {
			s := r.scriptSets[id]
			if s == nil || (rt >= 0 && s.ResultType != rt) {
				continue
			}
			for _, res := range s.Results {
				if res.Status != scriptPassed && res.Status != scriptFailed && res.Status != scriptTimedOut && res.Status != scriptAborted {
					continue
				}
				if len(names) > 0 && !contains(names, res.Name) {
					continue
				}
				data := res.Output
				if len(res.Stdout) > 0 {
					data = res.Stdout
				}
				item := func(name string, b []byte) map[string]any {
					return map[string]any{"created": res.Created.Format(time.RFC3339Nano), "updated": res.Updated.Format(time.RFC3339Nano),
						"id": res.ID, "name": name, "script_result": res.ExitStatus, "result_type": s.ResultType,
						"node": map[string]any{"system_id": m.SystemID}, "data": base64.StdEncoding.EncodeToString(b),
						"resource_uri": APIPrefix + "commissioning-scripts/"}
				}
				out = append(out, item(res.Name, data))
				if len(res.Stderr) > 0 {
					out = append(out, item(res.Name+".err", res.Stderr))
				}
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// SSH keys: account/prefs/sshkeys/ (SSHKeysHandler, SSHKeyHandler).
func (r *Region) apiSSHKeys(w http.ResponseWriter, q *request) error {
	keyJSON := func(k *sshKey) map[string]any {
		return map[string]any{"id": k.ID, "key": k.Key, "keysource": nil,
			"resource_uri": fmt.Sprintf("%saccount/prefs/sshkeys/%d/", APIPrefix, k.ID)}
	}
	if len(q.path) == 3 {
		switch {
		case q.Method == http.MethodGet && q.op == "":
			r.mu.RLock()
			out := []any{}
			for _, id := range sortedIntKeys(r.sshKeys) {
				if k := r.sshKeys[id]; k.User == q.user {
					out = append(out, keyJSON(k))
				}
			}
			r.mu.RUnlock()
			writeJSON(w, http.StatusOK, out)
			return nil
		case q.Method == http.MethodPost && q.op == "":
			key := strings.TrimSpace(q.str("key"))
			if err := validateSSHKey(key); err != "" {
				return validation(fieldErrors{"key": {err}})
			}
			k := &sshKey{User: q.user, Key: key, Created: r.now().UTC()}
			err := r.locked(func() error {
				for _, o := range r.sshKeys {
					if o.User == q.user && o.Key == key {
						return validation(fieldErrors{"__all__": {"A SSH key with this key already exists."}})
					}
				}
				if err := r.commit(func(wr *writer) error {
					k.ID = int(wr.next("sshkey"))
					wr.putSSHKey(k)
					return nil
				}); err != nil {
					return err
				}
				r.sshKeys[k.ID] = k
				return nil
			})
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusCreated, keyJSON(k))
			return nil
		}
		return unknownOp(q)
	}
	if len(q.path) != 4 {
		return notFound("Unknown API endpoint: " + q.URL.Path + ".")
	}
	id, err := strconv.Atoi(q.path[3])
	r.mu.RLock()
	k := r.sshKeys[id]
	r.mu.RUnlock()
	if err != nil || k == nil || k.User != q.user {
		return notFound("No SSHKey matches the given query.")
	}
	switch {
	case q.Method == http.MethodGet && q.op == "":
		writeJSON(w, http.StatusOK, keyJSON(k))
		return nil
	case q.Method == http.MethodDelete && q.op == "":
		err := r.locked(func() error {
			if err := r.commit(func(wr *writer) error { wr.delSSHKey(id); return nil }); err != nil {
				return err
			}
			delete(r.sshKeys, id)
			return nil
		})
		if err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return unknownOp(q)
}

// validateSSHKey is a light form of validate_ssh_public_key: a known key type and base64
// key data.
func validateSSHKey(key string) string {
	const invalid = "Invalid SSH public key: "
	if key == "" {
		return "This field is required."
	}
	f := strings.Fields(key)
	if len(f) < 2 {
		return invalid + "Key should contain 2 or more space separated parts (key type, base64-encoded key, optional comments), not 1)"
	}
	switch f[0] {
	case "ssh-rsa", "ssh-dss", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
		"sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com":
	default:
		return invalid + "unknown key type " + f[0]
	}
	if _, err := base64.StdEncoding.DecodeString(f[1]); err != nil {
		return invalid + "key data is not base64"
	}
	return ""
}
