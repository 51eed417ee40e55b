package lab_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/maasemu/maasemu/harness/diskimage"
	"github.com/maasemu/maasemu/harness/lab"
	"github.com/maasemu/maasemu/harness/lab/labtest"
	"github.com/maasemu/maasemu/harness/libvirt"
	"github.com/maasemu/maasemu/harness/machine"
	"github.com/maasemu/maasemu/harness/timeline"
	"github.com/maasemu/maasemu/trace"
)

// vmLab starts a libvirt lab with the real test ephemeral imported and image uploaded.
func vmLab(t *testing.T, image string) (*lab.Lab, string) { return vmLabB(t, image) }

func vmLabB(t testing.TB, image string) (*lab.Lab, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("VM tests need root (libvirt's system daemon)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := libvirt.EnsureDaemons(ctx); err != nil {
		t.Skipf("libvirt cannot run here: %v", err)
	}
	man, dir := labtest.TestImages(t)
	im, ok := man.Image(image)
	if !ok {
		t.Fatalf("no test image %q", image)
	}
	streams := labtest.EphemeralStreams(t)
	l, err := lab.Start(context.Background(), lab.Config{Dir: t.TempDir(), Name: labName(t.Name()),
		Driver: lab.DriverLibvirt, AgentPath: labtest.Agent(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("closing the lab: %v", err)
		}
	})
	if err := l.ImportStreams(ctx, streams); err != nil {
		t.Fatal(err)
	}
	if _, err := l.UploadImage(ctx, image, filepath.Join(dir, im.File), im.Filetype, "ubuntu/jammy"); err != nil {
		t.Fatal(err)
	}
	return l, image
}

// A real BIOS VM PXE-boots the test ephemeral, installs a tgz image with its hooks, reboots
// into it, and its first boot makes it Deployed; then its disk is inspected independently.
func TestVMDeployBIOSTgz(t *testing.T) {
	l, image := vmLab(t, "good-tgz")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	m, err := l.NewMachine(ctx, lab.MachineSpec{Name: "vm1", Firmware: machine.BIOS, Disks: []machine.Disk{{SizeBytes: 4 << 30}}})
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
	if !res.Passed {
		console, _ := os.ReadFile(m.Driver().ConsolePath())
		t.Fatalf("%s\ndiagnosis: %+v\nconsole tail:\n%s", res.Summary(), res.Diagnosis, tail(string(console), 60))
	}
	for _, p := range res.Phases {
		t.Logf("%-20s %-8s %6.1fs", p.Phase, p.State, p.Seconds)
	}
	// The installed disk, read in userspace: a GPT table with the bios_grub partition MAAS
	// adds for BIOS, an fsck-clean ext4 root with curtin's fstab, the network config curtin
	// passed through, MAAS's datasource config and the hook's mark.
	_ = m.Driver().PowerOff(ctx)
	disk := m.Driver().DiskPaths()[0]
	tab, err := diskimage.ReadTable(disk)
	if err != nil {
		t.Fatal(err)
	}
	if tab.Type != diskimage.GPT || len(tab.Partitions) < 2 || tab.Partitions[0].Flag != diskimage.FlagBIOSGrub {
		t.Errorf("partition table %+v: want gpt with a bios_grub partition first", tab)
	}
	fss, err := diskimage.Probe(disk)
	if err != nil {
		t.Fatal(err)
	}
	var root diskimage.FS
	for _, f := range fss {
		if ok, _ := diskimage.Exists(disk, f, "/etc/os-release"); ok {
			root = f
		}
	}
	if root.Type != diskimage.FSExt4 {
		t.Fatalf("no ext4 root among %+v", fss)
	}
	for file, want := range map[string]string{
		"/etc/fstab": "/ ext4",
		"/etc/cloud/cloud.cfg.d/95-cloudconfig-maas-cloud-config.cfg": "metadata_url",
		"/var/lib/maasemu/hook-ran":                                   "firmware=bios",
	} {
		b, err := diskimage.ReadFile(disk, root, file)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("%s does not contain %q:\n%s", file, want, b)
		}
	}
	// curtin's network passthrough: the machine's config under a top-level network key.
	if b, err := diskimage.ReadFile(disk, root, "/etc/cloud/cloud.cfg.d/50-curtin-networking.cfg"); err != nil {
		t.Error(err)
	} else {
		var nc struct {
			Network struct {
				Version int `yaml:"version"`
			} `yaml:"network"`
		}
		if err := yaml.Unmarshal(b, &nc); err != nil || nc.Network.Version != 2 {
			t.Errorf("50-curtin-networking.cfg is not a network v2 config (%v):\n%s", err, b)
		}
	}
	part := filepath.Join(t.TempDir(), "root.img")
	if out, err := exec.Command("dd", "if="+disk, "of="+part, "bs=1M", "iflag=skip_bytes,count_bytes",
		"skip="+itoa(root.Offset), "count="+itoa(root.Size), "conv=sparse").CombinedOutput(); err != nil {
		t.Fatalf("dd: %v %s", err, out)
	}
	if out, err := exec.Command("e2fsck", "-fn", part).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn of the installed root: %v\n%s", err, out)
	}
}

// A VM destroyed in the middle of the install ends Failed deployment within seconds,
// naming the phase, and nothing of it is left behind.
func TestVMDestroyedMidInstall(t *testing.T) {
	l, image := vmLab(t, "good-tgz")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	m, err := l.NewMachine(ctx, lab.MachineSpec{Name: "vm-cut", Firmware: machine.BIOS, Disks: []machine.Disk{{SizeBytes: 4 << 30}}})
	if err != nil {
		t.Fatal(err)
	}
	events, stop := l.Recorder.Subscribe()
	defer stop()
	if err := l.Deploy(ctx, m, lab.DeployOptions{DistroSeries: image}); err != nil {
		t.Fatal(err)
	}
	// Pull the plug once curtin starts partitioning.
	cut := make(chan time.Time, 1)
	go func() {
		for e := range events {
			if e.Kind == trace.KindWebhookEvent && e.Attrs["name"] == "cmd-install/stage-partitioning" && e.Attrs["event_type"] == "start" {
				_ = m.Driver().PowerOff(ctx)
				cut <- time.Now()
				return
			}
		}
	}()
	res, err := l.Follow(ctx, m, lab.FollowOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var at time.Time
	select {
	case at = <-cut:
	default:
		t.Fatalf("the power was never cut; result %s", res.Summary())
	}
	if res.Passed || res.FailedPhase != timeline.CurtinPart {
		t.Errorf("result %s, failed phase %q: want Failed deployment in %s", res.Summary(), res.FailedPhase, timeline.CurtinPart)
	}
	if d := res.Finished.Sub(at); d > time.Minute {
		t.Errorf("the failure took %s after the power cut", d)
	}
	found := false
	for _, f := range res.Diagnosis {
		found = found || f.ID == "power-lost"
	}
	if !found {
		t.Errorf("diagnosis %+v does not name the power loss", res.Diagnosis)
	}
	dom := m.Driver().(*libvirt.VM).Domain()
	dir := filepath.Dir(m.Driver().DiskPaths()[0])
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("virsh", "-c", "qemu:///system", "list", "--all", "--name").Output(); strings.Contains(string(out), dom) {
		t.Errorf("domain %s still defined after the lab closed", dom)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("machine directory %s still exists (%v)", dir, err)
	}
	if out, _ := exec.Command("pgrep", "-f", "guest="+dom).Output(); len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("QEMU of %s still running: %s", dom, out)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// BenchmarkVMDeploy is `maasemu deploy`'s path on real VMs: a tgz test image on BIOS and
// UEFI, from the deploy call to Deployed. It reports the median and each phase's median.
func BenchmarkVMDeploy(b *testing.B) {
	for _, fw := range []machine.Firmware{machine.BIOS, machine.UEFI} {
		b.Run(string(fw), func(b *testing.B) {
			l, image := vmLabB(b, "good-tgz")
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			var total []float64
			phases := map[timeline.Phase][]float64{}
			for i := 0; i < b.N; i++ {
				m, err := l.NewMachine(ctx, lab.MachineSpec{Name: "bench" + strconv.Itoa(i), Firmware: fw, Disks: []machine.Disk{{SizeBytes: 4 << 30}}})
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if err := l.Deploy(ctx, m, lab.DeployOptions{DistroSeries: image}); err != nil {
					b.Fatal(err)
				}
				res, err := l.Follow(ctx, m, lab.FollowOptions{})
				if err != nil || !res.Passed {
					b.Fatalf("%s %v", res.Summary(), err)
				}
				total = append(total, time.Since(start).Seconds())
				for _, p := range res.Phases {
					phases[p.Phase] = append(phases[p.Phase], p.Seconds)
				}
				_ = m.Driver().Destroy(ctx)
			}
			b.ReportMetric(median(total), "median-s")
			for _, p := range []timeline.Phase{timeline.Ephemeral, timeline.CurtinPart, timeline.CurtinExtr, timeline.CurtinHooks, timeline.FirstBoot} {
				b.ReportMetric(median(phases[p]), string(p)+"-s")
			}
		})
	}
}

// labName makes a libvirt-safe lab name from a test name.
func labName(test string) string {
	n := strings.NewReplacer("/", "-", "_", "-").Replace(strings.TrimPrefix(strings.TrimPrefix(test, "Test"), "Benchmark"))
	if len(n) > 20 {
		n = n[:20]
	}
	// The process id keeps concurrent test runs on one libvirt daemon apart.
	return fmt.Sprintf("t%s-%d", n, os.Getpid()%100000)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
