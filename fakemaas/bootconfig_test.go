package fakemaas_test

import (
	"context"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"

	"github.com/canonical/gomaasclient/entity"
	"github.com/google/go-cmp/cmp"

	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/fakemaas/regiontest"
	"github.com/maasemu/maasemu/trace"
)

func TestBootConfig(t *testing.T) {
	env := regiontest.Start(t)
	stream := env.ImportDefaultStream(t)
	c := env.Client
	ctx := context.Background()
	newMachine := func(host, mac string) string {
		m, err := c.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: host, MACAddresses: []string{mac}}, map[string]any{"commission": "false"})
		if err != nil {
			t.Fatal(err)
		}
		// A disk, so that deployments are to disk (a diskless machine is deployed to memory).
		if _, err := c.BlockDevices.Create(m.SystemID, &entity.BlockDeviceParams{Name: "sda", Model: "QEMU HARDDISK",
			Serial: "QM-" + host, Size: 20 << 30, BlockSize: 512}); err != nil {
			t.Fatal(err)
		}
		if res := call(t, env, env.APIKey, "POST", "/MAAS/api/2.0/machines/"+m.SystemID+"/?op=set_storage_layout",
			url.Values{"storage_layout": {"flat"}}, false); res.Status != 200 {
			t.Fatalf("set_storage_layout: %+v", res)
		}
		return m.SystemID
	}
	// Hashes of the imported noble files.
	files := stream.Products[0].Files
	h := func(ftype string) string { return sha(files[ftype])[:7] }
	noble := func(ftype, name string) string {
		return h(ftype) + "/ubuntu/amd64/ga-24.04/noble/stable/" + name
	}

	readySID := newMachine("ready", "52:54:00:00:01:01")
	ubuntuSID := newMachine("ubu", "52:54:00:00:01:02")
	if _, err := c.Machines.Allocate(&entity.MachineAllocateParams{SystemID: ubuntuSID}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Machine.Deploy(ubuntuSID, &entity.MachineDeployParams{DistroSeries: "ubuntu/noble"}); err != nil {
		t.Fatal(err)
	}
	if _, err := regiontest.UploadCustomImage(c, "rocky9", "amd64/generic", "tgz", "rhel/9", []byte("rocky tarball")); err != nil {
		t.Fatal(err)
	}
	customSID := newMachine("cust", "52:54:00:00:01:03")
	if _, err := c.Machine.Deploy(customSID, &entity.MachineDeployParams{DistroSeries: "custom/rocky9"}); err != nil {
		t.Fatal(err)
	}
	if _, err := regiontest.UploadCustomImage(c, "myubuntu", "amd64/generic", "ddgz", "ubuntu/noble", []byte("dd image")); err != nil {
		t.Fatal(err)
	}
	custUbuSID := newMachine("custubu", "52:54:00:00:01:04")
	if _, err := c.Machine.Deploy(custUbuSID, &entity.MachineDeployParams{DistroSeries: "myubuntu"}); err != nil {
		t.Fatal(err)
	}

	base := fakemaas.KernelParams{Arch: "amd64", Subarch: "ga-24.04", Domain: "maas", OSystem: "ubuntu", Release: "noble",
		KernelOSystem: "ubuntu", KernelRelease: "noble", Label: "stable", KernelLabel: "stable",
		Kernel: noble("boot-kernel", "boot-kernel"), Initrd: noble("boot-initrd", "boot-initrd"), XInstallPath: noble("squashfs", "squashfs"),
		FSHost: "198.18.0.2", LogHost: "198.18.0.2", LogPort: 5247, HTTPBoot: true}
	with := func(f func(*fakemaas.KernelParams)) fakemaas.KernelParams { k := base; f(&k); return k }
	preseed := func(sid string) string {
		return "http://198.18.0.2:5248/MAAS/metadata/latest/by-id/" + sid + "/?op=get_preseed"
	}
	cases := []struct {
		name string
		req  fakemaas.BootRequest
		want fakemaas.KernelParams
		err  error
	}{
		{"unknown MAC, no arch", fakemaas.BootRequest{MAC: "52:54:00:ff:ff:ff", LocalIP: "198.18.0.2"}, fakemaas.KernelParams{}, fakemaas.ErrNoBootConfig},
		{"unknown machine on default-amd64", fakemaas.BootRequest{Arch: "amd64", Subarch: "generic", LocalIP: "198.18.0.2"}, with(func(k *fakemaas.KernelParams) {
			k.Purpose, k.Hostname, k.Domain = fakemaas.PurposeCommissioning, "maas-enlist", "local"
			k.PreseedURL = "http://198.18.0.2:5248/MAAS/metadata/latest/enlist-preseed/?op=get_enlist_preseed"
		}), nil},
		{"Ready machine: poweroff via commissioning", fakemaas.BootRequest{MAC: "52:54:00:00:01:01", LocalIP: "198.18.0.2", Bootloader: "pxe"}, with(func(k *fakemaas.KernelParams) {
			k.Purpose, k.SystemID, k.Hostname, k.PreseedURL = fakemaas.PurposeCommissioning, readySID, "ready", preseed(readySID)
		}), nil},
		{"Deploying ubuntu: xinstall of noble", fakemaas.BootRequest{MAC: "52:54:00:00:01:02", LocalIP: "198.18.0.2"}, with(func(k *fakemaas.KernelParams) {
			k.Purpose, k.SystemID, k.Hostname, k.PreseedURL = fakemaas.PurposeXInstall, ubuntuSID, "ubu", preseed(ubuntuSID)
		}), nil},
		{"Deploying custom on rhel base: commissioning ephemeral", fakemaas.BootRequest{MAC: "52:54:00:00:01:03", LocalIP: "198.18.0.2"}, with(func(k *fakemaas.KernelParams) {
			k.Purpose, k.SystemID, k.Hostname, k.PreseedURL = fakemaas.PurposeXInstall, customSID, "cust", preseed(customSID)
		}), nil},
		{"Deploying custom on ubuntu base: the base's ephemeral", fakemaas.BootRequest{MAC: "52:54:00:00:01:04", LocalIP: "198.18.0.2"}, with(func(k *fakemaas.KernelParams) {
			k.Purpose, k.SystemID, k.Hostname, k.PreseedURL = fakemaas.PurposeXInstall, custUbuSID, "custubu", preseed(custUbuSID)
		}), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := env.Region.BootConfig(ctx, tc.req)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("KernelParams (-want +got):\n%s", diff)
			}
		})
	}

	// A custom image on a rhel base boots the commissioning ephemeral; with no image for the
	// commissioning series the machine fails with MAAS's message.
	if err := env.Region.SetConfig("commissioning_distro_series", "jammy"); err != nil {
		t.Fatal(err)
	}
	missSID := newMachine("miss", "52:54:00:00:01:05")
	if _, err := c.Machine.Deploy(missSID, &entity.MachineDeployParams{DistroSeries: "rocky9"}); err != nil {
		t.Fatal(err)
	}
	kp, err := env.Region.BootConfig(ctx, fakemaas.BootRequest{MAC: "52:54:00:00:01:05", LocalIP: "198.18.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	if kp.Label != "no-such-image" || kp.KernelLabel != "no-such-image" || kp.OSystem != "ubuntu" || kp.Release != "jammy" {
		t.Errorf("missing image params = %+v", kp)
	}
	m, _ := c.Machine.Get(missSID)
	if m.StatusName != "Failed deployment" {
		t.Errorf("status = %q, want Failed deployment", m.StatusName)
	}
	var missing []string
	for _, e := range env.Events.Events() {
		if e.Kind == trace.KindBootImageMissing && e.Machine == missSID {
			missing = append(missing, e.Message)
		}
	}
	want := []string{"Missing kernel image ubuntu/amd64/generic/jammy.", "Missing boot image ubuntu/amd64/generic/jammy."}
	if diff := cmp.Diff(want, missing); diff != "" {
		t.Errorf("missing-image events (-want +got):\n%s", diff)
	}
	ev, _ := c.Events.Get(&entity.EventParams{ID: missSID, Level: "ERROR"})
	if ev.Count == 0 || !strings.Contains(ev.Events[0].Description, "Missing boot image ubuntu/amd64/generic/jammy.") {
		t.Errorf("error events = %+v", ev.Events)
	}

	// A Deployed machine boots locally.
	dm, err := c.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: "dep", MACAddresses: []string{"52:54:00:00:01:06"}}, map[string]any{"deployed": "true"})
	if err != nil {
		t.Fatal(err)
	}
	kp, _ = env.Region.BootConfig(ctx, fakemaas.BootRequest{MAC: "52:54:00:00:01:06", LocalIP: "198.18.0.2"})
	if kp.Purpose != fakemaas.PurposeLocal || kp.Kernel != "" || kp.Label != "local" || kp.SystemID != dm.SystemID {
		t.Errorf("deployed machine params = %+v", kp)
	}
}

func TestOpenImageAndBootloader(t *testing.T) {
	env := regiontest.Start(t)
	ctx := context.Background()
	if _, err := env.Region.OpenBootloader(ctx, "pxe", "i386", "lpxelinux.0"); !errors.Is(err, fakemaas.ErrImageNotFound) {
		t.Errorf("bootloader before import: %v", err)
	}
	stream := env.ImportDefaultStream(t)
	for _, tc := range []struct{ typ, arch, name string }{{"pxe", "i386", "lpxelinux.0"}, {"pxe", "i386", "ldlinux.c32"}, {"uefi", "amd64", "bootx64.efi"}, {"uefi", "amd64", "grubx64.efi"}} {
		f, err := env.Region.OpenBootloader(ctx, tc.typ, tc.arch, tc.name)
		if err != nil {
			t.Errorf("OpenBootloader(%s): %v", tc.name, err)
			continue
		}
		b, _ := io.ReadAll(f)
		f.Close()
		var want []byte
		for _, bl := range stream.Bootloaders {
			if bl.Type == tc.typ {
				want = bl.Files[tc.name]
			}
		}
		if string(b) != string(want) || f.Size != int64(len(want)) {
			t.Errorf("%s: %d bytes, want %d", tc.name, len(b), len(want))
		}
	}
	for _, bad := range []struct{ typ, arch, name string }{{"pxe", "i386", "../../maas.db"}, {"pxe", "i386", "nosuch.c32"}, {"uefi", "arm64", "bootaa64.efi"}, {"../pxe", "i386", "lpxelinux.0"}} {
		if _, err := env.Region.OpenBootloader(ctx, bad.typ, bad.arch, bad.name); !errors.Is(err, fakemaas.ErrImageNotFound) {
			t.Errorf("OpenBootloader(%v) = %v, want ErrImageNotFound", bad, err)
		}
	}
	kernel := stream.Products[0].Files["boot-kernel"]
	f, err := env.Region.OpenImage(ctx, sha(kernel)[:7])
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != string(kernel) || f.SHA256 != sha(kernel) {
		t.Errorf("OpenImage content mismatch")
	}
	// An incomplete upload is never served.
	raw := call(t, env, env.APIKey, "POST", "/MAAS/api/2.0/boot-resources/", url.Values{"name": {"half"}, "architecture": {"amd64/generic"},
		"sha256": {sha([]byte("abc"))}, "size": {"3"}}, true)
	if raw.Status != 201 {
		t.Fatal(raw)
	}
	if _, err := env.Region.OpenImage(ctx, sha([]byte("abc"))[:7]); !errors.Is(err, fakemaas.ErrImageNotFound) {
		t.Errorf("OpenImage(incomplete) = %v", err)
	}
	// Importing again downloads nothing and changes nothing.
	res, err := env.Region.Import(ctx, stream.Dir, nil)
	if err != nil || res.Downloaded != 0 || res.AlreadyHave == 0 {
		t.Errorf("second import = %+v, %v", res, err)
	}
	// A signed index is read (signature not verified).
	signed := regiontest.DefaultStream(t.TempDir())
	signed.Signed = true
	if err := signed.Write(); err != nil {
		t.Fatal(err)
	}
	res, err = env.Region.Import(ctx, signed.Dir, nil)
	if err != nil || !res.Signed || len(res.Products) != 3 {
		t.Errorf("signed import = %+v, %v", res, err)
	}
}

// TestImportOp: op=import reads the configured boot sources and their selections.
func TestImportOp(t *testing.T) {
	env := regiontest.Start(t)
	stream := regiontest.DefaultStream(t.TempDir())
	if err := stream.Write(); err != nil {
		t.Fatal(err)
	}
	admin := env.APIKey
	// Replace the default images.maas.io source (no network here) with the local tree.
	if r := call(t, env, admin, "DELETE", "/MAAS/api/2.0/boot-sources/1/", nil, false); r.Status != 204 {
		t.Fatalf("delete default source: %+v", r)
	}
	r := call(t, env, admin, "POST", "/MAAS/api/2.0/boot-sources/", url.Values{"url": {"file://" + stream.Dir}, "skip_keyring_verification": {"true"}}, false)
	if r.Status != 201 {
		t.Fatalf("create source: %+v", r)
	}
	if r := call(t, env, admin, "POST", "/MAAS/api/2.0/boot-sources/", url.Values{"url": {"file://" + stream.Dir}, "skip_keyring_verification": {"true"}}, false); r.Status != 400 {
		t.Errorf("duplicate source: %+v", r)
	}
	if r := call(t, env, admin, "POST", "/MAAS/api/2.0/boot-sources/2/selections/", url.Values{"os": {"ubuntu"}, "release": {"noble"}, "arches": {"amd64"}}, false); r.Status != 201 {
		t.Fatalf("create selection: %+v", r)
	}
	if r := call(t, env, admin, "POST", "/MAAS/api/2.0/boot-resources/?op=import", url.Values{}, false); r.Status != 200 || r.Body != "Import of boot resources started" {
		t.Fatalf("import: %+v", r)
	}
	if err := env.Region.WaitImport(t.Context()); err != nil {
		t.Fatal(err)
	}
	if r := call(t, env, admin, "GET", "/MAAS/api/2.0/boot-resources/?op=is_importing", nil, false); r.Body != "false" {
		t.Errorf("is_importing = %s", r.Body)
	}
	all, err := env.Client.BootResources.Get(&entity.BootResourcesReadParams{})
	if err != nil || len(all) != 3 {
		t.Fatalf("resources after op=import: %+v, %v", all, err)
	}
	// A selection that matches nothing imports only the bootloaders.
	env2 := regiontest.Start(t)
	call(t, env2, env2.APIKey, "DELETE", "/MAAS/api/2.0/boot-sources/1/", nil, false)
	call(t, env2, env2.APIKey, "POST", "/MAAS/api/2.0/boot-sources/", url.Values{"url": {stream.Dir}, "keyring_filename": {"/dev/null"}}, false)
	call(t, env2, env2.APIKey, "POST", "/MAAS/api/2.0/boot-sources/2/selections/", url.Values{"os": {"ubuntu"}, "release": {"jammy"}}, false)
	env2.Region.StartImport()
	env2.Region.WaitImport(t.Context())
	all, _ = env2.Client.BootResources.Get(&entity.BootResourcesReadParams{Type: "synced"})
	var names []string
	for _, r := range all {
		names = append(names, r.Name)
	}
	if diff := cmp.Diff([]string{"grub-efi-signed/uefi", "pxelinux/pxe"}, names); diff != "" {
		t.Errorf("resources with a jammy-only selection (-want +got):\n%s", diff)
	}
}
