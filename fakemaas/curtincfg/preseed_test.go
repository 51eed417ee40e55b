package curtincfg

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

func parseCloudConfig(t *testing.T, s string) map[string]any {
	t.Helper()
	if !strings.HasPrefix(s, "#cloud-config\n") {
		t.Fatalf("preseed does not start with #cloud-config:\n%s", s)
	}
	var m map[string]any
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("preseed is not YAML: %v\n%s", err, s)
	}
	return m
}

func TestPreseedPurposes(t *testing.T) {
	tests := []struct {
		purpose     Purpose
		mod         func(in *Input)
		metadataURL string
		packages    []any
		powerState  map[string]any // nil: no power_state
	}{
		{PurposeDeploy, nil, "http://10.0.0.2:5248/MAAS/metadata/curtin", []any{"python3-packaging"},
			map[string]any{"delay": "now", "mode": "reboot", "timeout": 1800, "condition": "test ! -e /tmp/block-reboot"}},
		{PurposeEphemeralDeploy, nil, "http://10.0.0.2:5248/MAAS/metadata/", []any{"python3-packaging"}, nil},
		{PurposeCommissioning, nil, "http://10.0.0.2:5248/MAAS/metadata/", []any{"python3-yaml", "python3-oauthlib"},
			map[string]any{"delay": "now", "mode": "poweroff", "timeout": 3600, "condition": "test ! -e /tmp/block-poweroff"}},
		{PurposeCommissioning, func(in *Input) { in.Machine.EnableSSH = true }, "http://10.0.0.2:5248/MAAS/metadata/",
			[]any{"python3-yaml", "python3-oauthlib"}, nil},
		{PurposeTesting, nil, "http://10.0.0.2:5248/MAAS/metadata/", []any{"python3-yaml", "python3-oauthlib"},
			map[string]any{"delay": "now", "mode": "poweroff", "timeout": 3600, "condition": "test ! -e /tmp/block-poweroff"}},
		{PurposeTesting, func(in *Input) { in.Machine.PoweredOnBeforeTesting = true }, "http://10.0.0.2:5248/MAAS/metadata/",
			[]any{"python3-yaml", "python3-oauthlib"},
			map[string]any{"delay": "now", "mode": "reboot", "timeout": 1800, "condition": "test ! -e /tmp/block-reboot"}},
		{PurposeDiskErasing, nil, "http://10.0.0.2:5248/MAAS/metadata/", []any{"python3-yaml", "python3-oauthlib", "nvme-cli"},
			map[string]any{"delay": "now", "mode": "poweroff", "timeout": 604800, "condition": "test ! -e /tmp/block-poweroff"}},
		{PurposeRescue, nil, "http://10.0.0.2:5248/MAAS/metadata/", []any{"python3-yaml", "python3-oauthlib"}, nil},
	}
	for _, tt := range tests {
		t.Run(string(tt.purpose), func(t *testing.T) {
			in := baseInput()
			if tt.mod != nil {
				tt.mod(in)
			}
			s, err := Preseed(in, tt.purpose)
			if err != nil {
				t.Fatal(err)
			}
			m := parseCloudConfig(t, s)
			ds := m["datasource"].(map[string]any)["MAAS"].(map[string]any)
			want := map[string]any{"metadata_url": tt.metadataURL, "consumer_key": in.Credentials.ConsumerKey,
				"token_key": in.Credentials.TokenKey, "token_secret": in.Credentials.TokenSecret}
			if diff := cmp.Diff(want, ds); diff != "" {
				t.Errorf("datasource (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.packages, m["packages"]); diff != "" {
				t.Errorf("packages (-want +got):\n%s", diff)
			}
			if tt.powerState == nil {
				if _, ok := m["power_state"]; ok {
					t.Errorf("power_state present: %v", m["power_state"])
				}
			} else if diff := cmp.Diff(tt.powerState, m["power_state"]); diff != "" {
				t.Errorf("power_state (-want +got):\n%s", diff)
			}
			if got := m["rsyslog"]; !cmp.Equal(got, map[string]any{"remotes": map[string]any{"maas": "10.0.0.2:5247"}}) {
				t.Errorf("rsyslog = %v", got)
			}
			if m["manage_etc_hosts"] != true {
				t.Errorf("manage_etc_hosts = %v", m["manage_etc_hosts"])
			}
		})
	}
}

func TestPreseedSettings(t *testing.T) {
	in := baseInput()
	in.Settings = Settings{HTTPProxyDisabled: true, RemoteSyslog: "syslog.example:514", ArchiveSources: true,
		DisabledPockets: []string{"backports"}, DisabledComponents: []string{"multiverse", "main"}, MainArchive: "http://mirror.example/ubuntu"}
	s, err := Preseed(in, PurposeDeploy)
	if err != nil {
		t.Fatal(err)
	}
	m := parseCloudConfig(t, s)
	if _, ok := m["snap"]; ok {
		t.Error("snap proxy commands without a proxy")
	}
	apt := m["apt"].(map[string]any)
	if _, ok := apt["proxy"]; ok {
		t.Error("apt proxy with the proxy disabled")
	}
	// main cannot be disabled (COMPONENTS_TO_DISABLE); multiverse can.
	wantList := "deb http://mirror.example/ubuntu $RELEASE main restricted universe\n" +
		"deb-src http://mirror.example/ubuntu $RELEASE main restricted universe\n" +
		"deb http://mirror.example/ubuntu $RELEASE-updates main restricted universe\n" +
		"deb-src http://mirror.example/ubuntu $RELEASE-updates main restricted universe\n" +
		"deb http://mirror.example/ubuntu $RELEASE-security main restricted universe\n" +
		"deb-src http://mirror.example/ubuntu $RELEASE-security main restricted universe\n"
	if diff := cmp.Diff(wantList, apt["sources_list"]); diff != "" {
		t.Errorf("sources_list (-want +got):\n%s", diff)
	}
	if got := m["rsyslog"].(map[string]any)["remotes"].(map[string]any)["maas"]; got != "syslog.example:514" {
		t.Errorf("remote syslog = %v", got)
	}

	in = baseInput()
	in.Settings = Settings{HTTPProxy: "http://squid.example:3128/"}
	s, _ = Preseed(in, PurposeDeploy)
	if !strings.Contains(s, `snap set system proxy.http="http://squid.example:3128/" proxy.https="http://squid.example:3128/"`) ||
		!strings.Contains(s, "proxy: http://squid.example:3128/") {
		t.Errorf("external proxy not used:\n%s", s)
	}
	in.Settings.UsePeerProxy = true
	s, _ = Preseed(in, PurposeDeploy)
	if !strings.Contains(s, "proxy: http://10.0.0.2:8000/") {
		t.Errorf("peer proxy does not go through the rack:\n%s", s)
	}
	in.Settings = Settings{RackProxyDisabled: true, RegionHost: "fd00::1", ProxyPort: 8080}
	s, _ = Preseed(in, PurposeDeploy)
	if !strings.Contains(s, "proxy: http://[fd00::1]:8080/") {
		t.Errorf("region proxy not used:\n%s", s)
	}
}

func TestEnlistPreseed(t *testing.T) {
	in := &Input{URLs: URLs{RackIP: "10.0.0.2", RackName: InternalName("10.0.0.0/24", "")}}
	s, err := Preseed(in, PurposeEnlist)
	if err != nil {
		t.Fatal(err)
	}
	m := parseCloudConfig(t, s)
	want := map[string]any{
		"manage_etc_hosts": true,
		"packages":         []any{"python3-yaml", "python3-oauthlib"},
		"datasource":       map[string]any{"MAAS": map[string]any{"metadata_url": "http://10-0-0-0--24.maas-internal:5248/MAAS/metadata/"}},
		"rsyslog":          map[string]any{"remotes": map[string]any{"maas": "10.0.0.2:5247"}},
		"power_state":      map[string]any{"delay": "now", "mode": "poweroff", "timeout": 1800, "condition": "test ! -e /tmp/block-poweroff"},
		"apt": map[string]any{
			"preserve_sources_list": false,
			"proxy":                 "http://10-0-0-0--24.maas-internal:8000/",
			"primary": []any{
				map[string]any{"arches": []any{"amd64", "i386"}, "uri": "http://archive.ubuntu.com/ubuntu"},
				map[string]any{"arches": []any{"default"}, "uri": "http://ports.ubuntu.com/ubuntu-ports"}},
			"security": []any{
				map[string]any{"arches": []any{"amd64", "i386"}, "uri": "http://archive.ubuntu.com/ubuntu"},
				map[string]any{"arches": []any{"default"}, "uri": "http://ports.ubuntu.com/ubuntu-ports"}},
			"sources_list": "deb $PRIMARY $RELEASE main restricted universe multiverse\n# deb-src $PRIMARY $RELEASE main restricted universe multiverse\n" +
				"deb $PRIMARY $RELEASE-updates main restricted universe multiverse\n# deb-src $PRIMARY $RELEASE-updates main restricted universe multiverse\n" +
				"deb $PRIMARY $RELEASE-backports main restricted universe multiverse\n# deb-src $PRIMARY $RELEASE-backports main restricted universe multiverse\n" +
				"deb $SECURITY $RELEASE-security main restricted universe multiverse\n# deb-src $SECURITY $RELEASE-security main restricted universe multiverse\n",
		},
	}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("enlist preseed (-want +got):\n%s", diff)
	}
	if _, err := Preseed(&Input{}, PurposeEnlist); err == nil {
		t.Error("enlist preseed without a rack address accepted")
	}
	if _, err := Preseed(baseInput(), "bogus"); err == nil || !strings.Contains(err.Error(), "purpose") {
		t.Errorf("unknown purpose error = %v", err)
	}
}

func TestPreseedIPv6Rack(t *testing.T) {
	in := baseInput()
	in.URLs.RackIP = "fd00::2"
	s, err := Preseed(in, PurposeDeploy)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"metadata_url: http://[fd00::2]:5248/MAAS/metadata/curtin", "maas: fd00::2:5247", "proxy: http://[fd00::2]:8000/"} {
		if !strings.Contains(s, want) {
			t.Errorf("IPv6 preseed lacks %q:\n%s", want, s)
		}
	}
}

// cloudInit returns the cloud-init command, or skips.
func cloudInit(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("cloud-init")
	if err != nil {
		t.Skip("schema validation: needs cloud-init (Debian package cloud-init)")
	}
	return p
}

// TestPreseedPassesCloudInitSchema runs real cloud-init's schema validation
// (`cloud-init schema --config-file FILE`, Debian's cloud-init 22.4.2) on the preseeds
// and vendor-data configs; a known-bad config proves the validator rejects.
func TestPreseedPassesCloudInitSchema(t *testing.T) {
	ci := cloudInit(t)
	dir := t.TempDir()
	docs := map[string]string{}
	for _, tc := range goldenCases {
		in := tc.input()
		s, err := Preseed(in, PurposeDeploy)
		if err != nil {
			t.Fatal(err)
		}
		docs[tc.name+"-deploy"] = s
	}
	in := baseInput()
	in.Machine.OwnerUsername, in.Machine.OwnerFullName = "ubuntu", "Ubuntu User"
	in.Deployment.Ephemeral = true
	for _, p := range []Purpose{PurposeEphemeralDeploy, PurposeCommissioning, PurposeTesting, PurposeDiskErasing, PurposeRescue} {
		s, err := Preseed(in, p)
		if err != nil {
			t.Fatal(err)
		}
		docs["base-"+string(p)] = s
	}
	for _, p := range []Purpose{PurposeDeploy, PurposeCommissioning} {
		v, err := VendorDataConfig(in, p)
		if err != nil {
			t.Fatal(err)
		}
		docs["vendor-data-"+string(p)] = v
	}
	s, err := Preseed(&Input{URLs: URLs{RackIP: "10.0.0.2"}}, PurposeEnlist)
	if err != nil {
		t.Fatal(err)
	}
	docs["enlist"] = s
	docs["negative-control"] = "#cloud-config\npower_state:\n  mode: bogus\n"

	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	var mu sync.Mutex
	results := map[string]error{}
	outputs := map[string]string{}
	for name, body := range docs {
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out, err := exec.Command(ci, "schema", "--config-file", path).CombinedOutput()
			mu.Lock()
			results[name], outputs[name] = err, string(out)
			mu.Unlock()
		}()
	}
	wg.Wait()
	for name, err := range results {
		if name == "negative-control" {
			if err == nil {
				t.Errorf("cloud-init schema accepted an invalid power_state; the validation does not validate:\n%s", outputs[name])
			}
			continue
		}
		if err != nil || !strings.Contains(outputs[name], "Valid cloud-config") {
			t.Errorf("cloud-init schema rejects %s: %v\n%s\n%s", name, err, outputs[name], docs[name])
		}
	}
}

func TestPreseedDeployEphemeral(t *testing.T) {
	in := baseInput()
	in.Deployment.Ephemeral = true
	got, err := Preseed(in, PurposeDeploy)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Preseed(in, PurposeEphemeralDeploy)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("Preseed(deploy) of an ephemeral deployment is not the ephemeral preseed:\n%s", got)
	}
}
