// Package cloudinit does what cloud-init's MAAS datasource and reporting do: kernel
// command line parsing, cloud.cfg(.d) merging, OAuth reads of MAAS metadata, and
// cloud-init-shaped webhook events.
package cloudinit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/maasemu/maasemu/harness/installer"
	"github.com/maasemu/maasemu/harness/installer/oauth"
)

// Version is what the probe reports as its cloud-init version.
const Version = "22.4.2-maasemu-probe"

// MDVersion is DataSourceMAAS.MD_VERSION.
const MDVersion = "2012-03-01"

// InstallerPath is the project route, under the curtin metadata_url, that serves the
// curtin configuration to maasemu's ephemeral agent: JSON {"configs": [yaml...],
// "args": [source...]}. The metadata service serves it; this is the one place the path
// is spelled.
const InstallerPath = MDVersion + "/maasemu-installer"

// Cmdline is the parts of /proc/cmdline cloud-init and curtin use.
type Cmdline struct {
	Raw            string
	BootIF         string // "01-52-54-00-12-34-56"
	IP             string // ip= value
	CloudConfigURL string
	// CC is the cloud-config embedded with cc: ... end_cc.
	CC       map[string]any
	LogHost  string
	LogPort  string
	Extra    []string // everything after " --- "
	Tokens   []string
	BootMAC  string // aa:bb:cc:dd:ee:ff from BOOTIF
	RootSpec string // root=
}

// ParseCmdline parses a kernel command line.
func ParseCmdline(s string) (Cmdline, error) {
	c := Cmdline{Raw: strings.TrimSpace(s)}
	main := c.Raw
	if i := strings.Index(c.Raw, " --- "); i >= 0 {
		main = c.Raw[:i]
		c.Extra = strings.Fields(c.Raw[i+5:])
	}
	// cc: ... end_cc may contain spaces; MAAS's UEFI config escapes braces with '\'.
	if i := strings.Index(main, "cc:"); i >= 0 {
		if j := strings.Index(main[i:], "end_cc"); j >= 0 {
			body := strings.TrimSpace(main[i+3 : i+j])
			body = strings.NewReplacer(`\{`, "{", `\}`, "}").Replace(body)
			var m map[string]any
			if err := yaml.Unmarshal([]byte(body), &m); err != nil {
				return c, fmt.Errorf("kernel command line: cc:%s end_cc is not YAML: %w", body, err)
			}
			c.CC = m
			main = main[:i] + main[i+j+len("end_cc"):]
		}
	}
	for _, tok := range append(strings.Fields(main), c.Extra...) {
		c.Tokens = append(c.Tokens, tok)
		k, v, _ := strings.Cut(tok, "=")
		switch k {
		case "BOOTIF":
			c.BootIF = v
			if mac := strings.TrimPrefix(v, "01-"); len(mac) == 17 {
				c.BootMAC = strings.ToLower(strings.NewReplacer("-", ":").Replace(mac))
			}
		case "ip":
			c.IP = v
		case "cloud-config-url", "url":
			if c.CloudConfigURL == "" || k == "cloud-config-url" {
				c.CloudConfigURL = v
			}
		case "log_host":
			c.LogHost = v
		case "log_port":
			c.LogPort = v
		case "root":
			c.RootSpec = v
		}
	}
	return c, nil
}

// Merge merges src over dst recursively (later files win), as cloud-init's default
// merging of cloud.cfg.d does for mappings.
func Merge(dst, src map[string]any) { installer.MergeConfig(dst, src) }

// LoadConfig reads etc/cloud/cloud.cfg and etc/cloud/cloud.cfg.d/*.cfg (sorted) from
// root and merges them. files lists what was read.
func LoadConfig(root fs.FS) (cfg map[string]any, files []string, err error) {
	cfg = map[string]any{}
	read := func(p string) error {
		b, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		var m map[string]any
		if err := yaml.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("/%s: invalid YAML: %w", p, err)
		}
		if m != nil {
			Merge(cfg, normalize(m).(map[string]any))
		}
		files = append(files, "/"+p)
		return nil
	}
	if err := read("etc/cloud/cloud.cfg"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, files, err
	}
	ents, err := fs.ReadDir(root, "etc/cloud/cloud.cfg.d")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, files, err
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".cfg") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if err := read(path.Join("etc/cloud/cloud.cfg.d", n)); err != nil {
			return nil, files, err
		}
	}
	return cfg, files, nil
}

func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case map[any]any:
		out := map[string]any{}
		for k, e := range x {
			out[fmt.Sprint(k)] = normalize(e)
		}
		return out
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
	}
	return v
}

// Datasource is the MAAS datasource configuration.
type Datasource struct {
	MetadataURL string
	Creds       oauth.Credentials
}

// MAASDatasource extracts datasource.MAAS from a merged config; datasource_list, when
// present, must name MAAS.
func MAASDatasource(cfg map[string]any) (Datasource, error) {
	if l, ok := cfg["datasource_list"]; ok {
		found := false
		switch x := l.(type) {
		case []any:
			for _, e := range x {
				if strings.TrimSpace(fmt.Sprint(e)) == "MAAS" {
					found = true
				}
			}
		case string:
			found = strings.Contains(x, "MAAS")
		}
		if !found {
			return Datasource{}, fmt.Errorf("datasource_list %v does not include MAAS", l)
		}
	}
	ds, _ := cfg["datasource"].(map[string]any)
	m, _ := ds["MAAS"].(map[string]any)
	d := Datasource{MetadataURL: str(m["metadata_url"]), Creds: oauth.Credentials{
		ConsumerKey: str(m["consumer_key"]), ConsumerSecret: str(m["consumer_secret"]),
		TokenKey: str(m["token_key"]), TokenSecret: str(m["token_secret"]),
	}}
	if d.MetadataURL == "" {
		return d, errors.New("no datasource.MAAS.metadata_url in the cloud-init configuration")
	}
	return d, nil
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// MetaData is what DataSourceMAAS reads.
type MetaData struct {
	InstanceID    string
	LocalHostname string
	PublicKeys    []string
	VendorData    []byte
	UserData      []byte
	HasUserData   bool
}

// ReadMetadata reads <metadata_url>/2012-03-01/meta-data/{instance-id,local-hostname,
// public-keys,vendor-data} and user-data with OAuth, as DataSourceMAAS.read_maas_seed_url
// does: a 404 on a required item is an error, optional ones may be missing.
func ReadMetadata(ctx context.Context, c *oauth.Client, metadataURL string) (MetaData, error) {
	base := strings.TrimSuffix(metadataURL, "/") + "/" + MDVersion + "/"
	var md MetaData
	get := func(p string, required bool) ([]byte, bool, error) {
		b, err := c.Get(ctx, base+p)
		var he *oauth.HTTPError
		if errors.As(err, &he) && he.Status == http.StatusNotFound && !required {
			return nil, false, nil
		}
		if err != nil {
			if errors.As(err, &he) && he.Status == http.StatusNotFound {
				return nil, false, fmt.Errorf("MAASSeedDirMalformed: Missing required %s: %w", p, err)
			}
			return nil, false, err
		}
		return b, true, nil
	}
	b, _, err := get("meta-data/instance-id", true)
	if err != nil {
		return md, err
	}
	md.InstanceID = strings.TrimSpace(string(b))
	if b, _, err = get("meta-data/local-hostname", true); err != nil {
		return md, err
	}
	md.LocalHostname = strings.TrimSpace(string(b))
	if b, ok, err := get("meta-data/public-keys", false); err != nil {
		return md, err
	} else if ok {
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				md.PublicKeys = append(md.PublicKeys, l)
			}
		}
	}
	if b, ok, err := get("meta-data/vendor-data", false); err != nil {
		return md, err
	} else if ok {
		var v any
		if yerr := yaml.Unmarshal(b, &v); yerr != nil {
			return md, fmt.Errorf("vendor-data from %s is not YAML: %w", base, yerr)
		}
		md.VendorData = b
	}
	if b, ok, err := get("user-data", false); err != nil {
		return md, err
	} else if ok {
		md.UserData, md.HasUserData = b, true
	}
	return md, nil
}

// Stack is a cloud-init ReportEventStack (origin cloudinit, no level, duration on
// finish).
type Stack struct {
	r        installer.Reporter
	now      func() time.Time
	Name     string
	Desc     string
	Message  string // finish description; defaults to Desc
	parent   *Stack
	start    time.Time
	mu       sync.Mutex
	children map[string]string
}

// NewStack returns a stack named name under parent (nil for a top-level stage).
func NewStack(r installer.Reporter, now func() time.Time, parent *Stack, name, desc string) *Stack {
	if now == nil {
		now = time.Now
	}
	s := &Stack{r: r, now: now, Name: name, Desc: desc, parent: parent, children: map[string]string{}}
	if parent != nil {
		s.Name = parent.Name + "/" + name
	}
	return s
}

func ts(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// Start sends the start event.
func (s *Stack) Start(ctx context.Context) {
	s.start = s.now()
	s.r.Report(ctx, installer.Event{Name: s.Name, Description: s.Desc, EventType: installer.EventStart, Origin: "cloudinit", Timestamp: ts(s.start)})
}

// Finish sends the finish event with result (FAIL or WARN from children win over SUCCESS).
func (s *Stack) Finish(ctx context.Context, result string) {
	if result == installer.ResultSuccess {
		s.mu.Lock()
		for _, v := range s.children {
			if v == installer.ResultFail || (v == installer.ResultWarn && result == installer.ResultSuccess) {
				result = v
			}
		}
		s.mu.Unlock()
	}
	if s.parent != nil {
		s.parent.mu.Lock()
		s.parent.children[s.Name] = result
		s.parent.mu.Unlock()
	}
	end := s.now()
	d := float64(int64(end.Sub(s.start).Seconds()*10000+0.5)) / 10000
	msg := s.Message
	if msg == "" {
		msg = s.Desc
	}
	s.r.Report(ctx, installer.Event{Name: s.Name, Description: msg, EventType: installer.EventFinish, Origin: "cloudinit", Timestamp: ts(end), Result: result, Duration: &d})
}

// Reporters builds the webhook reporters of a cloud-init config's `reporting` section.
func Reporters(cfg map[string]any, hc *http.Client, log *slog.Logger) installer.Reporter {
	rep, _ := cfg["reporting"].(map[string]any)
	var out []installer.Reporter
	names := make([]string, 0, len(rep))
	for k := range rep {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, n := range names {
		h, _ := rep[n].(map[string]any)
		if str(h["type"]) != "webhook" || str(h["endpoint"]) == "" {
			continue
		}
		creds := oauth.Credentials{ConsumerKey: str(h["consumer_key"]), ConsumerSecret: str(h["consumer_secret"]), TokenKey: str(h["token_key"]), TokenSecret: str(h["token_secret"])}
		out = append(out, installer.NewWebhookReporter(str(h["endpoint"]), creds, hc, "Cloud-Init/"+Version, log))
	}
	return installer.Reporters(out...)
}
