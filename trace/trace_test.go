package trace

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRecorder(t *testing.T) {
	var buf bytes.Buffer
	r := NewRecorder(&buf)
	r.Emit(Event{Kind: "a", Message: "first"})
	hist, ch, stop := r.SubscribeWithHistory()
	r.Emit(Event{Kind: "b", Message: "second", Time: time.Unix(5, 0)})
	if len(hist) != 1 || hist[0].Kind != "a" || hist[0].Level != LevelInfo || hist[0].Time.IsZero() {
		t.Errorf("history = %+v", hist)
	}
	if e := <-ch; e.Kind != "b" || !e.Time.Equal(time.Unix(5, 0)) {
		t.Errorf("live event = %+v", e)
	}
	stop()
	stop() // idempotent
	if _, ok := <-ch; ok {
		t.Error("channel still open after stop")
	}
	// A subscriber that does not read blocks no emitter and, when it reads, has lost
	// nothing.
	slow, stopSlow := r.Subscribe()
	for i := 0; i < 10; i++ {
		r.Emit(Event{Kind: "c", Message: strconv.Itoa(i)})
	}
	var got []string
	for range 10 {
		got = append(got, (<-slow).Message)
	}
	stopSlow()
	if diff := cmp.Diff([]string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}, got); diff != "" {
		t.Errorf("slow subscriber's events (-want +got):\n%s", diff)
	}
	if _, ok := <-slow; ok {
		t.Error("slow subscriber's channel still open after stop")
	}
	var kinds []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var e Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("JSON line %q: %v", line, err)
		}
		kinds = append(kinds, e.Kind)
	}
	want := []string{"a", "b", "c", "c", "c", "c", "c", "c", "c", "c", "c", "c"}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("events.jsonl kinds (-want +got):\n%s", diff)
	}
	if got := len(r.Events()); got != 12 {
		t.Errorf("Events() has %d, want 12", got)
	}
}

func TestTeeAndNop(t *testing.T) {
	var got []string
	s := Tee(Func(func(e Event) { got = append(got, "1"+e.Kind) }), nil, OrNop(nil), Func(func(e Event) { got = append(got, "2"+e.Kind) }))
	s.Emit(Event{Kind: "x"})
	if diff := cmp.Diff([]string{"1x", "2x"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
