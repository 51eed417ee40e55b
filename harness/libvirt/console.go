package libvirt

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// consoleTail follows a serial console file that QEMU (through virtlogd) appends to and
// hands each line, cleaned of terminal control sequences, to emit. It survives the file
// appearing late, being truncated and being rotated (virtlogd renames it to .0 when it
// reaches its max_size). A line still without its newline after idleFlush is emitted
// as it is, since firmware often prints a prompt and waits ("Start PXE over IPv4.").
type consoleTail struct {
	path      string
	poll      time.Duration
	idleFlush time.Duration
	emit      func(line string)

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

const maxConsoleLine = 4096

func startConsoleTail(path string, poll time.Duration, emit func(string)) *consoleTail {
	if poll <= 0 {
		poll = 50 * time.Millisecond
	}
	t := &consoleTail{
		path: path, poll: poll, idleFlush: 10 * poll, emit: emit,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	go t.run()
	return t
}

// Stop reads what is left in the file, emits it, and ends the goroutine. It is safe to
// call more than once.
func (t *consoleTail) Stop() {
	t.once.Do(func() { close(t.stop) })
	<-t.done
}

func (t *consoleTail) run() {
	defer close(t.done)
	var (
		f       *os.File
		off     int64
		pending []byte
		seen    []byte // the last bytes read, to notice the file rewritten in place
		lastNew time.Time
		buf     = make([]byte, 64<<10)
	)
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	readAll := func() {
		for f != nil {
			n, err := f.ReadAt(buf, off)
			if n > 0 {
				off += int64(n)
				seen = append(seen, buf[:n]...)
				if len(seen) > 64 {
					seen = seen[len(seen)-64:]
				}
				pending = append(pending, buf[:n]...)
				lastNew = time.Now()
				pending = t.emitLines(pending)
			}
			if n == 0 || errors.Is(err, io.EOF) || err != nil {
				return
			}
		}
	}
	check := func() {
		if f == nil {
			nf, err := os.Open(t.path)
			if err != nil {
				return
			}
			f, off, seen = nf, 0, nil
		}
		if len(seen) > 0 && !t.unchanged(f, off, seen) {
			off, seen = 0, nil // truncated and rewritten since the last read
		}
		readAll()
		// Rotated (a different file at the path now) or truncated?
		cur, err := f.Stat()
		if err != nil {
			return
		}
		if st, err := os.Stat(t.path); err == nil && !os.SameFile(st, cur) {
			readAll() // the rest of the old file
			f.Close()
			f = nil
			if nf, err := os.Open(t.path); err == nil {
				f, off, seen = nf, 0, nil
				readAll()
			}
			return
		}
		if cur.Size() < off {
			off, seen = 0, nil
			readAll()
		}
	}
	ticker := time.NewTicker(t.poll)
	defer ticker.Stop()
	for {
		select {
		case <-t.stop:
			check()
			if len(pending) > 0 {
				t.emitLine(pending)
			}
			return
		case <-ticker.C:
			check()
			if len(pending) > 0 && time.Since(lastNew) >= t.idleFlush {
				t.emitLine(pending)
				pending = pending[:0]
			}
		}
	}
}

// unchanged reports whether the file still holds seen just before off.
func (t *consoleTail) unchanged(f *os.File, off int64, seen []byte) bool {
	b := make([]byte, len(seen))
	n, _ := f.ReadAt(b, off-int64(len(seen)))
	return n == len(seen) && bytes.Equal(b, seen)
}

// emitLines emits every complete line in b and returns the rest.
func (t *consoleTail) emitLines(b []byte) []byte {
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(b) > maxConsoleLine {
				t.emitLine(b[:maxConsoleLine])
				b = b[maxConsoleLine:]
				continue
			}
			return b
		}
		line := b[:i]
		for len(line) > maxConsoleLine {
			t.emitLine(line[:maxConsoleLine])
			line = line[maxConsoleLine:]
		}
		t.emitLine(line)
		b = b[i+1:]
	}
}

func (t *consoleTail) emitLine(raw []byte) {
	if line := cleanConsoleLine(raw); line != "" {
		t.emit(line)
	}
}

// cleanConsoleLine turns raw terminal output into text: ANSI escape sequences are
// dropped, a backspace erases the character before it, a carriage return followed by
// more text starts the line over (as on a terminal), other control characters and
// invalid UTF-8 are dropped, and trailing space is trimmed.
func cleanConsoleLine(raw []byte) string {
	var out []rune
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == 0x1b: // ESC
			i++
			if i < len(raw) && raw[i] == '[' { // CSI: parameters, then a final byte 0x40-0x7e
				i++
				for i < len(raw) && (raw[i] < 0x40 || raw[i] > 0x7e) {
					i++
				}
				i++
			} else if i < len(raw) && (raw[i] == '(' || raw[i] == ')') { // charset: one more byte
				i += 2
			} else {
				i++ // a two-byte sequence such as ESC c (reset)
			}
			continue
		case c == '\b':
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			i++
			continue
		case c == '\r':
			i++
			if i < len(raw) && strings.TrimSpace(string(raw[i:])) != "" && bytes.IndexByte(raw[i:], '\r') != 0 {
				out = out[:0]
			}
			continue
		case c == '\t':
			out = append(out, ' ')
			i++
			continue
		case c < 0x20 || c == 0x7f:
			i++
			continue
		}
		r, size := utf8.DecodeRune(raw[i:])
		if r != utf8.RuneError || size > 1 {
			out = append(out, r)
		}
		i += size
	}
	return strings.TrimRight(string(out), " ")
}
