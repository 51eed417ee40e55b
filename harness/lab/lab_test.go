package lab_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maasemu/maasemu/harness/lab"
	"github.com/maasemu/maasemu/harness/lab/labtest"
	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/harness/report"
	"github.com/maasemu/maasemu/harness/timeline"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("simulated machines sandbox their ephemeral in a mount namespace: needs root")
	}
}

// deploySim deploys one test image on a simulated machine and returns the result.
func deploySim(t *testing.T, image string, fw machine.Firmware) (*lab.Lab, *lab.Machine, report.Result) {
	t.Helper()
	needRoot(t)
	man, dir := labtest.TestImages(t)
	im, ok := man.Image(image)
	if !ok {
		t.Fatalf("no test image %q", image)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l, err := lab.Start(ctx, lab.Config{Dir: t.TempDir(), Driver: lab.DriverSim, AgentPath: labtest.Agent(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("closing the lab: %v", err)
		}
	})
	if err := l.ImportStreams(ctx, labtest.SimStream(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.UploadImage(ctx, image, filepath.Join(dir, im.File), im.Filetype, "ubuntu/jammy"); err != nil {
		t.Fatal(err)
	}
	m, err := l.NewMachine(ctx, lab.MachineSpec{Name: "m1", Firmware: fw, Disks: []machine.Disk{{SizeBytes: 4 << 30}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Deploy(ctx, m, lab.DeployOptions{DistroSeries: image}); err != nil {
		t.Fatal(err)
	}
	res, err := l.Follow(ctx, m, lab.FollowOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l, m, res
}

func TestSimDeploysGoodTgz(t *testing.T) {
	_, m, res := deploySim(t, "good-tgz", machine.BIOS)
	if !res.Passed {
		console, _ := os.ReadFile(m.Driver().ConsolePath())
		t.Fatalf("status %s (%s); diagnosis %+v\nconsole:\n%s", res.Status, res.StatusMessage, res.Diagnosis, console)
	}
	for _, p := range res.Phases {
		if p.Phase == timeline.DeployedMark && p.State != timeline.StateDone {
			t.Errorf("deployed phase %s", p.State)
		}
	}
	_ = strings.TrimSpace
}
