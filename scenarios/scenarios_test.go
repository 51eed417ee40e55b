package scenarios_test

import (
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/maasemu/maasemu/harness/lab/labtest"
	"github.com/maasemu/maasemu/harness/scenario"
)

// TestScenarios runs every scenarios/*.txtar with the scenario command set: the sim ones
// wherever simulated machines can run (root or user namespaces), the libvirt ones behind
// [libvirt] where libvirt's daemons run or can be started (CI).
func TestScenarios(t *testing.T) {
	o := scenario.Options{AgentPath: labtest.Agent(t), SharedDir: t.TempDir()}
	if d, ok := t.Deadline(); ok {
		o.Deadline = d
	} else {
		o.Deadline = time.Now().Add(time.Hour)
	}
	p := scenario.Params(o)
	p.Dir = "."
	testscript.Run(t, p)
}
