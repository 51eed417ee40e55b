package curtincfg

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

// mergeCurtin merges configuration documents the way curtin's config.merge_config does:
// mappings merge key by key, anything else is replaced by the later document. (The
// installer engineer owns the real merge; this is only for looking at the merged view.)
func mergeCurtin(dst, src map[string]any) {
	for k, v := range src {
		sv, sok := v.(map[string]any)
		dv, dok := dst[k].(map[string]any)
		if sok && dok {
			mergeCurtin(dv, sv)
			continue
		}
		dst[k] = v
	}
}

func mergedView(t *testing.T, c *Curtin) map[string]any {
	t.Helper()
	merged := map[string]any{}
	for _, d := range c.Documents {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(d.YAML), &m); err != nil {
			t.Fatalf("document %s does not parse as YAML: %v\n%s", d.Name, err, d.YAML)
		}
		if len(m) == 0 {
			t.Fatalf("document %s is empty", d.Name)
		}
		mergeCurtin(merged, m)
	}
	return merged
}

// curtinSourceType is curtin's util.sanitize_source for a string source.
func curtinSourceType(src string) (typ, uri string) {
	for _, p := range []string{"tgz", "dd-tgz", "tbz", "dd-tbz", "txz", "dd-txz", "dd-tar", "dd-bz2", "dd-gz", "dd-xz", "dd-raw", "fsimage", "fsimage-layered"} {
		if strings.HasPrefix(src, p+":") {
			return p, strings.TrimPrefix(src, p+":")
		}
	}
	if strings.HasPrefix(src, "squashfs://") {
		return "fsimage", strings.TrimPrefix(src, "squashfs://")
	}
	if strings.HasSuffix(src, "squashfs") || strings.HasSuffix(src, "squash") {
		return "fsimage", src
	}
	return "tgz", src
}

func TestCurtinMergedView(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.input()
			c, err := CurtinConfig(in)
			if err != nil {
				t.Fatal(err)
			}
			m := mergedView(t, c)
			for _, k := range []string{"storage", "partitioning_commands", "network", "network_commands", "reporting", "install", "late_commands", "debconf_selections", "cloudconfig", "kernel-crash-dumps"} {
				if _, ok := m[k]; !ok {
					t.Errorf("merged configuration lacks %s", k)
				}
			}
			if got := m["partitioning_commands"].(map[string]any)["builtin"]; !cmp.Equal(got, []any{"curtin", "block-meta", "custom"}) {
				t.Errorf("partitioning_commands.builtin = %v", got)
			}
			if got := m["network_commands"].(map[string]any)["builtin"]; !cmp.Equal(got, []any{"curtin", "net-meta", "custom"}) {
				t.Errorf("network_commands.builtin = %v", got)
			}
			rep := m["reporting"].(map[string]any)["maas"].(map[string]any)
			if rep["type"] != "webhook" || rep["endpoint"] != "http://10.0.0.2:5248/MAAS/metadata/status/x7kq3p" || rep["token_key"] != in.Credentials.TokenKey {
				t.Errorf("reporting.maas = %v", rep)
			}
			inst := m["install"].(map[string]any)
			if inst["log_file"] != "/tmp/install.log" || inst["error_tarfile"] != "/tmp/curtin-logs.tar" {
				t.Errorf("install = %v", inst)
			}
			// curtin runs a stage's commands in sorted key order: the custom-image checks
			// (98-, 99-) run before MAAS's netboot_off ("maas").
			late := m["late_commands"].(map[string]any)
			keys := make([]string, 0, len(late))
			for k := range late {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for i, k := range keys {
				if k[0] >= '0' && k[0] <= '9' && i > slices.Index(keys, "maas") {
					t.Errorf("late_commands order %v: %s runs after maas (netboot_off)", keys, k)
				}
			}
			if in.Deployment.OSystem == OSCustom {
				if keys[0] != "98-validate-custom-image-has-cloud-init" {
					t.Errorf("late_commands order %v: the cloud-init check does not run first", keys)
				}
				if base, _, _ := strings.Cut(in.Deployment.BaseImage, "/"); base == OSUbuntu {
					if keys[1] != "99-validate-custom-image-has-netplan" {
						t.Errorf("late_commands order %v: no netplan check second for an ubuntu base", keys)
					}
				} else if slices.Contains(keys, "99-validate-custom-image-has-netplan") {
					t.Errorf("late_commands %v: netplan check for a non-ubuntu base", keys)
				}
			}
			if got := late["maas"]; !cmp.Equal(got, []any{"wget", "--no-proxy", "http://10.0.0.2:5248/MAAS/metadata/latest/by-id/x7kq3p/", "--post-data", "op=netboot_off", "-O", "/dev/null"}) {
				t.Errorf("late_commands.maas = %v", got)
			}
			deb := m["debconf_selections"].(map[string]any)
			if deb["grub2"] != "grub2   grub2/update_nvram  boolean false" {
				t.Errorf("debconf grub2 = %q", deb["grub2"])
			}
			for _, pkg := range []string{"cloud-init", "cloud-init-base"} {
				if !strings.Contains(deb["maas"].(string), pkg+"   "+pkg+"/maas-metadata-url  string http://10.0.0.2:5248/MAAS/metadata/\n") {
					t.Errorf("debconf maas lacks the %s metadata url line:\n%s", pkg, deb["maas"])
				}
			}
			// The source must be something curtin's sanitize_source and extract accept.
			typ, uri := curtinSourceType(c.Source)
			switch ft := in.Deployment.Image.Filetype; {
			case ft == "squashfs":
				if c.Source != "cp:///media/root-ro" {
					t.Errorf("squashfs source = %q", c.Source)
				}
			case strings.HasPrefix(ft, "dd"):
				if !strings.HasPrefix(typ, "dd-") || !strings.HasPrefix(uri, "http://10.0.0.2:5248/images/") {
					t.Errorf("disk image source %q parses as %s %s", c.Source, typ, uri)
				}
			default:
				if typ != "tgz" || !strings.HasPrefix(uri, "http://10.0.0.2:5248/images/") {
					t.Errorf("tarball source %q parses as %s %s", c.Source, typ, uri)
				}
			}
		})
	}
}

func TestDocumentOrderAndOmissions(t *testing.T) {
	names := func(c *Curtin) []string {
		var out []string
		for _, d := range c.Documents {
			out = append(out, d.Name)
		}
		return out
	}
	tests := []struct {
		name string
		in   func() *Input
		want []string
	}{
		{"custom ubuntu base: no swap, no kernel", baseInput,
			[]string{"storage", "apt", "reporter", "network", "verbose", "cloudconfig", "kernel-crash-dumps", "main"}},
		{"custom rhel base: no apt either", func() *Input { in := baseInput(); in.Deployment.BaseImage = "rhel/9"; return in },
			[]string{"storage", "reporter", "network", "verbose", "cloudconfig", "kernel-crash-dumps", "main"}},
		{"ubuntu with swap and kernel", func() *Input {
			in := baseInput()
			in.Deployment = Deployment{OSystem: OSUbuntu, Series: "jammy", KernelPackage: "linux-generic", SwapSize: ptr(int64(2 * gib)), Image: Image{Filetype: "squashfs"}}
			return in
		}, []string{"storage", "apt", "reporter", "network", "swap", "kernel", "verbose", "cloudconfig", "kernel-crash-dumps", "main"}},
		{"curtin_verbose off", func() *Input { in := baseInput(); in.Settings.CurtinQuiet = true; return in },
			[]string{"storage", "apt", "reporter", "network", "cloudconfig", "kernel-crash-dumps", "main"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := CurtinConfig(tt.in())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, names(c)); diff != "" {
				t.Errorf("documents (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSource(t *testing.T) {
	tests := []struct {
		osys, series, filetype string
		want                   string
	}{
		{OSCustom, "img", "tgz", "http://10.0.0.2:5248/images/87b8187/custom/amd64/generic/img/uploaded/root.tgz"},
		{OSCustom, "img", "root-tgz", "http://10.0.0.2:5248/images/87b8187/custom/amd64/generic/img/uploaded/root.tgz"},
		{OSCustom, "img", "txz", "http://10.0.0.2:5248/images/87b8187/custom/amd64/generic/img/uploaded/root.txz"},
		{OSCustom, "img", "tbz", "http://10.0.0.2:5248/images/87b8187/custom/amd64/generic/img/uploaded/root.tbz"},
		{OSCustom, "img", "ddtgz", "dd-tgz:http://10.0.0.2:5248/images/87b8187/custom/amd64/generic/img/uploaded/root-dd"},
		{OSCustom, "img", "ddgz", "dd-gz:http://10.0.0.2:5248/images/87b8187/custom/amd64/generic/img/uploaded/root-dd.gz"},
		{OSCustom, "img", "ddxz", "dd-xz:http://10.0.0.2:5248/images/87b8187/custom/amd64/generic/img/uploaded/root-dd.xz"},
		{OSCustom, "img", "ddbz2", "dd-bz2:http://10.0.0.2:5248/images/87b8187/custom/amd64/generic/img/uploaded/root-dd.bz2"},
		{OSCustom, "img", "ddraw", "dd-raw:http://10.0.0.2:5248/images/87b8187/custom/amd64/generic/img/uploaded/root-dd.raw"},
		{OSCustom, "img", "ddtar", "dd-tar:http://10.0.0.2:5248/images/87b8187/custom/amd64/generic/img/uploaded/root-dd.tar"},
		{OSCustom, "img", "ddtxz", "dd-txz:http://10.0.0.2:5248/images/87b8187/custom/amd64/generic/img/uploaded/root-dd.tar.xz"},
		{OSCustom, "img", "ddtbz", "dd-tbz:http://10.0.0.2:5248/images/87b8187/custom/amd64/generic/img/uploaded/root-dd.tar.bz2"},
		{OSCustom, "img", "squashfs", "cp:///media/root-ro"},
		{OSUbuntu, "noble", "squashfs", "cp:///media/root-ro"},
		{OSUbuntu, "precise", "squashfs", "fsimage:http://10.0.0.2:5248/images/87b8187/ubuntu/amd64/generic/precise/stable/squashfs"},
		{OSUbuntu, "jammy", "root-tgz", "http://10.0.0.2:5248/images/87b8187/ubuntu/amd64/generic/jammy/stable/root.tgz"},
		{OSCentOS, "centos70", "root-tgz", "http://10.0.0.2:5248/images/87b8187/centos/amd64/generic/centos70/stable/root.tgz"},
		{OSWindows, "win2022", "ddtgz", "dd-tgz:http://10.0.0.2:5248/images/87b8187/windows/amd64/generic/win2022/stable/root-dd"},
	}
	for _, tt := range tests {
		in := baseInput()
		in.Deployment.OSystem, in.Deployment.Series = tt.osys, tt.series
		in.Deployment.Image.Filetype = tt.filetype
		got, err := in.Source()
		if err != nil {
			t.Errorf("Source(%s %s %s): %v", tt.osys, tt.series, tt.filetype, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Source(%s %s %s) = %q, want %q", tt.osys, tt.series, tt.filetype, got, tt.want)
		}
	}
	in := baseInput()
	in.URLs.RackIP = "fd00::2"
	if got, _ := in.Source(); !strings.HasPrefix(got, "http://[fd00::2]:5248/images/") {
		t.Errorf("IPv6 rack source = %q, want the address in brackets", got)
	}
}

// TestBadInput: each bad input gets an error naming the input and the rule, the deploy
// check wraps it in MAAS's "Failed to render preseed: ..." text, and the input is left
// as it was.
func TestBadInput(t *testing.T) {
	tests := []struct {
		name      string
		mod       func(in *Input)
		field     string
		wantInErr []string
	}{
		{"unknown filetype", func(in *Input) { in.Deployment.Image.Filetype = "iso" },
			"deployment.image.filetype", []string{`"iso"`, "unknown filetype", "ddgz"}},
		{"filetype the OS cannot install", func(in *Input) {
			in.Deployment.OSystem, in.Deployment.Series, in.Deployment.Image.Filetype = OSUbuntu, "noble", "ddgz"
		}, "deployment.image.filetype", []string{"ubuntu cannot install a dd-gz image", "purpose=xinstall"}},
		{"custom image without base image", func(in *Input) { in.Deployment.BaseImage = "" },
			"deployment.base_image", []string{"custom image \"myimage\" has no base image", "<osystem>/<series>"}},
		{"malformed base image", func(in *Input) { in.Deployment.BaseImage = "jammy" },
			"deployment.base_image", []string{"a base image must follow the format: <osystem>/<series>"}},
		{"non-linux base image", func(in *Input) { in.Deployment.BaseImage = "windows/2022" },
			"deployment.base_image", []string{"custom images require a valid non-custom OS type base image"}},
		{"root size larger than the boot disk", func(in *Input) { in.Storage.RootSize = 100 * gib },
			"storage.root_size", []string{"Size is too large. Maximum size is"}},
		{"boot and root do not fit together", func(in *Input) {
			in.Storage.BootSize, in.Storage.RootSize = 3*gib, 7*gib
		}, "storage.root_size", []string{"larger than the available space on the boot disk"}},
		{"disk too small for the ESP", func(in *Input) {
			in.Machine.Firmware = "uefi"
			in.Machine.BlockDevices[0].Size = 516 * mib
		}, "machine.boot_disk", []string{"the layout does not fit the disk", "not enough free space"}},
		{"no room left for root", func(in *Input) {
			in.Machine.Firmware = "uefi"
			in.Machine.BlockDevices[0].Size = 520 * mib
		}, "storage.root_size", []string{"the layout does not fit the disk", "a partition of 0 bytes is left"}},
		{"lv larger than the volume group allows", func(in *Input) { in.Storage = Storage{Layout: "lvm", LVSize: 20 * gib} },
			"storage.lv_size", []string{"Size is too large"}},
		{"no disks", func(in *Input) { in.Machine.BlockDevices = nil },
			"machine.block_devices", []string{"Node doesn't have any storage devices to configure."}},
		{"unknown layout", func(in *Input) { in.Storage.Layout = "bcache" },
			"storage.layout", []string{"must be flat, lvm or custom"}},
		{"machine without interfaces", func(in *Input) { in.Machine.Interfaces = nil },
			"machine.interfaces", []string{"has no boot interface"}},
		{"boot interface that does not exist", func(in *Input) { in.Machine.BootInterface = "eth9" },
			"machine.boot_interface", []string{"names no physical interface"}},
		{"invalid custom storage YAML", func(in *Input) {
			in.Storage = Storage{Layout: "custom", Custom: "storage:\n  version: 1\n  config: [ {id: sda, type: disk\n"}
		}, "storage.custom", []string{"is not valid YAML"}},
		{"custom storage reference to a later item", func(in *Input) {
			in.Storage = Storage{Layout: "custom", Custom: "storage:\n  version: 1\n  config:\n  - {id: p1, type: partition, device: sda, size: 1G}\n  - {id: sda, type: disk, serial: X}\n"}
		}, "storage.custom.config[0].device", []string{"refers to no storage item defined before it"}},
		{"custom storage unknown type", func(in *Input) {
			in.Storage = Storage{Layout: "custom", Custom: "version: 1\nconfig:\n- {id: sda, type: floppy}\n"}
		}, "storage.custom.config[0].type", []string{"curtin's storage types"}},
		{"custom storage without a disk", func(in *Input) {
			in.Storage = Storage{Layout: "custom", Custom: "version: 1\nconfig:\n- {id: m, type: mount, spec: tmpfs, path: /tmp}\n"}
		}, "storage.custom.config", []string{"has no disk item"}},
		{"custom storage bad version", func(in *Input) {
			in.Storage = Storage{Layout: "custom", Custom: "version: 3\nconfig:\n- {id: sda, type: disk, serial: X}\n"}
		}, "storage.custom.version", []string{"must be 1 or 2"}},
		{"static link without an address", func(in *Input) {
			in.Machine.Interfaces[0].Links = []Link{{Mode: LinkStatic, Subnet: "10.0.0.0/24"}}
		}, "machine.interfaces[0].links[0].ip", []string{"a static link needs an address"}},
		{"address outside its subnet", func(in *Input) { in.Machine.Interfaces[0].Links[0].IP = "10.9.9.9" },
			"machine.interfaces[0].links[0].ip", []string{"must be an address in subnet 10.0.0.0/24"}},
		{"link to an unknown subnet", func(in *Input) { in.Machine.Interfaces[0].Links[0].Subnet = "10.1.0.0/24" },
			"machine.interfaces[0].links[0].subnet", []string{"names no subnet"}},
		{"bad MAC", func(in *Input) { in.Machine.Interfaces[0].MAC = "52:54:00:zz:34:56" },
			"machine.interfaces[0].mac", []string{"must be a MAC address"}},
		{"vlan without a vid", func(in *Input) {
			in.Machine.Interfaces = append(in.Machine.Interfaces, Interface{Type: IfaceVLAN, Name: "eth0.0", Parents: []string{"eth0"}})
		}, "machine.interfaces[1].vid", []string{"VLAN id from 1 to 4094"}},
		{"interface parent cycle", func(in *Input) {
			in.Machine.Interfaces = append(in.Machine.Interfaces,
				Interface{Type: IfaceBond, Name: "bond0", MAC: "52:54:00:00:00:01", Parents: []string{"br0"}},
				Interface{Type: IfaceBridge, Name: "br0", MAC: "52:54:00:00:00:02", Parents: []string{"bond0"}})
		}, "machine.interfaces", []string{"cycle"}},
		{"disk without identity", func(in *Input) {
			in.Machine.BlockDevices[0].Serial, in.Machine.BlockDevices[0].IDPath = "", ""
		}, "machine.block_devices[0]", []string{"needs model and serial, or id_path"}},
		{"missing credentials", func(in *Input) { in.Credentials.TokenSecret = "" },
			"credentials", []string{"are all required"}},
		{"unknown osystem", func(in *Input) { in.Deployment.OSystem = "plan9" },
			"deployment.osystem", []string{"must be one of"}},
		{"rack address not an IP", func(in *Input) { in.URLs.RackIP = "rack.example" },
			"urls.rack_ip", []string{"must be the rack IP address"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := baseInput()
			tt.mod(in)
			before := cloneInput(in)
			_, err := CurtinConfig(in)
			if err == nil {
				t.Fatal("CurtinConfig accepted bad input")
			}
			var ie *InputError
			if !errors.As(err, &ie) || !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("error %v (%T) is not an *InputError", err, err)
			}
			if ie.Field != tt.field {
				t.Errorf("error names field %q, want %q (%v)", ie.Field, tt.field, err)
			}
			for _, w := range tt.wantInErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			cerr := CheckDeploy(in)
			var re *RenderError
			if !errors.As(cerr, &re) || !strings.HasPrefix(cerr.Error(), "Failed to render preseed: ") || !errors.Is(cerr, ErrInvalidInput) {
				t.Errorf("CheckDeploy error = %v, want MAAS's Failed to render preseed text wrapping the input error", cerr)
			}
			if diff := cmp.Diff(before, in); diff != "" {
				t.Errorf("rendering changed the input (-before +after):\n%s", diff)
			}
		})
	}
}

func cloneInput(in *Input) *Input {
	c := *in
	c.Machine.BlockDevices = slices.Clone(in.Machine.BlockDevices)
	c.Machine.Interfaces = nil
	for _, i := range in.Machine.Interfaces {
		i.Links = slices.Clone(i.Links)
		i.Parents = slices.Clone(i.Parents)
		c.Machine.Interfaces = append(c.Machine.Interfaces, i)
	}
	c.Network.Subnets = slices.Clone(in.Network.Subnets)
	return &c
}

func TestCheckDeploy(t *testing.T) {
	if err := CheckDeploy(baseInput()); err != nil {
		t.Fatalf("CheckDeploy(valid) = %v", err)
	}
	in := baseInput()
	in.Deployment.Ephemeral = true
	in.Deployment.Image.Filetype = "bogus"
	if err := CheckDeploy(in); err != nil {
		t.Errorf("CheckDeploy(ephemeral) = %v; MAAS does not render curtin for ephemeral deploys", err)
	}
}

func TestInstallerSpec(t *testing.T) {
	c, err := CurtinConfig(baseInput())
	if err != nil {
		t.Fatal(err)
	}
	spec := c.InstallerSpec()
	if len(spec.Configs) != len(c.Documents) || spec.Configs[0] != c.Documents[0].YAML {
		t.Fatalf("spec configs do not follow the documents")
	}
	if diff := cmp.Diff([]string{c.Source}, spec.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	cmd := spec.Command()
	want := []string{"curtin", "install", "--config=configs/config-000.cfg"}
	if !slices.Equal(cmd[:3], want) || cmd[len(cmd)-1] != c.Source || !strings.HasSuffix(cmd[len(cmd)-2], "config-007.cfg") {
		t.Errorf("Command() = %v", cmd)
	}
}

// TestMainTemplates covers the curtin_userdata* template each OS gets and
// get_curtin_config's additions.
func TestMainTemplates(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(in *Input)
		check   func(t *testing.T, main map[string]any)
		absent  []string
		present []string
	}{
		{name: "centos: curtin_userdata_centos with the xfs wrapper for the release", mod: func(in *Input) {
			in.Deployment = Deployment{OSystem: OSCentOS, Series: "centos70", Image: Image{Filetype: "tgz", FilenameOnDisk: "abcdef1"}}
		}, present: []string{`if [ "centos70" = "centos70" ] && mkfs.xfs`, "yum_proxy"}, absent: []string{"driver_00"}},
		{name: "s390x: chreipl of the boot disk", mod: func(in *Input) { in.Machine.Arch = "s390x" },
			present: []string{"maas_00: chreipl node /dev/sda"}},
		{name: "windows: license_key", mod: func(in *Input) {
			in.Deployment = Deployment{OSystem: OSWindows, Series: "win2022", Image: Image{Filetype: "ddtgz", FilenameOnDisk: "abcdef1"}}
		}, present: []string{"license_key: null"}, absent: []string{"early_commands", "validate-custom-image"}},
		{name: "ubuntu: third-party drivers line", mod: func(in *Input) {
			in.Deployment = Deployment{OSystem: OSUbuntu, Series: "jammy", Image: Image{Filetype: "squashfs"}}
		}, present: []string{"driver_00:", "echo third party drivers not installed or necessary."}, absent: []string{"validate-custom-image"}},
		{name: "precise keeps curtin's reboot", mod: func(in *Input) {
			in.Deployment = Deployment{OSystem: OSUbuntu, Series: "precise", Image: Image{Filetype: "squashfs", FilenameOnDisk: "abcdef1"}}
		}, present: []string{"power_state:\n  mode: reboot\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := baseInput()
			tt.mod(in)
			c, err := CurtinConfig(in)
			if err != nil {
				t.Fatal(err)
			}
			d, ok := c.Document("main")
			if !ok {
				t.Fatal("no main document")
			}
			for _, p := range tt.present {
				if !strings.Contains(d.YAML, p) {
					t.Errorf("main document lacks %q:\n%s", p, d.YAML)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(d.YAML, a) {
					t.Errorf("main document has %q:\n%s", a, d.YAML)
				}
			}
		})
	}
}

func TestCloudConfigOwnerEmail(t *testing.T) {
	in := baseInput()
	in.Machine.OwnerEmail = "ops@example.com"
	c, err := CurtinConfig(in)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := c.Document("cloudconfig")
	var m map[string]map[string]map[string]string
	if err := yaml.Unmarshal([]byte(d.YAML), &m); err != nil {
		t.Fatal(err)
	}
	sso := m["cloudconfig"]["maas-ubuntu-sso"]
	if sso["path"] != "/etc/cloud/cloud.cfg.d/90_maas_ubuntu_sso.cfg" || sso["content"] != "#cloud-config\nsnap:\n  email: ops@example.com\n" {
		t.Errorf("maas-ubuntu-sso = %v", sso)
	}
	if _, ok := c.Document("nonexistent"); ok {
		t.Error("Document found a document that does not exist")
	}
}
