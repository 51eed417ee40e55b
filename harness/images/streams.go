package images

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/ulikunitz/xz"
)

// Stream product names and content ids, as images.maas.io spells them.
const (
	ImagesContentID     = "com.ubuntu.maas:stable:v3:download"
	BootloaderContentID = "com.ubuntu.maas:stable:1:bootloader-download"
)

// EphemeralSeries are the Ubuntu releases the test ephemeral is published as: 22.04 and
// 24.04 (MAAS 3.7's default commissioning series).
var EphemeralSeries = []struct{ Version, Codename, Title string }{
	{"22.04", "jammy", "Jammy Jellyfish"},
	{"24.04", "noble", "Noble Numbat"},
}

type ssItem struct {
	FType      string `json:"ftype"`
	Path       string `json:"path"`
	SHA256     string `json:"sha256"`
	Size       int64  `json:"size"`
	KPackage   string `json:"kpackage,omitempty"`
	SrcPackage string `json:"src_package,omitempty"`
	SrcVersion string `json:"src_version,omitempty"`
	SrcRelease string `json:"src_release,omitempty"`
}

type ssVersion struct {
	Items map[string]ssItem `json:"items"`
}

type ssProducts struct {
	ContentID string                    `json:"content_id"`
	Datatype  string                    `json:"datatype"`
	Format    string                    `json:"format"`
	Updated   string                    `json:"updated"`
	Products  map[string]map[string]any `json:"products"`
}

type ssIndexEntry struct {
	Datatype string   `json:"datatype"`
	Format   string   `json:"format"`
	Path     string   `json:"path"`
	Products []string `json:"products"`
	Updated  string   `json:"updated"`
}

// Streams describes a published SimpleStreams tree.
type Streams struct {
	Dir      string   // the tree; `maasemu images import --source Dir`
	Products []string // product names published
}

// PublishEphemeral writes e and the host's bootloaders into out as a SimpleStreams tree:
// streams/v1/index.json, the two products files, and the files (hard-linked from the
// cache when possible) with their sha256 and size.
func (b *Builder) PublishEphemeral(ctx context.Context, e *Ephemeral, out string) (*Streams, error) {
	unlock, err := b.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	updated := time.Now().UTC().Format(time.RFC1123Z)
	files := map[string]string{"boot-kernel": e.Kernel, "boot-initrd": e.Initrd, "squashfs": e.Squashfs, "manifest": e.Manifest}
	s := &Streams{Dir: out}
	images := ssProducts{ContentID: ImagesContentID, Datatype: "image-ids", Format: "products:1.0", Updated: updated, Products: map[string]map[string]any{}}
	for _, ser := range EphemeralSeries {
		items := map[string]ssItem{}
		for _, ft := range []string{"boot-kernel", "boot-initrd", "squashfs", "manifest"} {
			rel := fmt.Sprintf("%s/amd64/%s/%s", ser.Codename, e.Version, ft)
			if ft == "boot-kernel" || ft == "boot-initrd" {
				rel = fmt.Sprintf("%s/amd64/%s/ga-%s/generic/%s", ser.Codename, e.Version, ser.Version, ft)
			}
			if ft == "manifest" {
				rel = fmt.Sprintf("%s/amd64/%s/squashfs.manifest", ser.Codename, e.Version)
			}
			if err := linkOrCopy(files[ft], filepath.Join(out, rel)); err != nil {
				return nil, err
			}
			sum, size, err := fileSHA256(files[ft])
			if err != nil {
				return nil, fmt.Errorf("images: %w", err)
			}
			it := ssItem{FType: ft, Path: rel, SHA256: sum, Size: size}
			if ft == "boot-kernel" || ft == "boot-initrd" {
				it.KPackage = "linux-generic"
			}
			items[ft] = it
		}
		name := fmt.Sprintf("com.ubuntu.maas.stable:v3:boot:%s:amd64:ga-%s", ser.Version, ser.Version)
		images.Products[name] = map[string]any{
			"arch": "amd64", "kflavor": "generic", "krel": ser.Codename, "label": "stable", "os": "ubuntu",
			"release": ser.Codename, "release_codename": ser.Title,
			"release_title": fmt.Sprintf("%s LTS: maasemu test ephemeral built from Debian 12 packages (kernel %s)", ser.Version, e.KernelVersion),
			"subarch":       "ga-" + ser.Version, "subarches": "generic,ga-" + ser.Version, "support_eol": "2099-01-01",
			"version": ser.Version, "versions": map[string]ssVersion{e.Version: {Items: items}},
		}
		s.Products = append(s.Products, name)
	}
	bl, blNames, err := b.bootloaderProducts(ctx, out, updated)
	if err != nil {
		return nil, err
	}
	s.Products = append(s.Products, blNames...)
	idx := map[string]any{
		"format": "index:1.0", "updated": updated,
		"index": map[string]ssIndexEntry{
			ImagesContentID:     {Datatype: "image-ids", Format: "products:1.0", Path: "streams/v1/" + ImagesContentID + ".json", Products: sortedKeys(images.Products), Updated: updated},
			BootloaderContentID: {Datatype: "image-ids", Format: "products:1.0", Path: "streams/v1/" + BootloaderContentID + ".json", Products: blNames, Updated: updated},
		},
	}
	for name, doc := range map[string]any{"index.json": idx, ImagesContentID + ".json": images, BootloaderContentID + ".json": bl} {
		j, err := json.MarshalIndent(doc, "", " ")
		if err != nil {
			return nil, err
		}
		if err := writeFileAtomic(filepath.Join(out, "streams", "v1", name), append(j, '\n'), 0o644); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Host bootloader files (Debian packages pxelinux, syslinux-common, shim-signed, grub-efi-amd64-bin).
var (
	PXELinuxFiles = map[string]string{
		"lpxelinux.0":  "/usr/lib/PXELINUX/lpxelinux.0",
		"ldlinux.c32":  "/usr/lib/syslinux/modules/bios/ldlinux.c32",
		"chain.c32":    "/usr/lib/syslinux/modules/bios/chain.c32",
		"ifcpu.c32":    "/usr/lib/syslinux/modules/bios/ifcpu.c32",
		"ifcpu64.c32":  "/usr/lib/syslinux/modules/bios/ifcpu64.c32",
		"libcom32.c32": "/usr/lib/syslinux/modules/bios/libcom32.c32",
		"libutil.c32":  "/usr/lib/syslinux/modules/bios/libutil.c32",
	}
	ShimFile     = "/usr/lib/shim/shimx64.efi.signed"
	GRUBEFIDir   = "/usr/lib/grub/x86_64-efi"
	grubNetMods  = []string{"normal", "configfile", "linux", "efinet", "net", "tftp", "http", "echo", "search", "search_fs_file", "search_fs_uuid", "search_label", "test", "chain", "boot", "gzio", "part_gpt", "part_msdos", "fat", "ext2", "efi_gop", "serial", "terminal", "ls", "cat", "halt", "reboot", "minicmd", "sleep", "true"}
	bootloaderRV = "bootloader-v1"
)

// bootloaderProducts writes the pxelinux and grub-efi-signed products' archives into out.
func (b *Builder) bootloaderProducts(ctx context.Context, out, updated string) (ssProducts, []string, error) {
	p := ssProducts{ContentID: BootloaderContentID, Datatype: "image-ids", Format: "products:1.0", Updated: updated, Products: map[string]map[string]any{}}
	pxe := map[string][]byte{}
	for name, src := range PXELinuxFiles {
		data, err := os.ReadFile(src)
		if err != nil {
			return p, nil, fmt.Errorf("images: pxelinux bootloader: %w (install pxelinux and syslinux-common)", err)
		}
		pxe[name] = data
	}
	shim, err := os.ReadFile(ShimFile)
	if err != nil {
		return p, nil, fmt.Errorf("images: uefi bootloader: %w (install shim-signed)", err)
	}
	grubx64, err := b.grubNetImage(ctx)
	if err != nil {
		return p, nil, err
	}
	ver := time.Now().UTC().Format("20060102") + ".0"
	type arch struct {
		product, os, btype, arch string
		items                    map[string]map[string][]byte
	}
	for _, a := range []arch{
		{"com.ubuntu.maas.stable:1:pxelinux:pxe:i386", "pxelinux", "pxe", "i386", map[string]map[string][]byte{"syslinux": pxe}},
		{"com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64", "grub-efi-signed", "uefi", "amd64", map[string]map[string][]byte{
			"shim-signed": {"bootx64.efi": shim}, "grub2-signed": {"grubx64.efi": grubx64}}},
	} {
		items := map[string]ssItem{}
		for item, members := range a.items {
			rel := fmt.Sprintf("bootloaders/%s/%s/%s/%s.tar.xz", a.btype, a.arch, ver, item)
			data, err := tarXZ(members)
			if err != nil {
				return p, nil, err
			}
			if err := writeFileAtomic(filepath.Join(out, rel), data, 0o644); err != nil {
				return p, nil, err
			}
			sum, size, err := fileSHA256(filepath.Join(out, rel))
			if err != nil {
				return p, nil, err
			}
			items[item] = ssItem{FType: "archive.tar.xz", Path: rel, SHA256: sum, Size: size, SrcPackage: item, SrcVersion: "host", SrcRelease: "bookworm"}
		}
		p.Products[a.product] = map[string]any{
			"arch": a.arch, "arches": a.arch, "bootloader-type": a.btype, "label": "stable", "os": a.os,
			"versions": map[string]ssVersion{ver: {Items: items}},
		}
	}
	return p, sortedKeys(p.Products), nil
}

// grubNetImage builds (once per GRUB version, cached) the network GRUB image MAAS serves as
// grubx64.efi: it loads /grub/grub.cfg from the server it was loaded from.
func (b *Builder) grubNetImage(ctx context.Context) ([]byte, error) {
	ver, _ := os.ReadFile(filepath.Join(GRUBEFIDir, "modinfo.sh"))
	key := hashOf(bootloaderRV, ver)
	cached := filepath.Join(b.cacheDir(), "bootloaders", "grubx64-"+key[:16]+".efi")
	if data, err := os.ReadFile(cached); err == nil {
		return data, nil
	}
	if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	tmp := cached + ".tmp"
	args := append([]string{"-O", "x86_64-efi", "-d", GRUBEFIDir, "-p", "/grub", "-o", tmp}, grubNetMods...)
	if out, err := runTool(ctx, "grub-mkimage", args...); err != nil {
		return nil, fmt.Errorf("images: grub network image: %w: %s", err, out)
	}
	if err := os.Rename(tmp, cached); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	return os.ReadFile(cached)
}

// tarXZ packs members (flat, sorted, owned by root, mode 0644) into a .tar.xz.
func tarXZ(members map[string][]byte) ([]byte, error) {
	var buf bytes.Buffer
	xw, err := xz.NewWriter(&buf)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(xw)
	for _, name := range sortedKeys(members) {
		data := members[name]
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0), Format: tar.FormatGNU}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := xw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// PublishedEphemeral builds (or reuses) the test ephemeral and publishes it once into
// Cache/published/ephemeral-<key>, returning that SimpleStreams tree.
func (b *Builder) PublishedEphemeral(ctx context.Context) (string, error) {
	e, err := b.Ephemeral(ctx)
	if err != nil {
		return "", err
	}
	out := filepath.Join(b.cacheDir(), "published", "ephemeral-"+e.Key[:16])
	if _, err := os.Stat(filepath.Join(out, "streams", "v1", "index.json")); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".publish-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if _, err := b.PublishEphemeral(ctx, e, tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, out); err != nil {
		// Another process published it meanwhile.
		if _, serr := os.Stat(filepath.Join(out, "streams", "v1", "index.json")); serr == nil {
			return out, nil
		}
		return "", err
	}
	return out, nil
}
