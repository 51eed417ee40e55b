package libvirt

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCleanConsoleLine(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"plain text", "plain text"},
		{"trailing CR\r", "trailing CR"},
		{"\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01HBdsDxe: loading Boot0001", "BdsDxe: loading Boot0001"},
		{"\x1b[1m\x1b[37m\x1b[40miPXE 1.0.0+\x1b[0m\x1b[37m\x1b[40m -- Open Source", "iPXE 1.0.0+ -- Open Source"},
		{"\x1bc\x1b[?7lSeaBIOS", "SeaBIOS"},
		{"\x1b(BG0 charset", "G0 charset"},
		{"abc\b\bd", "ad"},
		{"Press Ctrl-B...\b \b\b \b\b \b", "Press Ctrl-B"},
		{"progress 10%\rprogress 20%", "progress 20%"},
		{"keep\r\r", "keep"},
		{"tab\there", "tab here"},
		{"bell\x07 and nul\x00", "bell and nul"},
		{"bad utf8 \xff\xfe end", "bad utf8  end"},
		{"unicode ✓ ok", "unicode ✓ ok"},
		{"\x1b[", ""},
		{"   ", ""},
	} {
		if got := cleanConsoleLine([]byte(tt.in)); got != tt.want {
			t.Errorf("cleanConsoleLine(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// lineSink collects emitted lines and signals each one.
type lineSink struct {
	mu    sync.Mutex
	lines []string
	ch    chan string
}

func newLineSink() *lineSink { return &lineSink{ch: make(chan string, 1000)} }

func (s *lineSink) emit(l string) {
	s.mu.Lock()
	s.lines = append(s.lines, l)
	s.mu.Unlock()
	s.ch <- l
}

// wait returns when line has been emitted (a liveness bound, not a timing assertion).
func (s *lineSink) wait(t *testing.T, line string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l := <-s.ch:
			if l == line {
				return
			}
		case <-timeout:
			t.Fatalf("line %q never emitted; got %q", line, s.all())
		}
	}
}

func (s *lineSink) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestConsoleTailFollowsAppendsRotationAndTruncation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	s := newLineSink()
	tail := startConsoleTail(path, 2*time.Millisecond, s.emit)
	defer tail.Stop()

	// The file appears after the tail starts (QEMU creates it at start).
	appendFile(t, path, "one\r\ntw")
	s.wait(t, "one")
	appendFile(t, path, "o\r\n")
	s.wait(t, "two")
	// A partial line with no newline is flushed once the file goes quiet.
	appendFile(t, path, ">>Start PXE over IPv4.")
	s.wait(t, ">>Start PXE over IPv4.")
	appendFile(t, path, "\r\n")
	// virtlogd rotates: console.log -> console.log.0, and a new console.log.
	appendFile(t, path, "last of old\n")
	s.wait(t, "last of old")
	if err := os.Rename(path, path+".0"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "first of new\n")
	s.wait(t, "first of new")
	// Truncated in place (append='off' on a restart).
	if err := os.WriteFile(path, []byte("after truncate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.wait(t, "after truncate")
	appendFile(t, path, "tail end without newline")
	tail.Stop()
	tail.Stop() // idempotent
	want := []string{"one", "two", ">>Start PXE over IPv4.", "last of old", "first of new", "after truncate", "tail end without newline"}
	if diff := cmp.Diff(want, s.all()); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

func TestConsoleTailSplitsLongLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	long := make([]byte, maxConsoleLine*2+10)
	for i := range long {
		long[i] = 'a' + byte(i%26)
	}
	if err := os.WriteFile(path, append(long, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newLineSink()
	tail := startConsoleTail(path, time.Millisecond, s.emit)
	tail.Stop()
	got := s.all()
	if len(got) != 3 || len(got[0]) != maxConsoleLine || len(got[2]) != 10 {
		var lens []int
		for _, l := range got {
			lens = append(lens, len(l))
		}
		t.Errorf("line lengths %v, want [%d %d 10]", lens, maxConsoleLine, maxConsoleLine)
	}
}
