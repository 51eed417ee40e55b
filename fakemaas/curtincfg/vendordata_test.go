package curtincfg

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

func TestVendorData(t *testing.T) {
	ephemeralNetplan := "network:\n  version: 2\n  ethernets:\n    eth0:\n      addresses:\n      - 10.0.0.10/24\n" +
		"      gateway4: 10.0.0.1\n      match:\n        macaddress: '52:54:00:12:34:56'\n      mtu: 1500\n" +
		"      nameservers:\n        addresses:\n        - 10.0.0.2\n        search:\n        - maas\n      set-name: eth0\n"
	tests := []struct {
		name    string
		purpose Purpose
		mod     func(in *Input)
		want    map[string]any
	}{
		{"deploy", PurposeDeploy, nil, map[string]any{
			"ntp":  map[string]any{"servers": []any{"10.0.0.2"}, "pools": []any{}},
			"snap": map[string]any{"commands": []any{`snap set system proxy.http="http://10.0.0.2:8000/" proxy.https="http://10.0.0.2:8000/"`}},
		}},
		{"owner and external ntp, no proxy", PurposeDeploy, func(in *Input) {
			in.Machine.OwnerUsername, in.Machine.OwnerFullName = "jdoe", " Jane: Doe, Ops é "
			in.Settings = Settings{HTTPProxyDisabled: true, NTPExternalOnly: true, NTPServers: []string{"ntp.ubuntu.com 192.0.2.7, 10.1.1.1", "pool.ntp.org"}}
		}, map[string]any{
			"system_info": map[string]any{"default_user": map[string]any{"name": "jdoe", "gecos": "Jane_ Doe_ Ops ?,,,,"}},
			"ntp":         map[string]any{"servers": []any{"10.1.1.1", "192.0.2.7"}, "pools": []any{"ntp.ubuntu.com", "pool.ntp.org"}},
		}},
		{"commissioning with an OVS bridge", PurposeCommissioning, func(in *Input) {
			in.Settings.HTTPProxyDisabled = true
			in.Machine.Interfaces = append(in.Machine.Interfaces, Interface{Type: IfaceBridge, Name: "br0", Parents: []string{"eth0"}, Params: map[string]any{"bridge_type": "ovs"}})
		}, map[string]any{
			"ntp":      map[string]any{"servers": []any{"10.0.0.2"}, "pools": []any{}},
			"runcmd":   []any{"rm -rf /run/netplan"},
			"packages": []any{"openvswitch-switch"},
		}},
		{"ephemeral deployment", PurposeEphemeralDeploy, func(in *Input) {
			in.Settings.HTTPProxyDisabled = true
			in.Deployment.Ephemeral = true
			in.Deployment.KernelOpts = "console=ttyS0 overlayroot=tmpfs:size=80%"
		}, map[string]any{
			"ntp": map[string]any{"servers": []any{"10.0.0.2"}, "pools": []any{}},
			"write_files": []any{map[string]any{
				"content": ephemeralNetplan, "path": "/etc/netplan/50-maas.yaml", "permissions": "0600"}},
			"runcmd": []any{"rm -rf /run/netplan", "rm -rf /etc/netplan/50-cloud-init.yaml", "netplan apply --debug",
				"mountpoint -q /media/root-rw && mount -o remount,size=80% /media/root-rw || true"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := baseInput()
			if tt.mod != nil {
				tt.mod(in)
			}
			served, err := VendorData(in, tt.purpose)
			if err != nil {
				t.Fatal(err)
			}
			var outer map[string]string
			if err := yaml.Unmarshal([]byte(served), &outer); err != nil {
				t.Fatalf("vendor-data is not YAML: %v\n%s", err, served)
			}
			inner, ok := outer["cloud-init"]
			if !ok || len(outer) != 1 {
				t.Fatalf("vendor-data keys = %v, want only cloud-init", outer)
			}
			got := parseCloudConfig(t, inner)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("vendor-data (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := VendorData(baseInput(), PurposeEnlist); err == nil || !strings.Contains(err.Error(), "purpose") {
		t.Errorf("VendorData(enlist) error = %v", err)
	}
}

func TestVendorDataEmpty(t *testing.T) {
	// With nothing to say MAAS still serves a cloud-config: "#cloud-config\n{}\n".
	in := baseInput()
	in.Settings = Settings{HTTPProxyDisabled: true, NTPExternalOnly: true, NTPServers: []string{" "}}
	got, err := VendorData(in, PurposeDeploy)
	if err != nil {
		t.Fatal(err)
	}
	if want := "cloud-init: '#cloud-config\n\n  {}\n\n  '\n"; got != want {
		t.Errorf("VendorData = %q, want %q", got, want)
	}
}
