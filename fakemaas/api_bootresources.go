package fakemaas

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/maasemu/maasemu/fakemaas/blobstore"
)

// Upload filetypes (the create form's choices) and what MAAS stores for them.
var uploadFiletypes = map[string]string{
	"tgz": "root-tgz", "tbz": "root-tbz", "txz": "root-txz", "ddtgz": "root-dd", "ddtar": "root-dd.tar",
	"ddraw": "root-dd.raw", "ddtbz": "root-dd.tar.bz2", "ddtxz": "root-dd.tar.xz", "ddbz2": "root-dd.bz2",
	"ddgz": "root-dd.gz", "ddxz": "root-dd.xz",
}

func uploadedFilename(filetype string) string {
	switch filetype {
	case "root-tgz":
		return "root.tgz"
	case "root-tbz":
		return "root.tbz"
	case "root-txz":
		return "root.txz"
	}
	return filetype
}

// Operating systems MAAS knows (OperatingSystemRegistry) and the Linux ones custom images
// may be based on.
var (
	supportedOSystems = []string{"ubuntu", "ubuntu-core", "bootloader", "centos", "rhel", "custom", "windows", "suse", "esxi", "ol", "onie"}
	linuxOSystems     = []string{"ubuntu", "centos", "rhel", "ol"}
	ubuntuReleases    = map[string]string{"precise": "12.04", "trusty": "14.04", "xenial": "16.04", "bionic": "18.04",
		"focal": "20.04", "jammy": "22.04", "noble": "24.04", "oracular": "24.10", "plucky": "25.04",
		"questing": "25.10", "resolute": "26.04"}
)

func pyList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = "'" + s + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func ubuntuRelease(rel string) (string, bool) {
	if _, ok := ubuntuReleases[rel]; ok {
		return rel, true
	}
	for code, ver := range ubuntuReleases {
		if ver == rel {
			return code, true
		}
	}
	return "", false
}

func releaseSupported(osys, rel string) bool {
	if !contains(supportedOSystems, osys) {
		return false
	}
	if osys == "ubuntu" {
		_, ok := ubuntuRelease(rel)
		return ok
	}
	return rel != ""
}

func bootResourceFileJSON(res *resource, f *resourceFile) map[string]any {
	j := map[string]any{"filename": f.Filename, "filetype": f.Filetype, "sha256": f.SHA256,
		"filename_on_disk": f.FilenameOnDisk, "size": f.Size, "complete": f.Complete}
	if !f.Complete {
		p := 0.0
		if f.Size > 0 {
			p = 100 * float64(f.Uploaded) / float64(f.Size)
		}
		j["progress"] = p
		if res.Type == rtypeUploaded {
			j["upload_uri"] = fmt.Sprintf("%sboot-resources/%d/upload/%d/", APIPrefix, res.ID, f.ID)
		}
	}
	return j
}

// DeploymentsField is the boot resource JSON's extra field (not MAAS's) counting the
// machines deployed with the resource, as MAAS's dashboard counts custom images.
const DeploymentsField = "maasemu_deployments"

func bootResourceJSON(res *resource, withSets bool) map[string]any {
	j := map[string]any{"id": res.ID, "type": rtypeNames[res.Type], "name": res.Name, "architecture": res.Architecture,
		"resource_uri": fmt.Sprintf("%sboot-resources/%d/", APIPrefix, res.ID), "last_deployed": nil,
		// maasemu's extra field: how many machines reached Deployed with this resource.
		DeploymentsField: res.Deployments}
	if res.LastDeployed != nil {
		j["last_deployed"] = res.LastDeployed.Format("2006-01-02T15:04:05.000")
	}
	for k, v := range res.Extra {
		j[k] = v
	}
	if res.BaseImage != "" {
		j["base_image"] = res.BaseImage
	}
	if withSets {
		sets := map[string]any{}
		for _, s := range res.Sets {
			sj := map[string]any{"version": s.Version, "label": s.Label, "size": s.totalSize(), "complete": s.complete()}
			if !s.complete() {
				sj["progress"] = s.progress()
			}
			files := map[string]any{}
			for _, f := range s.Files {
				files[f.Filename] = bootResourceFileJSON(res, f)
			}
			sj["files"] = files
			sets[s.Version] = sj
		}
		j["sets"] = sets
	}
	return j
}

func (r *Region) sortedResources(filter func(*resource) bool, all bool) []*resource {
	var out []*resource
	for _, res := range r.resources {
		if filter(res) {
			out = append(out, res)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if all && a.Type != b.Type {
			return a.Type < b.Type
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Architecture < b.Architecture
	})
	return out
}

func (r *Region) apiBootResources(w http.ResponseWriter, q *request) error {
	if len(q.path) == 1 {
		switch {
		case q.Method == http.MethodGet && q.op == "":
			t := q.URL.Query().Get("type")
			if t == "" {
				t = "all"
			}
			var filter func(*resource) bool
			switch t {
			case "all":
				filter = func(*resource) bool { return true }
			case "synced":
				filter = func(res *resource) bool { return res.Type == rtypeSynced }
			case "uploaded":
				filter = func(res *resource) bool { return res.Type == rtypeUploaded }
			default:
				return badRequest(fmt.Sprintf("'%s' is not a valid boot resource type. Available types: ['synced', 'uploaded']", t))
			}
			r.mu.RLock()
			out := []any{}
			for _, res := range r.sortedResources(filter, t == "all") {
				out = append(out, bootResourceJSON(res, false))
			}
			r.mu.RUnlock()
			writeJSON(w, http.StatusOK, out)
		case q.Method == http.MethodPost && q.op == "":
			j, err := r.createBootResource(q)
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusCreated, j)
		case q.Method == http.MethodPost && q.op == "import":
			r.StartImport()
			writeText(w, http.StatusOK, "Import of boot resources started")
		case q.Method == http.MethodPost && q.op == "stop_import":
			r.StopImport()
			writeText(w, http.StatusOK, "Import of boot resources is being stopped")
		case q.Method == http.MethodGet && q.op == "is_importing":
			writeJSON(w, http.StatusOK, r.IsImporting())
		default:
			return unknownOp(q)
		}
		return nil
	}
	id, err := strconv.Atoi(q.path[1])
	if err != nil {
		return notFound("No BootResource matches the given query.")
	}
	if len(q.path) == 4 && q.path[2] == "upload" {
		if q.Method != http.MethodPut {
			return methodNotAllowed("PUT")
		}
		fid, err := strconv.Atoi(q.path[3])
		if err != nil {
			return notFound("No BootResourceFile matches the given query.")
		}
		if err := r.uploadChunk(q.Request, id, fid); err != nil {
			return err
		}
		writeText(w, http.StatusOK, "OK")
		return nil
	}
	if len(q.path) != 2 {
		return notFound("Unknown API endpoint: " + q.URL.Path + ".")
	}
	switch q.Method {
	case http.MethodGet:
		r.mu.RLock()
		res := r.resources[id]
		var j map[string]any
		if res != nil {
			j = bootResourceJSON(res, true)
		}
		r.mu.RUnlock()
		if j == nil {
			return notFound("No BootResource matches the given query.")
		}
		writeJSON(w, http.StatusOK, j)
	case http.MethodDelete:
		if err := r.deleteResource(id); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		return methodNotAllowed("GET, DELETE")
	}
	return nil
}

func (r *Region) reservedNames() map[string]bool {
	out := map[string]bool{}
	for _, res := range r.resources {
		if res.Type == rtypeSynced && res.BootloaderType == "" {
			out[res.Name] = true
			for _, p := range strings.Split(res.Name, "/") {
				out[p] = true
			}
		}
	}
	for _, o := range supportedOSystems {
		out[o] = true
	}
	return out
}

var centosName = regexp.MustCompile(`^centos\d\d?$`)

// filenameOnDisk is BootResourceFile.objects.calculate_filename_on_disk: the sha256
// shortened to 7 characters, longer on a collision, shared by files of the same content.
func (r *Region) filenameOnDisk(sha string) string {
	var others []string
	for _, res := range r.resources {
		for _, s := range res.Sets {
			for _, f := range s.Files {
				if f.SHA256 == sha {
					return f.FilenameOnDisk
				}
				if strings.HasPrefix(f.FilenameOnDisk, sha[:7]) {
					others = append(others, f.FilenameOnDisk)
				}
			}
		}
	}
	if len(others) == 0 {
		return sha[:7]
	}
	for n := 8; n < 64; n++ {
		clash := false
		for _, o := range others {
			if strings.HasPrefix(o, sha[:n]) {
				clash = true
			}
		}
		if !clash {
			return sha[:n]
		}
	}
	return sha
}

func (r *Region) nextVersionName(res *resource) string {
	day := r.now().UTC().Format("20060102")
	max, found := 0, false
	for _, s := range res.Sets {
		if s.Version == day {
			found = true
		}
		if strings.HasPrefix(s.Version, day+".") {
			found = true
			if n, err := strconv.Atoi(strings.TrimPrefix(s.Version, day+".")); err == nil && n > max {
				max = n
			}
		}
	}
	if !found {
		return day
	}
	return fmt.Sprintf("%s.%d", day, max+1)
}

// createBootResource is POST boot-resources/ (BootResourceForm + save).
func (r *Region) createBootResource(q *request) (map[string]any, error) {
	content, hasContent := q.files["content"]
	if !hasContent {
		if c, ok := q.get("content"); ok {
			content, hasContent = []byte(c), true
		}
	}
	if hasContent {
		// The content came with the request: size and sha256 default to the content's.
		if _, ok := q.get("sha256"); !ok {
			sum := sha256.Sum256(content)
			q.form.Set("sha256", hex.EncodeToString(sum[:]))
		}
		if _, ok := q.get("size"); !ok {
			q.form.Set("size", strconv.Itoa(len(content)))
		}
	}
	if _, ok := q.get("filetype"); !ok {
		q.form.Set("filetype", "tgz")
	}
	var out map[string]any
	var stored *resourceFile
	err := r.locked(func() error {
		fe := fieldErrors{}
		name := q.str("name")
		if name == "" {
			fe.add("name", "This field is required.")
		} else {
			if strings.Contains(name, "/") {
				osys, _, _ := cut(name, "/")
				if !contains(supportedOSystems, osys) || strings.Count(name, "/") > 1 {
					fe.add("name", fmt.Sprintf("Unsupport operating system %s, supported operating systems: %s", osys, pyList(supportedOSystems)))
				}
			}
			if r.reservedNames()[name] || centosName.MatchString(name) {
				fe.add("name", name+" is a reserved name")
			}
		}
		arch := q.str("architecture")
		usable := r.usableArchitectures()
		switch {
		case arch == "":
			fe.add("architecture", "This field is required.")
		case !contains(usable, arch):
			fe.add("architecture", invalidArch(arch, usable))
		}
		ft := q.str("filetype")
		filetype, ok := uploadFiletypes[ft]
		if !ok {
			fe.add("filetype", fmt.Sprintf("Select a valid choice. %s is not one of the available choices.", ft))
		}
		sha, hasSHA := q.get("sha256")
		switch {
		case !hasSHA || sha == "":
			fe.add("sha256", "This field is required.")
		case len(sha) < 64:
			fe.add("sha256", fmt.Sprintf("Ensure this value has at least 64 characters (it has %d).", len(sha)))
		case len(sha) > 64:
			fe.add("sha256", fmt.Sprintf("Ensure this value has at most 64 characters (it has %d).", len(sha)))
		case !blobstore.ValidDigest(strings.ToLower(sha)):
			fe.add("sha256", "Enter a valid SHA256 value: 64 hexadecimal digits.")
		}
		sha = strings.ToLower(sha)
		sizeStr, hasSize := q.get("size")
		size, err := strconv.ParseInt(strings.TrimSpace(sizeStr), 10, 64)
		switch {
		case !hasSize || sizeStr == "":
			fe.add("size", "This field is required.")
		case err != nil:
			fe.add("size", "Enter a whole number.")
		case size < 0:
			fe.add("size", "Ensure this value is greater than or equal to 0.")
		}
		keepOld, err := q.boolParam("keep_old", false)
		if err != nil {
			return err
		}
		// base_image, only for custom images (no '/' or a custom/ prefix).
		base := ""
		if split := strings.Split(name, "/"); len(split) == 1 || split[0] == "custom" {
			bi := q.str("base_image")
			if bi == "" {
				for _, res := range r.resources {
					if res.Type == rtypeUploaded && res.Name == name && res.Architecture == arch {
						bi = res.BaseImage
					}
				}
			}
			if bi == "" {
				base = r.configString("commissioning_osystem") + "/" + r.configString("commissioning_distro_series")
			} else {
				bos, brel, ok := cut(bi, "/")
				bos, brel = strings.ToLower(bos), strings.ToLower(brel)
				switch {
				case !ok || strings.Contains(brel, "/"):
					fe.add("base_image", "a base image must follow the format: <osystem>/<series>")
				case !contains(linuxOSystems, bos):
					fe.add("base_image", "custom images require a valid non-custom OS type base image")
				case !releaseSupported(bos, brel):
					fe.add("base_image", "please select a valid base image OS and version")
				default:
					base = bos + "/" + brel
				}
			}
		}
		if len(fe) == 0 {
			for _, res := range r.resources {
				for _, s := range res.Sets {
					for _, f := range s.Files {
						if f.SHA256 == sha && f.Size != size {
							fe.add("__all__", "File already exists with sha256 that is of different size.")
						}
					}
				}
			}
		}
		if len(fe) == 0 && hasContent {
			if int64(len(content)) != size {
				fe.add("content", fmt.Sprintf("Content is %d bytes but size is %d.", len(content), size))
			} else if sum := sha256.Sum256(content); hex.EncodeToString(sum[:]) != sha {
				fe.add("content", "Saved content does not match given SHA256 value.")
			}
		}
		if len(fe) > 0 {
			if len(fe) == 1 && len(fe["__all__"]) == 1 {
				return badRequest(fe["__all__"][0])
			}
			return validation(fe)
		}
		if hasContent && !r.blobs.Has(sha, size) {
			if err := r.blobs.Put(q.Context(), bytes.NewReader(content), size, sha); err != nil {
				return fmt.Errorf("storing content: %w", err)
			}
		}
		var res *resource
		for _, o := range r.resources {
			if o.Type == rtypeUploaded && o.Name == name && o.Architecture == arch {
				res = o.clone()
			}
		}
		isNew := res == nil
		if isNew {
			res = &resource{Type: rtypeUploaded, Name: name, Architecture: arch}
		}
		_, sub, _ := cut(arch, "/")
		res.Extra = map[string]string{"subarches": sub}
		if t, ok := q.get("title"); ok {
			res.Extra["title"] = t
		}
		if res.BaseImage == "" {
			res.BaseImage = base
		}
		var removed []*resourceFile
		err = r.commit(func(w *writer) error {
			if isNew {
				res.ID = int(w.next("resource"))
			}
			set := &resourceSet{ID: int(w.next("set")), Version: r.nextVersionName(res), Label: "uploaded"}
			f := &resourceFile{ID: int(w.next("file")), Filename: uploadedFilename(filetype), Filetype: filetype,
				SHA256: sha, FilenameOnDisk: r.filenameOnDisk(sha), Size: size}
			if r.blobs.Has(sha, size) {
				f.Complete, f.Uploaded = true, size
			}
			set.Files = []*resourceFile{f}
			if !keepOld {
				for _, s := range res.Sets {
					removed = append(removed, s.Files...)
					s.Files = nil
				}
			}
			res.Sets = append(res.Sets, set)
			stored = f
			w.putResource(res)
			return nil
		})
		if err != nil {
			return err
		}
		r.resources[res.ID] = res
		r.fileIndex[stored.ID] = res.ID
		for _, f := range removed {
			delete(r.fileIndex, f.ID)
		}
		r.gcFiles(removed)
		out = bootResourceJSON(res, true)
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.log.Info("boot resource created", "name", q.str("name"), "architecture", q.str("architecture"),
		"file_id", stored.ID, "complete", stored.Complete)
	return out, nil
}

// gcFiles removes the blobs and partial uploads of files no record refers to any more
// (r.mu held).
func (r *Region) gcFiles(files []*resourceFile) {
	for _, f := range files {
		r.dropPartial(f.ID)
		if !r.shaInUse(f.SHA256) {
			if err := r.blobs.Remove(f.SHA256); err != nil {
				r.log.Warn("removing blob", "sha256", f.SHA256, "err", err)
			}
		}
	}
}

func (r *Region) shaInUse(sha string) bool {
	for _, res := range r.resources {
		for _, s := range res.Sets {
			for _, f := range s.Files {
				if f.SHA256 == sha {
					return true
				}
			}
		}
	}
	return false
}

func (r *Region) deleteResource(id int) error {
	return r.locked(func() error {
		res := r.resources[id]
		if res == nil {
			return notFound("No BootResource matches the given query.")
		}
		if err := r.commit(func(w *writer) error { w.delResource(id); return nil }); err != nil {
			return err
		}
		delete(r.resources, id)
		var files []*resourceFile
		for _, s := range res.Sets {
			for _, f := range s.Files {
				delete(r.fileIndex, f.ID)
				files = append(files, f)
			}
		}
		r.gcFiles(files)
		if res.BootloaderType != "" {
			r.removeBootloader(res)
		}
		return nil
	})
}

// file lookup --------------------------------------------------------------------------

func (r *Region) findFile(resID, fileID int) (*resource, *resourceFile) {
	res := r.resources[resID]
	if res == nil {
		return nil, nil
	}
	for _, s := range res.Sets {
		for _, f := range s.Files {
			if f.ID == fileID {
				return res, f
			}
		}
	}
	return res, nil
}

// chunked upload -----------------------------------------------------------------------

var fileLocks sync.Map // file id -> *sync.Mutex

func fileLock(id int) *sync.Mutex {
	m, _ := fileLocks.LoadOrStore(id, new(sync.Mutex))
	return m.(*sync.Mutex)
}

func partialName(fileID int) string { return "file-" + strconv.Itoa(fileID) }

// partialFor returns the open partial upload of a file, opening it (truncated to the
// acknowledged size) when needed.
func (r *Region) partialFor(f *resourceFile) (*blobstore.Partial, error) {
	r.uploadMu.Lock()
	defer r.uploadMu.Unlock()
	if p := r.partials[f.ID]; p != nil {
		return p, nil
	}
	p, err := r.blobs.OpenPartial(partialName(f.ID), f.Uploaded, f.Size, f.SHA256)
	if err != nil {
		return nil, err
	}
	r.partials[f.ID] = p
	return p, nil
}

func (r *Region) dropPartial(fileID int) {
	r.uploadMu.Lock()
	if p := r.partials[fileID]; p != nil {
		p.Close()
		delete(r.partials, fileID)
	}
	r.uploadMu.Unlock()
	if err := r.blobs.RemovePartial(partialName(fileID)); err != nil {
		r.log.Warn("removing partial upload", "file_id", fileID, "err", err)
	}
}

// uploadChunk is PUT boot-resources/<id>/upload/<file_id>/: append one chunk. Checks and
// messages as BootResourceFileUploadHandler; a rejected chunk changes nothing.
func (r *Region) uploadChunk(hr *http.Request, resID, fileID int) error {
	lock := fileLock(fileID)
	lock.Lock()
	defer lock.Unlock()
	// As MAAS, the resource and the file are looked up independently.
	r.mu.RLock()
	res := r.resources[resID]
	var resType int
	if res != nil {
		resType = res.Type
	}
	fileRes, f := r.findFile(r.fileIndex[fileID], fileID)
	var fc resourceFile
	if f != nil {
		fc = *f
	}
	r.mu.RUnlock()
	if res == nil {
		return notFound("No BootResource matches the given query.")
	}
	if f == nil {
		return notFound("No BootResourceFile matches the given query.")
	}
	resID = fileRes.ID
	size := hr.ContentLength
	if size <= 0 {
		return badRequest("Missing data.")
	}
	if resType != rtypeUploaded {
		return forbidden(fmt.Sprintf("Cannot upload to a resource of type: %d.", resType))
	}
	if fc.Complete || fc.Uploaded == fc.Size {
		return badRequest("Cannot upload to a complete file.")
	}
	if fc.Uploaded+size > fc.Size {
		return badRequest("Too much data received.")
	}
	p, err := r.partialFor(&fc)
	if err != nil {
		return fmt.Errorf("opening partial upload: %w", err)
	}
	complete, err := p.Append(hr.Body, size)
	switch {
	case errors.Is(err, blobstore.ErrSizeMismatch):
		return badRequest("Content-Length doesn't equal size of received data.")
	case errors.Is(err, blobstore.ErrChecksum):
		return badRequest("Saved content does not match given SHA256 value.")
	case errors.Is(err, syscall.ENOSPC):
		return badRequest("No space left on device")
	case err != nil:
		return fmt.Errorf("appending chunk: %w", err)
	}
	uploaded := p.Size()
	if err := r.setFileState(resID, fileID, uploaded, false); err != nil {
		return err
	}
	if complete {
		if err := p.Commit(); err != nil {
			return fmt.Errorf("completing upload: %w", err)
		}
		r.uploadMu.Lock()
		delete(r.partials, fileID)
		r.uploadMu.Unlock()
		if err := r.setFileState(resID, fileID, uploaded, true); err != nil {
			return err
		}
		r.log.Info("boot resource file complete", "resource", resID, "file", fileID, "sha256", fc.SHA256, "size", fc.Size)
	}
	return nil
}

// setFileState records a file's acknowledged bytes and completeness.
func (r *Region) setFileState(resID, fileID int, uploaded int64, complete bool) error {
	return r.locked(func() error {
		old := r.resources[resID]
		if old == nil {
			return notFound("No BootResource matches the given query.")
		}
		res := old.clone()
		_, f := findIn(res, fileID)
		if f == nil {
			return notFound("No BootResourceFile matches the given query.")
		}
		f.Uploaded = uploaded
		f.Complete = complete
		if err := r.commit(func(w *writer) error { w.putResource(res); return nil }); err != nil {
			return err
		}
		r.resources[resID] = res
		return nil
	})
}

func findIn(res *resource, fileID int) (*resourceSet, *resourceFile) {
	for _, s := range res.Sets {
		for _, f := range s.Files {
			if f.ID == fileID {
				return s, f
			}
		}
	}
	return nil, nil
}

// recoverUploads finishes uploads whose last chunk was acknowledged but not yet moved into
// the store when the process stopped, and marks files complete whose blob exists.
func (r *Region) recoverUploads(ctx context.Context) error {
	type job struct{ res, file int }
	var jobs []job
	r.mu.RLock()
	for _, res := range r.resources {
		for _, s := range res.Sets {
			for _, f := range s.Files {
				if !f.Complete && (f.Uploaded == f.Size || r.blobs.Has(f.SHA256, f.Size)) {
					jobs = append(jobs, job{res.ID, f.ID})
				}
			}
		}
	}
	r.mu.RUnlock()
	for _, j := range jobs {
		r.mu.RLock()
		_, f := r.findFile(j.res, j.file)
		fc := *f
		r.mu.RUnlock()
		if !r.blobs.Has(fc.SHA256, fc.Size) {
			p, err := r.blobs.OpenPartial(partialName(fc.ID), fc.Uploaded, fc.Size, fc.SHA256)
			if err != nil {
				return fmt.Errorf("fakemaas: recovering upload of file %d: %w", fc.ID, err)
			}
			if err := p.Commit(); err != nil {
				p.Close()
				return fmt.Errorf("fakemaas: recovering upload of file %d: %w", fc.ID, err)
			}
		}
		if err := r.setFileState(j.res, j.file, fc.Size, true); err != nil {
			return err
		}
		r.log.Info("recovered completed upload", "file", fc.ID, "sha256", fc.SHA256)
	}
	return ctx.Err()
}
