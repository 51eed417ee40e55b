// Package debs resolves, downloads and unpacks Debian packages with the host's apt, caching
// the .deb files so that images are rebuilt from a warm cache in seconds.
package debs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Package is one binary package at an exact version.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
}

// String is name=version.
func (p Package) String() string { return p.Name + "=" + p.Version }

// Filename is the name apt-get download gives the .deb.
func (p Package) Filename() string {
	return p.Name + "_" + strings.ReplaceAll(p.Version, ":", "%3a") + "_" + p.Arch + ".deb"
}

// Key hashes a package set (order-independent) for cache keys.
func Key(pkgs []Package) string {
	names := make([]string, 0, len(pkgs))
	for _, p := range pkgs {
		names = append(names, p.String()+"/"+p.Arch)
	}
	sort.Strings(names)
	h := sha256.Sum256([]byte(strings.Join(names, "\n")))
	return hex.EncodeToString(h[:])
}

// Fetcher resolves and downloads packages into Dir (one .deb per package version).
type Fetcher struct {
	Dir string // e.g. $MAASEMU_CACHE/debs
	Log *slog.Logger
	// ListsDir is apt's package lists directory (default /var/lib/apt/lists).
	ListsDir string

	updateOnce sync.Once
	updateErr  error
}

// NewFetcher returns a Fetcher caching into dir.
func NewFetcher(dir string, log *slog.Logger) *Fetcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Fetcher{Dir: dir, Log: log, ListsDir: "/var/lib/apt/lists"}
}

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)

func checkNames(names []string) error {
	if len(names) == 0 {
		return errors.New("debs: no packages named")
	}
	for _, n := range names {
		if !validName.MatchString(n) {
			return fmt.Errorf("debs: %q is not a Debian package name ([a-z0-9][a-z0-9+.-]+)", n)
		}
	}
	return nil
}

func (f *Fetcher) run(ctx context.Context, dir string, name string, args ...string) ([]byte, error) {
	if _, err := exec.LookPath(name); err != nil {
		return nil, fmt.Errorf("debs: %s is needed (a Debian host with apt): %w", name, err)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("debs: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// listsState fingerprints apt's package lists; empty when there are none.
func (f *Fetcher) listsState() string {
	ents, _ := os.ReadDir(f.ListsDir)
	h := sha256.New()
	n := 0
	for _, e := range ents {
		if !strings.Contains(e.Name(), "_Packages") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		n++
		fmt.Fprintf(h, "%s %d %d\n", e.Name(), info.Size(), info.ModTime().UnixNano())
	}
	if n == 0 {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

// EnsureLists runs apt-get update when apt has no package lists (a fresh machine).
func (f *Fetcher) EnsureLists(ctx context.Context) error {
	if f.listsState() != "" {
		return nil
	}
	f.updateOnce.Do(func() {
		f.Log.Info("apt has no package lists; running apt-get update")
		_, f.updateErr = f.run(ctx, "", "apt-get", "update", "-qq")
	})
	return f.updateErr
}

var instLine = regexp.MustCompile(`^Inst (\S+) (?:\[\S+\] )?\((\S+) .*\[(\S+)\]\)`)

// Resolve returns the dependency closure of names (Depends and Pre-Depends, no Recommends)
// as apt's own solver computes it for an empty system, with exact candidate versions.
// Virtual packages and alternatives are chosen by apt. Results are cached per package set
// and state of the package lists.
func (f *Fetcher) Resolve(ctx context.Context, names []string) ([]Package, error) {
	if err := checkNames(names); err != nil {
		return nil, err
	}
	if err := f.EnsureLists(ctx); err != nil {
		return nil, err
	}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	h := sha256.Sum256([]byte(strings.Join(sorted, " ") + "\n" + f.listsState()))
	cache := filepath.Join(f.Dir, "resolve", hex.EncodeToString(h[:12])+".json")
	if b, err := os.ReadFile(cache); err == nil {
		var pkgs []Package
		if json.Unmarshal(b, &pkgs) == nil && len(pkgs) > 0 {
			return pkgs, nil
		}
	}
	args := []string{"-s", "-q", "-o", "Dir::State::status=/dev/null", "-o", "APT::Install-Recommends=false",
		"-o", "APT::Install-Suggests=false", "-o", "Debug::NoLocking=true", "install"}
	out, err := f.run(ctx, "", "apt-get", append(args, sorted...)...)
	if err != nil {
		return nil, fmt.Errorf("debs: resolving %s: %w", strings.Join(sorted, " "), err)
	}
	var pkgs []Package
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := instLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		pkgs = append(pkgs, Package{Name: m[1], Version: m[2], Arch: m[3]})
	}
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("debs: apt resolved nothing for %s:\n%s", strings.Join(sorted, " "), out)
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	if err := os.MkdirAll(filepath.Dir(cache), 0o755); err == nil {
		b, _ := json.Marshal(pkgs)
		writeAtomic(cache, b)
	}
	return pkgs, nil
}

// Candidate returns the candidate version of one package without its dependencies.
func (f *Fetcher) Candidate(ctx context.Context, name string) (Package, error) {
	if err := checkNames([]string{name}); err != nil {
		return Package{}, err
	}
	if err := f.EnsureLists(ctx); err != nil {
		return Package{}, err
	}
	out, err := f.run(ctx, "", "apt-cache", "show", "--no-all-versions", name)
	if err != nil {
		return Package{}, err
	}
	p := Package{Name: name}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "Version: "); ok && p.Version == "" {
			p.Version = v
		}
		if v, ok := strings.CutPrefix(l, "Architecture: "); ok && p.Arch == "" {
			p.Arch = v
		}
	}
	if p.Version == "" || p.Arch == "" {
		return Package{}, fmt.Errorf("debs: apt-cache show %s gave no version (a virtual package?)", name)
	}
	return p, nil
}

// DependsOn returns the first Depends target of a metapackage, e.g. linux-image-amd64 ->
// linux-image-6.1.0-NN-amd64.
func (f *Fetcher) DependsOn(ctx context.Context, meta, prefix string) (string, error) {
	if err := checkNames([]string{meta}); err != nil {
		return "", err
	}
	if err := f.EnsureLists(ctx); err != nil {
		return "", err
	}
	out, err := f.run(ctx, "", "apt-cache", "depends", meta)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Depends: "); ok && strings.HasPrefix(v, prefix) {
			return v, nil
		}
	}
	return "", fmt.Errorf("debs: %s depends on no package starting with %q:\n%s", meta, prefix, out)
}

// Download makes sure every package's .deb is in Dir and returns their paths, in the
// order of pkgs. Only missing files are fetched (apt-get download, in one batch).
func (f *Fetcher) Download(ctx context.Context, pkgs []Package) ([]string, error) {
	if err := os.MkdirAll(f.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("debs: %w", err)
	}
	var missing []string
	paths := make([]string, len(pkgs))
	for i, p := range pkgs {
		paths[i] = filepath.Join(f.Dir, p.Filename())
		if st, err := os.Stat(paths[i]); err == nil && st.Size() > 0 {
			continue
		}
		missing = append(missing, p.String())
	}
	if len(missing) > 0 {
		if err := f.EnsureLists(ctx); err != nil {
			return nil, err
		}
		f.Log.Info("downloading Debian packages", "count", len(missing), "dir", f.Dir)
		// download into a private directory, then move: a partial download never looks
		// like a cached .deb
		tmp, err := os.MkdirTemp(f.Dir, ".download-")
		if err != nil {
			return nil, fmt.Errorf("debs: %w", err)
		}
		defer os.RemoveAll(tmp)
		os.Chmod(tmp, 0o755)
		if _, err := f.run(ctx, tmp, "apt-get", append([]string{"download", "-q"}, missing...)...); err != nil {
			return nil, err
		}
		ents, err := os.ReadDir(tmp)
		if err != nil {
			return nil, fmt.Errorf("debs: %w", err)
		}
		for _, e := range ents {
			if err := os.Rename(filepath.Join(tmp, e.Name()), filepath.Join(f.Dir, e.Name())); err != nil {
				return nil, fmt.Errorf("debs: %w", err)
			}
		}
	}
	for i, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("debs: %s was not downloaded (expected %s)", pkgs[i], p)
		}
	}
	return paths, nil
}

// Unpack extracts each .deb's data into root with dpkg -x (no maintainer scripts run).
func Unpack(ctx context.Context, debs []string, root string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("debs: %w", err)
	}
	for _, d := range debs {
		cmd := exec.CommandContext(ctx, "dpkg", "-x", d, root)
		if out, err := cmd.CombinedOutput(); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("debs: dpkg -x %s: %w: %s", d, err, bytes.TrimSpace(out))
		}
	}
	return nil
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
