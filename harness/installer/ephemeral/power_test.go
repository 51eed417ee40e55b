package ephemeral

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestPowerState(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "tmp"), 0o755)
	o := Options{Root: root, Console: io.Discard}
	cond := map[string]any{"mode": "reboot", "delay": "now", "condition": "test ! -e /tmp/block-reboot"}
	cases := []struct {
		name  string
		ps    map[string]any
		block bool
		want  string
		err   bool
	}{
		{"reboot", cond, false, "reboot", false},
		{"blocked by /tmp/block-reboot", cond, true, "", false},
		{"poweroff without condition", map[string]any{"mode": "poweroff"}, false, "poweroff", false},
		{"condition false", map[string]any{"mode": "halt", "condition": false}, false, "", false},
		{"no power_state", nil, false, "", false},
		{"bad mode", map[string]any{"mode": "explode"}, false, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			os.Remove(filepath.Join(root, "tmp/block-reboot"))
			if c.block {
				os.WriteFile(filepath.Join(root, "tmp/block-reboot"), nil, 0o644)
			}
			cfg := map[string]any{}
			if c.ps != nil {
				cfg["power_state"] = c.ps
			}
			got, err := powerState(context.Background(), o, cfg)
			if (err != nil) != c.err || got != c.want {
				t.Errorf("got %q, %v; want %q (error %v)", got, err, c.want, c.err)
			}
		})
	}
}
