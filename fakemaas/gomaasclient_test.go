package fakemaas_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/canonical/gomaasclient/entity"
	"github.com/canonical/gomaasclient/entity/node"
	"github.com/google/go-cmp/cmp"

	"github.com/maasemu/maasemu/fakemaas/regiontest"
)

// TestGomaasclientDeployFlow drives the region with gomaasclient the way
// terraform-provider-maas and the maas CLI do: log in with the admin key, upload a custom
// image in 4 MiB chunks, create a machine, allocate it and deploy the custom image.
func TestGomaasclientDeployFlow(t *testing.T) {
	env := regiontest.Start(t)
	c := env.Client

	v, err := c.Version.Get()
	if err != nil {
		t.Fatalf("version: %v", err)
	}
	if v.Version == "" || len(v.Capabilities) == 0 {
		t.Errorf("version = %+v, want a version and capabilities", v)
	}
	me, err := c.Users.Whoami()
	if err != nil {
		t.Fatalf("whoami: %v", err)
	}
	if me.UserName != "admin" || !me.IsSuperUser {
		t.Errorf("whoami = %+v, want admin superuser", me)
	}

	env.ImportDefaultStream(t)

	// A 9 MiB + 123 byte image: three chunks, the last one short.
	content := make([]byte, 9<<20+123)
	if _, err := rand.Read(content); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	br, err := regiontest.UploadCustomImage(c, "myimage", "amd64/generic", "ddgz", "ubuntu/noble", content)
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	if br.Name != "myimage" || br.Type != "Uploaded" || br.BaseImage != "ubuntu/noble" {
		t.Errorf("resource = %+v", br)
	}
	var file entity.BootResourceSetFile
	for _, s := range br.Sets {
		if !s.Complete || s.Label != "uploaded" {
			t.Errorf("set %+v: want complete, label uploaded", s)
		}
		for _, f := range s.Files {
			file = f
		}
	}
	want := entity.BootResourceSetFile{Filename: "root-dd.gz", Filetype: "root-dd.gz", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(content)), Complete: true}
	if diff := cmp.Diff(want, file); diff != "" {
		t.Errorf("uploaded file (-want +got):\n%s", diff)
	}
	// The stored content is exactly what was sent.
	img, err := env.Region.OpenImage(t.Context(), hex.EncodeToString(sum[:])[:7])
	if err != nil {
		t.Fatalf("OpenImage: %v", err)
	}
	var got bytes.Buffer
	if _, err := got.ReadFrom(img); err != nil {
		t.Fatal(err)
	}
	img.Close()
	if !bytes.Equal(got.Bytes(), content) {
		t.Errorf("stored content differs from the upload")
	}

	m, err := c.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: "node1", PowerType: "test",
		MACAddresses: []string{"52:54:00:12:34:56"}}, map[string]any{"power_parameters_power_id": "vm-1", "commission": "false"})
	if err != nil {
		t.Fatalf("create machine: %v", err)
	}
	if m.StatusName != "Ready" || m.Hostname != "node1" || m.FQDN != "node1.maas" || m.PowerType != "test" {
		t.Errorf("created machine = status %q hostname %q fqdn %q power %q", m.StatusName, m.Hostname, m.FQDN, m.PowerType)
	}
	if len(m.InterfaceSet) != 1 || m.BootInterface.MACAddress != "52:54:00:12:34:56" {
		t.Errorf("interfaces = %+v, boot interface %+v", m.InterfaceSet, m.BootInterface)
	}
	if m.Domain.Name != "maas" || m.Zone.Name != "default" || m.Pool.Name != "default" {
		t.Errorf("domain/zone/pool = %q/%q/%q", m.Domain.Name, m.Zone.Name, m.Pool.Name)
	}
	pp, err := c.Machine.GetPowerParameters(m.SystemID)
	if err != nil || pp["power_id"] != "vm-1" {
		t.Errorf("power parameters = %v, %v", pp, err)
	}

	list, err := c.Machines.Get(&entity.MachinesParams{Hostname: []string{"node1"}})
	if err != nil || len(list) != 1 || list[0].SystemID != m.SystemID {
		t.Fatalf("list by hostname = %v, %v", list, err)
	}

	alloc, err := c.Machines.Allocate(&entity.MachineAllocateParams{SystemID: m.SystemID})
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	if alloc.Status != node.StatusAllocated || alloc.Owner != "admin" {
		t.Errorf("allocated = %d %q owner %q", alloc.Status, alloc.StatusName, alloc.Owner)
	}

	userData := base64.StdEncoding.EncodeToString([]byte("#cloud-config\n"))
	dep, err := c.Machine.Deploy(m.SystemID, &entity.MachineDeployParams{DistroSeries: "myimage", UserData: userData})
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if dep.Status != node.StatusDeploying || dep.StatusName != "Deploying" || dep.OSystem != "custom" || dep.DistroSeries != "myimage" || !dep.Netboot {
		t.Errorf("deployed = status %d %q os %q series %q netboot %v", dep.Status, dep.StatusName, dep.OSystem, dep.DistroSeries, dep.Netboot)
	}
	if diff := cmp.Diff([]string{"on vm-1"}, env.Power.Calls()); diff != "" {
		t.Errorf("power calls (-want +got):\n%s", diff)
	}
	st, err := c.Machine.GetPowerState(m.SystemID)
	if err != nil || st.State != "on" {
		t.Errorf("power state = %+v, %v", st, err)
	}

	ev, err := c.Events.Get(&entity.EventParams{ID: m.SystemID, Level: "DEBUG", Limit: "1000"})
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	var descs []string
	for i := len(ev.Events) - 1; i >= 0; i-- {
		if ev.Events[i].Type == "Node changed status" {
			descs = append(descs, ev.Events[i].Description)
		}
	}
	wantDescs := []string{"From 'New' to 'Ready'", "From 'Ready' to 'Allocated' (to admin)", "From 'Allocated' to 'Deploying'"}
	if diff := cmp.Diff(wantDescs, descs); diff != "" {
		t.Errorf("status events (-want +got):\n%s", diff)
	}

	// Release brings it back to Ready and powers it off.
	rel, err := c.Machine.Release(m.SystemID, &entity.MachineReleaseParams{})
	if err != nil || rel.StatusName != "Ready" || rel.Owner != "" || rel.OSystem != "" {
		t.Errorf("release = %q owner %q os %q, %v", rel.StatusName, rel.Owner, rel.OSystem, err)
	}
	if got := env.Power.State("vm-1"); got != "off" {
		t.Errorf("power after release = %q, want off", got)
	}
}

// TestGomaasclientMisc covers the account, config, boot sources and resources calls
// clients make.
func TestGomaasclientMisc(t *testing.T) {
	env := regiontest.Start(t)
	c := env.Client
	tok, err := c.Account.CreateAuthorisationToken("ci")
	if err != nil || tok.TokenKey == "" || tok.Name != "ci" {
		t.Fatalf("create token = %+v, %v", tok, err)
	}
	c2 := env.NewClient(t, tok.ConsumerKey+":"+tok.TokenKey+":"+tok.TokenSecret)
	if _, err := c2.Users.Whoami(); err != nil {
		t.Fatalf("whoami with new token: %v", err)
	}
	toks, err := c.Account.ListAuthorisationTokens()
	if err != nil || len(toks) != 2 {
		t.Fatalf("list tokens = %v, %v", toks, err)
	}
	if err := c.Account.DeleteAuthorisationToken(tok.TokenKey); err != nil {
		t.Fatalf("delete token: %v", err)
	}
	if _, err := c2.Users.Whoami(); err == nil {
		t.Errorf("whoami with a deleted token succeeded")
	}

	if err := c.MAASServer.Post("kernel_opts", "console=ttyS0"); err != nil {
		t.Fatalf("set_config: %v", err)
	}
	raw, err := c.MAASServer.Get("kernel_opts")
	if err != nil {
		t.Fatalf("get_config: %v", err)
	}
	var val string
	if err := json.Unmarshal(raw, &val); err != nil || val != "console=ttyS0" {
		t.Errorf("kernel_opts = %s (%v)", raw, err)
	}
	if raw, err := c.MAASServer.Get("default_distro_series"); err != nil || string(raw) != `"noble"` {
		t.Errorf("default_distro_series = %s, %v", raw, err)
	}

	srcs, err := c.BootSources.Get()
	if err != nil || len(srcs) != 1 {
		t.Fatalf("boot sources = %+v, %v", srcs, err)
	}
	sels, err := c.BootSourceSelections.Get(srcs[0].ID)
	if err != nil || len(sels) != 1 || sels[0].Release != "noble" {
		t.Errorf("selections = %+v, %v", sels, err)
	}

	env.ImportDefaultStream(t)
	all, err := c.BootResources.Get(&entity.BootResourcesReadParams{})
	if err != nil {
		t.Fatalf("boot resources: %v", err)
	}
	var names []string
	for _, r := range all {
		names = append(names, r.Type+" "+r.Name+" "+r.Architecture)
	}
	wantNames := []string{"Synced grub-efi-signed/uefi amd64/generic", "Synced pxelinux/pxe i386/generic", "Synced ubuntu/noble amd64/ga-24.04"}
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Errorf("boot resources (-want +got):\n%s", diff)
	}
	importing, err := c.BootResources.IsImporting()
	if err != nil || importing {
		t.Errorf("is_importing = %v, %v", importing, err)
	}
	zones, err := c.Zones.Get()
	if err != nil || len(zones) != 1 || zones[0].Name != "default" {
		t.Errorf("zones = %+v, %v", zones, err)
	}
	pools, err := c.ResourcePools.Get()
	if err != nil || len(pools) != 1 {
		t.Errorf("pools = %+v, %v", pools, err)
	}
	doms, err := c.Domains.Get()
	if err != nil || len(doms) != 1 || doms[0].Name != "maas" {
		t.Errorf("domains = %+v, %v", doms, err)
	}
}
