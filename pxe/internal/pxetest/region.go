// Package pxetest provides an in-memory region for the rack's tests: machines by MAC with
// their boot parameters, image files by hash, and bootloader files.
package pxetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/maasemu/maasemu/fakemaas"
)

// Region is a fake fakemaas.Region for the rack's tests. The zero value is empty; use
// NewRegion for one with a deploying machine and its images.
type Region struct {
	mu          sync.Mutex
	Machines    map[string]fakemaas.KernelParams // by MAC; FSHost left empty (the rack fills it)
	Enlist      *fakemaas.KernelParams           // answer for unknown machines with an arch; nil: ErrNoBootConfig
	Images      map[string][]byte                // by full sha256
	Bootloaders map[string][]byte                // "type/arch/name"
	Requests    []fakemaas.BootRequest
}

// MAC of the machine NewRegion knows.
const MAC = "52:54:00:12:34:56"

// NewRegion returns a region that knows one deploying machine (MAC) with a kernel, initrd
// and squashfs stored under their hashes.
func NewRegion() *Region {
	r := &Region{Machines: map[string]fakemaas.KernelParams{}, Images: map[string][]byte{}, Bootloaders: map[string][]byte{}}
	kernel := r.AddImage([]byte("kernel image bytes"))
	initrd := r.AddImage([]byte("initrd image bytes"))
	squash := r.AddImage(bytes.Repeat([]byte("squashfs"), 1<<12))
	r.Machines[MAC] = fakemaas.KernelParams{
		Purpose: fakemaas.PurposeXInstall, SystemID: "xyz8kp", Hostname: "node-1", Domain: "maas",
		Arch: "amd64", Subarch: "ga-24.04", OSystem: "ubuntu", Release: "noble", Label: "stable",
		KernelOSystem: "ubuntu", KernelRelease: "noble", KernelLabel: "stable",
		Kernel:       kernel[:7] + "/ubuntu/amd64/ga-24.04/noble/stable/boot-kernel",
		Initrd:       initrd[:7] + "/ubuntu/amd64/ga-24.04/noble/stable/boot-initrd",
		XInstallPath: squash[:7] + "/ubuntu/amd64/ga-24.04/noble/stable/squashfs",
		PreseedURL:   "http://198.18.0.2:5248/MAAS/metadata/latest/by-id/xyz8kp/?op=get_preseed",
		LogPort:      5247,
		HTTPBoot:     true,
	}
	return r
}

// AddImage stores data and returns its sha256.
func (r *Region) AddImage(data []byte) string {
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Images == nil {
		r.Images = map[string][]byte{}
	}
	r.Images[h] = data
	return h
}

// SetMachine replaces the boot parameters of the machine with mac.
func (r *Region) SetMachine(mac string, p fakemaas.KernelParams) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Machines[mac] = p
}

// Machine returns the boot parameters of the machine with mac.
func (r *Region) Machine(mac string) fakemaas.KernelParams {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Machines[mac]
}

// BootConfig answers like rpc/boot.py get_config: a known MAC gets its machine's params; an
// unknown MAC or UUID with no arch gets ErrNoBootConfig; a request with an arch (default-*)
// gets the enlistment params when set.
func (r *Region) BootConfig(_ context.Context, req fakemaas.BootRequest) (fakemaas.KernelParams, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Requests = append(r.Requests, req)
	if p, ok := r.Machines[req.MAC]; ok && req.MAC != "" {
		return p, nil
	}
	if (req.MAC != "" || req.HardwareUUID != "") && req.Arch == "" {
		return fakemaas.KernelParams{}, fakemaas.ErrNoBootConfig
	}
	if r.Enlist != nil {
		p := *r.Enlist
		if req.Arch != "" {
			p.Arch = req.Arch
		}
		return p, nil
	}
	return fakemaas.KernelParams{}, fakemaas.ErrNoBootConfig
}

// OpenImage finds the single image whose hash starts with prefix.
func (r *Region) OpenImage(_ context.Context, prefix string) (fakemaas.ImageFile, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var found []string
	for h := range r.Images {
		if strings.HasPrefix(h, prefix) {
			found = append(found, h)
		}
	}
	if len(found) != 1 {
		return fakemaas.ImageFile{}, fmt.Errorf("image %s: %w", prefix, fakemaas.ErrImageNotFound)
	}
	data := r.Images[found[0]]
	return fakemaas.ImageFile{
		ReadSeekCloser: nopCloser{bytes.NewReader(data)}, Size: int64(len(data)),
		SHA256: found[0], ModTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}, nil
}

// OpenBootloader serves Bootloaders["type/arch/name"].
func (r *Region) OpenBootloader(_ context.Context, typ, arch, name string) (fakemaas.ImageFile, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	data, ok := r.Bootloaders[typ+"/"+arch+"/"+name]
	if !ok {
		return fakemaas.ImageFile{}, fmt.Errorf("bootloader %s/%s/%s: %w", typ, arch, name, fakemaas.ErrImageNotFound)
	}
	sum := sha256.Sum256(data)
	return fakemaas.ImageFile{ReadSeekCloser: nopCloser{bytes.NewReader(data)}, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}, nil
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }
