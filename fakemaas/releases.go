package fakemaas

import (
	"sort"
	"strings"
)

// availableReleases lists the os/release pairs that have a complete, deployable image for
// the architecture arch ("" for any) (r.mu held).
func (r *Region) availableReleases(arch string) map[string]bool {
	out := map[string]bool{}
	for _, res := range r.resources {
		if res.BootloaderType != "" || res.latestComplete() == nil {
			continue
		}
		if arch != "" && !strings.HasPrefix(res.Architecture, arch+"/") {
			continue
		}
		if res.Type == rtypeUploaded && !strings.Contains(res.Name, "/") {
			out["custom/"+res.Name] = true
			continue
		}
		if res.Type == rtypeUploaded && strings.HasPrefix(res.Name, "custom/") {
			out[res.Name] = true
			continue
		}
		out[res.Name] = true
	}
	return out
}

// resolveRelease is find_osystem_and_release_from_release_name_or_alias: it accepts
// "<os>/<release>", "<os>/<version>", a bare release, version or custom image name, and
// "custom/<name>"; the image must be available for the machine's architecture (r.mu held).
func (r *Region) resolveRelease(series, machineArch string) (osys, release string, ok bool) {
	arch, _, _ := cut(machineArch, "/")
	avail := r.availableReleases(arch)
	try := func(o, rel string) bool {
		if avail[o+"/"+rel] {
			osys, release = o, rel
			return true
		}
		if o == "ubuntu" {
			if code, known := ubuntuRelease(rel); known && avail["ubuntu/"+code] {
				osys, release = "ubuntu", code
				return true
			}
		}
		if o == "custom" && avail["custom/"+rel] {
			osys, release = "custom", rel
			return true
		}
		return false
	}
	if o, rel, slash := cut(series, "/"); slash {
		if o == "custom" {
			// An image uploaded under its bare name is release <name>; one uploaded as
			// "custom/<name>" keeps that name as its release.
			if r.customResourceNamed(rel, arch) {
				return "custom", rel, true
			}
			if r.customResourceNamed(series, arch) {
				return "custom", series, true
			}
			return "custom", rel, try("custom", rel)
		}
		return o, rel, try(o, rel)
	}
	names := sortedKeys(avail)
	for _, n := range names {
		o, _, _ := cut(n, "/")
		if try(o, series) {
			return osys, release, true
		}
	}
	return "", "", false
}

// releaseChoices are the valid distro_series values, quoted as Django lists them.
func (r *Region) releaseChoices() []string {
	var out []string
	for n := range r.availableReleases("") {
		out = append(out, "'"+n+"'")
	}
	sort.Strings(out)
	return append([]string{"''"}, out...)
}

// customResourceNamed reports whether an uploaded, complete resource is named exactly
// name for arch (r.mu held).
func (r *Region) customResourceNamed(name, arch string) bool {
	for _, res := range r.resources {
		if res.Type == rtypeUploaded && res.Name == name && res.BootloaderType == "" && res.latestComplete() != nil &&
			(arch == "" || strings.HasPrefix(res.Architecture, arch+"/")) {
			return true
		}
	}
	return false
}
