package bootscript

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var mac = net.HardwareAddr{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}

func TestPXELinux(t *testing.T) {
	tests := []struct {
		name string
		cfg  string
		want Action
	}{
		{
			name: "xinstall",
			cfg: `DEFAULT execute
LABEL execute
  SAY Booting under MAAS direction...
  SAY nomodeset ro root=squash:http://198.18.0.1:5248/images/x/squashfs
  KERNEL http://198.18.0.1:5248/images/k/ubuntu/amd64/ga-22.04/jammy/stable/boot-kernel
  INITRD http://198.18.0.1:5248/images/i/ubuntu/amd64/ga-22.04/jammy/stable/boot-initrd
  APPEND nomodeset ro root=squash:http://198.18.0.1:5248/images/x/squashfs ip=::::node1:BOOTIF:dhcp
  IPAPPEND 2
`,
			want: Action{Kind: "linux",
				Kernel:  "http://198.18.0.1:5248/images/k/ubuntu/amd64/ga-22.04/jammy/stable/boot-kernel",
				Initrd:  "http://198.18.0.1:5248/images/i/ubuntu/amd64/ga-22.04/jammy/stable/boot-initrd",
				Cmdline: "nomodeset ro root=squash:http://198.18.0.1:5248/images/x/squashfs ip=::::node1:BOOTIF:dhcp BOOTIF=01-52-54-00-ab-cd-ef",
				Output:  []string{"Booting under MAAS direction...", "nomodeset ro root=squash:http://198.18.0.1:5248/images/x/squashfs"}},
		},
		{
			name: "local amd64",
			cfg:  "DEFAULT local\nLABEL local\n  SAY Booting local disk...\n  KERNEL chain.c32\n  APPEND hd0\n",
			want: Action{Kind: "chain", Device: "hd0", Output: []string{"Booting local disk..."}},
		},
		{
			name: "localboot",
			cfg:  "DEFAULT local\nLABEL local\n  LOCALBOOT 0\n",
			want: Action{Kind: "local"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PXELinux(tt.cfg, mac)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	for _, bad := range []string{"DEFAULT x\nLABEL y\n KERNEL k\n", "KERNEL k\n", "DEFAULT a\nLABEL a\n FROB 1\n"} {
		if _, err := PXELinux(bad, mac); err == nil {
			t.Errorf("PXELinux(%q) = nil error", bad)
		}
	}
}

// fakeEnv is a set of devices holding files, with UUIDs and labels.
type fakeEnv struct {
	files  map[string]map[string]string // device -> path -> content
	uuids  map[string]string            // uuid -> device
	labels map[string]string
}

func (f fakeEnv) ReadFile(dev, p string) ([]byte, error) {
	if c, ok := f.files[dev][p]; ok {
		return []byte(c), nil
	}
	return nil, errors.New("not found")
}

func (f fakeEnv) FileExists(dev, p string) bool {
	_, ok := f.files[dev][strings.ToLower(p)]
	if !ok {
		_, ok = f.files[dev][p]
	}
	return ok
}

func (f fakeEnv) Search(by, v string) (string, bool) {
	switch by {
	case "file":
		for _, dev := range []string{"hd0,gpt1", "hd0,gpt2", "hd0,gpt3"} {
			if f.FileExists(dev, v) {
				return dev, true
			}
		}
	case "fs-uuid":
		d, ok := f.uuids[v]
		return d, ok
	case "label":
		d, ok := f.labels[v]
		return d, ok
	}
	return "", false
}

const preloader = "configfile /grub/grub.cfg-${net_default_mac}\nconfigfile /grub/grub.cfg-default-${grub_cpu}\n"

const xinstall = `set default="0"
set timeout=0

menuentry 'Ephemeral' {
    echo   'Booting under MAAS direction...'
    linux  (http,198.18.0.1:5248)/images/k/boot-kernel nomodeset ro ip=::::node1:BOOTIF:dhcp cc:\{'datasource_list': ['MAAS']\}end_cc cloud-config-url=http://198.18.0.1:5248/MAAS/metadata/latest/by-id/abc/?op=get_preseed BOOTIF=01-${net_default_mac}
    initrd (http,198.18.0.1:5248)/images/i/boot-initrd
}
`

const local = `set default="0"
set timeout=0

menuentry 'Local' {
    echo 'Booting local disk...'
    for bootloader in boot/bootx64.efi ubuntu/shimx64.efi ubuntu/grubx64.efi \
            Microsoft/Boot/bootmgfw.efi; do
        search --set=root --file /efi/$bootloader
        if [ $? -eq 0 ]; then
            chainloader /efi/$bootloader
            boot
        fi
    done

    if [ "${shim_lock}" != "y" ]; then
        echo 'Secure boot disabled, trying non-signed loaders'
        for bootloader in centos/grubx64.efi rocky/grubx64.efi; do
            search --set=root --file /efi/$bootloader
            if [ $? -eq 0 ]; then
                chainloader /efi/$bootloader
                boot
            fi
        done
    fi
    # No loader: let the firmware try the next device.
    exit 1
}
`

func TestGrub(t *testing.T) {
	net := "tftp,198.18.0.1"
	vars := map[string]string{"root": net, "net_default_mac": "52:54:00:ab:cd:ef", "grub_cpu": "x86_64"}
	httpDev := "http,198.18.0.1:5248"
	tests := []struct {
		name string
		env  fakeEnv
		vars map[string]string
		want Action
	}{
		{
			name: "install via per-MAC config",
			env: fakeEnv{files: map[string]map[string]string{
				net:     {"/grub/grub.cfg-52:54:00:ab:cd:ef": xinstall},
				httpDev: {"/images/k/boot-kernel": "k", "/images/i/boot-initrd": "i"},
			}},
			want: Action{Kind: "linux", Kernel: "/images/k/boot-kernel", Initrd: "/images/i/boot-initrd", Device: "(" + httpDev + ")",
				Cmdline: "nomodeset ro ip=::::node1:BOOTIF:dhcp cc:{datasource_list: [MAAS]}end_cc cloud-config-url=http://198.18.0.1:5248/MAAS/metadata/latest/by-id/abc/?op=get_preseed BOOTIF=01-52:54:00:ab:cd:ef",
				Output:  []string{"Booting under MAAS direction..."}},
		},
		{
			name: "falls through to the default-arch config",
			env: fakeEnv{files: map[string]map[string]string{
				net:     {"/grub/grub.cfg-default-x86_64": xinstall},
				httpDev: {"/images/k/boot-kernel": "k", "/images/i/boot-initrd": "i"},
			}},
			want: Action{Kind: "linux", Kernel: "/images/k/boot-kernel", Initrd: "/images/i/boot-initrd", Device: "(" + httpDev + ")",
				Cmdline: "nomodeset ro ip=::::node1:BOOTIF:dhcp cc:{datasource_list: [MAAS]}end_cc cloud-config-url=http://198.18.0.1:5248/MAAS/metadata/latest/by-id/abc/?op=get_preseed BOOTIF=01-52:54:00:ab:cd:ef",
				Output:  []string{"error: file `/grub/grub.cfg-52:54:00:ab:cd:ef' not found.", "Booting under MAAS direction..."}},
		},
		{
			name: "local boot finds the removable-media loader",
			env: fakeEnv{files: map[string]map[string]string{
				net:        {"/grub/grub.cfg-52:54:00:ab:cd:ef": local},
				"hd0,gpt2": {"/efi/boot/bootx64.efi": "grub"},
			}},
			want: Action{Kind: "chain", Device: "(hd0,gpt2)", Path: "/efi/boot/bootx64.efi", Output: []string{"Booting local disk..."}},
		},
		{
			name: "local boot finds rocky only with shim_lock off",
			env: fakeEnv{files: map[string]map[string]string{
				net:        {"/grub/grub.cfg-52:54:00:ab:cd:ef": local},
				"hd0,gpt1": {"/efi/rocky/grubx64.efi": "grub"},
			}},
			want: Action{Kind: "chain", Device: "(hd0,gpt1)", Path: "/efi/rocky/grubx64.efi", Output: []string{
				"Booting local disk...", "error: no such device: /efi/boot/bootx64.efi.", "error: no such device: /efi/ubuntu/shimx64.efi.",
				"error: no such device: /efi/ubuntu/grubx64.efi.", "error: no such device: /efi/Microsoft/Boot/bootmgfw.efi.",
				"Secure boot disabled, trying non-signed loaders", "error: no such device: /efi/centos/grubx64.efi."}},
		},
		{
			name: "local boot finds nothing under secure boot",
			vars: map[string]string{"shim_lock": "y"},
			env: fakeEnv{files: map[string]map[string]string{
				net:        {"/grub/grub.cfg-52:54:00:ab:cd:ef": local},
				"hd0,gpt1": {"/efi/rocky/grubx64.efi": "grub"},
			}},
			want: Action{Kind: "exit", Code: 1, Output: []string{
				"Booting local disk...", "error: no such device: /efi/boot/bootx64.efi.", "error: no such device: /efi/ubuntu/shimx64.efi.",
				"error: no such device: /efi/ubuntu/grubx64.efi.", "error: no such device: /efi/Microsoft/Boot/bootmgfw.efi."}},
		},
		{
			name: "installed GRUB config",
			vars: map[string]string{"root": "hd0,gpt1"},
			env: fakeEnv{
				files: map[string]map[string]string{"hd0,gpt3": {"/boot/vmlinuz": "k", "/boot/initrd.img": "i"}},
				uuids: map[string]string{"1234-abcd": "hd0,gpt3"},
			},
			want: Action{Kind: "linux", Kernel: "/boot/vmlinuz", Initrd: "/boot/initrd.img", Device: "(hd0,gpt3)",
				Cmdline: "root=UUID=1234-abcd ro console=ttyS0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := map[string]string{}
			for k, x := range vars {
				v[k] = x
			}
			for k, x := range tt.vars {
				v[k] = x
			}
			script := preloader
			if tt.name == "installed GRUB config" {
				script = "insmod part_gpt\nsearch --no-floppy --fs-uuid --set=root 1234-abcd\nset default=0\nmenuentry 'Debian' --class debian {\n\tlinux /boot/vmlinuz root=UUID=1234-abcd ro console=ttyS0\n\tinitrd /boot/initrd.img\n}\n"
			}
			got, err := Grub(script, v, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestGrubErrors(t *testing.T) {
	for _, bad := range []string{"if true; then echo x\n", "menuentry 'x' {\n echo\n", "echo 'unterminated\n", "for x in a b; do echo\n"} {
		if _, err := Grub(bad, nil, fakeEnv{}); err == nil {
			t.Errorf("Grub(%q) = nil error", bad)
		}
	}
}
