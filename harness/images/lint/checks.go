package lint

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/maasemu/maasemu/harness/diskimage"
)

// view is a root filesystem lint can look into: a scanned tarball or a partition.
type view interface {
	lmode(p string) (os.FileMode, bool)
	readlink(p string) (string, bool)
	readFile(p string) ([]byte, bool)
	list(dir string) []string
}

// resolve follows symbolic links in every element of p (relative to the view's root).
func resolve(v view, p string) (string, bool) {
	return resolveN(v, strings.Trim(path.Clean("/"+p), "/"), 0)
}

func resolveN(v view, p string, hops int) (string, bool) {
	if p == "" || p == "." {
		return "", true
	}
	if hops > 16 {
		return "", false
	}
	cur := ""
	parts := strings.Split(p, "/")
	for i, el := range parts {
		next := path.Join(cur, el)
		m, ok := v.lmode(next)
		if !ok {
			return "", false
		}
		if m&os.ModeSymlink != 0 {
			t, ok := v.readlink(next)
			if !ok {
				return "", false
			}
			if strings.HasPrefix(t, "/") {
				next = strings.Trim(path.Clean(t), "/")
			} else {
				next = strings.Trim(path.Clean("/"+path.Join(cur, t)), "/")
			}
			r, ok := resolveN(v, next, hops+1)
			if !ok {
				return "", false
			}
			next = r
		}
		cur = next
		_ = i
	}
	return cur, true
}

func exists(v view, p string) bool { _, ok := resolve(v, p); return ok }

func mode(v view, p string) (os.FileMode, bool) {
	r, ok := resolve(v, p)
	if !ok {
		return 0, false
	}
	if r == "" {
		return os.ModeDir | 0o755, true
	}
	return v.lmode(r)
}

func read(v view, p string) ([]byte, bool) {
	r, ok := resolve(v, p)
	if !ok {
		return nil, false
	}
	return v.readFile(r)
}

// tree implements view.
func (t *tree) lmode(p string) (os.FileMode, bool) {
	if m, ok := t.modes[p]; ok {
		return m, true
	}
	// a directory only implied by its entries
	pre := p + "/"
	for k := range t.modes {
		if strings.HasPrefix(k, pre) {
			return os.ModeDir | 0o755, true
		}
	}
	return 0, false
}
func (t *tree) readlink(p string) (string, bool) { s, ok := t.links[p]; return s, ok }
func (t *tree) readFile(p string) ([]byte, bool) { b, ok := t.files[p]; return b, ok }
func (t *tree) list(dir string) []string {
	pre := dir + "/"
	if dir == "" {
		pre = ""
	}
	seen := map[string]bool{}
	for k := range t.modes {
		if rest, ok := strings.CutPrefix(k, pre); ok && rest != "" {
			seen[strings.SplitN(rest, "/", 2)[0]] = true
		}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// partView implements view on a partition of a disk image.
type partView struct {
	img string
	fs  diskimage.FS
}

func (v partView) lmode(p string) (os.FileMode, bool) {
	if p == "" {
		return os.ModeDir | 0o755, true
	}
	ents, err := diskimage.ReadDir(v.img, v.fs, path.Dir("/"+p))
	if err != nil {
		return 0, false
	}
	base := path.Base(p)
	for _, e := range ents {
		if e.Name == base || (v.fs.Type == diskimage.FSVFAT && strings.EqualFold(e.Name, base)) {
			return e.Mode, true
		}
	}
	return 0, false
}
func (v partView) readlink(p string) (string, bool) {
	s, err := diskimage.Readlink(v.img, v.fs, "/"+p)
	return s, err == nil
}
func (v partView) readFile(p string) ([]byte, bool) {
	b, err := diskimage.ReadFile(v.img, v.fs, "/"+p)
	return b, err == nil
}
func (v partView) list(dir string) []string {
	ents, err := diskimage.ReadDir(v.img, v.fs, "/"+dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name)
	}
	return out
}

var (
	pythonShebang  = regexp.MustCompile(`^#![^\n]*python`)
	importsCurtin  = regexp.MustCompile(`(?m)^\s*(from\s+curtin(\.|\s)|import\s+curtin)`)
	networkDisable = regexp.MustCompile(`(?m)^\s*network\s*:\s*(\{\s*config\s*:\s*disabled|\n\s+config\s*:\s*disabled)`)
)

// lintTree checks a root filesystem (a tarball's, or a dd image's curtin partition).
func lintTree(r *Report, v view, ft string) {
	hooks := "curtin/curtin-hooks"
	if m, ok := mode(v, hooks); !ok {
		r.add("hooks-missing", Warning, "no curtin/curtin-hooks: curtin runs its builtin curthooks (install-grub in-target, fstab, networking), which need GRUB and a distro curtin knows inside the image",
			"without GRUB in the image: 'curthooks ... install-grub: FAIL' / 'Unknown distro'")
	} else {
		if m.IsDir() {
			r.add("hooks-not-executable", Error, "curtin/curtin-hooks is a directory", "curtin skips it and runs its builtin hooks")
		} else if m&0o111 == 0 {
			r.add("hooks-not-executable", Error, fmt.Sprintf("curtin/curtin-hooks has mode %04o, no execute bit", m.Perm()),
				"curtin's curthooks stage fails running it: '[Errno 13] Permission denied' (configuring installed system: FAIL)")
		}
		if b, ok := read(v, hooks); ok && pythonShebang.Match(b) && importsCurtin.Match(b) {
			r.add("hook-imports-curtin", Warning, "curtin/curtin-hooks is a Python hook that imports curtin (packer-maas style): it needs the real curtin on PYTHONPATH",
				"with maasemu's own installer: \"ModuleNotFoundError: No module named 'curtin'\"; run with --curtin DIR (MAAS packs the region's curtin)")
		}
	}
	if !anyExists(v, "usr/bin/cloud-init", "bin/cloud-init", "usr/local/bin/cloud-init") {
		r.add("no-cloud-init", Error, "no cloud-init in the image (usr/bin/cloud-init)",
			"MAAS's late command 98-validate-custom-image-has-cloud-init fails: 'cloud-init not detected, MAAS will not be able to configure this machine properly'")
	}
	if !anyExists(v, "usr/sbin/netplan", "sbin/netplan", "usr/bin/netplan") {
		r.add("no-netplan", Warning, "no netplan in the image (usr/sbin/netplan); MAAS checks for it when the image's base_image is ubuntu",
			"MAAS's late command 99-validate-custom-image-has-netplan fails: 'netplan not detected, MAAS will not be able to configure this machine properly'")
	}
	if !hasKernel(v) {
		r.add("no-kernel", Error, "no kernel in /boot (vmlinuz*, vmlinux*)",
			"the installed system cannot boot: GRUB has no linux to load and the machine never reaches first boot")
	}
	if !anyExists(v, "etc/os-release", "usr/lib/os-release") {
		r.add("no-os-release", Warning, "no /etc/os-release", "curtin's builtin hooks cannot tell the distro: 'Unknown distro'")
	}
	for _, p := range append([]string{"etc/cloud/cloud.cfg"}, prefixed("etc/cloud/cloud.cfg.d", listResolved(v, "etc/cloud/cloud.cfg.d"))...) {
		if b, ok := read(v, p); ok && networkDisable.Match(b) {
			r.add("network-disabled", Warning, "/"+p+" disables cloud-init's network configuration",
				"the installed OS never brings its NIC up, never fetches its user-data, and the node stays Deploying until MAAS's 30-minute timeout")
		}
	}
	if !strings.HasPrefix(ft, "dd") {
		if b, ok := read(v, "etc/fstab"); ok {
			for _, e := range fstabEntries(b) {
				if stableSpec(e.spec) {
					r.add("fstab-unresolvable", Warning, fmt.Sprintf("/etc/fstab mounts %s on %s: MAAS makes new filesystems for tarballs, with new UUIDs and no such labels", e.spec, e.mnt),
						"if curtin's fstab does not replace it: 'Timed out waiting for device "+e.spec+"' and emergency mode on first boot")
				}
			}
		}
	}
}

func prefixed(dir string, names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		out = append(out, dir+"/"+n)
	}
	return out
}

func listResolved(v view, dir string) []string {
	r, ok := resolve(v, dir)
	if !ok {
		return nil
	}
	return v.list(r)
}

func anyExists(v view, ps ...string) bool {
	for _, p := range ps {
		if exists(v, p) {
			return true
		}
	}
	return false
}

func hasKernel(v view) bool {
	for _, n := range listResolved(v, "boot") {
		if strings.HasPrefix(n, "vmlinuz") || strings.HasPrefix(n, "vmlinux") || n == "bzImage" {
			return exists(v, "boot/"+n)
		}
	}
	return false
}

type fstabEntry struct{ spec, mnt, fstype, opts string }

func fstabEntries(b []byte) []fstabEntry {
	var out []fstabEntry
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || strings.HasPrefix(f[0], "#") {
			continue
		}
		e := fstabEntry{spec: f[0], mnt: f[1], fstype: f[2]}
		if len(f) > 3 {
			e.opts = f[3]
		}
		if strings.Contains(","+e.opts+",", ",nofail,") || e.fstype == "proc" || e.fstype == "tmpfs" || e.fstype == "sysfs" || e.spec == "none" {
			continue
		}
		out = append(out, e)
	}
	return out
}

func stableSpec(s string) bool {
	for _, p := range []string{"UUID=", "LABEL=", "PARTUUID=", "PARTLABEL=", "/dev/disk/by-"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// MAAS's UEFI "Local" boot entry (templates/uefi/config.local.amd64.template) searches
// these under /efi/ on every filesystem GRUB can read; the second list only when Secure
// Boot is off.
var (
	efiPaths           = []string{"boot/bootx64.efi", "ubuntu/shimx64.efi", "ubuntu/grubx64.efi", "Microsoft/Boot/bootmgfw.efi"}
	efiPathsInsecure   = []string{"centos/shimx64.efi", "centos/grubx64.efi", "redhat/shimx64.efi", "redhat/grubx64.efi", "rhel/shimx64.efi", "rhel/grubx64.efi", "rocky/shimx64.efi", "rocky/grubx64.efi", "suse/shim.efi", "suse/grubx64.efi", "ol/shim.efi", "ol/grubx64.efi", "red/grubx64.efi"}
	mountableByInstall = map[string]bool{diskimage.FSExt2: true, diskimage.FSExt3: true, diskimage.FSExt4: true, diskimage.FSXFS: true, diskimage.FSBtrfs: true, diskimage.FSVFAT: true}
)

// lintDisk checks a raw disk image spooled to a file.
func lintDisk(ctx context.Context, r *Report, img string) {
	fss, err := diskimage.Probe(img)
	if err != nil {
		r.add("no-partition-table", Error, "cannot read the disk's partition table: "+err.Error(),
			"block-meta: 'Did not find any filesystem on [...] that contained one of ['curtin', 'system-data/var/lib/snapd', 'snaps']'")
		return
	}
	if len(fss) == 1 && fss[0].Partition == 0 {
		r.add("no-partition-table", Error, "the disk image has no partition table", "block-meta: 'Did not find any filesystem on [...] that contained one of ['curtin', ...]'")
		return
	}
	readable := func(f diskimage.FS) bool {
		return f.Type == diskimage.FSExt2 || f.Type == diskimage.FSExt3 || f.Type == diskimage.FSExt4 || f.Type == diskimage.FSVFAT
	}
	var root *diskimage.FS
	var unreadable []string
	for i := range fss {
		f := fss[i]
		if ctx.Err() != nil {
			return
		}
		if !readable(f) {
			if f.Type != "" && f.Type != diskimage.FSSwap {
				unreadable = append(unreadable, fmt.Sprintf("partition %d (%s)", f.Partition, f.Type))
			}
			continue
		}
		for _, marker := range []string{"curtin", "system-data/var/lib/snapd", "snaps"} {
			if m, ok := mode(partView{img, f}, marker); ok && m.IsDir() && root == nil {
				root = &fss[i]
			}
		}
	}
	if root == nil {
		if len(unreadable) > 0 {
			allUnmountable := true
			for _, f := range fss {
				if mountableByInstall[f.Type] {
					allUnmountable = false
				}
			}
			if allUnmountable {
				r.add("rootfs-type", Error, "no partition has a filesystem the ephemeral can mount (ext2/3/4, xfs, btrfs, vfat): "+strings.Join(unreadable, ", "),
					"block-meta cannot mount any partition: 'Did not find any filesystem on [...] that contained one of ['curtin', ...]'")
				return
			}
			r.add("cannot-inspect", Info, "lint cannot look inside "+strings.Join(unreadable, ", ")+"; curtin/ may be there", "")
			return
		}
		r.add("no-curtin-partition", Error, "no partition holds a curtin/ directory (or system-data/var/lib/snapd, snaps)",
			"block-meta: 'Did not find any filesystem on ['sda'] that contained one of ['curtin', 'system-data/var/lib/snapd', 'snaps']'")
		return
	}
	if !mountableByInstall[root.Type] {
		r.add("rootfs-type", Error, fmt.Sprintf("the curtin/ partition %d is %s, which the ephemeral cannot mount", root.Partition, root.Type), "block-meta cannot mount the root")
	}
	rv := partView{img, *root}
	lintTree(r, rv, "dd")
	// a kernel may live on a separate /boot partition
	if hasFinding(r, "no-kernel") {
		for _, f := range fss {
			if readable(f) && f.Partition != root.Partition {
				for _, n := range (partView{img, f}).list("") {
					if strings.HasPrefix(n, "vmlinuz") {
						removeFinding(r, "no-kernel")
					}
				}
			}
		}
	}
	// fstab against this disk's filesystems
	if b, ok := read(rv, "etc/fstab"); ok {
		for _, e := range fstabEntries(b) {
			ok, why := resolves(e.spec, fss)
			switch {
			case ok:
			case why != "":
				r.add("fstab-unstable", Warning, fmt.Sprintf("/etc/fstab mounts %s on %s: %s", e.spec, e.mnt, why), "the name depends on the disk bus (sda, vda, nvme0n1)")
			default:
				r.add("fstab-unresolvable", Error, fmt.Sprintf("/etc/fstab mounts %s on %s, but no filesystem on this disk matches it", e.spec, e.mnt),
					"first boot stops in emergency mode: 'Timed out waiting for device "+e.spec+"'; cloud-init never runs and the node stays Deploying")
			}
		}
	}
	// EFI loader where MAAS's local boot looks
	found, insecureOnly := false, ""
	haveESP := false
	for _, f := range fss {
		if !readable(f) {
			continue
		}
		if f.Type == diskimage.FSVFAT {
			haveESP = true
		}
		v := partView{img, f}
		for _, p := range efiPaths {
			if m, ok := mode(v, "efi/"+p); ok && !m.IsDir() {
				found = true
			}
		}
		for _, p := range efiPathsInsecure {
			if m, ok := mode(v, "efi/"+p); ok && !m.IsDir() && insecureOnly == "" {
				insecureOnly = "/efi/" + p
			}
		}
	}
	switch {
	case found:
	case !haveESP:
		r.add("no-esp", Warning, "the disk has no FAT (EFI system) partition: it cannot boot on UEFI", "UEFI machines never boot the deployed image")
	case insecureOnly != "":
		r.add("efi-loader-secureboot-only", Warning, "the only EFI loader MAAS's local boot finds is "+insecureOnly+", which it tries only with Secure Boot off",
			"with Secure Boot on, MAAS's 'Local' GRUB entry finds no loader and exits")
	default:
		r.add("efi-loader-not-found", Error, "no EFI loader where MAAS's UEFI local boot looks ("+strings.Join(prefixed("/efi", efiPaths), ", ")+", or the Secure-Boot-off list): "+efiFound(img, fss),
			"after the install, MAAS's 'Local' GRUB entry finds no loader and runs 'exit 1': the machine falls through to the next boot device and never reaches first boot (/efi/boot/bootx64.efi is the safe path)")
	}
	// BIOS: chain.c32 hd0 runs the MBR's boot code
	if f, err := os.Open(img); err == nil {
		mbr := make([]byte, 440)
		f.ReadAt(mbr, 0)
		f.Close()
		if bytes.Count(mbr, []byte{0}) == len(mbr) {
			r.add("no-bios-bootloader", Warning, "the MBR has no boot code: BIOS machines cannot boot this disk",
				"MAAS's BIOS local boot (pxelinux 'KERNEL chain.c32 / APPEND hd0') jumps into empty boot code")
		}
	}
}

// efiFound lists the .efi files in /EFI/* of the FAT partitions, for the message.
func efiFound(img string, fss []diskimage.FS) string {
	var found []string
	for _, f := range fss {
		if f.Type != diskimage.FSVFAT {
			continue
		}
		v := partView{img, f}
		for _, d := range listResolved(v, "EFI") {
			for _, n := range v.list("EFI/" + d) {
				if strings.HasSuffix(strings.ToLower(n), ".efi") {
					found = append(found, "/EFI/"+d+"/"+n)
				}
			}
		}
	}
	if len(found) == 0 {
		return "the ESP has no .efi files"
	}
	return "the ESP has " + strings.Join(found, ", ")
}

func resolves(spec string, fss []diskimage.FS) (bool, string) {
	val := func(prefix string) (string, bool) {
		if v, ok := strings.CutPrefix(spec, prefix+"="); ok {
			return strings.Trim(v, "\""), true
		}
		if v, ok := strings.CutPrefix(spec, "/dev/disk/by-"+strings.ToLower(prefix)+"/"); ok {
			return v, true
		}
		return "", false
	}
	if v, ok := val("UUID"); ok {
		for _, f := range fss {
			if strings.EqualFold(f.UUID, v) {
				return true, ""
			}
		}
		return false, ""
	}
	if v, ok := val("LABEL"); ok {
		for _, f := range fss {
			if f.Label == v {
				return true, ""
			}
		}
		return false, ""
	}
	if v, ok := val("PARTUUID"); ok {
		for _, f := range fss {
			if strings.EqualFold(f.PartUUID, v) {
				return true, ""
			}
		}
		return false, ""
	}
	if strings.HasPrefix(spec, "/dev/disk/by-") || strings.HasPrefix(spec, "PARTLABEL=") {
		return true, "" // by-id/by-path/partlabel: depends on the machine, not checked
	}
	if strings.HasPrefix(spec, "/dev/") {
		return false, "a kernel device name"
	}
	return true, ""
}

func hasFinding(r *Report, id string) bool {
	for _, f := range r.Findings {
		if f.ID == id {
			return true
		}
	}
	return false
}

func removeFinding(r *Report, id string) {
	out := r.Findings[:0]
	for _, f := range r.Findings {
		if f.ID != id {
			out = append(out, f)
		}
	}
	r.Findings = out
}
