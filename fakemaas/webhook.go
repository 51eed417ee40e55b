package fakemaas

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/maasemu/maasemu/fakemaas/nodestatus"
	"github.com/maasemu/maasemu/trace"
)

// The status webhook, POST /MAAS/metadata/status/<system_id>: the JSON events curtin's
// and cloud-init's webhook reporters post (api_twisted.py StatusHandlerResource and
// StatusWorkerService). MAAS checks the request, answers 204 and processes the event
// later, immediately for the ones that matter, every 60 s for the rest; the fake
// processes every event before answering, in order.

// extractOAuthToken is extract_oauth_key_from_auth_header: the oauth_token value, with
// no check of anything else (the webhook trusts the token key alone).
func extractOAuthToken(h string) (string, bool) {
	fields := strings.Fields(h)
	if len(fields) == 2 {
		for _, e := range strings.Split(fields[1], ",") {
			if k, v, ok := strings.Cut(e, "="); ok && k == "oauth_token" {
				return strings.Trim(v, `"`), true
			}
		}
		return "", false
	}
	for _, e := range fields {
		if k, v, ok := strings.Cut(e, "="); ok && k == "oauth_token" {
			return strings.Trim(strings.TrimRight(v, ","), `"`), true
		}
	}
	return "", false
}

// statusMessage is one accepted webhook event.
type statusMessage struct {
	EventType   string
	Origin      string
	Name        string
	Description string
	Result      string // "" when absent
	Timestamp   time.Time
	Files       []sentFile
}

type sentFile struct {
	Path        string
	Encoding    string
	Compression string
	Content     *string
}

var requiredStatusKeys = []string{"event_type", "origin", "name", "description"}

// asciiError renders Python's UnicodeDecodeError for the first non-ASCII byte.
func asciiError(b []byte) string {
	for i, c := range b {
		if c >= 0x80 {
			return fmt.Sprintf("'ascii' codec can't decode byte 0x%02x in position %d: ordinal not in range(128)", c, i)
		}
	}
	return ""
}

func (r *Region) serveStatus(w http.ResponseWriter, hr *http.Request, sid string) {
	code, msg := r.status(hr, sid)
	if code == http.StatusNoContent {
		w.WriteHeader(code)
		return
	}
	if code == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", "POST")
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(code)
	io.WriteString(w, msg)
}

// status checks and processes one webhook request and returns the HTTP answer.
func (r *Region) status(hr *http.Request, sid string) (int, string) {
	if hr.Method != http.MethodPost {
		return http.StatusMethodNotAllowed, "Method Not Allowed"
	}
	auth := hr.Header.Get("Authorization")
	if auth == "" {
		return http.StatusUnauthorized, ""
	}
	key, ok := extractOAuthToken(auth)
	if !ok {
		return http.StatusUnauthorized, ""
	}
	body, err := io.ReadAll(io.LimitReader(hr.Body, maxForm+1))
	if err != nil {
		return http.StatusBadRequest, "Reading the status payload: " + err.Error()
	}
	if len(body) > maxForm {
		return http.StatusRequestEntityTooLarge, "Status payload is larger than 64 MiB."
	}
	if e := asciiError(body); e != "" {
		return http.StatusBadRequest, "Status payload must be ASCII-only: " + e
	}
	var raw any
	if err := json.Unmarshal(body, &raw); err != nil {
		return http.StatusBadRequest, fmt.Sprintf("Status payload is not valid JSON:\n%s\n\n", body)
	}
	obj, _ := raw.(map[string]any)
	var missing []string
	for _, k := range requiredStatusKeys {
		if _, ok := obj[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return http.StatusBadRequest, fmt.Sprintf("Missing parameter(s) %s in status message.", strings.Join(missing, ", "))
	}
	msg, problem := parseStatusMessage(obj, r.now())
	if problem != "" {
		// MAAS would fail processing such an event after answering 204 and drop it; the
		// fake says so instead.
		return http.StatusBadRequest, problem
	}
	r.processStatus(key, sid, msg)
	return http.StatusNoContent, ""
}

// parseStatusMessage reads the fields MAAS's processing uses; problem names a field MAAS
// could not process.
func parseStatusMessage(obj map[string]any, now time.Time) (statusMessage, string) {
	var m statusMessage
	str := func(k string, required bool) (string, string) {
		v, ok := obj[k]
		if !ok || (v == nil && !required) {
			return "", ""
		}
		s, isStr := v.(string)
		if !isStr {
			return "", fmt.Sprintf("Status message field %q must be a string, not %s.", k, jsonType(v))
		}
		return s, ""
	}
	var p string
	for _, f := range []struct {
		k   string
		dst *string
		req bool
	}{{"event_type", &m.EventType, true}, {"origin", &m.Origin, true}, {"name", &m.Name, true},
		{"description", &m.Description, true}, {"result", &m.Result, false}} {
		if *f.dst, p = str(f.k, f.req); p != "" {
			return m, p
		}
	}
	m.Timestamp = now.UTC()
	if ts, ok := obj["timestamp"]; ok && ts != nil {
		f, isNum := ts.(float64)
		if !isNum {
			return m, fmt.Sprintf("Status message field \"timestamp\" must be a number (seconds since the epoch), not %s.", jsonType(ts))
		}
		sec := int64(f)
		m.Timestamp = time.Unix(sec, int64((f-float64(sec))*1e9)).UTC()
	}
	if fs, ok := obj["files"]; ok && fs != nil {
		list, isList := fs.([]any)
		if !isList {
			return m, fmt.Sprintf("Status message field \"files\" must be a list, not %s.", jsonType(fs))
		}
		for i, e := range list {
			fo, isObj := e.(map[string]any)
			if !isObj {
				return m, fmt.Sprintf("Status message files[%d] must be an object with path, encoding and content.", i)
			}
			var sf sentFile
			path, ok := fo["path"].(string)
			if !ok || path == "" {
				return m, fmt.Sprintf("Status message files[%d] has no path.", i)
			}
			sf.Path = path
			sf.Encoding, _ = fo["encoding"].(string)
			sf.Compression, _ = fo["compression"].(string)
			switch c := fo["content"].(type) {
			case nil:
			case string:
				sf.Content = &c
			default:
				return m, fmt.Sprintf("Status message files[%d] (%s): content must be a string or null, not %s.", i, path, jsonType(c))
			}
			if sf.Content != nil {
				if _, err := decodeSentFile(sf.Path, sf.Encoding, sf.Compression, *sf.Content); err != nil {
					return m, "Status message " + err.Error() + "."
				}
			}
			m.Files = append(m.Files, sf)
		}
	}
	return m, ""
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

func isTopLevel(name string) bool { return !strings.Contains(name, "/") }

// processStatus is StatusWorkerService._processMessage for the node whose token key was
// given (the URL's system_id is not used, as in MAAS). An unknown key (the node was
// released or deleted) drops the event.
func (r *Region) processStatus(key, urlSID string, msg statusMessage) {
	r.mu.RLock()
	t := r.tokens[key]
	var sid string
	if t != nil && t.SystemID != "" && r.machines[t.SystemID] != nil {
		sid = t.SystemID
	}
	r.mu.RUnlock()
	failed := msg.Result == "FAIL" || msg.Result == "FAILURE"
	attrs := map[string]any{"origin": msg.Origin, "name": msg.Name, "event_type": msg.EventType,
		"result": msg.Result, "description": msg.Description}
	if sid == "" {
		r.log.Info("status event for no known node dropped", "url_system_id", urlSID, "name", msg.Name)
		attrs["dropped"] = "no node has this token"
		r.sink.Emit(trace.Event{Source: trace.SourceWebhook, Kind: trace.KindWebhookEvent, Level: trace.LevelWarn, Machine: urlSID,
			Message: fmt.Sprintf("dropped %s %s %s: the token is no node's (released or deleted)", msg.Origin, msg.EventType, msg.Name), Attrs: attrs})
		return
	}
	var statusChanged bool
	err := r.updateMachine(sid, func(w *writer, m *machine) error {
		before := m.clone()
		if msg.EventType == "start" || failed {
			w.installEvent(m, msg, failed)
		}
		if len(msg.Files) > 0 {
			if err := w.storeSentFiles(m, msg, failed); err != nil {
				r.log.Warn("status event files not stored", "machine", m.SystemID, "err", err)
				return err
			}
		}
		top := isTopLevel(msg.Name)
		switch {
		case top && msg.EventType == "finish":
			switch m.Status {
			case nodestatus.Commissioning:
				if failed {
					if err := w.markFailedScripts(m, "", "Commissioning failed, cloud-init reported a failure (refer to the event log for more information)", scriptAborted); err != nil {
						return err
					}
				}
			case nodestatus.Deploying:
				if failed {
					if err := w.markFailed(m, "", "Installation failed (refer to the installation log for more information)."); err != nil {
						return err
					}
				} else if msg.Name == "modules-final" {
					m.NetbootFinished = true
				}
			case nodestatus.DiskErasing, nodestatus.Releasing:
				if failed {
					comment := "Failed to erase disks."
					if m.Status == nodestatus.Releasing {
						comment = "Failed to release machine."
					}
					if err := w.markFailed(m, "", comment); err != nil {
						return err
					}
				} else if msg.Name == "modules-final" {
					if err := w.release(m, "", ""); err != nil {
						return err
					}
				}
			}
			if m.Status == nodestatus.Ready || m.Status == nodestatus.FailedCommissioning {
				// Deallocate the node when it reached a terminal state.
				m.StatusExpires = time.Time{}
				m.Owner = ""
			}
		case top && msg.EventType == "start":
			if m.Status == nodestatus.Deploying && msg.Name == "cmd-install" && msg.Origin == "curtin" {
				if s := w.editScriptSet(m.InstallationScriptSet); s != nil {
					if res := s.result(curtinInstallLog); res != nil {
						res.Status = scriptRunning
						now := r.now().UTC()
						res.Started, res.Updated = &now, now
					}
				}
			}
		}
		if msg.Origin == "curtin" && (msg.EventType == "start" || msg.EventType == "finish") &&
			(msg.Name == "cmd-install" || msg.Name == "cmd-install/stage-early" || msg.Name == "cmd-install/stage-late") {
			w.resetStatusExpires(m)
		}
		statusChanged = m.Status != before.Status
		if len(w.evs) == 0 && len(w.ops) == 0 && m.sameAs(before) {
			return errNothingToDo // nothing MAAS would save
		}
		return nil
	})
	if err != nil {
		attrs["error"] = err.Error()
	}
	level := trace.LevelInfo
	if failed {
		level = trace.LevelError
	} else if !isTopLevel(msg.Name) {
		level = trace.LevelDebug
	}
	text := fmt.Sprintf("%s %s %s: %s", msg.Origin, msg.EventType, msg.Name, msg.Description)
	if msg.Result != "" {
		text += " (" + msg.Result + ")"
	}
	attrs["status_changed"] = statusChanged
	r.sink.Emit(trace.Event{Time: msg.Timestamp, Source: trace.SourceWebhook, Kind: trace.KindWebhookEvent, Level: level,
		Machine: sid, Message: text, Attrs: attrs})
}

// installEvent is add_event_to_node_event_log: the node event for a start or a failure,
// typed by the node's status, plus the status message event of curtin's stage starts.
func (w *writer) installEvent(m *machine, msg statusMessage, failed bool) {
	ok := !failed
	var typ string
	switch {
	case m.Status == nodestatus.Commissioning && ok:
		typ = "NODE_COMMISSIONING_EVENT"
	case m.Status == nodestatus.Commissioning:
		typ = "NODE_COMMISSIONING_EVENT_FAILED"
	case m.Status == nodestatus.Deploying && ok:
		typ = "NODE_INSTALL_EVENT"
	case m.Status == nodestatus.Deploying:
		typ = "NODE_INSTALL_EVENT_FAILED"
	case m.Status == nodestatus.Deployed && msg.Result == "FAIL":
		typ = "NODE_POST_INSTALL_EVENT_FAILED"
	case m.Status == nodestatus.EnteringRescueMode && ok:
		typ = "NODE_ENTERING_RESCUE_MODE_EVENT"
	case m.Status == nodestatus.EnteringRescueMode:
		typ = "NODE_ENTERING_RESCUE_MODE_EVENT_FAILED"
	default:
		typ = "NODE_STATUS_EVENT"
	}
	if st, ok := eventStatusMessages[msg.Name]; ok && msg.EventType == "start" {
		w.nodeEventAt(m, st, "", msg.Name, msg.Timestamp)
	}
	w.nodeEventAt(m, typ, fmt.Sprintf("'%s' %s", msg.Origin, msg.Description), msg.Name, msg.Timestamp)
}

// storeSentFiles stores an event's files as results of the node's current script set:
// testing or commissioning while commissioning, installation while deploying, deployed
// or failed deployment. Files without content are skipped (curtin posts the error
// tarfile as null when there was no error).
func (w *writer) storeSentFiles(m *machine, msg statusMessage, failed bool) error {
	var setID int
	switch m.Status {
	case nodestatus.Commissioning, nodestatus.FailedCommissioning:
		setID = m.CommissioningScriptSet
	case nodestatus.Deploying, nodestatus.Deployed, nodestatus.FailedDeployment:
		setID = m.InstallationScriptSet
	default:
		return fmt.Errorf("invalid status for saving files: %d (%s)", int(m.Status), m.Status)
	}
	s := w.editScriptSet(setID)
	if s == nil {
		return fmt.Errorf("machine %s has no current script set for its status %s", m.SystemID, m.Status)
	}
	var files []resultFile
	for _, f := range msg.Files {
		if f.Content == nil {
			continue
		}
		b, err := decodeSentFile(f.Path, f.Encoding, f.Compression, *f.Content)
		if err != nil {
			return err
		}
		files = append(files, resultFile{name: f.Path, content: b})
	}
	defaultExit := 0
	if failed {
		defaultExit = 1
	}
	touched := w.storeFiles(s, files, 0, nil, defaultExit, 0, false)
	if m.Status == nodestatus.Commissioning || m.Status == nodestatus.FailedCommissioning {
		for _, t := range touched {
			if t.hadStdout {
				w.commissioningHook(m, t.res)
			}
		}
	}
	return nil
}
