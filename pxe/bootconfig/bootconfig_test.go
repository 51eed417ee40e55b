package bootconfig

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/maasemu/maasemu/fakemaas"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/pxe/bootconfig")

const goldenDir = "../../testdata/pxe/bootconfig"

// noble is a deploying Ubuntu 24.04 machine, with the image paths MAAS >= 3.5 builds
// (rpc/boot.py _get_files_map: <sha7>/<os>/<arch>/<subarch>/<series>/<label>/<file>).
func noble() fakemaas.KernelParams {
	return fakemaas.KernelParams{
		Purpose:       fakemaas.PurposeXInstall,
		SystemID:      "xyz8kp",
		Hostname:      "node-1",
		Domain:        "maas",
		Arch:          "amd64",
		Subarch:       "ga-24.04",
		OSystem:       "ubuntu",
		Release:       "noble",
		Label:         "stable",
		KernelOSystem: "ubuntu",
		KernelRelease: "noble",
		KernelLabel:   "stable",
		Kernel:        "54fe42a/ubuntu/amd64/ga-24.04/noble/stable/boot-kernel",
		Initrd:        "3c1b2e9/ubuntu/amd64/ga-24.04/noble/stable/boot-initrd",
		XInstallPath:  "edbd57a/ubuntu/amd64/ga-24.04/noble/stable/squashfs",
		FSHost:        "198.18.0.2",
		PreseedURL:    "http://198.18.0.2:5248/MAAS/metadata/latest/by-id/xyz8kp/?op=get_preseed",
		LogHost:       "198.18.0.2",
		LogPort:       5247,
		HTTPBoot:      true,
	}
}

func TestCommandLine(t *testing.T) {
	// The expected strings follow kernel_opts.compose_kernel_command_line token by token:
	//   nomodeset                                   options += ["nomodeset"]
	//   root=squash:http://<fs_host>:5248/images/<xinstall_path>   compose_purpose_opts
	//   ip=::::<hostname>:BOOTIF:dhcp ip6=off       compose_purpose_opts, IPv4 fs_host
	//   cc:{'datasource_list': ['MAAS']}end_cc      compose_purpose_opts
	//   cloud-config-url=<preseed_url>              compose_purpose_opts
	//   ro overlayroot=tmpfs overlayroot_cfgdisk=disabled   only for image_type "squash"
	//   apparmor=0                                  compose_apparmor_opts, ubuntu < jammy
	//   log_host=<h> log_port=<p>                   compose_logging_opts
	//   <arch options>                              compose_arch_opts (ArchitectureRegistry)
	//   <ephemeral_opts>                            appended as one string
	//   --- <extra_opts>                            curtin KERNEL_CMDLINE_COPY_TO_INSTALL_SEP
	const preseed = "cloud-config-url=http://198.18.0.2:5248/MAAS/metadata/latest/by-id/xyz8kp/?op=get_preseed"
	cases := []struct {
		name string
		edit func(*fakemaas.KernelParams)
		want string
	}{
		{"xinstall noble", func(*fakemaas.KernelParams) {},
			"nomodeset root=squash:http://198.18.0.2:5248/images/edbd57a/ubuntu/amd64/ga-24.04/noble/stable/squashfs " +
				"ip=::::node-1:BOOTIF:dhcp ip6=off cc:{'datasource_list': ['MAAS']}end_cc " + preseed +
				" ro overlayroot=tmpfs overlayroot_cfgdisk=disabled log_host=198.18.0.2 log_port=5247"},
		{"extra options after ---", func(p *fakemaas.KernelParams) { p.ExtraOpts = "console=ttyS0,115200 quiet" },
			"nomodeset root=squash:http://198.18.0.2:5248/images/edbd57a/ubuntu/amd64/ga-24.04/noble/stable/squashfs " +
				"ip=::::node-1:BOOTIF:dhcp ip6=off cc:{'datasource_list': ['MAAS']}end_cc " + preseed +
				" ro overlayroot=tmpfs overlayroot_cfgdisk=disabled log_host=198.18.0.2 log_port=5247 --- console=ttyS0,115200 quiet"},
		{"ephemeral then arch then extra", func(p *fakemaas.KernelParams) {
			p.KernelOptions, p.EphemeralOpts, p.ExtraOpts = "rootdelay=60", "nvme-core.multipath=0", "quiet"
		},
			"nomodeset root=squash:http://198.18.0.2:5248/images/edbd57a/ubuntu/amd64/ga-24.04/noble/stable/squashfs " +
				"ip=::::node-1:BOOTIF:dhcp ip6=off cc:{'datasource_list': ['MAAS']}end_cc " + preseed +
				" ro overlayroot=tmpfs overlayroot_cfgdisk=disabled log_host=198.18.0.2 log_port=5247 rootdelay=60 nvme-core.multipath=0 --- quiet"},
		{"tarball root: tar:, no overlayroot", func(p *fakemaas.KernelParams) {
			p.XInstallPath = "87b8187/custom/amd64/generic/myimage/uploaded/root.tgz"
		},
			"nomodeset root=tar:http://198.18.0.2:5248/images/87b8187/custom/amd64/generic/myimage/uploaded/root.tgz " +
				"ip=::::node-1:BOOTIF:dhcp ip6=off cc:{'datasource_list': ['MAAS']}end_cc " + preseed +
				" log_host=198.18.0.2 log_port=5247"},
		{"missing image: default file name squashfs", func(p *fakemaas.KernelParams) {
			p.Label, p.XInstallPath = "no-such-image", ""
		},
			"nomodeset root=squash:http://198.18.0.2:5248/images/squashfs " +
				"ip=::::node-1:BOOTIF:dhcp ip6=off cc:{'datasource_list': ['MAAS']}end_cc " + preseed +
				" ro overlayroot=tmpfs overlayroot_cfgdisk=disabled log_host=198.18.0.2 log_port=5247"},
		{"ubuntu before jammy: apparmor=0", func(p *fakemaas.KernelParams) { p.Release = "focal" },
			"nomodeset root=squash:http://198.18.0.2:5248/images/edbd57a/ubuntu/amd64/ga-24.04/noble/stable/squashfs " +
				"ip=::::node-1:BOOTIF:dhcp ip6=off cc:{'datasource_list': ['MAAS']}end_cc " + preseed +
				" ro overlayroot=tmpfs overlayroot_cfgdisk=disabled apparmor=0 log_host=198.18.0.2 log_port=5247"},
		{"jammy: no apparmor option", func(p *fakemaas.KernelParams) { p.Release = "jammy" },
			"nomodeset root=squash:http://198.18.0.2:5248/images/edbd57a/ubuntu/amd64/ga-24.04/noble/stable/squashfs " +
				"ip=::::node-1:BOOTIF:dhcp ip6=off cc:{'datasource_list': ['MAAS']}end_cc " + preseed +
				" ro overlayroot=tmpfs overlayroot_cfgdisk=disabled log_host=198.18.0.2 log_port=5247"},
		{"IPv6 rack: bracketed URL, ip=off ip6=dhcp", func(p *fakemaas.KernelParams) {
			p.FSHost, p.LogHost = "fd00::2", "fd00::2"
			p.PreseedURL = "http://[fd00::2]:5248/MAAS/metadata/latest/by-id/xyz8kp/?op=get_preseed"
		},
			"nomodeset root=squash:http://[fd00::2]:5248/images/edbd57a/ubuntu/amd64/ga-24.04/noble/stable/squashfs " +
				"ip=off ip6=dhcp cc:{'datasource_list': ['MAAS']}end_cc cloud-config-url=http://[fd00::2]:5248/MAAS/metadata/latest/by-id/xyz8kp/?op=get_preseed" +
				" ro overlayroot=tmpfs overlayroot_cfgdisk=disabled log_host=fd00::2 log_port=5247"},
		{"remote syslog and default log port", func(p *fakemaas.KernelParams) { p.LogHost, p.LogPort = "10.9.9.9", 0 },
			"nomodeset root=squash:http://198.18.0.2:5248/images/edbd57a/ubuntu/amd64/ga-24.04/noble/stable/squashfs " +
				"ip=::::node-1:BOOTIF:dhcp ip6=off cc:{'datasource_list': ['MAAS']}end_cc " + preseed +
				" ro overlayroot=tmpfs overlayroot_cfgdisk=disabled log_host=10.9.9.9 log_port=5247"},
		{"ppc64el arch table option", func(p *fakemaas.KernelParams) { p.Arch, p.Subarch = "ppc64el", "generic" },
			"nomodeset root=squash:http://198.18.0.2:5248/images/edbd57a/ubuntu/amd64/ga-24.04/noble/stable/squashfs " +
				"ip=::::node-1:BOOTIF:dhcp ip6=off cc:{'datasource_list': ['MAAS']}end_cc " + preseed +
				" ro overlayroot=tmpfs overlayroot_cfgdisk=disabled log_host=198.18.0.2 log_port=5247 rootdelay=60"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := noble()
			c.edit(&p)
			if diff := cmp.Diff(c.want, CommandLine(p)); diff != "" {
				t.Errorf("CommandLine (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGRUBEscape(t *testing.T) {
	cases := []struct{ in, want string }{
		{"a cc:{'datasource_list': ['MAAS']}end_cc b", `a cc:\{'datasource_list': ['MAAS']\}end_cc b`},
		{"no cloud config", "no cloud config"},
		{"cc:{unterminated", "cc:{unterminated"},
		{"cc:{x} not end cc:{y}end_cc", `cc:{x} not end cc:\{y\}end_cc`},
	}
	for _, c := range cases {
		if diff := cmp.Diff(c.want, grubEscape(c.in)); diff != "" {
			t.Errorf("grubEscape(%q) (-want +got):\n%s", c.in, diff)
		}
	}
}

func TestMatchPath(t *testing.T) {
	cases := []struct {
		path string
		want Match
		ok   bool
	}{
		// pxe.py: 01-<mac> (ARP htype 1), lowercase only.
		{"pxelinux.cfg/01-52-54-00-12-34-56", Match{Format: PXELinux, Bootloader: "pxe", MAC: "52:54:00:12:34:56"}, true},
		{"/pxelinux.cfg/01-52-54-00-12-34-56", Match{Format: PXELinux, Bootloader: "pxe", MAC: "52:54:00:12:34:56"}, true},
		{"pxelinux.cfg/01-52-54-00-12-34-5A", Match{}, false},
		{"pxelinux.cfg/C612000A", Match{}, false}, // pxelinux's hex-IP probes are not configs
		{"pxelinux.cfg/4c4c4544-0037-3410-8058-b9c04f4e3232", Match{Format: PXELinux, Bootloader: "pxe", UUID: "4c4c4544-0037-3410-8058-b9c04f4e3232"}, true},
		{"pxelinux.cfg/default", Match{Format: PXELinux, Bootloader: "pxe"}, true},
		{"pxelinux.cfg/default-amd64-generic", Match{Format: PXELinux, Bootloader: "pxe", Arch: "amd64", Subarch: "generic"}, true},
		{"pxelinux.cfg/default.arm", Match{Format: PXELinux, Bootloader: "pxe", Arch: "arm64"}, true}, // pxealias arm
		// grub.py: MAC with ':' or '-', default-<grub_cpu> mapped to Debian names.
		{"grub/grub.cfg-52:54:00:12:34:56", Match{Format: GRUB, Bootloader: "uefi", MAC: "52:54:00:12:34:56"}, true},
		{"/grub/grub.cfg-52-54-00-12-34-56", Match{Format: GRUB, Bootloader: "uefi", MAC: "52:54:00:12:34:56"}, true},
		{"grub/grub.cfg-default-x86_64", Match{Format: GRUB, Bootloader: "uefi", Arch: "amd64"}, true},
		{"grub/grub.cfg-default-ppc64le", Match{Format: GRUB, Bootloader: "uefi", Arch: "ppc64el"}, true},
		{"grub/grub.cfg-default-arm64", Match{Format: GRUB, Bootloader: "uefi", Arch: "arm64"}, true},
		{"grub/grub.cfg", Match{}, false}, // the static pre-loader, not a rendered config
		// ipxe.py: colon MACs only.
		{"ipxe.cfg-52:54:00:12:34:56", Match{Format: IPXE, Bootloader: "ipxe", MAC: "52:54:00:12:34:56"}, true},
		{"ipxe.cfg-52-54-00-12-34-56", Match{}, false},
		{"ipxe.cfg-default-amd64", Match{Format: IPXE, Bootloader: "ipxe", Arch: "amd64"}, true},
		{"ipxe.cfg", Match{}, false},
		{"grub/x86_64-efi/command.lst", Match{}, false},
	}
	for _, c := range cases {
		got, ok := MatchPath(c.path)
		if ok != c.ok {
			t.Errorf("MatchPath(%q) ok = %v, want %v", c.path, ok, c.ok)
			continue
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("MatchPath(%q) (-want +got):\n%s", c.path, diff)
		}
	}
}

func TestTemplateNames(t *testing.T) {
	want := []string{
		"config.xinstall.arm64.xgene-uboot-mustang.template",
		"config.xinstall.arm64.template",
		"config.xinstall.template",
		"config.template",
	}
	if diff := cmp.Diff(want, templateNames("xinstall", "arm64", "xgene-uboot-mustang")); diff != "" {
		t.Errorf("templateNames (-want +got):\n%s", diff)
	}
}

// goldenCase is one rendered config compared with testdata/pxe/bootconfig/<file>.
type goldenCase struct {
	file     string
	format   Format
	proto    Protocol
	template string // the MAAS template the output must follow
	edit     func(*fakemaas.KernelParams)
}

func goldenCases() []goldenCase {
	purpose := func(s string) func(*fakemaas.KernelParams) {
		return func(p *fakemaas.KernelParams) { p.Purpose = s }
	}
	local := func(arch string) func(*fakemaas.KernelParams) {
		// rpc/boot.py returns empty kernel/initrd for local; tftp.py sets label "local".
		return func(p *fakemaas.KernelParams) {
			p.Purpose, p.Arch, p.Subarch = fakemaas.PurposeLocal, arch, "generic"
			p.Kernel, p.Initrd, p.XInstallPath, p.Label, p.KernelLabel = "", "", "", "local", "local"
		}
	}
	enlist := func(p *fakemaas.KernelParams) {
		// Unknown machine on "default": hostname maas-enlist, domain local, default arch i386.
		p.Purpose, p.Hostname, p.Domain, p.SystemID = fakemaas.PurposeEnlist, "maas-enlist", "local", ""
		p.Arch, p.Subarch = "i386", "generic"
		p.PreseedURL = "http://198.18.0.2:5248/MAAS/metadata/latest/enlist-preseed/?op=get_enlist_preseed"
	}
	missing := func(p *fakemaas.KernelParams) {
		// tftp.py get_boot_image: no kernel/rootfs => label no-such-image, default file names.
		p.Kernel, p.Initrd, p.XInstallPath, p.Label, p.KernelLabel = "", "", "", "no-such-image", "no-such-image"
	}
	arch := func(a, s string) func(*fakemaas.KernelParams) {
		return func(p *fakemaas.KernelParams) {
			p.Arch, p.Subarch = a, s
			p.Kernel = strings.ReplaceAll(p.Kernel, "amd64/ga-24.04", a+"/"+s)
			p.Initrd = strings.ReplaceAll(p.Initrd, "amd64/ga-24.04", a+"/"+s)
			p.XInstallPath = strings.ReplaceAll(p.XInstallPath, "amd64/ga-24.04", a+"/"+s)
			if s == "xgene-uboot-mustang" {
				p.BootDTB = "9d0e1f2/ubuntu/arm64/xgene-uboot-mustang/noble/stable/boot-dtb"
			}
		}
	}
	extra := func(p *fakemaas.KernelParams) { p.ExtraOpts = "console=ttyS0,115200" }
	both := func(fs ...func(*fakemaas.KernelParams)) func(*fakemaas.KernelParams) {
		return func(p *fakemaas.KernelParams) {
			for _, f := range fs {
				f(p)
			}
		}
	}
	return []goldenCase{
		{"pxelinux-xinstall-amd64.cfg", PXELinux, TFTP, "config.xinstall.template", extra},
		{"pxelinux-commissioning-amd64.cfg", PXELinux, TFTP, "config.commissioning.template", purpose(fakemaas.PurposeCommissioning)},
		{"pxelinux-local-amd64.cfg", PXELinux, TFTP, "config.local.amd64.template", local("amd64")},
		{"pxelinux-local-arm64.cfg", PXELinux, TFTP, "config.local.template", local("arm64")},
		{"pxelinux-poweroff.cfg", PXELinux, TFTP, "config.poweroff.template", purpose(fakemaas.PurposePoweroff)},
		{"pxelinux-enlist.cfg", PXELinux, TFTP, "config.enlist.template", enlist},
		{"pxelinux-xinstall-arm64.cfg", PXELinux, TFTP, "config.xinstall.arm64.template", arch("arm64", "generic")},
		{"pxelinux-xinstall-arm64-mustang.cfg", PXELinux, TFTP, "config.xinstall.arm64.xgene-uboot-mustang.template", arch("arm64", "xgene-uboot-mustang")},
		{"pxelinux-xinstall-ppc64el.cfg", PXELinux, TFTP, "config.xinstall.ppc64el.template", arch("ppc64el", "generic")},
		{"pxelinux-xinstall-s390x.cfg", PXELinux, TFTP, "config.xinstall.s390x.template", arch("s390x", "generic")},
		{"pxelinux-xinstall-missing-image.cfg", PXELinux, TFTP, "config.xinstall.template", missing},
		{"grub-xinstall-amd64-tftp.cfg", GRUB, TFTP, "config.xinstall.template", extra},
		{"grub-xinstall-amd64-http.cfg", GRUB, HTTP, "config.xinstall.template", extra},
		{"grub-commissioning-amd64-tftp.cfg", GRUB, TFTP, "config.commissioning.template", purpose(fakemaas.PurposeCommissioning)},
		{"grub-enlist-tftp.cfg", GRUB, TFTP, "config.enlist.template", both(enlist, arch("amd64", "generic"))},
		{"grub-local-amd64.cfg", GRUB, TFTP, "config.local.amd64.template", local("amd64")},
		{"grub-local-arm64.cfg", GRUB, TFTP, "config.local.arm64.template", local("arm64")},
		{"grub-local-ppc64el.cfg", GRUB, TFTP, "config.local.ppc64el.template", local("ppc64el")},
		{"grub-poweroff.cfg", GRUB, HTTP, "config.poweroff.template", purpose(fakemaas.PurposePoweroff)},
		{"grub-xinstall-arm64-http.cfg", GRUB, HTTP, "config.xinstall.template", arch("arm64", "generic")},
		{"grub-xinstall-missing-image-tftp.cfg", GRUB, TFTP, "config.xinstall.template", missing},
		{"ipxe-xinstall-amd64.ipxe", IPXE, HTTP, "config.xinstall.template", extra},
		{"ipxe-commissioning-amd64.ipxe", IPXE, HTTP, "config.commissioning.template", purpose(fakemaas.PurposeCommissioning)},
		{"ipxe-enlist.ipxe", IPXE, HTTP, "config.enlist.template", enlist},
		{"ipxe-local.ipxe", IPXE, HTTP, "config.local.template", local("amd64")},
		{"ipxe-poweroff.ipxe", IPXE, HTTP, "config.poweroff.template", purpose(fakemaas.PurposePoweroff)},
		{"ipxe-xinstall-ipv6.ipxe", IPXE, HTTP, "config.xinstall.template", func(p *fakemaas.KernelParams) {
			p.FSHost, p.LogHost = "fd00::2", "fd00::2"
			p.PreseedURL = "http://[fd00::2]:5248/MAAS/metadata/latest/by-id/xyz8kp/?op=get_preseed"
		}},
	}
}

func TestRenderGolden(t *testing.T) {
	for _, c := range goldenCases() {
		t.Run(c.file, func(t *testing.T) {
			p := noble()
			c.edit(&p)
			got, err := Render(c.format, p, c.proto, Options{})
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if got.Template != c.template {
				t.Errorf("template = %q, want %q (gen_template_filenames lookup)", got.Template, c.template)
			}
			path := filepath.Join(goldenDir, c.file)
			if *update {
				if err := os.WriteFile(path, got.Data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("golden file: %v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got.Data)); diff != "" {
				t.Errorf("%s (-golden +got):\n%s", c.file, diff)
			}
		})
	}
}

// TestRenderStructure checks, independently of the golden files, the tokens each format must
// carry, with the MAAS source of each.
func TestRenderStructure(t *testing.T) {
	p := noble()
	cmd := CommandLine(p)

	pxe, _ := Render(PXELinux, p, TFTP, Options{})
	for _, want := range []string{
		"DEFAULT execute\n", // templates/pxe/config.xinstall.template
		"  KERNEL http://198.18.0.2:5248/images/54fe42a/ubuntu/amd64/ga-24.04/noble/stable/boot-kernel\n", // fs_host + kernel_path
		"  APPEND " + cmd + "\n", // kernel_command
		"  IPAPPEND 2\n",         // pxelinux appends BOOTIF=01-<mac>
	} {
		if !strings.Contains(string(pxe.Data), want) {
			t.Errorf("pxelinux config lacks %q", want)
		}
	}

	tftp, _ := Render(GRUB, p, TFTP, Options{})
	http, _ := Render(GRUB, p, HTTP, Options{})
	for _, c := range []struct {
		cfg  Config
		host string
	}{{tftp, "(http,198.18.0.2:5248)/images/"}, {http, "/images/"}} {
		s := string(c.cfg.Data)
		if !strings.Contains(s, "    linux  "+c.host+p.Kernel+" ") { // grub.py fs_efihost
			t.Errorf("GRUB config lacks fs_efihost %q:\n%s", c.host, s)
		}
		if !strings.Contains(s, `cc:\{'datasource_list': ['MAAS']\}end_cc`) { // Bug#1651452
			t.Errorf("GRUB config lacks escaped cc braces")
		}
		if !strings.HasSuffix(s, " BOOTIF=01-${net_default_mac}\n    initrd "+c.host+p.Initrd+"\n}") { // stripped
			t.Errorf("GRUB config tail wrong:\n%s", s)
		}
		if strings.HasPrefix(s, "\n") || strings.HasSuffix(s, "\n") {
			t.Errorf("GRUB config not stripped")
		}
	}

	dbg, _ := Render(GRUB, p, TFTP, Options{Debug: true})
	if !strings.HasPrefix(string(dbg.Data), "set debug=\"all\"\nset default=\"0\"") {
		t.Errorf("debug GRUB config starts %q", string(dbg.Data)[:30])
	}

	ipxe, _ := Render(IPXE, p, HTTP, Options{})
	if !strings.Contains(string(ipxe.Data), "imgargs boot-kernel "+cmd+" BOOTIF=01-${mac}\n") { // kernel_name
		t.Errorf("iPXE config imgargs wrong:\n%s", ipxe.Data)
	}
}

func TestRenderErrors(t *testing.T) {
	p := noble()
	p.Purpose, p.Arch = fakemaas.PurposeLocal, "i386"
	// templates/uefi has local configs for amd64, arm64 and ppc64el only.
	if _, err := Render(GRUB, p, TFTP, Options{}); !errors.Is(err, ErrNoTemplate) {
		t.Errorf("GRUB local i386: err = %v, want ErrNoTemplate", err)
	}
	p = noble()
	p.Purpose = "rescue"
	if _, err := Render(PXELinux, p, TFTP, Options{}); !errors.Is(err, ErrNoTemplate) {
		t.Errorf("unknown purpose: err = %v, want ErrNoTemplate", err)
	}
	p = noble()
	p.FSHost = ""
	if _, err := Render(PXELinux, p, TFTP, Options{}); err == nil || !strings.Contains(err.Error(), "fs_host") {
		t.Errorf("no fs_host: err = %v", err)
	}
}
