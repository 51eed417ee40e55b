package curtincfg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// InstallerSpec is the project's own installer route: what curtin's
// pack_install(configs, args) would pack, as data. The maasemu agent fetches it as JSON
// instead of a self-extracting shell archive and runs the equivalent of
// `curtin install --config=configs/config-000.cfg ... <args>`.
type InstallerSpec struct {
	// Configs are the curtin configuration documents, in order; config N is
	// configs/config-NNN.cfg in a real pack.
	Configs []string `json:"configs"`
	// Args follow the --config options; MAAS passes the source URL.
	Args []string `json:"args"`
}

// InstallerSpec returns the spec MAAS would pack for this configuration.
func (c *Curtin) InstallerSpec() InstallerSpec {
	return InstallerSpec{Configs: c.Configs(), Args: []string{c.Source}}
}

// Command is the curtin command line the spec stands for.
func (s InstallerSpec) Command() []string {
	cmd := []string{"curtin", "install"}
	for i := range s.Configs {
		cmd = append(cmd, fmt.Sprintf("--config=configs/config-%03d.cfg", i))
	}
	return append(cmd, s.Args...)
}

func (s InstallerSpec) validate() error {
	if len(s.Configs) == 0 {
		return bad("installer.configs", "", "an installer needs at least one curtin configuration document")
	}
	if len(s.Args) == 0 {
		return bad("installer.args", "", "an installer needs the install source argument")
	}
	return nil
}

// ErrCurtinUnavailable is returned by Pack when no curtin Python package can be imported.
// The region should report it rather than serve something that only looks like an
// installer.
var ErrCurtinUnavailable = errors.New("curtin is not available on this host: MAAS's installer is a self-extracting curtin pack built by curtin's own pack_install, which needs the curtin Python package (install python3-curtin, or give a curtin source tree with --curtin DIR)")

// Packer builds MAAS's curtin installer with curtin's own pack module.
type Packer struct {
	// CurtinDir is a directory holding the curtin Python package (CurtinDir/curtin/
	// __init__.py), e.g. a curtin source checkout. Empty: whatever python3 imports.
	CurtinDir string
	// Python is the interpreter; default /usr/bin/python3 (the system's, which sees
	// Debian's python3-curtin and python3-packaging), else python3 on PATH.
	Python string
}

// importable holds the interpreter and curtin directory pairs that imported curtin.pack.
var importable sync.Map

// Pack is Packer{}.Pack.
func Pack(ctx context.Context, spec InstallerSpec) ([]byte, error) {
	return Packer{}.Pack(ctx, spec)
}

const packScript = `
import json, sys
from curtin.pack import pack_install
spec = json.load(sys.stdin)
out = pack_install(configs=spec["configs"], args=spec["args"])
if isinstance(out, bytes):
    out = out.decode()
sys.stdout.write(out)
`

// Pack returns the self-extracting installer that get_curtin_userdata serves at
// /MAAS/metadata/curtin/2012-03-01/user-data (MAAS 3.7): curtin.pack.pack_install run
// with the spec's configs and args. Without an importable curtin it returns an error
// wrapping ErrCurtinUnavailable.
func (p Packer) Pack(ctx context.Context, spec InstallerSpec) ([]byte, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	py := p.Python
	if py == "" {
		py = "python3"
		if _, err := os.Stat("/usr/bin/python3"); err == nil {
			py = "/usr/bin/python3"
		}
	}
	path, err := exec.LookPath(py)
	if err != nil {
		return nil, fmt.Errorf("%w (no Python interpreter %q: %v)", ErrCurtinUnavailable, py, err)
	}
	env := os.Environ()
	if p.CurtinDir != "" {
		dir, err := filepath.Abs(p.CurtinDir)
		if err != nil {
			return nil, fmt.Errorf("%w (--curtin %s: %v)", ErrCurtinUnavailable, p.CurtinDir, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "curtin", "__init__.py")); err != nil {
			return nil, fmt.Errorf("%w (--curtin %s holds no curtin/__init__.py)", ErrCurtinUnavailable, p.CurtinDir)
		}
		pp := dir
		if old := os.Getenv("PYTHONPATH"); old != "" {
			pp += string(os.PathListSeparator) + old
		}
		env = append(env, "PYTHONPATH="+pp)
	}
	env = append(env, "PYTHONIOENCODING=utf-8", "PYTHONDONTWRITEBYTECODE=1")

	// The import check names what is missing better than a failed pack would; once it
	// passes for an interpreter and curtin directory it is not repeated (a region packs
	// for every machine it deploys).
	key := path + "\x00" + p.CurtinDir
	if _, ok := importable.Load(key); !ok {
		check := exec.CommandContext(ctx, path, "-c", "import curtin.pack")
		check.Env = env
		check.WaitDelay = 5 * time.Second
		if out, err := check.CombinedOutput(); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w (%s -c 'import curtin.pack': %s)", ErrCurtinUnavailable, py, lastLine(out, err))
		}
		importable.Store(key, true)
	}

	body, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, path, "-c", packScript)
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(body)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("curtin pack_install failed: %s", lastLine(stderr.Bytes(), err))
	}
	return stdout.Bytes(), nil
}

func lastLine(out []byte, err error) string {
	s := strings.TrimSpace(string(out))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return err.Error()
	}
	return s
}
