package fakemaas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/maasemu/maasemu/fakemaas/oauth"
	"github.com/maasemu/maasemu/trace"
)

// APIPrefix is where API 2.0 lives.
const APIPrefix = "/MAAS/api/2.0/"

// Handler serves everything under /MAAS/: API 2.0, the metadata service
// (/MAAS/metadata/) with the status webhook (/MAAS/metadata/status/<system_id>), and
// boot resource files by hash (/MAAS/boot-resources/<hash>/...) as the region's nginx
// serves them to racks.
func (r *Region) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(APIPrefix, http.HandlerFunc(r.serveAPI))
	mux.Handle("/MAAS/boot-resources/", http.HandlerFunc(r.serveBootResourceFile))
	// The metadata service takes its paths as they come: MAAS's URL patterns tolerate the
	// extra slashes cloud-init adds, which ServeMux would answer with a redirect.
	return http.HandlerFunc(func(w http.ResponseWriter, hr *http.Request) {
		if strings.HasPrefix(hr.URL.Path, MetadataPrefix) || hr.URL.Path+"/" == MetadataPrefix {
			r.serveMetadata(w, hr)
			return
		}
		mux.ServeHTTP(w, hr)
	})
}

// apiError is an API failure rendered as MAAS renders it.
type apiError struct {
	status      int
	body        string
	contentType string
	header      map[string]string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.status, e.body) }

func textError(status int, msg string) *apiError {
	return &apiError{status: status, body: msg, contentType: "text/plain; charset=utf-8"}
}

func badRequest(msg string) *apiError { return textError(http.StatusBadRequest, msg) }
func conflict(msg string) *apiError   { return textError(http.StatusConflict, msg) }
func notFound(msg string) *apiError   { return textError(http.StatusNotFound, msg) }
func forbidden(msg string) *apiError  { return textError(http.StatusForbidden, msg) }

// fieldErrors is a Django form's errors: {"field": ["message", ...]}.
type fieldErrors map[string][]string

func (fe fieldErrors) add(field, msg string) { fe[field] = append(fe[field], msg) }

// validation renders form errors as MAASAPIValidationError does: Python's json.dumps of
// the form's message dict (", " and ": " separators, non-ASCII as \uXXXX, < > & as they are).
func validation(fe fieldErrors) *apiError {
	fields := make([]string, 0, len(fe))
	for f := range fe {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	var b strings.Builder
	b.WriteByte('{')
	for i, f := range fields {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(pyString(f) + ": [")
		for j, msg := range fe[f] {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString(pyString(msg))
		}
		b.WriteByte(']')
	}
	b.WriteByte('}')
	return &apiError{status: http.StatusBadRequest, body: b.String(), contentType: "application/json; charset=utf-8"}
}

// pyString is s as Python's json.dumps writes a string with ensure_ascii.
func pyString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r < 0x20 || r > 0x7e:
			for _, u := range utf16.Encode([]rune{r}) {
				fmt.Fprintf(&b, `\u%04x`, u)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func writeAPIError(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = textError(http.StatusInternalServerError, err.Error())
	}
	for k, v := range ae.header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", ae.contentType)
	w.WriteHeader(ae.status)
	io.WriteString(w, ae.body)
}

// djangoJSON encodes v the way Django's json.dumps does in one respect Go differs in:
// <, > and & are written as they are, not as \u003c, \u003e, \u0026.
func djangoJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := djangoJSON(v)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b)
}

func writeText(w http.ResponseWriter, status int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, s)
}

// request is one API call, authenticated, with its parameters parsed.
type request struct {
	*http.Request
	path  []string   // segments after /MAAS/api/2.0/
	op    string     // ?op=
	form  url.Values // GET: query; POST/PUT: body
	user  string     // authenticated user; empty when anonymous
	files map[string][]byte
}

func (q *request) get(k string) (string, bool) {
	v, ok := q.form[k]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

func (q *request) str(k string) string { v, _ := q.get(k); return v }

// boolParam parses MAAS's StringBool: true/false/1/0/yes/no/on/off.
func (q *request) boolParam(k string, def bool) (bool, error) {
	v, ok := q.get(k)
	if !ok || v == "" {
		return def, nil
	}
	switch strings.ToLower(v) {
	case "true", "1", "yes", "on", "t", "y":
		return true, nil
	case "false", "0", "no", "off", "f", "n":
		return false, nil
	}
	return false, validation(fieldErrors{k: {"Value must be one of: true, false, 1, 0, yes, no, on, off (not " + strconv.Quote(v) + ")"}})
}

const maxForm = 64 << 20

func (r *Region) serveAPI(w http.ResponseWriter, hr *http.Request) {
	rest := strings.TrimPrefix(hr.URL.Path, APIPrefix)
	var segs []string
	for _, s := range strings.Split(rest, "/") {
		if s != "" {
			segs = append(segs, s)
		}
	}
	q := &request{Request: hr, path: segs, op: hr.URL.Query().Get("op")}
	err := r.dispatch(w, q)
	status := http.StatusOK
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			status = ae.status
		} else {
			status = http.StatusInternalServerError
			r.log.Error("API request failed", "method", hr.Method, "path", hr.URL.Path, "err", err)
		}
		writeAPIError(w, err)
	}
	r.sink.Emit(trace.Event{Source: trace.SourceRegion, Kind: trace.KindAPIRequest, Level: trace.LevelDebug,
		Message: hr.Method + " " + hr.URL.RequestURI(),
		Attrs:   map[string]any{"method": hr.Method, "path": hr.URL.Path, "op": q.op, "status": status}})
}

func (r *Region) dispatch(w http.ResponseWriter, q *request) error {
	if len(q.path) == 0 {
		return notFound("Unknown API endpoint: " + q.URL.Path + ".")
	}
	// Anonymous endpoints.
	if q.path[0] == "version" && len(q.path) == 1 {
		if q.Method != http.MethodGet {
			return methodNotAllowed("GET")
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"capabilities": []string{"networks-management", "static-ipaddresses", "ipv6-deployment-ubuntu",
				"devices-management", "storage-deployment-ubuntu", "network-deployment-ubuntu",
				"bridging-interface-ubuntu", "bridging-automatic-ubuntu", "authenticate-api"},
			"version":    Version,
			"subversion": "",
		})
		return nil
	}
	user, err := r.authenticate(q.Request)
	if err != nil {
		return err
	}
	q.user = user
	// The chunked upload reads its own body.
	if !(q.path[0] == "boot-resources" && len(q.path) == 4 && q.path[2] == "upload") {
		if err := q.parseForm(); err != nil {
			return err
		}
	}
	switch q.path[0] {
	case "users":
		return r.apiUsers(w, q)
	case "account":
		return r.apiAccount(w, q)
	case "maas":
		return r.apiMAAS(w, q)
	case "machines":
		return r.apiMachines(w, q)
	case "boot-resources":
		return r.apiBootResources(w, q)
	case "boot-sources":
		return r.apiBootSources(w, q)
	case "events":
		return r.apiEvents(w, q)
	case "nodes":
		return r.apiNodes(w, q)
	case "installation-results", "commissioning-results":
		return r.apiNodeResults(w, q)
	case "zones", "resourcepools", "domains", "tags", "spaces":
		return r.apiStatic(w, q)
	case "subnets", "ipranges", "fabrics", "vlans":
		return r.apiNetwork(w, q)
	}
	return notFound("Unknown API endpoint: " + q.URL.Path + ".")
}

// Version is the MAAS version the fake reports.
const Version = "3.7.0"

func methodNotAllowed(allow string) *apiError {
	e := textError(http.StatusMethodNotAllowed, "Method Not Allowed")
	e.header = map[string]string{"Allow": allow}
	return e
}

func (q *request) parseForm() error {
	q.form = url.Values{}
	for k, v := range q.URL.Query() {
		if k != "op" {
			q.form[k] = v
		}
	}
	if q.Method != http.MethodPost && q.Method != http.MethodPut && q.Method != http.MethodDelete {
		return nil
	}
	ct, params, _ := mime.ParseMediaType(q.Header.Get("Content-Type"))
	switch ct {
	case "multipart/form-data":
		if params["boundary"] == "" {
			return badRequest("Malformed multipart body: no boundary.")
		}
		if err := q.ParseMultipartForm(maxForm); err != nil {
			return badRequest("Malformed multipart body: " + err.Error())
		}
		for k, v := range q.MultipartForm.Value {
			q.form[k] = v
		}
		q.files = map[string][]byte{}
		for k, fhs := range q.MultipartForm.File {
			if len(fhs) == 0 {
				continue
			}
			f, err := fhs[0].Open()
			if err != nil {
				return badRequest("Malformed multipart body: " + err.Error())
			}
			b, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				return badRequest("Malformed multipart body: " + err.Error())
			}
			q.files[k] = b
		}
	case "application/x-www-form-urlencoded", "":
		b, err := io.ReadAll(io.LimitReader(q.Body, maxForm+1))
		if err != nil {
			return badRequest("Reading the request body: " + err.Error())
		}
		if len(b) > maxForm {
			return badRequest("Request body is larger than 64 MiB.")
		}
		vals, err := url.ParseQuery(string(b))
		if err != nil {
			return badRequest("Malformed form body: " + err.Error())
		}
		for k, v := range vals {
			q.form[k] = append(q.form[k], v...)
		}
	}
	return nil
}

// authenticate checks the OAuth 1.0 PLAINTEXT Authorization header as MAAS does. Node
// keys do not authenticate API calls.
func (r *Region) authenticate(hr *http.Request) (string, error) {
	t, present, err := r.checkOAuth(hr)
	switch {
	case !present:
		return "", unauthorized("Forbidden")
	case err != nil:
		return "", err
	case t.SystemID != "":
		return "", unauthorized(fmt.Sprintf("Authorization Error: 'Invalid access token: %s'", t.Key))
	}
	return t.User, nil
}

func unauthorized(msg string) *apiError {
	e := textError(http.StatusUnauthorized, msg)
	e.header = map[string]string{"WWW-Authenticate": `OAuth realm="MAAS API"`}
	return e
}

// users ---------------------------------------------------------------------------------

func (r *Region) userJSON(name string) map[string]any {
	return map[string]any{"username": name, "email": name + "@example.com", "is_superuser": name == r.admin,
		"is_local": true, "resource_uri": APIPrefix + "users/" + name + "/"}
}

func (r *Region) apiUsers(w http.ResponseWriter, q *request) error {
	switch {
	case len(q.path) == 1 && q.Method == http.MethodGet && q.op == "whoami":
		writeJSON(w, http.StatusOK, r.userJSON(q.user))
	case len(q.path) == 1 && q.Method == http.MethodGet && q.op == "":
		writeJSON(w, http.StatusOK, []any{r.userJSON(r.admin)})
	case len(q.path) == 2 && q.Method == http.MethodGet && q.op == "":
		if q.path[1] != r.admin {
			return notFound("No User matches the given query.")
		}
		writeJSON(w, http.StatusOK, r.userJSON(q.path[1]))
	default:
		return unknownOp(q)
	}
	return nil
}

func unknownOp(q *request) *apiError {
	if q.op != "" {
		return badRequest(fmt.Sprintf("Unrecognised signature: method=%s op=%s", q.Method, q.op))
	}
	return methodNotAllowed("GET")
}

// account -------------------------------------------------------------------------------

func (r *Region) apiAccount(w http.ResponseWriter, q *request) error {
	if len(q.path) >= 3 && q.path[1] == "prefs" && q.path[2] == "sshkeys" {
		return r.apiSSHKeys(w, q)
	}
	if len(q.path) != 1 {
		return notFound("Unknown API endpoint: " + q.URL.Path + ".")
	}
	switch {
	case q.Method == http.MethodPost && q.op == "create_authorisation_token":
		name := q.str("name")
		c := oauth.NewCredentials()
		t := &token{ConsumerKey: c.ConsumerKey, ConsumerName: name, Key: c.TokenKey, Secret: c.TokenSecret, User: q.user}
		err := r.locked(func() error {
			if err := r.commit(func(wr *writer) error {
				t.Created = wr.next("token")
				wr.putToken(t)
				return nil
			}); err != nil {
				return err
			}
			r.tokens[t.Key] = t
			return nil
		})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"token_key": t.Key, "token_secret": t.Secret, "consumer_key": t.ConsumerKey, "name": name})
	case q.Method == http.MethodPost && q.op == "delete_authorisation_token":
		key, ok := q.get("token_key")
		if !ok {
			return badRequest("No provided token_key!")
		}
		err := r.locked(func() error {
			t := r.tokens[key]
			if t == nil || t.User != q.user || t.SystemID != "" {
				return notFound("No Token matches the given query.")
			}
			if err := r.commit(func(wr *writer) error { wr.delToken(key); return nil }); err != nil {
				return err
			}
			delete(r.tokens, key)
			return nil
		})
		if err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
	case q.Method == http.MethodPost && q.op == "update_token_name":
		tok, ok1 := q.get("token")
		name, ok2 := q.get("name")
		if !ok1 {
			return badRequest("No provided token!")
		}
		if !ok2 {
			return badRequest("No provided name!")
		}
		if parts := strings.Split(tok, ":"); len(parts) == 3 {
			tok = parts[1]
		}
		err := r.locked(func() error {
			t := r.tokens[tok]
			if t == nil || t.User != q.user || t.SystemID != "" {
				return notFound("No Token matches the given query.")
			}
			c := *t
			c.ConsumerName = name
			if err := r.commit(func(wr *writer) error { wr.putToken(&c); return nil }); err != nil {
				return err
			}
			r.tokens[tok] = &c
			return nil
		})
		if err != nil {
			return err
		}
		writeText(w, http.StatusAccepted, "Accepted")
	case q.Method == http.MethodGet && q.op == "list_authorisation_tokens":
		r.mu.RLock()
		var ts []*token
		for _, t := range r.tokens {
			if t.User == q.user && t.SystemID == "" {
				ts = append(ts, t)
			}
		}
		r.mu.RUnlock()
		sort.Slice(ts, func(i, j int) bool { return ts[i].Created < ts[j].Created })
		out := []any{}
		for _, t := range ts {
			out = append(out, map[string]any{"name": t.ConsumerName, "token": t.ConsumerKey + ":" + t.Key + ":" + t.Secret})
		}
		writeJSON(w, http.StatusOK, out)
	default:
		return unknownOp(q)
	}
	return nil
}
