package installer

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"
)

// CommandOptions configure a standalone `curtin SUBCOMMAND` (the agent's curtin entry,
// run by hooks and shell commands during an install).
type CommandOptions struct {
	// Env is the process environment (CONFIG, TARGET_MOUNT_POINT, CURTIN_REPORTSTACK...);
	// nil reads os.Environ.
	Env map[string]string
	// Out receives the command's output.
	Out io.Writer
	// Backend serves block-meta; nil leaves only the subcommands that need none.
	Backend    Backend
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// RunCommand runs `curtin ARGS...` as a separate curtin process would: it reports its
// cmd-<sub> events to the handlers of the config at $CONFIG and returns the exit status.
func RunCommand(ctx context.Context, args []string, o CommandOptions) int {
	env := o.Env
	if env == nil {
		env = map[string]string{}
		for _, kv := range os.Environ() {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = v
			}
		}
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	r := &run{opts: Options{Backend: o.Backend, HTTPClient: o.HTTPClient, Log: o.Out, Logger: o.Logger}, now: time.Now, log: o.Logger, out: o.Out}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	c := &cmdEnv{r: r, env: env}
	if err := c.loadConfig(); err == nil {
		r.reporter = r.configuredReporters(c.cfg)
	} else {
		r.reporter = Reporters()
	}
	if o.Backend == nil {
		r.opts.Backend = noBackend{}
	}
	return r.curtinMain(ctx, env, args, o.Out)
}
