package fakemaas

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/maasemu/maasemu/fakemaas/commissioning"
	"github.com/maasemu/maasemu/fakemaas/curtincfg"
	"github.com/maasemu/maasemu/fakemaas/nodestatus"
	"github.com/maasemu/maasemu/fakemaas/oauth"
	"github.com/maasemu/maasemu/trace"
)

// MetadataPrefix is where the metadata service lives (METADATA_URL_PREFIX).
const MetadataPrefix = "/MAAS/metadata/"

// InstallerRoute is the project's own route under the curtin metadata URL that serves
// the curtin configuration as JSON (curtincfg.InstallerSpec) to maasemu's ephemeral
// agent: <metadata_url>/2012-03-01/maasemu-installer. MAAS has no such route: MAAS 3.7
// packs the same documents with curtin's pack_install and serves the pack as the curtin
// user-data (curtin/<version>/user-data).
const InstallerRoute = "maasemu-installer"

// The URL patterns of src/metadataserver/urls.py at MAAS 3.7.3, in the order Django tries
// them, plus the project's installer route. Like Django's re_path, a pattern without "$"
// matches a prefix. MAAS's main branch adds curtin/<version>/maas-scripts and
// curtin/<version>/curtin-installer for its 50-curtin-install deployment script; 3.7 has
// neither (there the curtin user-data is the installer), and neither does the fake.
var (
	reEnlistMeta    = regexp.MustCompile(`^/*enlist/([^/]+)/meta-data/(.*)$`)
	reEnlistUser    = regexp.MustCompile(`^/*enlist/([^/]+)/user-data$`)
	reEnlistVersion = regexp.MustCompile(`^/*enlist/([^/]+)/*$`)
	reEnlistIndex   = regexp.MustCompile(`^/*enlist/*$`)
	reByID          = regexp.MustCompile(`^/*([^/]+)/by-id/([\w\-]+)/$`)
	reEnlistPreseed = regexp.MustCompile(`^/*([^/]+)/enlist-preseed/$`)
	reByMAC         = regexp.MustCompile(`^/*([^/]+)/by-mac/([^/]+)/`)
	reCurtinMeta    = regexp.MustCompile(`^/*curtin/([^/]+)/meta-data/(.*)$`)
	reCurtinUser    = regexp.MustCompile(`^/*curtin/([^/]+)/user-data$`)
	reMaasemuInst   = regexp.MustCompile(`^/*curtin/([^/]+)/` + InstallerRoute + `$`)
	reCurtinVersion = regexp.MustCompile(`^/*curtin/([^/]+)/`)
	reCurtinIndex   = regexp.MustCompile(`^/*curtin/*$`)
	reStatus        = regexp.MustCompile(`^status/([\w\-]+)$`)
	reMeta          = regexp.MustCompile(`^/*([^/]+)/meta-data/(.*)$`)
	reUser          = regexp.MustCompile(`^/*([^/]+)/user-data$`)
	reScripts       = regexp.MustCompile(`^/*([^/]+)/maas-scripts`)
	reCommScripts   = regexp.MustCompile(`^/*([^/]+)/maas-commissioning-scripts`)
	reVersion       = regexp.MustCompile(`^/*([^/]+)/`)
)

// mdCall is one metadata request.
type mdCall struct {
	*request
	w    http.ResponseWriter
	sid  string // the machine concerned, once known
	path string // after /MAAS/metadata/
}

func (r *Region) serveMetadata(w http.ResponseWriter, hr *http.Request) {
	rest := strings.TrimPrefix(hr.URL.Path, MetadataPrefix)
	if hr.URL.Path+"/" == MetadataPrefix {
		rest = ""
	}
	if m := reStatus.FindStringSubmatch(rest); m != nil {
		r.serveStatus(w, hr, m[1])
		return
	}
	sw := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	c := &mdCall{request: &request{Request: hr}, w: sw, path: rest}
	err := c.parseForm()
	if err == nil {
		c.op = hr.URL.Query().Get("op")
		if c.op == "" {
			c.op = c.str("op")
		}
		err = r.routeMetadata(c)
	}
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			r.log.Error("metadata request failed", "method", hr.Method, "path", hr.URL.Path, "err", err)
		}
		writeAPIError(sw, err)
	}
	if hr.Method == http.MethodGet || hr.Method == http.MethodHead {
		r.sink.Emit(trace.Event{Source: trace.SourceMetadata, Kind: trace.KindMetadataRead, Level: trace.LevelDebug,
			Machine: c.sid, Message: fmt.Sprintf("%s %s: %d", hr.Method, hr.URL.RequestURI(), sw.status),
			Attrs: map[string]any{"path": hr.URL.Path, "op": c.op, "status": sw.status}})
	}
}

// statusRecorder remembers the status code written.
type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

func (r *Region) routeMetadata(c *mdCall) error {
	p := c.path
	match := func(re *regexp.Regexp) []string { return re.FindStringSubmatch(p) }
	if m := match(reEnlistMeta); m != nil {
		return r.mdEnlistMeta(c, m[1], m[2])
	}
	if m := match(reEnlistUser); m != nil {
		return r.mdEnlistUser(c, m[1])
	}
	if match(reEnlistVersion) != nil {
		return getOnly(c, func() error { return writeList(c.w, "meta-data", "user-data") })
	}
	if match(reEnlistIndex) != nil {
		return getOnly(c, func() error { return writeList(c.w, "2012-03-01", "latest") })
	}
	if m := match(reByID); m != nil {
		return r.mdByID(c, m[2])
	}
	if match(reEnlistPreseed) != nil {
		return r.mdEnlistPreseed(c)
	}
	if match(reByMAC) != nil {
		return forbidden("Unauthenticated metadata access is not allowed on this MAAS.")
	}
	if m := match(reCurtinMeta); m != nil {
		return r.mdMetaData(c, m[1], m[2])
	}
	if m := match(reCurtinUser); m != nil {
		return r.mdCurtinUserData(c, m[1])
	}
	if m := match(reMaasemuInst); m != nil {
		return r.mdMaasemuInstaller(c, m[1])
	}
	if m := match(reCurtinVersion); m != nil {
		return r.mdVersion(c, m[1])
	}
	if match(reCurtinIndex) != nil {
		return r.mdIndex(c)
	}
	if m := match(reMeta); m != nil {
		return r.mdMetaData(c, m[1], m[2])
	}
	if m := match(reUser); m != nil {
		return r.mdUserData(c, m[1])
	}
	if match(reScripts) != nil {
		return r.mdScripts(c)
	}
	if m := match(reCommScripts); m != nil {
		return r.mdCommissioningScripts(c, m[1])
	}
	if m := match(reVersion); m != nil {
		return r.mdVersion(c, m[1])
	}
	return r.mdIndex(c)
}

func getOnly(c *mdCall, f func() error) error {
	if c.Method != http.MethodGet && c.Method != http.MethodHead {
		if c.op != "" {
			return badRequest(fmt.Sprintf("Unrecognised signature: method=%s op=%s", c.Method, c.op))
		}
		return methodNotAllowed("GET")
	}
	if c.op != "" {
		return badRequest(fmt.Sprintf("Unrecognised signature: method=%s op=%s", c.Method, c.op))
	}
	return f()
}

func checkVersion(v string) error {
	if v != "latest" && v != "2012-03-01" {
		return notFound("Unknown metadata version: " + v)
	}
	return nil
}

func writeList(w http.ResponseWriter, items ...string) error {
	sort.Strings(items)
	writePlain(w, http.StatusOK, []byte(strings.Join(items, "\n")))
	return nil
}

// writePlain is make_text_response: text/plain without a charset parameter.
func writePlain(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(status)
	w.Write(b)
}

func writeBinary(w http.ResponseWriter, ctype string, b []byte) {
	w.Header().Set("Content-Type", ctype)
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// nodeAuth identifies the node a metadata request is made by, as get_node_for_request
// does after MAAS's OAuth check: no OAuth header means anonymous (anon true, the
// handler's anonymous variant answers or the request is refused); a bad OAuth header is
// 401 as on the API; a valid token that is not a node's is 403.
func (r *Region) nodeAuth(c *mdCall) (m *machine, anon bool, err error) {
	t, present, err := r.checkOAuth(c.Request)
	if !present {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if t.SystemID == "" || r.machines[t.SystemID] == nil {
		return nil, false, forbidden("Not authenticated as a known node.")
	}
	c.sid = t.SystemID
	return r.machines[t.SystemID], false, nil
}

// requireNode is nodeAuth for handlers without an anonymous variant.
func (r *Region) requireNode(c *mdCall) (*machine, error) {
	m, anon, err := r.nodeAuth(c)
	if err != nil {
		return nil, err
	}
	if anon {
		return nil, unauthorized("Forbidden")
	}
	return m, nil
}

// snapshotMachine returns a copy of the current record of sid (nil when gone).
func (r *Region) snapshotMachine(sid string) *machine {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if m := r.machines[sid]; m != nil {
		return m.clone()
	}
	return nil
}

// mdIndex is IndexHandler (authenticated; no anonymous variant).
func (r *Region) mdIndex(c *mdCall) error {
	return getOnly(c, func() error {
		if _, err := r.requireNode(c); err != nil {
			return err
		}
		return writeList(c.w, "latest", "2012-03-01")
	})
}

// mdVersion is VersionIndexHandler: the listing (GET) and the operations signal,
// netboot_off and netboot_on (POST).
func (r *Region) mdVersion(c *mdCall, version string) error {
	switch {
	case c.Method == http.MethodPost:
		switch c.op {
		case "signal":
			return r.mdSignal(c)
		case "netboot_off", "netboot_on":
			m, err := r.requireNode(c)
			if err != nil {
				return err
			}
			if err := r.setNetboot(c, m.SystemID, c.op == "netboot_on", false); err != nil {
				return err
			}
			writePlain(c.w, http.StatusOK, []byte("OK"))
			return nil
		case "":
			return methodNotAllowed("GET")
		}
		return badRequest(fmt.Sprintf("Unrecognised signature: method=POST op=%s", c.op))
	case c.Method == http.MethodGet && c.op == "":
		m, anon, err := r.nodeAuth(c)
		if err != nil {
			return err
		}
		if anon {
			return writeList(c.w, "meta-data", "user-data")
		}
		if err := checkVersion(version); err != nil {
			return err
		}
		items := []string{"maas-commissioning-scripts", "meta-data"}
		if hasNodeUserData(m) {
			items = append(items, "user-data")
		}
		return writeList(c.w, items...)
	}
	return getOnly(c, func() error { return nil })
}

// mdMetaData is MetaDataHandler (its anonymous variant is the enlistment meta-data).
func (r *Region) mdMetaData(c *mdCall, version, item string) error {
	return getOnly(c, func() error {
		m, anon, err := r.nodeAuth(c)
		if err != nil {
			return err
		}
		if anon {
			return r.mdEnlistMeta(c, version, item)
		}
		if err := checkVersion(version); err != nil {
			return err
		}
		keys := r.ownerKeys(m.Owner)
		if item == "" {
			items := []string{"instance-id", "local-hostname", "vendor-data", "x509"}
			if len(keys) > 0 && !(m.Status == nodestatus.Commissioning && !m.EnableSSH) {
				items = append(items, "public-keys")
			}
			return writeList(c.w, items...)
		}
		sub, _, _ := strings.Cut(item, "/")
		switch sub {
		case "instance-id":
			writePlain(c.w, http.StatusOK, []byte(m.SystemID))
		case "local-hostname":
			writePlain(c.w, http.StatusOK, []byte(m.Hostname+"."+m.Domain))
		case "public-keys":
			writePlain(c.w, http.StatusOK, []byte(strings.Join(keys, "\n")))
		case "x509":
			writePlain(c.w, http.StatusOK, nil)
		case "vendor-data":
			tok, err := r.nodeToken(m.SystemID)
			if err != nil {
				return err
			}
			r.mu.RLock()
			in := r.machineInput(m, tok, requestHost(c.Request))
			r.mu.RUnlock()
			vd, err := curtincfg.VendorData(in, m.preseedPurpose())
			if err != nil {
				return textError(http.StatusInternalServerError, "Rendering vendor-data: "+err.Error())
			}
			writeBinary(c.w, "application/x-yaml; charset=utf-8", []byte(vd))
		default:
			return notFound("Unknown metadata attribute: " + sub)
		}
		return nil
	})
}

// ownerKeys are the owner's SSH public keys (r.mu not held).
func (r *Region) ownerKeys(owner string) []string {
	if owner == "" {
		return nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for _, id := range sortedIntKeys(r.sshKeys) {
		if k := r.sshKeys[id]; k.User == owner {
			out = append(out, k.Key)
		}
	}
	return out
}

// hasNodeUserData says whether MAAS keeps NodeUserData for m: the user's user-data while
// deploying or deployed, the commissioning script runner while commissioning-like.
func hasNodeUserData(m *machine) bool {
	switch {
	case m.Status == nodestatus.Deploying || m.Status == nodestatus.Deployed:
		return m.UserData != nil
	case nodestatus.CommissioningLike(m.Status):
		return true
	}
	return false
}

// runnerConfig is the node's metadata URL (as it reached the region) and OAuth
// credentials for a user-data script.
func (r *Region) runnerConfig(c *mdCall, sid string) (runnerConfig, error) {
	tok, err := r.nodeToken(sid)
	if err != nil {
		return runnerConfig{}, err
	}
	return runnerConfig{MetadataURL: requestMetadataURL(c.Request), ConsumerKey: tok.ConsumerKey, TokenKey: tok.Key, TokenSecret: tok.Secret}, nil
}

// mdUserData is UserDataHandler: the installed OS's request that ends a deployment.
func (r *Region) mdUserData(c *mdCall, version string) error {
	return getOnly(c, func() error {
		m, anon, err := r.nodeAuth(c)
		if err != nil {
			return err
		}
		if anon {
			return r.mdEnlistUser(c, version)
		}
		if err := checkVersion(version); err != nil {
			return err
		}
		wasDeploying := m.Status == nodestatus.Deploying
		if wasDeploying {
			if err := r.endDeployment(m.SystemID); err != nil {
				return err
			}
			m = r.snapshotMachine(m.SystemID)
			if m == nil {
				return notFound("No Node matches the given query.")
			}
		}
		r.sink.Emit(trace.Event{Source: trace.SourceMetadata, Kind: trace.KindUserDataRead, Machine: m.SystemID,
			Message: fmt.Sprintf("%s read its user-data (%s)", m.Hostname, m.Status),
			Attrs:   map[string]any{"path": c.URL.Path, "status": m.Status.String(), "ended_deployment": wasDeploying}})
		if m.bootPurpose() == PurposePoweroff {
			writeBinary(c.w, "application/octet-stream", []byte(poweroffUserData))
			return nil
		}
		if !hasNodeUserData(m) {
			c.w.WriteHeader(http.StatusNotFound)
			return nil
		}
		ud := m.UserData
		if nodestatus.CommissioningLike(m.Status) {
			cfg, err := r.runnerConfig(c, m.SystemID)
			if err != nil {
				return err
			}
			ud = commissioningUserData(cfg)
		}
		if m.Status == nodestatus.Commissioning {
			_ = r.updateMachine(m.SystemID, func(w *writer, m *machine) error {
				w.nodeEvent(m, "GATHERING_INFO", "", "")
				return nil
			})
		}
		writeBinary(c.w, "application/octet-stream", decodeUserData(ud))
		return nil
	})
}

// decodeUserData serves base64 user-data decoded, as UserDataHandler does: data that is
// valid base64 (with or without whitespace) and re-encodes to itself is decoded.
func decodeUserData(ud []byte) []byte {
	if dec, err := base64.StdEncoding.Strict().DecodeString(string(ud)); err == nil && base64.StdEncoding.EncodeToString(dec) == string(ud) {
		return dec
	}
	stripped := strings.Join(strings.Fields(string(ud)), "")
	if stripped != string(ud) {
		if dec, err := base64.StdEncoding.Strict().DecodeString(stripped); err == nil && base64.StdEncoding.EncodeToString(dec) == stripped {
			return dec
		}
	}
	return ud
}

// installerSpec renders the curtin configuration of c's machine.
func (r *Region) installerSpec(c *mdCall, m *machine) (curtincfg.InstallerSpec, error) {
	tok, err := r.nodeToken(m.SystemID)
	if err != nil {
		return curtincfg.InstallerSpec{}, err
	}
	r.mu.RLock()
	in := r.machineInput(m, tok, requestHost(c.Request))
	r.mu.RUnlock()
	cfg, err := curtincfg.CurtinConfig(in)
	if err != nil {
		return curtincfg.InstallerSpec{}, badRequest((&curtincfg.RenderError{Err: err}).Error())
	}
	return cfg.InstallerSpec(), nil
}

// mdMaasemuInstaller is the project route: the curtin configuration as JSON.
func (r *Region) mdMaasemuInstaller(c *mdCall, version string) error {
	return getOnly(c, func() error {
		m, err := r.requireNode(c)
		if err != nil {
			return err
		}
		if err := checkVersion(version); err != nil {
			return err
		}
		spec, err := r.installerSpec(c, m)
		if err != nil {
			return err
		}
		b, err := json.Marshal(spec)
		if err != nil {
			return err
		}
		writeBinary(c.w, "application/json", b)
		return nil
	})
}

// mdCurtinUserData is CurtinUserDataHandler at MAAS 3.7.3: the ephemeral's user-data is
// the curtin installer itself, get_curtin_userdata = curtin.pack.pack_install of the
// node's curtin configuration with the install source as argument, whatever the node's
// status; cloud-init runs it as a user script. Reading it never ends a deployment.
//
// The pack needs the real curtin Python package on this host (Options.Packer). Without
// it there is no installer to give, and the fake says so instead of serving a script
// that only looks like one: 404 (there is no curtin user-data here) with a body naming
// the problem, a node event and a trace event (trace.KindInstallerUnavailable). A real
// Ubuntu ephemeral then installs nothing and the event log says why. 404 rather than
// MAAS's 5xx for a user-data it cannot build: cloud-init treats user-data as optional
// only when it is missing (404), and maasemu's agent reads its datasource as cloud-init
// does, so any other status would fail the agent's boot, although the agent never runs
// the user-data (it takes the same configuration from InstallerRoute). A pack_install
// that fails with curtin present is a 500, as in MAAS.
func (r *Region) mdCurtinUserData(c *mdCall, version string) error {
	return getOnly(c, func() error {
		m, err := r.requireNode(c)
		if err != nil {
			return err
		}
		if err := checkVersion(version); err != nil {
			return err
		}
		spec, err := r.installerSpec(c, m)
		if err != nil {
			return err
		}
		pack, err := r.pack(c.Context(), spec)
		if err == nil {
			writeBinary(c.w, "application/octet-stream", pack)
			return nil
		}
		if c.Context().Err() != nil {
			return c.Context().Err()
		}
		unavailable := errors.Is(err, curtincfg.ErrCurtinUnavailable)
		status, level := http.StatusInternalServerError, trace.LevelError
		msg := fmt.Sprintf("curtin user-data cannot be served: packing the curtin installer failed: %v", err)
		if unavailable {
			status, level = http.StatusNotFound, trace.LevelWarn
			msg = fmt.Sprintf("curtin user-data cannot be served: real curtin is unavailable on this host (%v). "+
				"MAAS 3.7 serves curtin's pack_install of the node's configuration as this user-data, so a real Ubuntu "+
				"ephemeral is given no installer and installs nothing (give maasemu a curtin tree with --curtin DIR, or "+
				"install python3-curtin); maasemu's agent is unaffected: it reads the configuration from "+
				"<metadata_url>/2012-03-01/%s", err, InstallerRoute)
		}
		_ = r.updateMachine(m.SystemID, func(w *writer, m *machine) error {
			w.nodeEvent(m, "NODE_INSTALL_EVENT_FAILED", "'maasemu' "+msg, "")
			return nil
		})
		r.sink.Emit(trace.Event{Source: trace.SourceMetadata, Kind: trace.KindInstallerUnavailable, Level: level,
			Machine: m.SystemID, Message: msg, Attrs: map[string]any{"path": c.URL.Path, "status": status,
				"error": err.Error(), "curtin_unavailable": unavailable}})
		return textError(status, msg)
	})
}

// pack runs the region's curtin packer.
func (r *Region) pack(ctx context.Context, spec curtincfg.InstallerSpec) ([]byte, error) {
	if r.opts.Packer != nil {
		return r.opts.Packer.Pack(ctx, spec)
	}
	return curtincfg.Pack(ctx, spec)
}

// mdByID is AnonMetaDataHandler on latest/by-id/<system_id>/: get_preseed and the
// anonymous netboot_off MAAS's curtin late command posts.
func (r *Region) mdByID(c *mdCall, sid string) error {
	c.sid = sid
	switch {
	case (c.Method == http.MethodGet || c.Method == http.MethodHead) && c.op == "get_preseed":
		m := r.snapshotMachine(sid)
		if m == nil {
			c.sid = ""
			return notFound("No Node matches the given query.")
		}
		tok, err := r.nodeToken(sid)
		if err != nil {
			return err
		}
		r.mu.RLock()
		in := r.machineInput(m, tok, requestHost(c.Request))
		r.mu.RUnlock()
		preseed, err := curtincfg.Preseed(in, m.preseedPurpose())
		if err != nil {
			return textError(http.StatusInternalServerError, "Rendering the preseed: "+err.Error())
		}
		writePlain(c.w, http.StatusOK, []byte(preseed))
		return nil
	case c.Method == http.MethodPost && c.op == "netboot_off":
		if r.snapshotMachine(sid) == nil {
			c.sid = ""
			return notFound("No Node matches the given query.")
		}
		if err := r.setNetboot(c, sid, false, true); err != nil {
			return err
		}
		writePlain(c.w, http.StatusOK, []byte("OK"))
		return nil
	case c.op == "":
		return badRequest(fmt.Sprintf("%s %s needs an operation: GET ?op=get_preseed or POST op=netboot_off", c.Method, c.URL.Path))
	}
	return badRequest(fmt.Sprintf("Unrecognised signature: method=%s op=%s (the anonymous by-id route serves get_preseed and netboot_off only)", c.Method, c.op))
}

// setNetboot is Node.set_netboot; the anonymous form also records MAAS's "Installation
// complete - Node disabled netboot" event.
func (r *Region) setNetboot(c *mdCall, sid string, on, anonymous bool) error {
	var host string
	err := r.updateMachine(sid, func(w *writer, m *machine) error {
		m.Netboot = on
		host = m.Hostname
		if anonymous && !on {
			w.nodeEvent(m, "NODE_INSTALLATION_FINISHED", "Node disabled netboot", "")
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.log.Info("netboot changed", "machine", sid, "netboot", on)
	if !on {
		r.sink.Emit(trace.Event{Source: trace.SourceMetadata, Kind: trace.KindNetbootOff, Machine: sid,
			Message: host + ": netboot off", Attrs: map[string]any{"path": c.URL.Path, "anonymous": anonymous}})
	}
	return nil
}

// mdEnlistPreseed is get_enlist_preseed.
func (r *Region) mdEnlistPreseed(c *mdCall) error {
	if (c.Method != http.MethodGet && c.Method != http.MethodHead) || c.op != "get_enlist_preseed" {
		return badRequest(fmt.Sprintf("Unrecognised signature: method=%s op=%s", c.Method, c.op))
	}
	r.mu.RLock()
	in := &curtincfg.Input{URLs: curtincfg.URLs{RackIP: requestHost(c.Request)}, Settings: r.generatorSettings()}
	r.mu.RUnlock()
	preseed, err := curtincfg.Preseed(in, curtincfg.PurposeEnlist)
	if err != nil {
		return textError(http.StatusInternalServerError, "Rendering the enlistment preseed: "+err.Error())
	}
	writePlain(c.w, http.StatusOK, []byte(preseed))
	return nil
}

var enlistMetaData = map[string]string{"instance-id": "i-maas-enlistment", "local-hostname": "maas-enlisting-node", "public-keys": ""}

// mdEnlistMeta is EnlistMetaDataHandler.
func (r *Region) mdEnlistMeta(c *mdCall, version, item string) error {
	return getOnly(c, func() error {
		if err := checkVersion(version); err != nil {
			return err
		}
		if item == "" {
			return writeList(c.w, "instance-id", "local-hostname")
		}
		v, ok := enlistMetaData[item]
		if !ok {
			return notFound("Unknown metadata attribute: " + item)
		}
		writePlain(c.w, http.StatusOK, []byte(v))
		return nil
	})
}

// mdEnlistUser is EnlistUserDataHandler.
func (r *Region) mdEnlistUser(c *mdCall, version string) error {
	return getOnly(c, func() error {
		if err := checkVersion(version); err != nil {
			return err
		}
		writePlain(c.w, http.StatusOK, []byte(enlistUserData))
		return nil
	})
}

// scriptContent is the content the fake serves for a builtin script.
func scriptContent(name string) []byte {
	if name == commissioning.ScriptName {
		return []byte(resourcesScript)
	}
	return []byte("#!/bin/sh\n# maasemu: no content for script " + name + "\nexit 0\n")
}

// mdScripts is MAASScriptsHandler: a tar of the scripts the node has to run and an
// index.json describing them; 204 when there are none. The anonymous variant serves the
// builtin commissioning scripts to an enlisting machine.
func (r *Region) mdScripts(c *mdCall) error {
	return getOnly(c, func() error {
		m, anon, err := r.nodeAuth(c)
		if err != nil {
			return err
		}
		now := r.now()
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		add := func(name string, content []byte, mode int64) error {
			if err := tw.WriteHeader(&tar.Header{Name: name, Size: int64(len(content)), Mode: mode, ModTime: now, Typeflag: tar.TypeReg}); err != nil {
				return err
			}
			_, err := tw.Write(content)
			return err
		}
		index := map[string]any{}
		if anon {
			var items []any
			for _, name := range builtinCommissioning {
				p := path.Join("commissioning", name)
				if err := add(p, scriptContent(name), 0o755); err != nil {
					return err
				}
				items = append(items, map[string]any{"name": name, "path": p, "script_version_id": 1, "timeout_seconds": 600.0,
					"parallel": 0, "hardware_type": 0, "parameters": map[string]any{}, "packages": map[string]any{},
					"for_hardware": []string{}, "apply_configured_networking": false})
			}
			index["commissioning_scripts"] = items
		} else {
			r.mu.RLock()
			set := r.scriptSets[m.CommissioningScriptSet]
			if set != nil {
				set = set.clone()
			}
			r.mu.RUnlock()
			wantCommissioning := m.Status == nodestatus.Commissioning || m.Status == nodestatus.Deployed ||
				m.Status == nodestatus.EnteringRescueMode || m.Status == nodestatus.RescueMode
			if wantCommissioning && set != nil {
				var items []map[string]any
				for _, res := range set.Results {
					if m.Status != nodestatus.Deployed && !runningOrPending(res.Status) {
						continue
					}
					p := path.Join("commissioning", res.Name)
					if err := add(p, scriptContent(res.Name), 0o755); err != nil {
						return err
					}
					started := res.Status != scriptPending
					if started {
						out := path.Join("out", fmt.Sprintf("%s.%d", res.Name, res.ID))
						for _, f := range []struct {
							suffix string
							b      []byte
						}{{"", res.Output}, {".out", res.Stdout}, {".err", res.Stderr}, {".yaml", res.Result}} {
							if err := add(out+f.suffix, f.b, 0o755); err != nil {
								return err
							}
						}
					}
					items = append(items, map[string]any{"name": res.Name, "path": p, "script_result_id": res.ID,
						"script_version_id": 1, "timeout_seconds": 600.0, "parallel": 0, "hardware_type": 0,
						"parameters": map[string]any{}, "packages": map[string]any{}, "for_hardware": []string{},
						"apply_configured_networking": false, "has_started": started,
						"has_finished": !runningOrPending(res.Status), "default": true, "tags": []string{"node"}})
				}
				sort.Slice(items, func(i, j int) bool {
					a, b := items[i], items[j]
					if a["name"] != b["name"] {
						return a["name"].(string) < b["name"].(string)
					}
					return a["script_result_id"].(int) < b["script_result_id"].(int)
				})
				if len(items) > 0 {
					index["commissioning_scripts"] = items
				}
			}
		}
		if len(index) == 0 {
			c.w.WriteHeader(http.StatusNoContent)
			return nil
		}
		b, err := json.Marshal(map[string]any{"1.0": index})
		if err != nil {
			return err
		}
		if err := add("index.json", b, 0o644); err != nil {
			return err
		}
		if err := tw.Close(); err != nil {
			return err
		}
		writeBinary(c.w, "application/x-tar", buf.Bytes())
		return nil
	})
}

// mdCommissioningScripts is the deprecated CommissioningScriptsHandler: a tar of the
// commissioning scripts under commissioning.d/.
func (r *Region) mdCommissioningScripts(c *mdCall, version string) error {
	return getOnly(c, func() error {
		if _, err := r.requireNode(c); err != nil {
			return err
		}
		if err := checkVersion(version); err != nil {
			return err
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, name := range builtinCommissioning {
			content := scriptContent(name)
			if err := tw.WriteHeader(&tar.Header{Name: path.Join("commissioning.d", name), Size: int64(len(content)),
				Mode: 0o755, ModTime: r.now(), Typeflag: tar.TypeReg}); err != nil {
				return err
			}
			if _, err := tw.Write(content); err != nil {
				return err
			}
		}
		if err := tw.Close(); err != nil {
			return err
		}
		writeBinary(c.w, "application/tar", buf.Bytes())
		return nil
	})
}

// checkOAuth validates an OAuth PLAINTEXT Authorization header as MAAS's API
// authentication does. present is false when the request carries none (anonymous).
func (r *Region) checkOAuth(hr *http.Request) (t *token, present bool, err error) {
	p, ok := oauth.ParseHeader(hr.Header.Get("Authorization"))
	if !ok {
		return nil, false, nil
	}
	problems, badType := p.Problems()
	if len(problems) > 0 {
		if badType {
			return nil, true, badRequest(fmt.Sprintf("'Bad Request: the following problems were found among the auth params: %s'", strings.Join(problems, ", ")))
		}
		return nil, true, unauthorized("Forbidden")
	}
	if p["oauth_signature_method"] != "PLAINTEXT" {
		return nil, true, unauthorized(fmt.Sprintf("Authorization Error: 'Unsupported signature method: %s'", p["oauth_signature_method"]))
	}
	r.mu.RLock()
	t = r.tokens[p["oauth_token"]]
	var consumerKnown bool
	for _, tt := range r.tokens {
		if tt.ConsumerKey == p["oauth_consumer_key"] {
			consumerKnown = true
			break
		}
	}
	r.mu.RUnlock()
	switch {
	case !consumerKnown:
		return nil, true, unauthorized("Authorization Error: Invalid API key.")
	case t == nil || t.ConsumerKey != p["oauth_consumer_key"]:
		return nil, true, unauthorized(fmt.Sprintf("Authorization Error: 'Invalid access token: %s'", p["oauth_token"]))
	case !oauth.CheckPLAINTEXT(p["oauth_signature"], "", t.Secret):
		return nil, true, unauthorized("Authorization Error: 'Invalid signature.'")
	}
	return t, true, nil
}
