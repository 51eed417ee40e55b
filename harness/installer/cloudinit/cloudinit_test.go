package cloudinit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"

	"github.com/maasemu/maasemu/harness/installer/oauth"
)

func TestParseCmdline(t *testing.T) {
	raw := "nomodeset root=squash:http://10.0.0.2:5248/images/abc/ubuntu/amd64/ga-24.04/noble/stable/squashfs ip=::::node1:BOOTIF:dhcp ip6=off cc:\\{'datasource_list': ['MAAS']\\}end_cc cloud-config-url=http://10.0.0.2:5248/MAAS/metadata/latest/by-id/abc/?op=get_preseed ro overlayroot=tmpfs overlayroot_cfgdisk=disabled log_host=10.0.0.2 log_port=5247 --- console=ttyS0 BOOTIF=01-52-54-00-AB-CD-EF"
	got, err := ParseCmdline(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := Cmdline{
		BootIF: "01-52-54-00-AB-CD-EF", BootMAC: "52:54:00:ab:cd:ef", IP: "::::node1:BOOTIF:dhcp",
		CloudConfigURL: "http://10.0.0.2:5248/MAAS/metadata/latest/by-id/abc/?op=get_preseed",
		CC:             map[string]any{"datasource_list": []any{"MAAS"}}, LogHost: "10.0.0.2", LogPort: "5247",
		Extra: []string{"console=ttyS0", "BOOTIF=01-52-54-00-AB-CD-EF"}, RootSpec: "squash:http://10.0.0.2:5248/images/abc/ubuntu/amd64/ga-24.04/noble/stable/squashfs",
	}
	if diff := cmp.Diff(want, got, cmp.FilterPath(func(p cmp.Path) bool {
		return p.String() == "Raw" || p.String() == "Tokens"
	}, cmp.Ignore())); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := ParseCmdline("cc: [unclosed end_cc"); err == nil || !strings.Contains(err.Error(), "is not YAML") {
		t.Errorf("bad cc: %v", err)
	}
}

func TestLoadConfigOrder(t *testing.T) {
	root := fstest.MapFS{
		"etc/cloud/cloud.cfg":                                        {Data: []byte("datasource_list: [NoCloud, None]\nsystem_info: {default_user: {name: debian}}\n")},
		"etc/cloud/cloud.cfg.d/90_dpkg.cfg":                          {Data: []byte("datasource_list: [ MAAS ]\n")},
		"etc/cloud/cloud.cfg.d/90_dpkg_maas.cfg":                     {Data: []byte("datasource: {MAAS: {metadata_url: 'http://old/MAAS/metadata/', consumer_key: a, token_key: b, token_secret: c}}\n")},
		"etc/cloud/cloud.cfg.d/95-cloudconfig-maas-cloud-config.cfg": {Data: []byte("#cloud-config\ndatasource:\n  MAAS: {metadata_url: 'http://rack:5248/MAAS/metadata/', token_key: tk}\n")},
		"etc/cloud/cloud.cfg.d/50-curtin-networking.cfg":             {Data: []byte("network: {config: disabled}\n")},
		"etc/cloud/cloud.cfg.d/README":                               {Data: []byte("not a cfg")},
	}
	cfg, files, err := LoadConfig(root)
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{"/etc/cloud/cloud.cfg", "/etc/cloud/cloud.cfg.d/50-curtin-networking.cfg", "/etc/cloud/cloud.cfg.d/90_dpkg.cfg", "/etc/cloud/cloud.cfg.d/90_dpkg_maas.cfg", "/etc/cloud/cloud.cfg.d/95-cloudconfig-maas-cloud-config.cfg"}
	if diff := cmp.Diff(wantFiles, files); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	ds, err := MAASDatasource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := Datasource{MetadataURL: "http://rack:5248/MAAS/metadata/", Creds: oauth.Credentials{ConsumerKey: "a", TokenKey: "tk", TokenSecret: "c"}}
	if diff := cmp.Diff(want, ds); diff != "" {
		t.Errorf("datasource (-want +got): later files win key by key\n%s", diff)
	}
	if _, err := MAASDatasource(map[string]any{"datasource_list": []any{"NoCloud"}}); err == nil || !strings.Contains(err.Error(), "does not include MAAS") {
		t.Errorf("datasource_list without MAAS: %v", err)
	}
	if _, err := MAASDatasource(map[string]any{}); err == nil || !strings.Contains(err.Error(), "metadata_url") {
		t.Errorf("no datasource: %v", err)
	}
	bad := fstest.MapFS{"etc/cloud/cloud.cfg.d/99.cfg": {Data: []byte("a: [")}}
	if _, _, err := LoadConfig(bad); err == nil || !strings.Contains(err.Error(), "/etc/cloud/cloud.cfg.d/99.cfg: invalid YAML") {
		t.Errorf("invalid YAML: %v", err)
	}
}

func TestReadMetadata(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/MAAS/metadata/2012-03-01/meta-data/instance-id":
			w.Write([]byte("abc\n"))
		case "/MAAS/metadata/2012-03-01/meta-data/local-hostname":
			w.Write([]byte("n1.maas"))
		case "/MAAS/metadata/2012-03-01/meta-data/public-keys":
			w.Write([]byte("ssh-ed25519 AAA one\n\nssh-rsa BBB two\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c := oauth.NewClient(srv.Client(), oauth.Credentials{TokenKey: "tk"})
	md, err := ReadMetadata(context.Background(), c, srv.URL+"/MAAS/metadata/")
	if err != nil {
		t.Fatal(err)
	}
	want := MetaData{InstanceID: "abc", LocalHostname: "n1.maas", PublicKeys: []string{"ssh-ed25519 AAA one", "ssh-rsa BBB two"}}
	if diff := cmp.Diff(want, md); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	_, err = ReadMetadata(context.Background(), c, srv.URL+"/elsewhere/")
	if err == nil || !strings.Contains(err.Error(), "MAASSeedDirMalformed: Missing required meta-data/instance-id") {
		t.Errorf("missing instance-id: %v", err)
	}
}
