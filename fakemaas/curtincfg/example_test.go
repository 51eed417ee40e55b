package curtincfg_test

import (
	"encoding/json"
	"fmt"

	"github.com/maasemu/maasemu/fakemaas/curtincfg"
)

func Example() {
	in := &curtincfg.Input{
		Machine: curtincfg.Machine{
			SystemID: "x7kq3p", Hostname: "node1", Arch: "amd64", Firmware: "uefi",
			BlockDevices: []curtincfg.BlockDevice{{Name: "sda", Model: "QEMU HARDDISK", Serial: "QM00001", Size: 20 << 30}},
			Interfaces: []curtincfg.Interface{{Type: curtincfg.IfacePhysical, Name: "eth0", MAC: "52:54:00:12:34:56",
				Links: []curtincfg.Link{{Mode: curtincfg.LinkAuto, Subnet: "10.0.0.0/24", IP: "10.0.0.10"}}}},
		},
		Deployment: curtincfg.Deployment{OSystem: curtincfg.OSCustom, Series: "myimage", BaseImage: "ubuntu/jammy",
			Image: curtincfg.Image{Filetype: "ddgz", FilenameOnDisk: "5d41402"}},
		Network:     curtincfg.Network{Subnets: []curtincfg.Subnet{{CIDR: "10.0.0.0/24", Gateway: "10.0.0.1", Managed: true}}},
		Credentials: curtincfg.Credentials{ConsumerKey: "ck", TokenKey: "tk", TokenSecret: "ts"},
		URLs:        curtincfg.URLs{RackIP: "10.0.0.2"},
	}
	if err := curtincfg.CheckDeploy(in); err != nil {
		fmt.Println(err) // "Failed to render preseed: ..." becomes the deploy API's 400
		return
	}
	preseed, _ := curtincfg.Preseed(in, curtincfg.PurposeDeploy) // GET .../by-id/<sid>/?op=get_preseed
	cfg, _ := curtincfg.CurtinConfig(in)
	spec, _ := json.Marshal(cfg.InstallerSpec()) // what the maasemu agent fetches
	fmt.Println(preseed[:len("#cloud-config")])
	fmt.Println(len(cfg.Documents), cfg.Source)
	fmt.Println(len(spec) > 0)
	// Output:
	// #cloud-config
	// 8 dd-gz:http://10.0.0.2:5248/images/5d41402/custom/amd64/generic/myimage/uploaded/root-dd.gz
	// true
}
