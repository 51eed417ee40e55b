// Package simplestreams reads MAAS image streams (images.maas.io format): the index, the
// products files, and the items of the latest version of each product, from a directory
// or an HTTP(S) URL.
package simplestreams

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Source is where a stream lives: a local directory or an http(s) URL, the base of
// "streams/v1/index.json".
type Source struct {
	base   string // URL with trailing slash, or directory
	local  bool
	client *http.Client
	// Stream is "stable" or "candidate", from the URL's last path element; a URL on the
	// retired "daily" stream is treated as stable.
	Stream string
}

// NewSource parses a source: an absolute or relative directory path, a file:// URL, or an
// http(s):// URL.
func NewSource(src string, client *http.Client) (*Source, error) {
	if src == "" {
		return nil, errors.New("simplestreams: empty source")
	}
	if client == nil {
		client = http.DefaultClient
	}
	s := &Source{client: client}
	u, err := url.Parse(src)
	switch {
	case err == nil && (u.Scheme == "http" || u.Scheme == "https"):
		s.base = strings.TrimSuffix(src, "/") + "/"
	case err == nil && u.Scheme == "file":
		s.base, s.local = u.Path, true
	case err == nil && u.Scheme != "":
		return nil, fmt.Errorf("simplestreams: source %q: scheme %q not supported (want a directory, file://, http:// or https://)", src, u.Scheme)
	default:
		s.base, s.local = src, true
	}
	if s.local {
		fi, err := os.Stat(s.base)
		if err != nil {
			return nil, fmt.Errorf("simplestreams: source %q: %w", src, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("simplestreams: source %q is not a directory", src)
		}
	}
	s.Stream = streamOf(s.base)
	return s, nil
}

func streamOf(base string) string {
	last := path.Base(strings.TrimSuffix(filepath.ToSlash(base), "/"))
	switch last {
	case "candidate":
		return "candidate"
	default: // "stable", "daily" (retired: treated as stable), or anything else
		return "stable"
	}
}

// String is the source as given.
func (s *Source) String() string { return s.base }

// Open opens a path relative to the source (e.g. "streams/v1/index.json"). Paths that
// escape the source are refused.
func (s *Source) Open(ctx context.Context, rel string) (io.ReadCloser, error) {
	clean := path.Clean("/" + rel)
	if clean == "/" || strings.Contains(rel, "..") || strings.HasPrefix(rel, "/") || strings.Contains(rel, "\\") {
		return nil, fmt.Errorf("simplestreams: path %q: must be relative and stay inside the source", rel)
	}
	if s.local {
		f, err := os.Open(filepath.Join(s.base, filepath.FromSlash(clean[1:])))
		if err != nil {
			return nil, fmt.Errorf("simplestreams: %w", err)
		}
		return f, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+clean[1:], nil)
	if err != nil {
		return nil, fmt.Errorf("simplestreams: %w", err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("simplestreams: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("simplestreams: GET %s: %s", req.URL, resp.Status)
	}
	return resp.Body, nil
}

// Index is streams/v1/index.json.
type Index struct {
	Format  string                `json:"format"`
	Updated string                `json:"updated"`
	Index   map[string]IndexEntry `json:"index"`
}

// IndexEntry names one products file.
type IndexEntry struct {
	Datatype string   `json:"datatype"`
	Format   string   `json:"format"`
	Path     string   `json:"path"`
	Products []string `json:"products"`
	Updated  string   `json:"updated"`
}

// Products is one products file.
type Products struct {
	ContentID string             `json:"content_id"`
	Datatype  string             `json:"datatype"`
	Format    string             `json:"format"`
	Updated   string             `json:"updated"`
	Products  map[string]Product `json:"products"`
}

// Product is one product: its fields (os, release, arch, subarch, label, ...) and
// versions.
type Product struct {
	Arch           string             `json:"arch"`
	Arches         string             `json:"arches,omitempty"`
	BootloaderType string             `json:"bootloader-type,omitempty"`
	KFlavor        string             `json:"kflavor,omitempty"`
	KRel           string             `json:"krel,omitempty"`
	Label          string             `json:"label"`
	OS             string             `json:"os"`
	Release        string             `json:"release,omitempty"`
	ReleaseTitle   string             `json:"release_title,omitempty"`
	Subarch        string             `json:"subarch,omitempty"`
	Subarches      string             `json:"subarches,omitempty"`
	Version        string             `json:"version,omitempty"`
	Versions       map[string]Version `json:"versions"`
}

// Version is one version of a product.
type Version struct {
	Items map[string]Item `json:"items"`
}

// Item is one file of a version.
type Item struct {
	FType  string `json:"ftype"`
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// ErrBadStream marks malformed stream content.
var ErrBadStream = errors.New("malformed simplestreams content")

// ExtractSigned returns the JSON document inside a PGP clearsigned index.sjson: the text
// between the first '{' and the "-----BEGIN PGP SIGNATURE-----" header. The signature is
// not verified.
func ExtractSigned(b []byte) ([]byte, error) {
	start := bytes.IndexByte(b, '{')
	if start < 0 {
		return nil, fmt.Errorf("simplestreams: signed index has no JSON object: %w", ErrBadStream)
	}
	end := bytes.Index(b, []byte("-----BEGIN PGP SIGNATURE-----"))
	if end < 0 {
		end = len(b)
	}
	if end < start {
		return nil, fmt.Errorf("simplestreams: signed index: signature before content: %w", ErrBadStream)
	}
	return bytes.TrimSpace(b[start:end]), nil
}

const maxMeta = 64 << 20

func (s *Source) readJSON(ctx context.Context, rel string, v any, signed bool) error {
	rc, err := s.Open(ctx, rel)
	if err != nil {
		return err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxMeta+1))
	if err != nil {
		return fmt.Errorf("simplestreams: reading %s: %w", rel, err)
	}
	if len(b) > maxMeta {
		return fmt.Errorf("simplestreams: %s is larger than %d bytes: %w", rel, maxMeta, ErrBadStream)
	}
	if signed {
		if b, err = ExtractSigned(b); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("simplestreams: %s: %v: %w", rel, err, ErrBadStream)
	}
	return nil
}

// ReadIndex reads streams/v1/index.sjson (signature not verified; signed reports that it
// was used) or, when absent, streams/v1/index.json.
func (s *Source) ReadIndex(ctx context.Context) (idx *Index, signed bool, err error) {
	idx = &Index{}
	err = s.readJSON(ctx, "streams/v1/index.sjson", idx, true)
	if err == nil {
		return idx, true, validIndex(idx)
	}
	if errors.Is(err, ErrBadStream) {
		return nil, true, err
	}
	idx = &Index{}
	if err2 := s.readJSON(ctx, "streams/v1/index.json", idx, false); err2 != nil {
		return nil, false, fmt.Errorf("simplestreams: no usable index in %s: %w", s.base, err2)
	}
	return idx, false, validIndex(idx)
}

func validIndex(idx *Index) error {
	if idx.Format != "index:1.0" {
		return fmt.Errorf("simplestreams: index format %q, want \"index:1.0\": %w", idx.Format, ErrBadStream)
	}
	return nil
}

// ReadProducts reads one products file named by the index.
func (s *Source) ReadProducts(ctx context.Context, e IndexEntry) (*Products, error) {
	p := &Products{}
	signed := strings.HasSuffix(e.Path, ".sjson")
	if err := s.readJSON(ctx, e.Path, p, signed); err != nil {
		return nil, err
	}
	if p.Format != "" && p.Format != "products:1.0" {
		return nil, fmt.Errorf("simplestreams: %s: format %q, want \"products:1.0\": %w", e.Path, p.Format, ErrBadStream)
	}
	return p, nil
}

// Kind of a product, from its name.
type Kind int

// Product kinds.
const (
	KindOther      Kind = iota
	KindImage           // names matching .*:v([23]|3\+platform):.*
	KindBootloader      // names matching .*:1:.*
)

var (
	imageName      = regexp.MustCompile(`.*:v([23]|3\+platform):.*`)
	bootloaderName = regexp.MustCompile(`.*:1:.*`)
)

// KindOf classifies a product name as MAAS does.
func KindOf(name string) Kind {
	switch {
	case imageName.MatchString(name):
		return KindImage
	case bootloaderName.MatchString(name):
		return KindBootloader
	}
	return KindOther
}

// Latest returns the name of the latest version of p (sorted by version name), and false
// when p has none.
func (p Product) Latest() (string, bool) {
	if len(p.Versions) == 0 {
		return "", false
	}
	names := make([]string, 0, len(p.Versions))
	for n := range p.Versions {
		names = append(names, n)
	}
	sort.Strings(names)
	return names[len(names)-1], true
}

// Found is one product selected from a stream, with the items of its latest version.
type Found struct {
	Name    string
	Kind    Kind
	Product Product
	Version string
	Items   map[string]Item
}

// Selector decides whether a product is imported; nil imports everything.
type Selector func(name string, p Product) bool

// Walk reads the index and every products file of the source's stream and returns the
// latest version of every image and bootloader product sel accepts, sorted by name.
func (s *Source) Walk(ctx context.Context, sel Selector) ([]Found, bool, error) {
	idx, signed, err := s.ReadIndex(ctx)
	if err != nil {
		return nil, signed, err
	}
	keys := make([]string, 0, len(idx.Index))
	for k := range idx.Index {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []Found
	for _, k := range keys {
		e := idx.Index[k]
		if e.Datatype != "" && e.Datatype != "image-ids" && e.Datatype != "image-downloads" {
			continue
		}
		if !s.onStream(k) {
			continue
		}
		prods, err := s.ReadProducts(ctx, e)
		if err != nil {
			return nil, signed, err
		}
		names := make([]string, 0, len(prods.Products))
		for n := range prods.Products {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			p := prods.Products[n]
			kind := KindOf(n)
			if kind == KindOther || (sel != nil && !sel(n, p)) {
				continue
			}
			v, ok := p.Latest()
			if !ok {
				continue
			}
			items := p.Versions[v].Items
			for iname, it := range items {
				if it.Path == "" || !validSHA(it.SHA256) || it.Size < 0 {
					return nil, signed, fmt.Errorf("simplestreams: product %s version %s item %s: needs a path, a sha256 and a size: %w", n, v, iname, ErrBadStream)
				}
			}
			out = append(out, Found{Name: n, Kind: kind, Product: p, Version: v, Items: items})
		}
	}
	return out, signed, nil
}

// onStream keeps index entries of the source's stream: "stable" accepts stable (and the
// retired daily) content ids, "candidate" accepts candidate ones; ids naming no stream are
// accepted.
func (s *Source) onStream(contentID string) bool {
	has := func(st string) bool { return strings.Contains(contentID, ":"+st+":") }
	if !has("stable") && !has("candidate") && !has("daily") {
		return true
	}
	if s.Stream == "candidate" {
		return has("candidate")
	}
	return has("stable") || has("daily")
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

func validSHA(s string) bool { return sha256Hex.MatchString(s) }
