package report

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/maasemu/maasemu/harness/diagnose"
	"github.com/maasemu/maasemu/harness/timeline"
	"github.com/maasemu/maasemu/trace"
)

// failedRunDir writes a run directory like `maasemu deploy --out` leaves after a failure.
func failedRunDir(t *testing.T) (string, Run) {
	t.Helper()
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	rdir := filepath.Join(dir, "bios")
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		t.Fatal(err)
	}
	console := "SeaBIOS (version 1.16.2-debian-1.16.2-1)\niPXE (https://ipxe.org) 00:03.0\nPXELINUX 6.04\n" +
		"[    1.0] Linux version 6.1.0\n<script>alert(1)</script>\ncloud-init not detected, MAAS will not be able to configure this machine properly\n"
	if err := os.WriteFile(filepath.Join(rdir, FileConsole), []byte(console), 0o644); err != nil {
		t.Fatal(err)
	}
	var ev bytes.Buffer
	enc := json.NewEncoder(&ev)
	for i, k := range []string{trace.KindDHCPDiscover, trace.KindDHCPAck, trace.KindTFTPRead, trace.KindWebhookEvent} {
		_ = enc.Encode(trace.Event{Time: t0.Add(time.Duration(i) * time.Second), Source: "test", Kind: k, Message: "event <" + k + ">"})
	}
	if err := os.WriteFile(filepath.Join(rdir, FileEvents), ev.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rdir, FilePcap), []byte("pcap"), 0o644); err != nil {
		t.Fatal(err)
	}
	phases := []Phase{
		{Phase: timeline.Power, Title: "power on", State: "done", Start: t0, End: t0.Add(2 * time.Second), Seconds: 2},
		{Phase: timeline.DHCP, Title: "DHCP", State: "done", Start: t0.Add(2 * time.Second), End: t0.Add(5 * time.Second), Seconds: 3},
		{Phase: timeline.CurtinLate, Title: "curtin late", State: "failed", Start: t0.Add(5 * time.Second), End: t0.Add(50 * time.Second), Seconds: 45},
		{Phase: timeline.FirstBoot, Title: "first boot", State: "pending"},
	}
	run := Run{Tool: "maasemu", Version: "test", Command: "deploy", Image: "nocloudinit.tgz", Filetype: "tgz",
		Started: t0, Finished: t0.Add(50 * time.Second),
		Results: []Result{{Name: "bios", Dir: "bios", Driver: "libvirt", Firmware: "bios", Status: "Failed deployment",
			Seconds: 50, Phases: phases, FailedPhase: timeline.CurtinLate,
			Diagnosis: []diagnose.Finding{{ID: "no-cloud-init", Severity: "error", Phase: timeline.CurtinLate,
				Summary:  "the image has no cloud-init",
				Evidence: []string{"cloud-init not detected, MAAS will not be able to configure this machine properly"}}}}}}
	return dir, run
}

func TestHTMLRendersInChromium(t *testing.T) {
	dir, run := failedRunDir(t)
	var page bytes.Buffer
	if err := HTML(&page, dir, run); err != nil {
		t.Fatal(err)
	}
	html := page.String()
	if strings.Contains(html, "<script>alert(1)</script>") {
		t.Fatal("console text is not escaped")
	}
	path := filepath.Join(dir, FileHTML)
	if err := os.WriteFile(path, page.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	browser := ""
	for _, b := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(b); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		t.Skip("rendering check needs Chromium (Debian package chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	var mu sync.Mutex
	var problems []string
	listenErr := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+e.ExceptionDetails.Text)
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				problems = append(problems, "console.error")
			}
		case *log.EventEntryAdded:
			if e.Entry.Level == log.EntryLevelError {
				problems = append(problems, "log: "+e.Entry.Text)
			}
		}
	})
	if listenErr != nil {
		t.Fatalf("chromium: %v", listenErr)
	}
	if _, err := chromedp.Call(ctx, log.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, runtime.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+path), chromedp.WaitReady("body")); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	get := func(a chromedp.Action[string]) string {
		v, err := chromedp.Run(ctx, a)
		if err != nil {
			t.Fatalf("chromium: %v", err)
		}
		return v
	}
	verdict := get(chromedp.Text("#verdict"))
	marked := get(chromedp.Text("mark.failure-line"))
	attr, err := chromedp.Run(ctx, chromedp.AttributeValue("tr.state-failed", "data-phase"))
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	failedPhase := attr.Value
	bars, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("svg.timeline rect.failed").length`))
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	if verdict != "FAIL" {
		t.Errorf("verdict = %q, want FAIL", verdict)
	}
	if failedPhase != string(timeline.CurtinLate) {
		t.Errorf("failed phase row = %q, want %q", failedPhase, timeline.CurtinLate)
	}
	if !strings.Contains(marked, "cloud-init not detected") {
		t.Errorf("highlighted console line = %q", marked)
	}
	if bars != 1 {
		t.Errorf("failed bars in the timeline chart = %d, want 1", bars)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("browser reported errors: %v", problems)
	}
}
