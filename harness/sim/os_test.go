package sim

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEphemeralEnv(t *testing.T) {
	host := []string{"HOME=/root", "PATH=/root/.pyenv/shims:/usr/bin", "PYENV_VERSION=3.12", "PYTHONPATH=/opt/x",
		"VIRTUAL_ENV=/venv", "LANG=C.UTF-8", "PYTHONSTARTUP_IS_NOT_A_PREFIX_TEST=1"}
	want := []string{"PATH=" + ephemeralPath, "HOME=/root", "LANG=C.UTF-8"}
	if diff := cmp.Diff(want, ephemeralEnv(host)); diff != "" {
		t.Errorf("ephemeralEnv (-want +got):\n%s", diff)
	}
}
