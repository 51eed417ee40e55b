package pxe

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/canonical/gomaasclient/entity"
	"github.com/maasemu/maasemu/fakemaas"
	"github.com/maasemu/maasemu/fakemaas/regiontest"
	"github.com/maasemu/maasemu/pxe/bootloader"
	"github.com/maasemu/maasemu/pxe/dhcp4"
	"github.com/maasemu/maasemu/trace"
	"github.com/pin/tftp/v3"
)

// The region the rack is built for implements what the rack consumes.
var _ Region = (*fakemaas.Region)(nil)

// TestWithFakeMAASRegion serves a machine the real fake region knows: commissioning
// config, bootloaders from the imported SimpleStreams products, the kernel by hash and the
// preseed through the rack's /MAAS/ forwarding.
func TestWithFakeMAASRegion(t *testing.T) {
	env := regiontest.Start(t)
	stream := env.ImportDefaultStream(t)
	const mac = "52:54:00:12:34:56"
	if _, err := env.Client.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: "node1",
		MACAddresses: []string{mac}}, map[string]any{"commission": "false"}); err != nil {
		t.Fatal(err)
	}
	rec := trace.NewRecorder(nil)
	rack, err := New(Config{Region: env.Region, RegionHandler: env.Region.Handler(), Subnets: []dhcp4.Subnet{rackSubnet},
		Sink: rec, BootloaderHost: bootloader.Host{CacheDir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tc, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	done := make(chan error, 1)
	go func() { done <- rack.ServeTFTP(ctx, tc) }()
	srv := httptest.NewServer(rack.HTTPHandler())
	defer func() { srv.Close(); cancel(); <-done }()

	get := func(name string) []byte {
		c, _ := tftp.NewClient(tc.LocalAddr().String())
		c.SetTimeout(2 * time.Second)
		wt, err := c.Receive(name, "octet")
		if err != nil {
			t.Fatalf("tftp %s: %v", name, err)
		}
		var b bytes.Buffer
		wt.WriteTo(&b)
		return b.Bytes()
	}
	var bl map[string][]byte
	for _, b := range stream.Bootloaders {
		if b.Type == "pxe" {
			bl = b.Files
		}
	}
	if !bytes.Equal(get("lpxelinux.0"), bl["lpxelinux.0"]) {
		t.Error("lpxelinux.0 is not the imported product's")
	}
	cfg := string(get("pxelinux.cfg/01-52-54-00-12-34-56"))
	if !strings.Contains(cfg, "ip=::::node1:BOOTIF:dhcp") {
		t.Fatalf("config:\n%s", cfg)
	}
	kernel := regexp.MustCompile(`(?m)^  KERNEL http://127\.0\.0\.1:5248(\S+)$`).FindStringSubmatch(cfg)
	preseed := regexp.MustCompile(`cloud-config-url=http://127\.0\.0\.1:5248(\S+)`).FindStringSubmatch(cfg)
	if kernel == nil || preseed == nil {
		t.Fatalf("config:\n%s", cfg)
	}
	fetch := func(path string) []byte {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return b
	}
	if !bytes.Equal(fetch(kernel[1]), stream.Products[0].Files["boot-kernel"]) {
		t.Error("kernel differs from the imported file")
	}
	if got := string(fetch(preseed[1])); !strings.HasPrefix(got, "#cloud-config") {
		t.Errorf("preseed through the rack: %.80q", got)
	}
	var purposes []string
	for _, e := range rec.Events() {
		if e.Kind == trace.KindBootConfig {
			purposes = append(purposes, e.Attrs["purpose"].(string))
		}
	}
	if strings.Join(purposes, ",") != "commissioning" {
		t.Errorf("boot configs rendered: %v", purposes)
	}
}
