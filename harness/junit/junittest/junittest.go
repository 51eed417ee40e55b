// Package junittest checks JUnit XML against the project's schema
// (testdata/junit/junit.xsd) in tests.
package junittest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Validate runs xmllint --schema on doc and returns its complaint, nil when doc is valid.
// Without xmllint (Debian package libxml2-utils) it skips t.
func Validate(t testing.TB, doc []byte) error {
	t.Helper()
	if _, err := exec.LookPath("xmllint"); err != nil {
		t.Skip("schema check needs xmllint (Debian package libxml2-utils)")
	}
	_, here, _, _ := runtime.Caller(0)
	xsd := filepath.Join(filepath.Dir(here), "..", "..", "..", "testdata", "junit", "junit.xsd")
	f := filepath.Join(t.TempDir(), "junit.xml")
	if err := os.WriteFile(f, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("xmllint", "--noout", "--schema", xsd, f).CombinedOutput(); err != nil {
		return fmt.Errorf("xmllint --schema: %v\n%s", err, out)
	}
	return nil
}
