package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/maasemu/maasemu/harness/diagnose"
	"github.com/maasemu/maasemu/harness/report"
	"github.com/maasemu/maasemu/harness/timeline"
	"github.com/maasemu/maasemu/trace"
)

// RunSpec is one deployment of one image on one machine, in a lab of its own.
type RunSpec struct {
	// Name names the run (a validate matrix cell, e.g. "bios-flat").
	Name string
	// Dir receives the artifacts: console.log, events.jsonl, network.pcap,
	// curtin-install.log. Required.
	Dir string
	// WorkDir holds the lab's state and disks; "" means a temporary directory removed at
	// the end.
	WorkDir string

	Driver     string
	LibvirtURI string
	AgentPath  string
	CurtinDir  string
	// Streams is the SimpleStreams tree of the ephemeral (and bootloaders) to import.
	Streams string

	Image     string // the image file
	Filetype  string // MAAS filetype (tgz, ddgz, ...)
	ImageName string // boot resource name; "" derives one from the file name
	BaseImage string // e.g. "ubuntu/jammy"
	Machine   MachineSpec
	Layout    string // "" or "flat" (MAAS's default), "lvm"
	UserData  []byte

	Budgets timeline.Budgets
	OnPhase func(timeline.Span)
	Events  trace.Sink
	Logger  *slog.Logger
}

// RunDeploy brings up a lab, uploads the image through the API, creates the machine,
// deploys, follows it to Deployed or Failed deployment, writes the artifacts, and tears
// everything down. A failed deployment is a Result, not an error; the error is for the
// harness failing to run it (the Result then carries it too).
func RunDeploy(ctx context.Context, s RunSpec) (report.Result, error) {
	res := report.Result{Name: s.Name, Image: s.Image, Filetype: s.Filetype, Driver: s.Driver,
		Firmware: string(s.Machine.Firmware), Layout: s.Layout, Started: time.Now()}
	fail := func(err error) (report.Result, error) {
		res.Finished = time.Now()
		res.Seconds = res.Finished.Sub(res.Started).Seconds()
		res.Error = err.Error()
		res.Status = "error"
		res.Diagnosis = []diagnose.Finding{{ID: "harness", Severity: "error", Summary: err.Error()}}
		return res, err
	}
	if s.Dir == "" {
		return fail(errors.New("lab: RunSpec.Dir is required"))
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return fail(err)
	}
	if s.WorkDir == "" {
		wd, err := os.MkdirTemp("", "maasemu-run-")
		if err != nil {
			return fail(err)
		}
		defer os.RemoveAll(wd)
		s.WorkDir = wd
	}
	if s.Machine.Name == "" {
		s.Machine.Name = "machine-1"
	}
	if s.ImageName == "" {
		s.ImageName = ImageName(s.Image)
	}
	if s.Name == "" {
		s.Name = s.Machine.Name
	}
	res.Name = s.Name
	// The process id keeps concurrent runs on one libvirt daemon apart.
	l, err := Start(ctx, Config{Dir: s.WorkDir, Name: fmt.Sprintf("%s-%d", sanitize(s.Name), os.Getpid()), Driver: s.Driver, LibvirtURI: s.LibvirtURI,
		AgentPath: s.AgentPath, CurtinDir: s.CurtinDir, Budgets: s.Budgets, Events: s.Events, Logger: s.Logger})
	if err != nil {
		return fail(err)
	}
	closed := false
	closeLab := func() error {
		if closed {
			return nil
		}
		closed = true
		err := l.Close()
		// The capture is complete only once the network is down.
		if cerr := copyFile(filepath.Join(s.WorkDir, "network.pcap"), filepath.Join(s.Dir, report.FilePcap)); cerr == nil {
			if res.Artifacts == nil {
				res.Artifacts = map[string]string{}
			}
			res.Artifacts["pcap"] = report.FilePcap
		}
		return err
	}
	defer closeLab()
	if s.Streams != "" {
		if err := l.ImportStreams(ctx, s.Streams); err != nil {
			return fail(fmt.Errorf("importing the boot images from %s: %w", s.Streams, err))
		}
	}
	if _, err := l.UploadImage(ctx, s.ImageName, s.Image, s.Filetype, s.BaseImage); err != nil {
		return fail(fmt.Errorf("uploading %s as %s: %w", s.Image, s.Filetype, err))
	}
	m, err := l.NewMachine(ctx, s.Machine)
	if err != nil {
		return fail(fmt.Errorf("creating machine %s: %w", s.Machine.Name, err))
	}
	res.SystemID, res.Hostname = m.SystemID, m.Spec.Name
	if s.Layout != "" && s.Layout != "flat" {
		if err := l.post(ctx, "machines/"+m.SystemID+"/", "set_storage_layout", url.Values{"storage_layout": {s.Layout}}, nil); err != nil {
			return fail(fmt.Errorf("setting storage layout %s: %w", s.Layout, err))
		}
	}
	if err := l.Deploy(ctx, m, DeployOptions{DistroSeries: s.ImageName, UserData: s.UserData}); err != nil {
		// The region refused the deployment (e.g. no boot image for the base): that is a
		// verdict about the image, with MAAS's message.
		res.Finished = time.Now()
		res.Seconds = res.Finished.Sub(res.Started).Seconds()
		res.Status = StatusFailed
		res.StatusMessage = err.Error()
		res.Diagnosis = diagnose.Diagnose(diagnose.Input{Status: StatusFailed, StatusMessage: err.Error()})
		return res, nil
	}
	started := res.Started
	r, ferr := l.Follow(ctx, m, FollowOptions{OnPhase: s.OnPhase})
	r.Image, r.Filetype, r.Layout, r.Started = s.Image, s.Filetype, s.Layout, started
	r.Name = s.Name
	r.Seconds = r.Finished.Sub(started).Seconds()
	arts, aerr := l.WriteArtifacts(context.WithoutCancel(ctx), m, s.Dir)
	res = r
	res.Artifacts = arts
	if aerr != nil {
		l.log.Warn("lab: writing artifacts", "err", aerr)
	}
	if err := closeLab(); err != nil {
		l.log.Warn("lab: closing", "err", err)
	}
	return res, ferr
}

// ImageName derives a MAAS boot resource name from an image file name: the base name
// without archive extensions, in the characters MAAS accepts.
func ImageName(path string) string {
	base := filepath.Base(path)
	for _, ext := range []string{".gz", ".xz", ".bz2", ".zst", ".tar", ".tgz", ".tbz", ".txz", ".img", ".raw", ".dd", ".qcow2"} {
		for len(base) > len(ext) && filepath.Ext(base) == ext {
			base = base[:len(base)-len(ext)]
		}
	}
	out := []rune{}
	for _, r := range base {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			out = append(out, r)
		case r >= 'A' && r <= 'Z':
			out = append(out, r-'A'+'a')
		default:
			out = append(out, '-')
		}
	}
	if len(out) == 0 {
		return "custom-image"
	}
	return string(out)
}
