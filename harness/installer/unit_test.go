package installer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/maasemu/maasemu/harness/installer/oauth"
	"github.com/maasemu/maasemu/harness/installer/storage"
)

func oauthCreds() oauth.Credentials {
	return oauth.Credentials{ConsumerKey: "ck", TokenKey: "tk", TokenSecret: "ts"}
}

func TestMergeConfig(t *testing.T) {
	cases := []struct {
		name     string
		dst, src map[string]any
		want     map[string]any
	}{
		{"dicts merge recursively",
			map[string]any{"install": map[string]any{"log_file": "/a", "error_tarfile": "/t"}, "x": 1},
			map[string]any{"install": map[string]any{"log_file": "/tmp/install.log"}},
			map[string]any{"install": map[string]any{"log_file": "/tmp/install.log", "error_tarfile": "/t"}, "x": 1}},
		{"lists are replaced, not appended",
			map[string]any{"stages": []any{"early", "late"}},
			map[string]any{"stages": []any{"late"}},
			map[string]any{"stages": []any{"late"}}},
		{"a scalar replaces a dict and a dict replaces a scalar",
			map[string]any{"a": map[string]any{"b": 1}, "c": "s"},
			map[string]any{"a": "flat", "c": map[string]any{"d": 2}},
			map[string]any{"a": "flat", "c": map[string]any{"d": 2}}},
		{"null overrides",
			map[string]any{"late_commands": map[string]any{"maas": []any{"wget"}}},
			map[string]any{"late_commands": map[string]any{"maas": nil}},
			map[string]any{"late_commands": map[string]any{"maas": nil}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			MergeConfig(c.dst, c.src)
			if diff := cmp.Diff(c.want, c.dst); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestMergeConfigsRejects(t *testing.T) {
	cases := []struct{ doc, want string }{
		{"- a\n- b\n", "config configs[0]: Failed reading config. not a dictionary: - a"},
		{"a: [\n", "config configs[0]: invalid YAML"},
		{"", "not a dictionary: empty document"},
	}
	for _, c := range cases {
		_, err := MergeConfigs([]string{c.doc})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.doc, err, c.want)
		}
	}
}

func TestSanitizeSource(t *testing.T) {
	cases := []struct {
		in   any
		want Source
	}{
		{"http://h/root.tgz", Source{"tgz", "http://h/root.tgz"}},
		{"tgz:http://h/x", Source{"tgz", "http://h/x"}},
		{"dd-tgz:http://h/root-dd", Source{"dd-tgz", "http://h/root-dd"}},
		{"dd-tbz:http://h/x", Source{"dd-tbz", "http://h/x"}},
		{"dd-txz:http://h/x", Source{"dd-txz", "http://h/x"}},
		{"dd-tar:http://h/x", Source{"dd-tar", "http://h/x"}},
		{"dd-bz2:http://h/x", Source{"dd-bz2", "http://h/x"}},
		{"dd-gz:http://h/x", Source{"dd-gz", "http://h/x"}},
		{"dd-xz:http://h/x", Source{"dd-xz", "http://h/x"}},
		{"dd-raw:http://h/x", Source{"dd-raw", "http://h/x"}},
		{"tbz:http://h/x", Source{"tbz", "http://h/x"}},
		{"txz:http://h/x", Source{"txz", "http://h/x"}},
		{"fsimage:http://h/x", Source{"fsimage", "http://h/x"}},
		{"fsimage-layered:http://h/a.b.squashfs", Source{"fsimage-layered", "http://h/a.b.squashfs"}},
		{"squashfs://http://h/x.img", Source{"fsimage", "http://h/x.img"}},
		{"squashfs:http://h/x.img", Source{"fsimage", "http://h/x.img"}},
		{"http://h/root/squashfs", Source{"fsimage", "http://h/root/squashfs"}},
		{"http://h/root.squash", Source{"fsimage", "http://h/root.squash"}},
		{"cp:///media/root-ro", Source{"tgz", "cp:///media/root-ro"}},
		{"dd-img:http://h/x", Source{"tgz", "dd-img:http://h/x"}},
		{map[string]any{"type": "dd-xz", "uri": "http://h/x"}, Source{"dd-xz", "http://h/x"}},
	}
	for _, c := range cases {
		got, err := SanitizeSource(c.in)
		if err != nil {
			t.Errorf("%v: %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("SanitizeSource(%v) = %+v, want %+v", c.in, got, c.want)
		}
	}
	if _, err := SanitizeSource(map[string]any{"uri": "x"}); err == nil {
		t.Error("mapping without type accepted")
	}
	if _, err := SanitizeSource(42); err == nil {
		t.Error("number accepted")
	}
}

// nopBackend is a Backend for tests that touch no storage.
type nopBackend struct{}

func (nopBackend) ClearHolders(context.Context, *storage.Config, io.Writer) error { return nil }
func (nopBackend) Apply(context.Context, *storage.Config, storage.Item, string, io.Writer) (storage.Applied, error) {
	return storage.Applied{}, nil
}
func (nopBackend) WriteImage(context.Context, *storage.Config, io.Reader, string, io.Writer) error {
	return nil
}
func (nopBackend) DevicePath(context.Context, *storage.Config, string) (string, error) {
	return "", nil
}
func (nopBackend) TargetDisks(context.Context, string) ([]string, error) { return nil, nil }
func (nopBackend) Unmount(context.Context, string, io.Writer) error      { return nil }

func runStages(t *testing.T, cfg string, opts Options) (Result, []Event, string, error) {
	t.Helper()
	tmp := t.TempDir()
	rec := &EventRecorder{}
	var log bytes.Buffer
	opts.Configs = []string{cfg}
	opts.Backend = nopBackend{}
	opts.Reporter = rec
	opts.Log = &log
	opts.WorkDir = filepath.Join(tmp, "w")
	opts.HostRoot = filepath.Join(tmp, "host")
	res, err := Run(context.Background(), opts)
	return res, rec.Events(), log.String(), err
}

// TestStageOrderAndCommands checks the stage engine without storage: stages in the
// configured order, commands in sorted key order, lists exec'd and strings run by sh,
// empty commands skipped, the environment, and the event names and descriptions.
func TestStageOrderAndCommands(t *testing.T) {
	cfg := `stages: [early, late]
install: {log_file: /tmp/install.log}
early_commands:
  20_second: [sh, -c, 'echo second; echo "$CURTIN_REPORTSTACK"']
  10_first: "echo first; echo $WORKING_DIR | grep -q /scratch && echo scratch-ok"
  15_empty: []
  16_null: null
late_commands:
  maas: [sh, -c, 'test -s "$CONFIG" && head -c1 "$CONFIG"; echo; echo "$OUTPUT_FSTAB"']
  builtin: []
`
	_, evs, log, err := runStages(t, cfg, Options{})
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	re := regexp.MustCompile(`(?m)^(first|second|scratch-ok|\{|cmd-install/stage-early/20_second|.*/state/fstab)$`)
	var lines []string
	for _, m := range re.FindAllString(log, -1) {
		if strings.HasSuffix(m, "/state/fstab") {
			m = "FSTAB"
		}
		lines = append(lines, m)
	}
	if diff := cmp.Diff([]string{"first", "scratch-ok", "second", "cmd-install/stage-early/20_second", "{", "FSTAB"}, lines); diff != "" {
		t.Errorf("command output order (-want +got):\n%s\nlog:\n%s", diff, log)
	}
	var got []string
	for _, e := range evs {
		got = append(got, strings.Join([]string{e.EventType, e.Name, e.Description, e.Level, e.Result}, "|"))
	}
	want := []string{
		"start|cmd-install|curtin command install|DEBUG|",
		"start|cmd-install/stage-early|preparing for installation|INFO|",
		"start|cmd-install/stage-early/10_first|running 'e c h o   f i r s t ;   e c h o   $ W O R K I N G _ D I R   |   g r e p   - q   / s c r a t c h   & &   e c h o   s c r a t c h - o k'|DEBUG|",
		"finish|cmd-install/stage-early/10_first|running 'e c h o   f i r s t ;   e c h o   $ W O R K I N G _ D I R   |   g r e p   - q   / s c r a t c h   & &   e c h o   s c r a t c h - o k'|DEBUG|SUCCESS",
		"start|cmd-install/stage-early/20_second|running 'sh -c echo second; echo \"$CURTIN_REPORTSTACK\"'|DEBUG|",
		"finish|cmd-install/stage-early/20_second|running 'sh -c echo second; echo \"$CURTIN_REPORTSTACK\"'|DEBUG|SUCCESS",
		"finish|cmd-install/stage-early|preparing for installation|INFO|SUCCESS",
		"start|cmd-install/stage-late|executing late commands|INFO|",
		"start|cmd-install/stage-late/maas|running 'sh -c test -s \"$CONFIG\" && head -c1 \"$CONFIG\"; echo; echo \"$OUTPUT_FSTAB\"'|DEBUG|",
		"finish|cmd-install/stage-late/maas|running 'sh -c test -s \"$CONFIG\" && head -c1 \"$CONFIG\"; echo; echo \"$OUTPUT_FSTAB\"'|DEBUG|SUCCESS",
		"finish|cmd-install/stage-late|executing late commands|INFO|SUCCESS",
		"finish|cmd-install|curtin command install|DEBUG|SUCCESS",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(log, "curtin: Installation started. ("+VersionString+")\n") || !strings.HasSuffix(log, MsgFinished+"\n") {
		t.Errorf("log lacks curtin's start/finish messages:\n%s", log)
	}
}

func TestFailingCommandStopsTheInstall(t *testing.T) {
	cfg := `stages: [early, partitioning, late]
install: {log_file: /tmp/install.log, error_tarfile: /tmp/curtin-logs.tar, post_files: [/tmp/install.log, /tmp/curtin-logs.tar]}
early_commands:
  a: [sh, -c, 'echo out-a; exit 4']
  b: [sh, -c, 'echo never']
partitioning_commands: {builtin: [sh, -c, 'echo never']}
`
	_, evs, log, err := runStages(t, cfg, Options{})
	var ie *InstallError
	if !errors.As(err, &ie) {
		t.Fatalf("err %v", err)
	}
	wantMsg := "Unexpected error while running command.\nCommand: ['sh', '-c', 'echo out-a; exit 4']\nExit code: 4\nReason: -\nStdout: out-a\n        \nStderr: ''"
	if ie.Message != wantMsg {
		t.Errorf("message:\n%q\nwant\n%q", ie.Message, wantMsg)
	}
	if strings.Contains(log, "never") {
		t.Errorf("commands ran after the failure:\n%s", log)
	}
	var got []string
	for _, e := range evs {
		if e.EventType == EventFinish {
			got = append(got, e.Name+" "+e.Result+" "+e.Level)
		}
	}
	want := []string{"cmd-install/stage-early/a FAIL ERROR", "cmd-install/stage-early FAIL ERROR", "cmd-install FAIL ERROR"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("finish events (-want +got):\n%s", diff)
	}
	last := evs[len(evs)-1]
	if len(last.Files) != 2 || last.Files[0].Path != "/tmp/install.log" || last.Files[1].Path != "/tmp/curtin-logs.tar" || last.Files[1].Content == nil {
		t.Errorf("post files %+v", last.Files)
	}
}

func TestTwoDiskImagesRefused(t *testing.T) {
	_, _, _, err := runStages(t, "stages: [early]\n", Options{Args: []string{"dd-gz:http://h/a", "dd-raw:http://h/b"}})
	var ie *InstallError
	if !errors.As(err, &ie) || ie.Message != "You may not use more than one disk image" {
		t.Fatalf("err %v", err)
	}
}

func TestCmdlineSourcesNumbering(t *testing.T) {
	res, _, _, err := runStages(t, "stages: []\nsources: {05_extra: 'http://h/extra.tgz'}\n", Options{Args: []string{"http://h/a.tgz", "txz:http://h/b"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"05_extra":   "http://h/extra.tgz",
		"01_cmdline": map[string]any{"type": "tgz", "uri": "http://h/a.tgz"},
		"02_cmdline": map[string]any{"type": "txz", "uri": "http://h/b"},
	}
	if diff := cmp.Diff(want, res.Config["sources"]); diff != "" {
		t.Errorf("sources (-want +got):\n%s", diff)
	}
}

// TestWebhook checks the OAuth header, the clock-skew retry and that a failing endpoint
// does not fail the install.
func TestWebhook(t *testing.T) {
	serverTime := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	var mu sync.Mutex
	var stamps []string
	var bodies int
	fail := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		a := r.Header.Get("Authorization")
		ts := regexp.MustCompile(`oauth_timestamp="(\d+)"`).FindStringSubmatch(a)
		stamps = append(stamps, ts[1])
		if r.Header.Get("Content-Type") != "application/json" || r.Header.Get("User-Agent") != "Curtin/"+Version {
			w.WriteHeader(400)
			return
		}
		if fail {
			w.WriteHeader(500)
			return
		}
		if ts[1] != "1893553445" { // serverTime, within the same second
			w.Header().Set("Date", serverTime.Format(http.TimeFormat))
			w.WriteHeader(401)
			return
		}
		bodies++
		w.WriteHeader(204)
	}))
	defer srv.Close()
	wr := NewWebhookReporter(srv.URL+"/MAAS/metadata/status/x", oauthCreds(), srv.Client(), "Curtin/"+Version, nil)
	wr.Client.Now = func() time.Time { return serverTime.Add(-3 * time.Hour) }
	wr.Report(context.Background(), Event{Name: "cmd-install", EventType: "start", Origin: "curtin"})
	wr.Report(context.Background(), Event{Name: "cmd-install", EventType: "finish", Origin: "curtin", Result: "SUCCESS"})
	mu.Lock()
	if diff := cmp.Diff([]string{"1893542645", "1893553445", "1893553445"}, stamps); diff != "" {
		t.Errorf("timestamps (-want +got): the retry must use the server's clock and keep it\n%s", diff)
	}
	if bodies != 2 || wr.Failures() != 0 {
		t.Errorf("accepted %d, failures %d", bodies, wr.Failures())
	}
	fail = true
	mu.Unlock()
	wr.Report(context.Background(), Event{Name: "x", EventType: "start"})
	if wr.Failures() != 1 {
		t.Errorf("failures %d after a 500", wr.Failures())
	}
	// an unreachable endpoint does not fail an install
	cfg := "stages: [early]\nreporting: {maas: {type: webhook, endpoint: 'http://127.0.0.1:1/status', token_key: tk}}\nearly_commands: {a: [true]}\n"
	if _, _, log, err := runStages(t, cfg, Options{}); err != nil {
		t.Errorf("install failed because the webhook is down: %v\n%s", err, log)
	}
}

func TestCarryoverParams(t *testing.T) {
	cases := []struct{ cmdline, family, want string }{
		{"BOOT_IMAGE=/vmlinuz root=squash:http://x ip=::::h:BOOTIF:dhcp console=tty0 console=ttyS0,115200 --- quiet splash BOOTIF=01-aa initrd=x", "debian", "console=tty0 console=ttyS0,115200 quiet splash"},
		{"ro console=ttyS0 -- nomodeset", "redhat", "console=ttyS0 nomodeset rd.auto=1"},
		{"ro quiet", "debian", ""},
		{"console=ttyS0 --- console=ttyS0 foo=bar", "debian", "console=ttyS0 foo=bar"},
	}
	for _, c := range cases {
		if got := strings.Join(CarryoverParams(c.cmdline, c.family), " "); got != c.want {
			t.Errorf("%q: %q, want %q", c.cmdline, got, c.want)
		}
	}
}

func TestParseInTargetArgs(t *testing.T) {
	cases := []struct {
		args       []string
		target     string
		wantTarget string
		wantArgv   []string
		err        string
	}{
		{[]string{"--", "sh", "-c", "x"}, "/t", "/t", []string{"sh", "-c", "x"}, ""},
		{[]string{"-t", "/other", "--", "ls"}, "/t", "/other", []string{"ls"}, ""},
		{[]string{"--target=/o", "--capture", "ls", "-l"}, "", "/o", []string{"ls", "-l"}, ""},
		{[]string{"-a", "--", "true"}, "/t", "/t", []string{"true"}, ""},
		{[]string{"--bogus", "ls"}, "/t", "", nil, "unrecognized arguments: --bogus"},
		{[]string{"-t"}, "/t", "", nil, "expected one argument"},
	}
	for _, c := range cases {
		tg, argv, err := parseInTargetArgs(c.args, c.target)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: %v", c.args, err)
			}
			continue
		}
		if err != nil || tg != c.wantTarget || !cmp.Equal(argv, c.wantArgv) {
			t.Errorf("%v: %q %q %v", c.args, tg, argv, err)
		}
	}
}

func TestRenderENI(t *testing.T) {
	eni, rules, err := renderENI([]any{
		map[string]any{"type": "physical", "name": "eth0", "mac_address": "52:54:00:AA:BB:CC", "subnets": []any{map[string]any{"type": "static", "address": "10.0.0.5", "netmask": "255.255.255.0", "gateway": "10.0.0.1", "dns_nameservers": []any{"10.0.0.2"}}}},
		map[string]any{"type": "physical", "name": "eth1", "subnets": []any{map[string]any{"type": "dhcp"}, map[string]any{"type": "dhcp6"}}},
		map[string]any{"type": "nameserver", "address": []any{"10.0.0.2"}, "search": []any{"maas"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "auto lo\niface lo inet loopback\n    dns-nameservers 10.0.0.2\n    dns-search maas\n\nauto eth0\niface eth0 inet static\n    address 10.0.0.5/24\n    gateway 10.0.0.1\n    dns-nameservers 10.0.0.2\n\nauto eth1\niface eth1 inet dhcp\n\nauto eth1:1\niface eth1:1 inet6 dhcp\n"
	if diff := cmp.Diff(want, eni); diff != "" {
		t.Errorf("eni (-want +got):\n%s", diff)
	}
	if !strings.Contains(rules, `ATTR{address}=="52:54:00:aa:bb:cc", NAME="eth0"`) {
		t.Errorf("rules:\n%s", rules)
	}
	if _, _, err := renderENI([]any{map[string]any{"type": "wifi", "name": "w"}}); err == nil {
		t.Error("unknown type accepted")
	}
}

func TestSuggestedSwapsize(t *testing.T) {
	const gb = int64(1) << 30
	cases := []struct{ mem, max, avail, want int64 }{
		{1 * gb, -1, 100 * gb, 2 * gb},
		{3 * gb, -1, 100 * gb, 3 * gb},
		{8 * gb, -1, 100 * gb, 4 * gb},
		{1 * gb, -1, 200 << 20, 0},      // 25% of a small disk is below half the memory
		{32 * gb, -1, 100 * gb, 8 * gb}, // half the memory, capped at 8 GiB
		{128 * gb, -1, 100 * gb, 8 * gb},
	}
	for _, c := range cases {
		if got := suggestedSwapsize(c.mem, c.max, c.avail); got != c.want {
			t.Errorf("mem %d avail %d: %d, want %d", c.mem, c.avail, got, c.want)
		}
	}
}

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	err := writeFiles(map[string]any{
		"a": map[string]any{"path": "/etc/a.cfg", "content": "A", "permissions": "0600"},
		"b": map[string]any{"path": "b/c", "content": "B", "permissions": 0o755},
		"c": map[string]any{"content": "no path"},
	}, dir)
	if err != nil {
		t.Fatal(err)
	}
	for p, mode := range map[string]os.FileMode{"etc/a.cfg": 0o600, "b/c": 0o755} {
		st, err := os.Stat(filepath.Join(dir, p))
		if err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v %v", p, st, err)
		}
	}
}

// TestCancelKillsCommands: cancelling an install ends the running command and whatever it
// started, and Run returns.
func TestCancelKillsCommands(t *testing.T) {
	tmp := t.TempDir()
	pidfile := filepath.Join(tmp, "pid")
	cfg := "stages: [early]\ninstall: {log_file: /tmp/install.log}\nearly_commands:\n  a: [sh, -c, 'sleep 300 & echo $! > " + pidfile + "; wait']\n"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, Options{Configs: []string{cfg}, Backend: nopBackend{}, WorkDir: filepath.Join(tmp, "w"), HostRoot: filepath.Join(tmp, "h")})
		done <- err
	}()
	for {
		if b, err := os.ReadFile(pidfile); err == nil && len(b) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("a cancelled install succeeded")
	}
	b, _ := os.ReadFile(pidfile)
	pid := strings.TrimSpace(string(b))
	if _, err := os.Stat("/proc/" + pid); err == nil {
		st, _ := os.ReadFile("/proc/" + pid + "/stat")
		if !strings.Contains(string(st), ") Z ") {
			t.Errorf("the command's child %s outlived the cancelled install", pid)
		}
	}
}

func TestIntercept(t *testing.T) {
	cfg := "stages: [late]\ninstall: {log_file: /tmp/install.log}\nlate_commands:\n  maas: [wget, --no-proxy, 'http://198.18.0.2:5248/MAAS/metadata/latest/by-id/abc/', --post-data, op=netboot_off, -O, /dev/null]\n  zz: [sh, -c, 'echo ran-normally']\n"
	var seen [][]string
	_, _, log, err := runStages(t, cfg, Options{Intercept: func(_ context.Context, argv []string, shell string, env map[string]string, out io.Writer) (int, bool, error) {
		seen = append(seen, argv)
		if argv[0] == "wget" {
			io.WriteString(out, "netboot_off posted through the virtual NIC\n")
			return 0, true, nil
		}
		return 0, false, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || !strings.Contains(log, "netboot_off posted through the virtual NIC") || !strings.Contains(log, "ran-normally") {
		t.Errorf("seen %v\n%s", seen, log)
	}
}
