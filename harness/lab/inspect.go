package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/fakemaas/curtincfg"
	"github.com/maasemu/maasemu/fakemaas/oauth"
	"github.com/maasemu/maasemu/trace"
)

// What scenarios look at while a lab runs: its machines by name, raw API calls, the
// capture, the configuration the region serves a machine, and a machine's own events.

// Machine returns the lab's machine called name.
func (l *Lab) Machine(name string) (*Machine, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m, ok := l.machines[name]
	return m, ok
}

// DriverName is the lab's machine driver, DriverSim or DriverLibvirt.
func (l *Lab) DriverName() string { return l.cfg.Driver }

// Dir is the lab's state directory.
func (l *Lab) Dir() string { return l.cfg.Dir }

// CapturePath is the lab's packet capture (pcap) file. Call FlushCapture before reading
// it while the lab runs.
func (l *Lab) CapturePath() string { return filepath.Join(l.cfg.Dir, "network.pcap") }

// FlushCapture writes the frames captured so far out to CapturePath.
func (l *Lab) FlushCapture() error {
	if l.pcapW == nil {
		return fmt.Errorf("lab: no capture")
	}
	return l.pcapW.Flush()
}

// APIResponse is a raw API answer.
type APIResponse struct {
	Status int
	Body   []byte
}

// API sends a raw API 2.0 request as the admin, signed as the maas CLI signs it: method
// GET, POST, PUT or DELETE, path relative to /MAAS/api/2.0/ (e.g. "machines/" or
// "machines/abc123/"), params as the query (GET, DELETE) or a multipart form (POST,
// PUT). op goes in the query for every method, as the maas CLI sends it. The error is for
// a request that could not be made; any HTTP status is a response.
func (l *Lab) API(ctx context.Context, method, path string, params url.Values) (APIResponse, error) {
	method = strings.ToUpper(method)
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete:
	default:
		return APIResponse{}, fmt.Errorf("lab: API method %q: want GET, POST, PUT or DELETE", method)
	}
	if strings.Contains(path, "..") || strings.HasPrefix(path, "/") && !strings.HasPrefix(path, fakemaas.APIPrefix) {
		return APIResponse{}, fmt.Errorf("lab: API path %q: want a path relative to %s, without \"..\"", path, fakemaas.APIPrefix)
	}
	creds, err := oauth.ParseKey(l.Region.AdminAPIKey())
	if err != nil {
		return APIResponse{}, err
	}
	base := strings.TrimSuffix(l.APIURL, "/MAAS/")
	u, err := url.Parse(base + fakemaas.APIPrefix + strings.TrimPrefix(strings.TrimPrefix(path, fakemaas.APIPrefix), "/"))
	if err != nil {
		return APIResponse{}, fmt.Errorf("lab: API path %q: %w", path, err)
	}
	params = cloneValues(params)
	q := u.Query()
	if op := params.Get("op"); op != "" {
		q.Set("op", op)
		params.Del("op")
	}
	var body io.Reader
	contentType := ""
	switch method {
	case http.MethodGet, http.MethodDelete:
		for k, vs := range params {
			for _, v := range vs {
				q.Add(k, v)
			}
		}
	default:
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		for k, vs := range params {
			for _, v := range vs {
				if err := mw.WriteField(k, v); err != nil {
					return APIResponse{}, err
				}
			}
		}
		if err := mw.Close(); err != nil {
			return APIResponse{}, err
		}
		body, contentType = &buf, mw.FormDataContentType()
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return APIResponse{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	oauth.Sign(req, creds)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return APIResponse{}, fmt.Errorf("lab: API %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return APIResponse{}, fmt.Errorf("lab: API %s %s: reading the answer: %w", method, path, err)
	}
	return APIResponse{Status: resp.StatusCode, Body: b}, nil
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// InstallerSpec returns the curtin configuration the region serves machine m now (the
// documents MAAS packs into the curtin user-data), read from the metadata service with
// the machine's own node key and the rack's address as the host, as its ephemeral reads
// it.
func (l *Lab) InstallerSpec(ctx context.Context, m *Machine) (curtincfg.InstallerSpec, error) {
	var spec curtincfg.InstallerSpec
	creds, err := l.Region.NodeToken(m.SystemID)
	if err != nil {
		return spec, fmt.Errorf("lab: node key of %s: %w", m.Spec.Name, err)
	}
	u := l.APIURL + strings.TrimPrefix(fakemaas.MetadataPrefix, "/MAAS/") + "curtin/2012-03-01/" + fakemaas.InstallerRoute
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return spec, err
	}
	// The region renders URLs for the address a request came to: ask as the machine
	// does, through the rack's address.
	req.Host = net.JoinHostPort(l.RackIP.String(), "5248")
	oauth.Sign(req, creds)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return spec, fmt.Errorf("lab: reading the curtin configuration of %s: %w", m.Spec.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return spec, fmt.Errorf("lab: reading the curtin configuration of %s: %w", m.Spec.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return spec, fmt.Errorf("lab: the region serves no curtin configuration to %s: %d %s", m.Spec.Name, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return spec, fmt.Errorf("lab: the curtin configuration of %s is not JSON: %w", m.Spec.Name, err)
	}
	return spec, nil
}

// Events returns the events that concern machine m so far (its system ID or one of its
// MACs), in order.
func (l *Lab) Events(m *Machine) []trace.Event {
	macs := map[string]bool{}
	for _, mac := range m.MACs {
		macs[strings.ToLower(mac.String())] = true
	}
	var out []trace.Event
	for _, e := range l.Recorder.Events() {
		if (e.Machine != "" && e.Machine == m.SystemID) || (e.MAC != "" && macs[strings.ToLower(e.MAC)]) {
			out = append(out, e)
		}
	}
	return out
}
