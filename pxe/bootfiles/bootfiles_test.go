package bootfiles

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/pxe/bootconfig"
	"github.com/maasemu/maasemu/pxe/bootloader"
	"github.com/maasemu/maasemu/pxe/internal/pxetest"
	"github.com/maasemu/maasemu/trace"
)

func TestClean(t *testing.T) {
	cases := []struct {
		in, want string
		reason   string // non-empty: refused, reason contains this
	}{
		{"lpxelinux.0", "lpxelinux.0", ""},
		{"/grub/grub.cfg-52:54:00:12:34:56", "grub/grub.cfg-52:54:00:12:34:56", ""},
		{"//pxelinux.cfg//default", "pxelinux.cfg/default", ""},
		{`\EFI\BOOT\grubx64.efi`, "EFI/BOOT/grubx64.efi", ""},
		{"./ldlinux.c32", "ldlinux.c32", ""},
		{"../../etc/passwd", "", "'..' path segment"},
		{"pxelinux.cfg/../../../etc/shadow", "", "'..' path segment"},
		{`..\..\windows\win.ini`, "", "'..' path segment"},
		{"images/..", "", "'..' path segment"},
		{"C:/Windows/System32", "", "absolute DOS path"},
		{`c:\boot.ini`, "", "absolute DOS path"},
		{"lpxelinux.0\x00.txt", "", "control character U+0000"},
		{"a\nb", "", "control character U+000A"},
		{strings.Repeat("a", 1024), "", "1024 bytes, longer than 255"},
		{"", "", "empty name"},
		{"///", "", "names no file"},
	}
	for _, c := range cases {
		got, err := Clean(c.in)
		if c.reason == "" {
			if err != nil || got != c.want {
				t.Errorf("Clean(%q) = %q, %v; want %q", c.in, got, err, c.want)
			}
			continue
		}
		var re *RefusedError
		if !errors.As(err, &re) || !strings.Contains(re.Reason, c.reason) {
			t.Errorf("Clean(%q) err = %v, want refusal containing %q", c.in, err, c.reason)
		}
	}
}

func newTree(t *testing.T) (*Tree, *pxetest.Region, *trace.Recorder) {
	t.Helper()
	region := pxetest.NewRegion()
	region.Bootloaders["pxe/i386/lpxelinux.0"] = []byte("imported lpxelinux")
	host := bootloader.Host{
		PXELinuxDir: t.TempDir(), SyslinuxBIOS: t.TempDir(), ShimDir: t.TempDir(), GRUBModules: t.TempDir(),
		CacheDir: t.TempDir(),
	}
	if err := os.WriteFile(filepath.Join(host.SyslinuxBIOS, "ldlinux.c32"), []byte("host ldlinux"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := trace.NewRecorder(nil)
	tree := New(Config{Region: region, Bootloader: bootloader.New(region, host, nil), Sink: rec})
	return tree, region, rec
}

var rack = netip.MustParseAddr("198.18.0.2")

func read(t *testing.T, f File) string {
	t.Helper()
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if f.Size != int64(len(b)) && f.Kind != KindEmpty {
		t.Errorf("%s: Size %d, read %d", f.Name, f.Size, len(b))
	}
	return string(b)
}

func TestOpenConfigs(t *testing.T) {
	tree, region, rec := newTree(t)
	ctx := context.Background()
	p := region.Machine(pxetest.MAC)
	p.FSHost = rack.String()

	cases := []struct {
		name  string
		proto bootconfig.Protocol
		want  func() string
	}{
		{"pxelinux.cfg/01-52-54-00-12-34-56", bootconfig.TFTP, func() string {
			c, _ := bootconfig.Render(bootconfig.PXELinux, p, bootconfig.TFTP, bootconfig.Options{})
			return string(c.Data)
		}},
		{"/grub/grub.cfg-52:54:00:12:34:56", bootconfig.TFTP, func() string {
			c, _ := bootconfig.Render(bootconfig.GRUB, p, bootconfig.TFTP, bootconfig.Options{})
			return string(c.Data)
		}},
		{"/grub/grub.cfg-52:54:00:12:34:56", bootconfig.HTTP, func() string {
			c, _ := bootconfig.Render(bootconfig.GRUB, p, bootconfig.HTTP, bootconfig.Options{})
			return string(c.Data)
		}},
		{"ipxe.cfg-52:54:00:12:34:56", bootconfig.HTTP, func() string {
			c, _ := bootconfig.Render(bootconfig.IPXE, p, bootconfig.HTTP, bootconfig.Options{})
			return string(c.Data)
		}},
		{"grub/grub.cfg", bootconfig.TFTP, func() string { return bootconfig.GRUBPreloader }},
		{"ipxe.cfg", bootconfig.HTTP, func() string { return bootconfig.IPXEPreloader }},
	}
	for _, c := range cases {
		f, err := tree.Open(ctx, Request{Name: c.name, Protocol: c.proto, LocalIP: rack, RemoteIP: netip.MustParseAddr("198.18.0.100")})
		if err != nil {
			t.Fatalf("Open(%s): %v", c.name, err)
		}
		if diff := cmp.Diff(c.want(), read(t, f)); diff != "" {
			t.Errorf("Open(%s) over %s (-want +got):\n%s", c.name, c.proto, diff)
		}
	}
	// The region saw what the file names said, plus the rack's and the client's addresses.
	want := fakemaas.BootRequest{MAC: pxetest.MAC, Subarch: "generic", Bootloader: "pxe", LocalIP: "198.18.0.2", RemoteIP: "198.18.0.100"}
	if diff := cmp.Diff(want, region.Requests[0]); diff != "" {
		t.Errorf("BootRequest (-want +got):\n%s", diff)
	}
	if region.Requests[1].Bootloader != "uefi" || region.Requests[3].Bootloader != "ipxe" {
		t.Errorf("bootloaders: %+v", region.Requests)
	}
	var configs []trace.Event
	for _, e := range rec.Events() {
		if e.Kind == trace.KindBootConfig {
			configs = append(configs, e)
		}
	}
	if len(configs) != 4 {
		t.Fatalf("%d boot.config events, want 4", len(configs))
	}
	e := configs[0]
	if e.Source != trace.SourceTFTP || e.MAC != pxetest.MAC || e.Machine != "xyz8kp" ||
		e.Attrs["purpose"] != "xinstall" || e.Attrs["file"] != "pxelinux.cfg/01-52-54-00-12-34-56" ||
		e.Attrs["bootloader"] != "pxe" || e.Attrs["kernel"] != p.Kernel || e.Attrs["initrd"] != p.Initrd {
		t.Errorf("boot.config event: %+v", e)
	}
	if configs[2].Source != trace.SourceHTTP {
		t.Errorf("config over HTTP has source %q", configs[2].Source)
	}
}

func TestOpenFiles(t *testing.T) {
	tree, region, _ := newTree(t)
	ctx := context.Background()
	p := region.Machine(pxetest.MAC)
	kernelHash := p.Kernel[:7]
	cases := []struct {
		name string
		kind string
		want string
	}{
		{"lpxelinux.0", KindBootloader, "imported lpxelinux"},   // region's bootloader product
		{"ldlinux.c32", KindBootloader, "host ldlinux"},         // host package fallback
		{"ppc64el/../ldlinux.c32", "", ""},                      // refused below
		{p.Kernel, KindImage, "kernel image bytes"},             // relative kernel path (U-Boot templates)
		{"images/" + p.Kernel, KindImage, "kernel image bytes"}, // agent's .*/images/(.*) rule
		{kernelHash, KindImage, "kernel image bytes"},           // hash alone
		{"grub/x86_64-efi/command.lst", KindEmpty, ""},          // tftp.py: empty, not an error
		{"grub/x86_64-efi/fs.lst", KindEmpty, ""},
	}
	for _, c := range cases {
		f, err := tree.Open(ctx, Request{Name: c.name, Protocol: bootconfig.TFTP, LocalIP: rack})
		if c.kind == "" {
			var re *RefusedError
			if !errors.As(err, &re) {
				t.Errorf("Open(%s) err = %v, want refusal", c.name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Open(%s): %v", c.name, err)
		}
		if f.Kind != c.kind {
			t.Errorf("Open(%s) kind %s, want %s", c.name, f.Kind, c.kind)
		}
		if got := read(t, f); got != c.want {
			t.Errorf("Open(%s) = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestOpenNotFound(t *testing.T) {
	tree, _, rec := newTree(t)
	ctx := context.Background()
	for _, name := range []string{
		"pxelinux.cfg/01-52-54-00-aa-bb-cc",                 // unknown MAC, no arch: BootConfigNoResponse
		"pxelinux.cfg/4c4c4544-0037-3410-8058-b9c04f4e3232", // unknown UUID
		"pxelinux.cfg/C612000A",                             // pxelinux's hex-IP probe
		"grub/x86_64-efi/normal.mod",                        // modules are built in
		"etc/passwd",
		"/etc/passwd", // absolute paths are rooted at the tree, never at the host's /
		"deadbeef00/ubuntu/amd64/ga-24.04/noble/stable/boot-kernel",
		"bootaa64.efi", // no arm64 bootloader imported, none on the host
	} {
		_, err := tree.Open(ctx, Request{Name: name, Protocol: bootconfig.TFTP, LocalIP: rack})
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("Open(%s) err = %v, want ErrNotFound", name, err)
		}
	}
	for _, e := range rec.Events() {
		if e.Kind == trace.KindBootConfig {
			t.Errorf("config rendered for an unknown machine: %+v", e)
		}
	}
}

func TestOpenEnlist(t *testing.T) {
	tree, region, _ := newTree(t)
	enlist := region.Machine(pxetest.MAC)
	enlist.Purpose, enlist.Hostname, enlist.SystemID = fakemaas.PurposeEnlist, "maas-enlist", ""
	region.Enlist = &enlist
	f, err := tree.Open(context.Background(), Request{Name: "pxelinux.cfg/default-amd64", Protocol: bootconfig.TFTP, LocalIP: rack})
	if err != nil {
		t.Fatal(err)
	}
	got := read(t, f)
	if !strings.Contains(got, "KERNEL ifcpu64.c32") || !strings.Contains(got, "ip=::::maas-enlist:BOOTIF:dhcp") {
		t.Errorf("enlist config:\n%s", got)
	}
	if r := region.Requests[0]; r.Arch != "amd64" || r.MAC != "" {
		t.Errorf("request %+v", r)
	}
}

func TestOpenMissingImage(t *testing.T) {
	tree, region, rec := newTree(t)
	p := region.Machine(pxetest.MAC)
	// What the region sends when it has no image (tftp.py get_boot_image).
	p.Kernel, p.Initrd, p.XInstallPath, p.Label, p.KernelLabel = "", "", "", "no-such-image", "no-such-image"
	p.OSystem, p.Release, p.KernelOSystem, p.KernelRelease = "custom", "debian-12", "ubuntu", "jammy"
	region.SetMachine(pxetest.MAC, p)
	f, err := tree.Open(context.Background(), Request{Name: "pxelinux.cfg/01-52-54-00-12-34-56", Protocol: bootconfig.TFTP, LocalIP: rack})
	if err != nil {
		t.Fatal(err)
	}
	got := read(t, f)
	// MAAS still renders the config, with the default file names.
	if !strings.Contains(got, "KERNEL http://198.18.0.2:5248/images/boot-kernel\n") ||
		!strings.Contains(got, "root=squash:http://198.18.0.2:5248/images/squashfs ") {
		t.Errorf("missing-image config:\n%s", got)
	}
	var msgs []string
	for _, e := range rec.Events() {
		if e.Kind == trace.KindBootImageMissing {
			msgs = append(msgs, e.Message+" "+e.Attrs["image"].(string))
		}
	}
	want := []string{
		"Missing kernel image ubuntu/amd64/ga-24.04/jammy. ubuntu/amd64/ga-24.04/jammy",
		"Missing boot image custom/amd64/ga-24.04/debian-12. custom/amd64/ga-24.04/debian-12",
	}
	if diff := cmp.Diff(want, msgs); diff != "" {
		t.Errorf("boot.image_missing events (-want +got):\n%s", diff)
	}
}

func TestOpenImagePath(t *testing.T) {
	tree, region, _ := newTree(t)
	region.Bootloaders["uefi/amd64/bootx64.efi"] = []byte("shim")
	region.Bootloaders["uefi/amd64/grubx64.efi"] = []byte("grub")
	ctx := context.Background()
	p := region.Machine(pxetest.MAC)
	cases := []struct{ name, kind, want string }{
		{p.Kernel, KindImage, "kernel image bytes"},
		{"bootx64.efi", KindBootloader, "shim"},                       // DHCP's http://<rack>:5248/images/bootx64.efi
		{"grubx64.efi", KindBootloader, "grub"},                       // shim loads it from the same directory
		{"ubuntu/amd64/whatever/bootx64.efi", KindBootloader, "shim"}, // .*/bootx64.efi
	}
	for _, c := range cases {
		f, err := tree.OpenImage(ctx, Request{Name: c.name, Protocol: bootconfig.HTTP, LocalIP: rack})
		if err != nil {
			t.Fatalf("OpenImage(%s): %v", c.name, err)
		}
		if got := read(t, f); f.Kind != c.kind || got != c.want {
			t.Errorf("OpenImage(%s) = %s %q, want %s %q", c.name, f.Kind, got, c.kind, c.want)
		}
	}
	if _, err := tree.OpenImage(ctx, Request{Name: "pxelinux.cfg/default", LocalIP: rack}); !errors.Is(err, ErrNotFound) {
		t.Errorf("configs are not under /images/: err = %v", err)
	}
}
