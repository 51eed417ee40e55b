package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// maasemu run: exit 0 when every script passes, 1 when one fails (its log printed), 2 for
// usage errors; --junit writes one test case per script.
func TestRunCommand(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "maasemu-agent")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("maasemu-agent", "#!/bin/sh\n")
	good := write("good.txtar", "exists a.txt\n-- a.txt --\nhi\n")
	bad := write("bad.txtar", "# the second check fails\nexists a.txt\nexists b.txt\n-- a.txt --\n")
	skipped := write("later.txtar", "skip 'known bug: none'\n")
	notScript := write("notes.md", "# not a script\n")

	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := Main(context.Background(), append([]string{"run", "-agent", agent}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}

	code, out, _ := run(good, skipped)
	if code != 0 || !strings.Contains(out, "PASS good") || !strings.Contains(out, "SKIP later") || !strings.Contains(out, "1 passed, 0 failed, 1 skipped") {
		t.Errorf("good+skipped: exit %d, output:\n%s", code, out)
	}

	junit := filepath.Join(dir, "junit.xml")
	code, out, _ = run("--junit", junit, good, bad)
	if code != 1 || !strings.Contains(out, "FAIL bad") || !strings.Contains(out, "b.txt does not exist") || !strings.Contains(out, "1 passed, 1 failed") {
		t.Errorf("good+bad: exit %d, output:\n%s", code, out)
	}
	b, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil || doc.Tests != 2 || doc.Failures != 1 {
		t.Errorf("junit: %+v, %v\n%s", doc, err, b)
	}

	// A directory means its *.txtar files; -run selects by name.
	code, out, _ = run("-run", "^good$", dir)
	if code != 0 || !strings.Contains(out, "PASS good") || strings.Contains(out, "bad") {
		t.Errorf("dir with -run: exit %d, output:\n%s", code, out)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "no scenario files given"},
		{[]string{notScript}, "a scenario file ends in .txtar"},
		{[]string{filepath.Join(dir, "missing.txtar")}, "no such file"},
		{[]string{"-driver", "qemu", good}, `-driver "qemu": want sim or libvirt`},
		{[]string{"-run", "(", good}, "-run \"(\""},
		{[]string{"-run", "^nothing$", good}, "no script matches -run"},
	} {
		code, _, errs := run(c.args...)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("run %q: exit %d, stderr %q; want 2 and %q", c.args, code, errs, c.want)
		}
	}
}
