package simplestreams

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestExtractSigned(t *testing.T) {
	in := "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n{\"format\": \"index:1.0\"}\n-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\n"
	got, err := ExtractSigned([]byte(in))
	if err != nil || string(got) != `{"format": "index:1.0"}` {
		t.Errorf("ExtractSigned = %q, %v", got, err)
	}
	if _, err := ExtractSigned([]byte("no json here")); !errors.Is(err, ErrBadStream) {
		t.Errorf("no JSON: %v", err)
	}
}

func TestKindAndLatest(t *testing.T) {
	kinds := map[string]Kind{
		"com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04":        KindImage,
		"com.ubuntu.maas.stable:v3+platform:boot:24.04:arm64:x":      KindImage,
		"com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64":        KindBootloader,
		"com.ubuntu.maas.stable:centos-bases:centos70:amd64:generic": KindOther,
	}
	for n, want := range kinds {
		if got := KindOf(n); got != want {
			t.Errorf("KindOf(%s) = %v, want %v", n, got, want)
		}
	}
	p := Product{Versions: map[string]Version{"20250101": {}, "20250718": {}, "20240622_01": {}}}
	if v, ok := p.Latest(); !ok || v != "20250718" {
		t.Errorf("Latest = %q", v)
	}
}

func TestSourceStream(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"stable", "candidate", "daily"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	cases := map[string]string{"stable": "stable", "candidate": "candidate", "daily": "stable"}
	for sub, want := range cases {
		s, err := NewSource(filepath.Join(dir, sub), nil)
		if err != nil || s.Stream != want {
			t.Errorf("%s: stream %q, %v; want %q", sub, s.Stream, err, want)
		}
	}
	if _, err := NewSource("ftp://x/", nil); err == nil {
		t.Error("ftp source accepted")
	}
	if _, err := NewSource(filepath.Join(dir, "nosuch"), nil); err == nil {
		t.Error("missing directory accepted")
	}
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const sha = "54fe42a354fe42a354fe42a354fe42a354fe42a354fe42a354fe42a354fe42a3"

func TestWalk(t *testing.T) {
	index := `{"format":"index:1.0","index":{
	  "com.ubuntu.maas:daily:v3:download":{"datatype":"image-ids","format":"products:1.0","path":"streams/v1/p.json","products":[]},
	  "com.ubuntu.maas:candidate:v3:download":{"datatype":"image-ids","format":"products:1.0","path":"streams/v1/c.json","products":[]}}}`
	products := `{"content_id":"x","datatype":"image-ids","format":"products:1.0","products":{
	  "com.ubuntu.maas.daily:v3:boot:24.04:amd64:ga-24.04":{"arch":"amd64","os":"ubuntu","release":"noble","subarch":"ga-24.04","label":"daily",
	     "versions":{"20240101":{"items":{"boot-kernel":{"ftype":"boot-kernel","path":"old","sha256":"` + sha + `","size":1}}},
	                 "20250101":{"items":{"boot-kernel":{"ftype":"boot-kernel","path":"new","sha256":"` + sha + `","size":1}}}}},
	  "com.ubuntu.maas.daily:centos-bases:x":{"arch":"amd64","os":"centos","versions":{"1":{"items":{}}}}}}`
	dir := filepath.Join(t.TempDir(), "daily")
	writeTree(t, dir, map[string]string{"streams/v1/index.json": index, "streams/v1/p.json": products,
		"streams/v1/c.json": `{"products":{"com.ubuntu.maas.candidate:v3:boot:x":{"versions":{"1":{"items":{}}}}}}`})
	s, err := NewSource(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	found, signed, err := s.Walk(context.Background(), nil)
	if err != nil || signed {
		t.Fatalf("Walk: %v signed %v", err, signed)
	}
	var got []string
	for _, f := range found {
		got = append(got, f.Name+"@"+f.Version+":"+f.Items["boot-kernel"].Path)
	}
	if diff := cmp.Diff([]string{"com.ubuntu.maas.daily:v3:boot:24.04:amd64:ga-24.04@20250101:new"}, got); diff != "" {
		t.Errorf("found (-want +got):\n%s", diff)
	}
	// Over HTTP, the same.
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	hs, err := NewSource(srv.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if hfound, _, err := hs.Walk(context.Background(), nil); err != nil || len(hfound) != 1 {
		t.Errorf("HTTP walk: %v, %v", hfound, err)
	}
}

func TestBadStreams(t *testing.T) {
	cases := map[string]map[string]string{
		"invalid index JSON": {"streams/v1/index.json": `{"format":`},
		"wrong index format": {"streams/v1/index.json": `{"format":"index:0.1","index":{}}`},
		"item without sha256": {"streams/v1/index.json": `{"format":"index:1.0","index":{"a:stable:v3:d":{"path":"streams/v1/p.json"}}}`,
			"streams/v1/p.json": `{"products":{"x:v3:y":{"versions":{"1":{"items":{"k":{"path":"k","size":1}}}}}}}`},
		"products path escapes": {"streams/v1/index.json": `{"format":"index:1.0","index":{"a:stable:v3:d":{"path":"../../etc/passwd"}}}`},
		"no index":              {},
	}
	for name, files := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, files)
			s, err := NewSource(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.Walk(context.Background(), nil); err == nil {
				t.Fatal("Walk succeeded")
			}
		})
	}
	s, _ := NewSource(t.TempDir(), nil)
	if _, err := s.Open(context.Background(), "../x"); err == nil {
		t.Error("Open(../x) succeeded")
	}
}
