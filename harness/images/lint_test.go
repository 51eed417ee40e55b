package images

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/maasemu/maasemu/harness/images/lint"
)

// TestLintTestImages: lint finds exactly the expected findings (errors and warnings) on
// each broken image and none on the good ones.
func TestLintTestImages(t *testing.T) {
	dir, m := testImages(t)
	for _, im := range m.Images {
		t.Run(im.Name, func(t *testing.T) {
			r, err := lint.Lint(context.Background(), filepath.Join(dir, im.File), im.Filetype, lint.Options{TempDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			got := r.IDs(lint.Error, lint.Warning)
			if got == nil {
				got = []string{}
			}
			if diff := cmp.Diff(im.Lint, got); diff != "" {
				t.Errorf("lint %s as %s (-want +got):\n%s\nfindings: %+v", im.File, im.Filetype, diff, r.Findings)
			}
			if im.Expected == ExpectRefusedByLint && r.Errors() == 0 {
				t.Errorf("expected to be refused by lint, but lint found no error")
			}
			if im.Expected == ExpectDeployed && r.Errors() != 0 {
				t.Errorf("a good image has lint errors: %+v", r.Findings)
			}
			for _, f := range r.Findings {
				if f.Severity != lint.Info && (f.Message == "" || f.Predicts == "") {
					t.Errorf("finding %s lacks a message or a predicted failure", f.ID)
				}
			}
		})
	}
}

func TestLintPredictsMAASMessages(t *testing.T) {
	dir, m := testImages(t)
	for name, want := range map[string]string{
		"lying-filetype":  "tar: This does not look like a tar archive",
		"truncated-tgz":   "Unexpected EOF in archive",
		"no-cloud-init":   "cloud-init not detected, MAAS will not be able to configure this machine properly",
		"dd-no-curtin":    "Did not find any filesystem on",
		"fstab-foreign":   "Timed out waiting for device /dev/disk/by-label/UEFI",
		"efi-rocky-only":  "/efi/rocky/grubx64.efi, which it tries only with Secure Boot off",
		"efi-vendor-only": "/EFI/almalinux/grubx64.efi",
	} {
		im, _ := m.Image(name)
		r, err := lint.Lint(context.Background(), filepath.Join(dir, im.File), im.Filetype, lint.Options{})
		if err != nil {
			t.Fatal(err)
		}
		text := ""
		for _, f := range r.Findings {
			text += f.Message + " " + f.Predicts + "\n"
		}
		if !strings.Contains(text, want) {
			t.Errorf("%s: findings do not mention %q:\n%s", name, want, text)
		}
	}
	im, _ := m.Image("lying-filetype")
	r, _ := lint.Lint(context.Background(), filepath.Join(dir, im.File), im.Filetype, lint.Options{})
	if !strings.Contains(r.Findings[0].Message, "upload with --filetype ddgz") {
		t.Errorf("lying-filetype: the finding should name the right filetype: %q", r.Findings[0].Message)
	}
}

// TestLintFiletypeMatrix declares each good image as every other filetype: lint must flag
// every declaration curtin would choke on.
func TestLintFiletypeMatrix(t *testing.T) {
	dir, m := testImages(t)
	goods := []string{"good-tgz", "good-tbz", "good-txz", "good-ddraw", "good-ddgz", "good-ddxz", "good-ddbz2", "good-ddtar", "good-ddtgz", "good-ddtbz", "good-ddtxz"}
	for _, g := range goods {
		im, _ := m.Image(g)
		decls := []string{"good-tgz", "good-ddtgz", "good-ddraw", "good-ddgz", g}
		if g == "good-ddgz" || g == "good-tgz" {
			decls = goods
		}
		for _, decl := range decls {
			ft := strings.TrimPrefix(decl, "good-")
			r, err := lint.Lint(context.Background(), filepath.Join(dir, im.File), ft, lint.Options{TempDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			mismatch := false
			for _, f := range r.Findings {
				if f.ID == "filetype-mismatch" || f.ID == "filetype-compression" {
					mismatch = true
				}
			}
			if mismatch != (ft != im.Filetype) {
				t.Errorf("%s declared as %s: mismatch reported = %v; findings %+v", g, ft, mismatch, r.Findings)
			}
		}
	}
}

func TestLintBadInput(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.tgz")
	os.WriteFile(empty, nil, 0o644)
	junk := filepath.Join(dir, "junk.img")
	os.WriteFile(junk, []byte(strings.Repeat("not an image\n", 100)), 0o644)
	for _, tc := range []struct {
		name, path, ft string
		usage          bool
		ids            []string
	}{
		{"unknown filetype", junk, "zip", true, nil},
		{"missing file", filepath.Join(dir, "nope"), "tgz", true, nil},
		{"directory", dir, "tgz", true, nil},
		{"empty", empty, "tgz", false, []string{"empty-image"}},
		{"junk as tgz", junk, "tgz", false, []string{"filetype-mismatch"}},
		{"junk as ddraw", junk, "ddraw", false, []string{"filetype-mismatch"}},
	} {
		r, err := lint.Lint(context.Background(), tc.path, tc.ft, lint.Options{})
		if tc.usage {
			if err == nil || !strings.Contains(err.Error(), "usage") {
				t.Errorf("%s: err = %v, want a usage error", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if diff := cmp.Diff(tc.ids, r.IDs(lint.Error)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}
