package sandbox_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kb-labs/sandbox"
)

// TestLogFloodIsBounded: a million empty lines in a 64KiB log leave a
// bounded number of entries, a bounded JSON, and a note saying how many
// were dropped.
func TestLogFloodIsBounded(t *testing.T) {
	const budget, lines = 64 << 10, 1_000_000
	r := goRunner(t, sandbox.Config{Monitoring: sandbox.Monitoring{LogBufferSize: budget}})
	res := runFunc(t, r, t.Context(), func(_ context.Context, _ any, h *sandbox.HandlerContext) (any, error) {
		for range lines {
			h.Log("info", "", nil)
		}
		return nil, nil
	}, nil, nil)
	if n := len(res.Logs); n > budget/100+2 {
		t.Fatalf("%d log entries for a %d-byte log", n, budget)
	}
	b, _ := json.Marshal(res.Logs)
	if len(b) > budget+1024 {
		t.Fatalf("the logs are %d bytes of JSON for a %d-byte log", len(b), budget)
	}
	note := res.Logs[len(res.Logs)-1]
	dropped := lines - (len(res.Logs) - 1)
	if note.Source != "sandbox" || note.Level != "warn" || !strings.HasPrefix(note.Message, itoa(dropped)+" earlier log lines were dropped") ||
		!strings.Contains(note.Message, "monitoring.logBufferSize (64KiB)") {
		t.Fatalf("last entry %+v, want a sandbox note that %d lines were dropped", note, dropped)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestNoNoteWithoutEviction: a log that fits has no note.
func TestNoNoteWithoutEviction(t *testing.T) {
	r := goRunner(t, sandbox.Config{})
	res := runFunc(t, r, t.Context(), func(_ context.Context, _ any, h *sandbox.HandlerContext) (any, error) {
		h.Log("info", "one", nil)
		return nil, nil
	}, nil, nil)
	if len(res.Logs) != 1 || res.Logs[0].Message != "one" {
		t.Fatalf("logs %+v, want the one line", res.Logs)
	}
}

// TestObserverQueueBoundedInBytes: an observer that does not keep up holds
// a bounded number of bytes of queued lines, not 4096 lines of 64KiB.
func TestObserverQueueBoundedInBytes(t *testing.T) {
	release := make(chan struct{})
	var delivered, bytes atomic.Int64
	var completes atomic.Int64
	r := goRunner(t, sandbox.Config{Observers: []sandbox.Observer{{
		OnLog: func(e sandbox.LogEvent) {
			<-release
			delivered.Add(1)
			bytes.Add(int64(len(e.Line.Message)))
		},
		OnComplete: func(*sandbox.Result) { completes.Add(1) },
	}}})
	line := strings.Repeat("x", 60<<10)
	runFunc(t, r, t.Context(), func(_ context.Context, _ any, h *sandbox.HandlerContext) (any, error) {
		for range 2000 {
			h.Log("info", line, nil)
		}
		return nil, nil
	}, nil, nil)
	close(release)
	// A second run's OnComplete is queued behind whatever the first left.
	runFunc(t, r, t.Context(), func(context.Context, any, *sandbox.HandlerContext) (any, error) { return nil, nil }, nil, nil)
	waitUntil(t, func() bool { return completes.Load() >= 1 })
	if b := bytes.Load(); b > 9<<20 {
		t.Fatalf("%d lines (%d bytes) were queued for a blocked observer", delivered.Load(), b)
	}
	if delivered.Load() == 0 {
		t.Fatal("no line was delivered at all")
	}
	t.Logf("%d lines, %d bytes delivered to a blocked observer", delivered.Load(), bytes.Load())
}

// TestLongLinesReachObserversCut: observers get the line as the log keeps
// it, cut to the per-line cap.
func TestLongLinesReachObserversCut(t *testing.T) {
	var longest atomic.Int64
	done := make(chan struct{})
	r := goRunner(t, sandbox.Config{Observers: []sandbox.Observer{{
		OnLog:      func(e sandbox.LogEvent) { longest.Store(max(longest.Load(), int64(len(e.Line.Message)))) },
		OnComplete: func(*sandbox.Result) { close(done) },
	}}})
	runFunc(t, r, t.Context(), func(_ context.Context, _ any, h *sandbox.HandlerContext) (any, error) {
		h.Log("info", strings.Repeat("y", 4<<20), nil)
		return nil, nil
	}, nil, nil)
	<-done
	if l := longest.Load(); l == 0 || l > 64<<10 {
		t.Fatalf("an observer got a %d-byte line", l)
	}
}
