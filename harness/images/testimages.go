package images

import (
	"archive/tar"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/maasemu/maasemu/harness/diskimage"
	"github.com/maasemu/maasemu/harness/images/debs"
)

//go:embed files/curtin-hooks
var curtinHooks []byte

//go:embed files/curtin-hooks-python
var curtinHooksPython []byte

// Expected outcomes of deploying a test image.
const (
	ExpectDeployed        = "deployed"
	ExpectFailed          = "failed"
	ExpectRefusedByLint   = "refused-by-lint"
	ExpectRefusedByUpload = "refused-by-upload"
)

// TestImagePackages go into every test image: real bash (MAAS's late commands run
// `bash -c`) and busybox for everything else.
var TestImagePackages = []string{"bash", "busybox-static"}

// BuiltinHooksPackages add GRUB to the one test image without curtin hooks, so that
// curtin's builtin curthooks can run install-grub in-target. Only that image carries GRUB:
// the others install the bootloader from the ephemeral through their curtin-hooks, which
// keeps them small.
var BuiltinHooksPackages = []string{"grub-pc-bin", "grub-efi-amd64-bin", "grub-common", "grub2-common"}

const testImagesRecipe = "testimages-v2"

// TestImage is one entry of the test-image manifest.
type TestImage struct {
	Name     string `json:"name"`
	File     string `json:"file"`     // file name in the output directory
	Filetype string `json:"filetype"` // what to upload it as (maas boot-resources create filetype=)
	Expected string `json:"expected"` // deployed | failed | refused-by-lint | refused-by-upload
	// Firmware limits the expectation to these firmwares (empty: bios and uefi); on the
	// others the image deploys.
	Firmware   []string `json:"firmware,omitempty"`
	Diagnosis  string   `json:"diagnosis,omitempty"` // text the diagnosis / error must contain
	Reproduces string   `json:"reproduces"`          // the user failure it reproduces, or what it proves
	Lint       []string `json:"lint"`                // lint finding ids expected (none on good images)
	SHA256     string   `json:"sha256"`
	Size       int64    `json:"size"`
	RootUUID   string   `json:"root_uuid,omitempty"` // dd images: the UUID of the partition holding curtin/
}

// TestManifest lists the built test images.
type TestManifest struct {
	Key    string      `json:"key"`
	Kernel string      `json:"kernel"`
	Images []TestImage `json:"images"`
}

// Image returns the entry named name.
func (m *TestManifest) Image(name string) (TestImage, bool) {
	for _, im := range m.Images {
		if im.Name == name {
			return im, true
		}
	}
	return TestImage{}, false
}

// variant is how one test image's root tree differs from the good one.
type variant struct {
	noCloudInit, noNetplan, noKernel bool
	hooks                            string // "shell" (default), "exit1", "python", "none"
	fstab                            string // replaces /etc/fstab
	extra                            map[string]string
	noHookExec                       bool
	grub                             bool   // GRUB packages in the image (for builtin curthooks)
	espLoader                        string // the ESP's only loader (dd images), instead of EFI/BOOT/BOOTX64.EFI
}

// TestImages builds (or reuses from the cache) every test image and publishes them with
// manifest.json into out.
func (b *Builder) TestImages(ctx context.Context, out string) (*TestManifest, error) {
	unlock, err := b.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	agent, err := b.agentBytes()
	if err != nil {
		return nil, err
	}
	k, err := b.getKernel(ctx)
	if err != nil {
		return nil, err
	}
	base, pkgs, err := b.stageRoot(ctx, TestImagePackages)
	if err != nil {
		return nil, err
	}
	grubBase, grubPkgs, err := b.stageRoot(ctx, append(append([]string(nil), TestImagePackages...), BuiltinHooksPackages...))
	if err != nil {
		return nil, err
	}
	tools, toolPkgs, err := b.initrdTools(ctx)
	if err != nil {
		return nil, err
	}
	key := hashOf(testImagesRecipe, debs.Key(pkgs), debs.Key(grubPkgs), debs.Key(toolPkgs), k.Package.String(), agent, initramfsInit, udhcpcScript, imageInit, curtinHooks, curtinHooksPython, strings.Join(initrdModules, ","))
	dir := filepath.Join(b.cacheDir(), "testimages", key[:16])
	m := &TestManifest{}
	if data, err := os.ReadFile(filepath.Join(dir, "manifest.json")); err == nil && json.Unmarshal(data, m) == nil && m.Key == key {
		now := time.Now()
		os.Chtimes(dir, now, now) // recently used: pruneCache keeps it
		return m, b.publishTest(dir, out, m)
	}
	start := time.Now()
	b.log().Info("building the test images", "dir", dir)
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	work := filepath.Join(b.cacheDir(), "work", "testimages-"+key[:16])
	os.RemoveAll(work)
	defer os.RemoveAll(work)
	initrd := filepath.Join(work, "initrd.img")
	if err := b.buildInitrd(ctx, k, tools, initrd); err != nil {
		return nil, err
	}
	bb := filepath.Join(base, "usr/bin/busybox")
	applets, err := busyboxApplets(ctx, bb)
	if err != nil {
		return nil, err
	}
	mkTree := func(name string, v variant) (string, error) {
		tree := filepath.Join(work, "tree-"+name)
		from := base
		if v.grub {
			from = grubBase
		}
		if err := cloneTree(ctx, from, tree); err != nil {
			return "", err
		}
		return tree, b.populateTree(tree, k, initrd, agent, applets, v)
	}
	m.Key, m.Kernel = key, k.Package.String()
	add := func(im TestImage) error {
		sum, size, err := fileSHA256(filepath.Join(dir, im.File))
		if err != nil {
			return fmt.Errorf("images: %w", err)
		}
		im.SHA256, im.Size = sum, size
		if im.Lint == nil {
			im.Lint = []string{}
		}
		m.Images = append(m.Images, im)
		return nil
	}

	// good root tarballs
	good, err := mkTree("good", variant{})
	if err != nil {
		return nil, err
	}
	for _, c := range []struct{ ft, ext, comp string }{{"tgz", "tgz", "gzip"}, {"tbz", "tbz", "bzip2"}, {"txz", "txz", "xz"}} {
		file := "good-" + c.ext + ".root-" + c.ext
		if err := tarTree(ctx, good, filepath.Join(dir, file), c.comp); err != nil {
			return nil, err
		}
		if err := add(TestImage{Name: "good-" + c.ft, File: file, Filetype: c.ft, Expected: ExpectDeployed,
			Reproduces: "a bootable " + c.ft + " root tarball with curtin hooks that install GRUB (packer-maas style)"}); err != nil {
			return nil, err
		}
	}
	// good dd images of every dd filetype, from one disk
	rootUUID := uuid.NewSHA1(uuid.NameSpaceOID, []byte(key+"root")).String()
	espID := strings.ToUpper(key[:4] + "-" + key[4:8])
	disk := filepath.Join(work, "good.img")
	if err := makeDisk(ctx, good, disk, rootUUID, espID, ""); err != nil {
		return nil, err
	}
	for _, ft := range []string{"ddraw", "ddgz", "ddxz", "ddbz2", "ddtar", "ddtgz", "ddtbz", "ddtxz"} {
		file := "good-" + ft + ".img" + ddExt[ft]
		if err := packDisk(ctx, disk, filepath.Join(dir, file), ft); err != nil {
			return nil, err
		}
		if err := add(TestImage{Name: "good-" + ft, File: file, Filetype: ft, Expected: ExpectDeployed, RootUUID: rootUUID,
			Reproduces: "a GPT disk (bios_grub, ESP, ext4 root with curtin/) that boots by itself on BIOS and UEFI, as " + ft}); err != nil {
			return nil, err
		}
	}

	// broken images
	type broken struct {
		im TestImage
		v  variant
		dd bool
	}
	for _, br := range []broken{
		{TestImage{Name: "no-cloud-init", Filetype: "tgz", Expected: ExpectFailed, Lint: []string{"no-cloud-init"},
			Diagnosis:  "cloud-init not detected, MAAS will not be able to configure this machine properly",
			Reproduces: "an image without cloud-init: MAAS's 98-validate-custom-image-has-cloud-init late command fails"}, variant{noCloudInit: true}, false},
		{TestImage{Name: "no-netplan", Filetype: "tgz", Expected: ExpectFailed, Lint: []string{"no-netplan"},
			Diagnosis:  "netplan not detected, MAAS will not be able to configure this machine properly",
			Reproduces: "an ubuntu-based custom image without netplan: MAAS's 99-validate-custom-image-has-netplan late command fails"}, variant{noNetplan: true}, false},
		{TestImage{Name: "hooks-exit-1", Filetype: "tgz", Expected: ExpectFailed, Lint: []string{},
			Diagnosis:  "curtin-hooks",
			Reproduces: "curtin/curtin-hooks exits 1: the curthooks stage (configuring installed system) fails and the install fails"}, variant{hooks: "exit1"}, false},
		{TestImage{Name: "no-kernel", Filetype: "tgz", Expected: ExpectFailed, Lint: []string{"no-kernel"},
			Diagnosis:  "no kernel",
			Reproduces: "an image without a kernel in /boot: installs, then never boots"}, variant{noKernel: true}, false},
		{TestImage{Name: "network-disabled", Filetype: "tgz", Expected: ExpectFailed, Lint: []string{"network-disabled"},
			Diagnosis:  "never contacted",
			Reproduces: "cloud.cfg.d disables networking: the installed OS never fetches its user-data, the node stays Deploying (packer-maas#232)"},
			variant{extra: map[string]string{"etc/cloud/cloud.cfg.d/99-disable-network-config.cfg": "network: {config: disabled}\n"}}, false},
		{TestImage{Name: "hook-imports-curtin", Filetype: "tgz", Expected: ExpectFailed, Lint: []string{"hook-imports-curtin"},
			Diagnosis:  "No module named 'curtin'",
			Reproduces: "a packer-maas Python curtin-hooks that imports curtin: needs the real curtin (--curtin DIR)"}, variant{hooks: "python"}, false},
		{TestImage{Name: "hooks-not-executable", Filetype: "tgz", Expected: ExpectFailed, Lint: []string{"hooks-not-executable"},
			Diagnosis:  "curtin-hooks",
			Reproduces: "curtin/curtin-hooks without the execute bit: curtin cannot run it"}, variant{noHookExec: true}, false},
		{TestImage{Name: "builtin-hooks", Filetype: "tgz", Expected: ExpectDeployed, Lint: []string{"hooks-missing"},
			Reproduces: "a tgz without curtin/curtin-hooks (like packer-maas's CentOS/RHEL images): curtin's builtin curthooks install GRUB in-target from the image's own grub packages"},
			variant{hooks: "none", grub: true}, false},
		{TestImage{Name: "dd-no-curtin", Filetype: "ddxz", Expected: ExpectFailed, Lint: []string{"no-curtin-partition"},
			Diagnosis:  "Did not find any filesystem on",
			Reproduces: "a dd image with no partition holding curtin/: block-meta cannot pick the root"}, variant{hooks: "none"}, true},
		{TestImage{Name: "efi-rocky-only", Filetype: "ddgz", Expected: ExpectDeployed, Firmware: []string{"uefi"}, Lint: []string{"efi-loader-secureboot-only"},
			Reproduces: "the ESP has only /EFI/rocky/grubx64.efi: MAAS 3.7's local boot finds it only with Secure Boot off (its Secure Boot list is shortened, LP:2022084); MAAS before 3.5 found none (packer-maas#108)"},
			variant{espLoader: "EFI/rocky/grubx64.efi"}, true},
		{TestImage{Name: "efi-vendor-only", Filetype: "ddgz", Expected: ExpectFailed, Firmware: []string{"uefi"}, Lint: []string{"efi-loader-not-found"},
			Diagnosis:  "/efi/boot/bootx64.efi",
			Reproduces: "the ESP has only /EFI/almalinux/grubx64.efi, a vendor path on neither of MAAS's lists: the local boot finds no loader and exits (packer-maas#108)"},
			variant{espLoader: "EFI/almalinux/grubx64.efi"}, true},
		{TestImage{Name: "fstab-foreign", Filetype: "ddxz", Expected: ExpectFailed, Lint: []string{"fstab-unresolvable"},
			Diagnosis:  "Timed out waiting for device",
			Reproduces: "a baked-in fstab for another disk (by-label UEFI, a UUID that will not exist): emergency mode on first boot (packer-maas#362)"},
			variant{fstab: "UUID=0c0ffee0-1111-2222-3333-444444444444 / ext4 defaults 0 1\n/dev/disk/by-label/UEFI /boot/efi vfat defaults 0 1\n"}, true},
	} {
		tree, err := mkTree(br.im.Name, br.v)
		if err != nil {
			return nil, err
		}
		if !br.dd {
			br.im.File = br.im.Name + ".root-tgz"
			if err := tarTree(ctx, tree, filepath.Join(dir, br.im.File), "gzip"); err != nil {
				return nil, err
			}
		} else {
			img := filepath.Join(work, br.im.Name+".img")
			u := uuid.NewSHA1(uuid.NameSpaceOID, []byte(key+br.im.Name)).String()
			if br.v.fstab == "" {
				putFile(tree, "etc/fstab", []byte("UUID="+u+" / ext4 defaults 0 1\n"), 0o644)
			}
			if err := makeDisk(ctx, tree, img, u, espID, br.v.espLoader); err != nil {
				return nil, err
			}
			br.im.File = br.im.Name + ".img" + ddExt[br.im.Filetype]
			if err := packDisk(ctx, img, filepath.Join(dir, br.im.File), br.im.Filetype); err != nil {
				return nil, err
			}
			br.im.RootUUID = u
			if br.im.Name == "dd-no-curtin" {
				br.im.RootUUID = ""
			}
		}
		if err := add(br.im); err != nil {
			return nil, err
		}
	}
	// a raw dd.gz declared as ddtgz (packer-maas#271/#278)
	lie := TestImage{Name: "lying-filetype", File: "good-ddgz.img.gz", Filetype: "ddtgz", Expected: ExpectRefusedByLint,
		Lint:       []string{"filetype-mismatch"},
		Diagnosis:  "tar: This does not look like a tar archive",
		Reproduces: "a gzip-compressed raw disk uploaded with filetype ddtgz: curtin's `tar -xOzf -` fails (packer-maas#271, #278)"}
	if err := add(lie); err != nil {
		return nil, err
	}
	// a truncated tarball
	if err := truncateCopy(filepath.Join(dir, "good-tgz.root-tgz"), filepath.Join(dir, "truncated.root-tgz"), 0.6); err != nil {
		return nil, err
	}
	if err := add(TestImage{Name: "truncated-tgz", File: "truncated.root-tgz", Filetype: "tgz", Expected: ExpectRefusedByLint,
		Lint: []string{"archive-truncated"}, Diagnosis: "Unexpected EOF in archive",
		Reproduces: "an upload cut short: the tarball ends mid-archive, curtin's tar fails while extracting"}); err != nil {
		return nil, err
	}
	sort.Slice(m.Images, func(i, j int) bool { return m.Images[i].Name < m.Images[j].Name })
	data, _ := json.MarshalIndent(m, "", "  ")
	if err := writeFileAtomic(filepath.Join(dir, "manifest.json"), append(data, '\n'), 0o644); err != nil {
		return nil, err
	}
	pruneCache(filepath.Dir(dir), 3)
	b.log().Info("built the test images", "count", len(m.Images), "took", time.Since(start).Round(time.Millisecond))
	return m, b.publishTest(dir, out, m)
}

func (b *Builder) publishTest(dir, out string, m *TestManifest) error {
	if out == "" {
		return nil
	}
	for _, im := range m.Images {
		if err := linkOrCopy(filepath.Join(dir, im.File), filepath.Join(out, im.File)); err != nil {
			return err
		}
	}
	return linkOrCopy(filepath.Join(dir, "manifest.json"), filepath.Join(out, "manifest.json"))
}

var ddExt = map[string]string{"ddraw": "", "ddgz": ".gz", "ddxz": ".xz", "ddbz2": ".bz2", "ddtar": ".tar", "ddtgz": ".tar.gz", "ddtbz": ".tar.bz2", "ddtxz": ".tar.xz"}

// populateTree turns a clone of the staged Debian root into a test image's root.
func (b *Builder) populateTree(tree string, k *Kernel, initrd string, agent []byte, applets []string, v variant) error {
	// busybox applets for everything bash/glibc do not provide
	for _, a := range applets {
		rel := "usr/bin/" + a
		if a == "busybox" {
			continue
		}
		if _, err := os.Lstat(filepath.Join(tree, rel)); err == nil {
			continue
		}
		if _, err := os.Lstat(filepath.Join(tree, "usr/sbin", a)); err == nil {
			continue
		}
		if err := putLink(tree, rel, "busybox"); err != nil {
			return err
		}
	}
	osRelease := "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm) maasemu test image\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n"
	cloudCfg := "# maasemu test image\ndatasource_list: [ MAAS, None ]\n"
	steps := []error{
		putFile(tree, "usr/lib/os-release", []byte(osRelease), 0o644),
		putLink(tree, "etc/os-release", "../usr/lib/os-release"),
		putFile(tree, "usr/sbin/init", imageInit, 0o755),
		putFile(tree, "etc/cloud/cloud.cfg", []byte(cloudCfg), 0o644),
		putFile(tree, "etc/hostname", []byte("maasemu-image\n"), 0o644),
		os.MkdirAll(filepath.Join(tree, "boot/efi"), 0o755),
		os.MkdirAll(filepath.Join(tree, "var/lib/maasemu"), 0o755),
	}
	if !v.noKernel {
		steps = append(steps,
			copyFile(k.Vmlinuz, filepath.Join(tree, "boot", "vmlinuz-"+k.Version), 0o644),
			copyFile(initrd, filepath.Join(tree, "boot", "initrd.img-"+k.Version), 0o644),
			putLink(tree, "boot/vmlinuz", "vmlinuz-"+k.Version),
			putLink(tree, "boot/initrd.img", "initrd.img-"+k.Version),
		)
	}
	if !v.noCloudInit {
		steps = append(steps, putFile(tree, "usr/bin/cloud-init", agent, 0o755))
		if !v.noNetplan {
			steps = append(steps, putLink(tree, "usr/sbin/netplan", "../bin/cloud-init"))
		}
	} else if !v.noNetplan {
		steps = append(steps, putFile(tree, "usr/sbin/netplan", agent, 0o755))
	}
	hookMode := os.FileMode(0o750)
	if v.noHookExec {
		hookMode = 0o640
	}
	switch v.hooks {
	case "", "shell":
		steps = append(steps, putFile(tree, "curtin/curtin-hooks", curtinHooks, hookMode))
	case "exit1":
		steps = append(steps, putFile(tree, "curtin/curtin-hooks", []byte("#!/bin/sh\necho 'curtin-hooks: failing on purpose (maasemu hooks-exit-1 image)' >&2\nexit 1\n"), 0o750))
	case "python":
		steps = append(steps, putFile(tree, "curtin/curtin-hooks", curtinHooksPython, 0o750))
	case "none":
	}
	if v.fstab != "" {
		steps = append(steps, putFile(tree, "etc/fstab", []byte(v.fstab), 0o644))
	}
	for rel, content := range v.extra {
		steps = append(steps, putFile(tree, rel, []byte(content), 0o644))
	}
	// GRUB configuration for dd images: find the root by the file only it has
	grubCfg := "set timeout=1\nserial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n" +
		"search --no-floppy --file --set=root /boot/maasemu-root\n" +
		"menuentry 'maasemu test image' {\n\tlinux /boot/vmlinuz root=LABEL=" + rootLabel + " ro console=tty0 console=ttyS0,115200\n\tinitrd /boot/initrd.img\n}\n"
	steps = append(steps, putFile(tree, "boot/grub/grub.cfg", []byte(grubCfg), 0o644), putFile(tree, "boot/maasemu-root", []byte("maasemu test image root\n"), 0o644))
	for _, err := range steps {
		if err != nil {
			return fmt.Errorf("images: populating %s: %w", tree, err)
		}
	}
	return nil
}

// rootLabel is the label of the test images' root filesystem (Ubuntu cloud images' label).
const rootLabel = "cloudimg-rootfs"

// tarTree writes tree as a tar archive (members "./...", numeric owners) compressed with
// comp ("gzip", "bzip2", "xz" or "" for none) to out.
func tarTree(ctx context.Context, tree, out, comp string) error {
	return compressTo(ctx, out, comp, func(w io.Writer) error {
		tw := tar.NewWriter(w)
		err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(tree, p)
			st, err := os.Lstat(p)
			if err != nil {
				return err
			}
			link := ""
			if st.Mode()&os.ModeSymlink != 0 {
				if link, err = os.Readlink(p); err != nil {
					return err
				}
			}
			h, err := tar.FileInfoHeader(st, link)
			if err != nil {
				return err
			}
			h.Name = "./" + filepath.ToSlash(rel)
			if rel == "." {
				h.Name = "./"
			} else if st.IsDir() {
				h.Name += "/"
			}
			if sys, ok := st.Sys().(*syscall.Stat_t); ok {
				h.Uid, h.Gid = int(sys.Uid), int(sys.Gid)
			}
			h.Uname, h.Gname = "", ""
			h.ModTime = time.Unix(st.ModTime().Unix(), 0)
			h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
			h.Format = tar.FormatGNU
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if st.Mode().IsRegular() {
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				_, err = io.Copy(tw, f)
				f.Close()
				return err
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tw.Close()
	})
}

// compressTo runs fill into a compressor (host gzip/bzip2/xz, for speed) writing out.
func compressTo(ctx context.Context, out, comp string, fill func(io.Writer) error) error {
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	defer os.Remove(tmp)
	defer f.Close()
	if comp == "" {
		if err := fill(f); err != nil {
			return fmt.Errorf("images: writing %s: %w", out, err)
		}
	} else {
		args := map[string][]string{"gzip": {"-n", "-6", "-c"}, "bzip2": {"-9", "-c"}, "xz": {"-T2", "-6", "-c"}}[comp]
		if args == nil {
			return fmt.Errorf("images: unknown compression %q", comp)
		}
		cmd := exec.CommandContext(ctx, comp, args...)
		cmd.Stdout = f
		var stderr strings.Builder
		cmd.Stderr = &stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("images: %s: %w", comp, err)
		}
		ferr := fill(in)
		in.Close()
		werr := cmd.Wait()
		if ferr != nil {
			return fmt.Errorf("images: writing %s: %w", out, ferr)
		}
		if werr != nil {
			return fmt.Errorf("images: %s: %w: %s", comp, werr, stderr.String())
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// packDisk writes the raw disk image in the form a dd filetype expects.
func packDisk(ctx context.Context, disk, out, ft string) error {
	raw := func(w io.Writer) error {
		f, err := os.Open(disk)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	}
	tarred := func(w io.Writer) error {
		st, err := os.Stat(disk)
		if err != nil {
			return err
		}
		tw := tar.NewWriter(w)
		if err := tw.WriteHeader(&tar.Header{Name: "disk.img", Mode: 0o644, Size: st.Size(), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0), Format: tar.FormatGNU}); err != nil {
			return err
		}
		if err := raw(tw); err != nil {
			return err
		}
		return tw.Close()
	}
	switch ft {
	case "ddraw":
		if out, err := exec.CommandContext(ctx, "cp", "--sparse=always", disk, out).CombinedOutput(); err != nil {
			return fmt.Errorf("images: cp %s: %w: %s", disk, err, out)
		}
		return nil
	case "ddgz":
		return compressTo(ctx, out, "gzip", raw)
	case "ddxz":
		return compressTo(ctx, out, "xz", raw)
	case "ddbz2":
		return compressTo(ctx, out, "bzip2", raw)
	case "ddtar":
		return compressTo(ctx, out, "", tarred)
	case "ddtgz":
		return compressTo(ctx, out, "gzip", tarred)
	case "ddtbz":
		return compressTo(ctx, out, "bzip2", tarred)
	case "ddtxz":
		return compressTo(ctx, out, "xz", tarred)
	}
	return fmt.Errorf("images: unknown dd filetype %q", ft)
}

func truncateCopy(src, dst string, frac float64) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return writeFileAtomic(dst, data[:int(float64(len(data))*frac)], 0o644)
}

// treeSize is the apparent size of the files below tree.
func treeSize(tree string) (int64, error) {
	var n int64
	err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if info, err := d.Info(); err == nil {
			n += info.Size() + 4096
		}
		return nil
	})
	return n, err
}

// Disk layout of the dd test images.
const (
	mib     = 1 << 20
	espSize = 16 * mib
)

// makeDisk builds a GPT disk: 1 MiB bios_grub, a FAT ESP with GRUB as /EFI/BOOT/BOOTX64.EFI
// (or GRUB as espLoader only, when set), and an ext4 root made from tree, with GRUB's BIOS
// boot code embedded.
func makeDisk(ctx context.Context, tree, out, rootUUID, espID, espLoader string) error {
	sz, err := treeSize(tree)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	rootSize := (sz*13/10/mib + 16) * mib
	bios := diskimage.Partition{Number: 1, Start: mib, Size: mib, Flag: diskimage.FlagBIOSGrub, Name: "BIOS boot"}
	esp := diskimage.Partition{Number: 2, Start: 2 * mib, Size: espSize, Flag: diskimage.FlagBoot, Name: "ESP"}
	root := diskimage.Partition{Number: 3, Start: 2*mib + espSize, Size: rootSize, Flag: diskimage.FlagLinux, Name: "root"}
	total := root.End() + mib
	os.Remove(out)
	if err := diskimage.CreateSparse(out, total); err != nil {
		return err
	}
	if err := diskimage.WriteTable(out, diskimage.Table{Type: diskimage.GPT, Partitions: []diskimage.Partition{bios, esp, root}}); err != nil {
		return err
	}
	espTree, err := os.MkdirTemp(filepath.Dir(out), "esp-")
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	defer os.RemoveAll(espTree)
	if espLoader == "" {
		espLoader = "EFI/BOOT/BOOTX64.EFI"
	}
	efi := filepath.Join(espTree, filepath.FromSlash(espLoader))
	if err := os.MkdirAll(filepath.Dir(efi), 0o755); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	early := filepath.Join(espTree, "..", filepath.Base(espTree)+".cfg")
	defer os.Remove(early)
	if err := os.WriteFile(early, []byte("search --no-floppy --file --set=root /boot/maasemu-root\nset prefix=($root)/boot/grub\n"), 0o644); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	args := append([]string{"-O", "x86_64-efi", "-d", GRUBEFIDir, "-c", early, "-p", "/boot/grub", "-o", efi},
		"part_gpt", "part_msdos", "ext2", "fat", "normal", "linux", "configfile", "search", "search_fs_file", "search_fs_uuid",
		"search_label", "echo", "test", "serial", "terminal", "efi_gop", "gzio", "boot", "chain", "ls", "cat", "minicmd", "halt", "reboot")
	if b, err := runTool(ctx, "grub-mkimage", args...); err != nil {
		return fmt.Errorf("images: grub-mkimage x86_64-efi: %w: %s", err, b)
	}
	if err := diskimage.MakeFAT(ctx, out, esp.Start, esp.Size, espTree, diskimage.FSOptions{Label: "ESP", UUID: espID, FATBits: 16}); err != nil {
		return err
	}
	if err := diskimage.MakeExt4(ctx, out, root.Start, root.Size, tree, diskimage.FSOptions{Label: rootLabel, UUID: rootUUID}); err != nil {
		return err
	}
	return diskimage.EmbedGRUBBIOS(ctx, out, bios, "/boot/grub")
}
