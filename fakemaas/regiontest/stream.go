package regiontest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ulikunitz/xz"
)

// StreamFile is one item written into a generated stream.
type StreamFile struct {
	Path    string // relative to the stream root
	Content []byte
}

// StreamProduct describes an image product to generate.
type StreamProduct struct {
	OS, Release, Version, Arch, Subarch, Subarches, Label, KFlavor string
	VersionName                                                    string            // e.g. "20250718"
	Files                                                          map[string][]byte // ftype -> content (boot-kernel, boot-initrd, squashfs, manifest, root-tgz)
}

// StreamBootloader describes a bootloader product: an archive.tar.xz with Files.
type StreamBootloader struct {
	OS, Type, Arch, VersionName, Item string
	Files                             map[string][]byte // name in the archive -> content
}

// Stream is a generated SimpleStreams tree.
type Stream struct {
	Dir         string
	Products    []StreamProduct
	Bootloaders []StreamBootloader
	Signed      bool // write index.sjson (clearsigned-looking) instead of index.json
	StreamName  string
}

// DefaultStream is a small Ubuntu noble amd64 ephemeral (ga-24.04, generic among its
// subarches) with pxelinux and grub-efi-signed bootloaders, a few KiB per file.
func DefaultStream(dir string) *Stream {
	kb := func(tag string, n int) []byte { return bytes.Repeat([]byte(tag), n*1024/len(tag)) }
	return &Stream{Dir: dir, StreamName: "stable",
		Products: []StreamProduct{{OS: "ubuntu", Release: "noble", Version: "24.04", Arch: "amd64", Subarch: "ga-24.04",
			Subarches: "generic,hwe-22.04,ga-24.04", Label: "stable", KFlavor: "generic", VersionName: "20250718",
			Files: map[string][]byte{"boot-kernel": kb("kernel-noble ", 4), "boot-initrd": kb("initrd-noble ", 6),
				"squashfs": kb("squashfs-noble ", 8), "manifest": []byte("bash 5.2\ncloud-init 24.4\n")}}},
		Bootloaders: []StreamBootloader{
			{OS: "pxelinux", Type: "pxe", Arch: "i386", VersionName: "20231004.0", Item: "syslinux",
				Files: map[string][]byte{"lpxelinux.0": kb("lpxelinux ", 2), "ldlinux.c32": kb("ldlinux ", 2), "chain.c32": kb("chain ", 1)}},
			{OS: "grub-efi-signed", Type: "uefi", Arch: "amd64", VersionName: "20231004.0", Item: "grub2-signed",
				Files: map[string][]byte{"bootx64.efi": kb("shim ", 2), "grubx64.efi": kb("grub ", 3)}},
		}}
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func tarXZ(files map[string][]byte) ([]byte, error) {
	var buf bytes.Buffer
	xw, err := xz.NewWriter(&buf)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(xw)
	for _, name := range sortedNames(files) {
		if err := tw.WriteHeader(&tar.Header{Name: "./" + name, Mode: 0o644, Size: int64(len(files[name])), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(files[name]); err != nil {
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

func sortedNames(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// Write writes the tree under s.Dir: streams/v1/index.json (or index.sjson), one products
// file for images and one for bootloaders, and the files.
func (s *Stream) Write() error {
	st := s.StreamName
	if st == "" {
		st = "stable"
	}
	write := func(rel string, b []byte) error {
		p := filepath.Join(s.Dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, b, 0o644)
	}
	images := map[string]any{}
	var imageNames []string
	for _, p := range s.Products {
		name := fmt.Sprintf("com.ubuntu.maas.%s:v3:boot:%s:%s:%s", st, p.Version, p.Arch, p.Subarch)
		items := map[string]any{}
		for ftype, content := range p.Files {
			rel := fmt.Sprintf("%s/%s/%s/%s/%s", p.Release, p.Arch, p.VersionName, p.Subarch, ftype)
			if ftype == "squashfs" || ftype == "manifest" {
				rel = fmt.Sprintf("%s/%s/%s/%s", p.Release, p.Arch, p.VersionName, map[string]string{"squashfs": "squashfs", "manifest": "squashfs.manifest"}[ftype])
			}
			if err := write(rel, content); err != nil {
				return err
			}
			items[ftype] = map[string]any{"ftype": ftype, "path": rel, "sha256": sum(content), "size": len(content)}
		}
		images[name] = map[string]any{"arch": p.Arch, "kflavor": p.KFlavor, "krel": p.Release, "label": p.Label, "os": p.OS,
			"release": p.Release, "release_title": p.Version, "subarch": p.Subarch, "subarches": p.Subarches, "version": p.Version,
			"versions": map[string]any{p.VersionName: map[string]any{"items": items}}}
		imageNames = append(imageNames, name)
	}
	loaders := map[string]any{}
	var loaderNames []string
	for _, b := range s.Bootloaders {
		name := fmt.Sprintf("com.ubuntu.maas.%s:1:%s:%s:%s", st, b.OS, b.Type, b.Arch)
		archive, err := tarXZ(b.Files)
		if err != nil {
			return err
		}
		rel := fmt.Sprintf("bootloaders/%s/%s/%s/%s.tar.xz", b.Type, b.Arch, b.VersionName, b.Item)
		if err := write(rel, archive); err != nil {
			return err
		}
		loaders[name] = map[string]any{"arch": b.Arch, "arches": b.Arch, "bootloader-type": b.Type, "label": "stable", "os": b.OS,
			"versions": map[string]any{b.VersionName: map[string]any{"items": map[string]any{b.Item: map[string]any{
				"ftype": "archive.tar.xz", "path": rel, "sha256": sum(archive), "size": len(archive)}}}}}
		loaderNames = append(loaderNames, name)
	}
	imgPath := fmt.Sprintf("streams/v1/com.ubuntu.maas:%s:v3:download.json", st)
	blPath := fmt.Sprintf("streams/v1/com.ubuntu.maas:%s:1:bootloader-download.json", st)
	for _, f := range []struct {
		path, id string
		prods    map[string]any
	}{{imgPath, "com.ubuntu.maas:" + st + ":v3:download", images}, {blPath, "com.ubuntu.maas:" + st + ":1:bootloader-download", loaders}} {
		b, _ := json.MarshalIndent(map[string]any{"content_id": f.id, "datatype": "image-ids", "format": "products:1.0",
			"updated": "Thu, 24 Jul 2025 08:01:49 +0000", "products": f.prods}, "", " ")
		if err := write(f.path, b); err != nil {
			return err
		}
	}
	idx, _ := json.MarshalIndent(map[string]any{"format": "index:1.0", "updated": "Thu, 24 Jul 2025 08:01:49 +0000",
		"index": map[string]any{
			"com.ubuntu.maas:" + st + ":v3:download":           map[string]any{"datatype": "image-ids", "format": "products:1.0", "path": imgPath, "products": imageNames},
			"com.ubuntu.maas:" + st + ":1:bootloader-download": map[string]any{"datatype": "image-ids", "format": "products:1.0", "path": blPath, "products": loaderNames},
		}}, "", " ")
	if s.Signed {
		signed := "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n" + string(idx) +
			"\n-----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCgAdFiEEfake\n-----END PGP SIGNATURE-----\n"
		return write("streams/v1/index.sjson", []byte(signed))
	}
	return write("streams/v1/index.json", idx)
}
