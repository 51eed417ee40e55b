package commissioning

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func sample() Hardware {
	return Hardware{Arch: "amd64", Hostname: "node1", CPUCount: 2, CPUModel: "Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz",
		MemoryBytes: 2 << 30,
		Disks: []Disk{
			{Name: "sda", Model: "QEMU HARDDISK", Serial: "QM00001", DeviceID: "scsi-0QEMU_QEMU_HARDDISK_QM00001",
				DevicePath: "pci-0000:00:05.0-scsi-0:0:0:0", Size: 20 << 30},
			{Name: "sdb", Model: "SPINNER", Serial: "S2", DeviceID: "ata-SPINNER_S2", Size: 100 << 30, Type: "sata", RPM: 7200},
			{Name: "vda", Size: 8 << 30, Type: "virtio", BlockSize: 4096},
			{Name: "sr0", Model: "QEMU DVD-ROM", Type: "cdrom", Size: 1 << 20, ReadOnly: true},
			{Name: "tiny", Model: "M", Serial: "T", Size: 4 << 20},
			{Name: "bcache0", Size: 10 << 30},
			{Name: "loop0", Size: 1 << 30},
			{Name: "sdc", Model: "USB", Serial: "U1", DeviceID: "usb-U1", Size: 16 << 30, Removable: true},
		},
		NICs: []NIC{
			{Name: "ens3", MAC: "52:54:00:12:34:56", SpeedMbps: 1000, Addresses: []string{"198.18.0.10/24"}},
			{Name: "ens4", MAC: "52:54:00:AB:CD:EF", Disconnected: true},
		}}
}

func TestRoundTrip(t *testing.T) {
	b, err := BuildResources(sample())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := ParseResources(b)
	if err != nil {
		t.Fatal(err)
	}
	want := Report{
		Architecture: "amd64", CPUCount: 2, CPUSpeedMHz: 2500, CPUModel: "Intel(R) Xeon(R) CPU E5-2680 v3",
		MemoryMiB: 2048,
		Disks: []ReportedDisk{
			{Name: "sda", Model: "QEMU HARDDISK", Serial: "QM00001", IDPath: "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_QM00001",
				Size: 20 << 30, BlockSize: 512, Tags: []string{"ssd"}},
			{Name: "sdb", Model: "SPINNER", Serial: "S2", IDPath: "/dev/disk/by-id/ata-SPINNER_S2", Size: 100 << 30,
				BlockSize: 512, Tags: []string{"rotary", "7200rpm", "sata"}},
			{Name: "sdc", Model: "USB", Serial: "U1", IDPath: "/dev/disk/by-id/usb-U1", Size: 16 << 30, BlockSize: 512,
				Tags: []string{"ssd", "removable"}},
			{Name: "vda", IDPath: "/dev/vda", Size: 8 << 30, BlockSize: 4096, Tags: []string{"ssd"}},
		},
		Interfaces: []ReportedInterface{
			{Name: "ens3", MAC: "52:54:00:12:34:56", LinkConnected: true, LinkSpeed: 1000, Addresses: []string{"198.18.0.10/24"}},
			{Name: "ens4", MAC: "52:54:00:ab:cd:ef"},
		},
	}
	if diff := cmp.Diff(want, rep); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
}

func TestMultipathCondensed(t *testing.T) {
	hw := Hardware{Arch: "arm64", Disks: []Disk{
		{Name: "sdb", Serial: "SER", Model: "M", DeviceID: "", DevicePath: "pci-0000:01:00.0-fc-0x500a-lun-1", Size: 1 << 30},
		{Name: "sda", Serial: "SER", Model: "M", DeviceID: "wwn-0x1", DevicePath: "pci-0000:01:00.1-fc-0x500b-lun-1", Size: 1 << 30},
	}}
	b, err := BuildResources(hw)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := ParseResources(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []ReportedDisk{{Name: "sda", Model: "M", Serial: "SER", IDPath: "/dev/disk/by-id/wwn-0x1", Size: 1 << 30, BlockSize: 512,
		Tags: []string{"multipath"}}}
	if diff := cmp.Diff(want, rep.Disks); diff != "" {
		t.Errorf("disks (-want +got):\n%s", diff)
	}
	if rep.Architecture != "arm64" {
		t.Errorf("architecture %q", rep.Architecture)
	}
}

func TestParseRefusesBadReports(t *testing.T) {
	good, err := BuildResources(sample())
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	tests := []struct {
		name, in, want string
	}{
		{"not json", "{", "invalid JSON data"},
		{"wrong version", edit(func(m map[string]any) { m["api_version"] = "2.0" }), "Data not from LXD API 1.0!"},
		{"missing extensions", edit(func(m map[string]any) { m["api_extensions"] = []string{"resources"} }),
			"Missing required LXD API extensions ['api_os', 'resources_system', 'resources_usb_pci', 'resources_v2']"},
		{"no environment", edit(func(m map[string]any) { delete(m, "environment") }), "'environment' is missing"},
		{"unknown arch", edit(func(m map[string]any) { m["environment"].(map[string]any)["kernel_architecture"] = "vax" }), `"vax" is not an architecture`},
		{"no resources", edit(func(m map[string]any) { delete(m, "resources") }), "'resources' is missing"},
		{"bad size", edit(func(m map[string]any) {
			m["resources"].(map[string]any)["storage"].(map[string]any)["disks"].([]any)[0].(map[string]any)["size"] = "big"
		}), `disk "sda": size big is not a number`},
		{"bad mac", edit(func(m map[string]any) { m["networks"].(map[string]any)["ens3"].(map[string]any)["hwaddr"] = "zz" }),
			`network "ens3": hwaddr "zz" is not a MAC address`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseResources([]byte(tc.in))
			if err == nil || !errors.Is(err, ErrInvalidReport) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrInvalidReport containing %q", err, tc.want)
			}
		})
	}
}

func TestBuildRefusesBadHardware(t *testing.T) {
	tests := []struct {
		name string
		hw   Hardware
		want string
	}{
		{"arch", Hardware{Arch: "x86"}, `architecture "x86"`},
		{"disk name", Hardware{Arch: "amd64", Disks: []Disk{{Name: "/dev/sda"}}}, "must be a kernel block device name"},
		{"dup disk", Hardware{Arch: "amd64", Disks: []Disk{{Name: "sda"}, {Name: "sda"}}}, "listed twice"},
		{"mac", Hardware{Arch: "amd64", NICs: []NIC{{Name: "eth0", MAC: "nope"}}}, `MAC "nope"`},
		{"address", Hardware{Arch: "amd64", NICs: []NIC{{Name: "eth0", MAC: "52:54:00:00:00:01", Addresses: []string{"10.0.0.1"}}}}, "CIDR"},
	}
	for _, tc := range tests {
		if _, err := BuildResources(tc.hw); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestSignalBody(t *testing.T) {
	res := []byte(`{"api_version": "1.0"}`)
	s := ResourcesResult(res)
	s.ScriptResultID = 7
	s.Runtime = 1.5
	ct, body, err := s.Body()
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "multipart/form-data" {
		t.Fatalf("content type %q: %v", ct, err)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	fields, files := map[string]string{}, map[string]string{}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		if p.FileName() != "" {
			files[p.FormName()] = string(b)
		} else {
			fields[p.FormName()] = string(b)
		}
	}
	wantFields := map[string]string{"op": "signal", "status": "WORKING", "exit_status": "0", "name": ScriptName,
		"script_result_id": "7", "runtime": "1.5"}
	if diff := cmp.Diff(wantFields, fields); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	wantFiles := map[string]string{ScriptName: string(res), ScriptName + ".out": string(res), ScriptName + ".err": ""}
	if diff := cmp.Diff(wantFiles, files); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	if _, _, err := (Signal{}).Body(); err == nil {
		t.Errorf("a signal without a status was encoded")
	}
}
