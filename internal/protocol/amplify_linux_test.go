package protocol

import (
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kb-labs/sandbox/internal/monitor"
)

// blankChunks is how many 64KiB chunks of newlines the blanks-result child
// writes before its result.
const blankChunks = 128

// TestBlankLinesCount: blank and whitespace-only lines are output like any
// other line; only the accepted result's own line is not counted.
func TestBlankLinesCount(t *testing.T) {
	var counted atomic.Int64
	r := fakeChild(t, "blanks-result", Options{CountBytes: func(n int) bool {
		counted.Add(int64(n))
		return true
	}})
	if err := r.start(testRun); err != nil {
		t.Fatal(err)
	}
	o := r.wait()
	if o.Verdict != VerdictOK {
		t.Fatalf("outcome %+v, want ok", o)
	}
	if want := int64(blankChunks*64<<10 + len(" \t\r\n")); counted.Load() != want {
		t.Fatalf("counted %d bytes, want %d (every blank byte, not the result)", counted.Load(), want)
	}
}

// TestBlankFloodStopsAtBudget: a child writing nothing but newlines, never a
// message, still exhausts its budget and is no longer read.
func TestBlankFloodStopsAtBudget(t *testing.T) {
	const budget = 1 << 20
	var counted atomic.Int64
	r := fakeChild(t, "blank-flood", Options{CountBytes: func(n int) bool {
		return counted.Add(int64(n)) <= budget
	}})
	if err := r.start(testRun); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for counted.Load() <= budget {
		if time.Now().After(deadline) {
			t.Fatalf("a blank-line flood never exhausted the budget; counted %d", counted.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.kill()
	o := r.wait()
	if !o.OutputExhausted {
		t.Fatalf("OutputExhausted false: %+v", o)
	}
	if c := counted.Load(); c > budget+readChunk {
		t.Fatalf("counted %d bytes past a %d budget", c, budget)
	}
}

// TestLogPastBudgetNotDispatched: the log that passes the budget is counted
// before it is dispatched, so it never reaches the run's log.
func TestLogPastBudgetNotDispatched(t *testing.T) {
	const budget = 256 << 10
	var counted, dispatched atomic.Int64
	r := fakeChild(t, "flood", Options{
		RequireReady: true,
		OnLog:        func(_, m string, _ map[string]any) { dispatched.Add(int64(len(m))) },
		CountBytes:   func(n int) bool { return counted.Add(int64(n)) <= budget },
	})
	if err := r.start(testRun); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for counted.Load() <= budget && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	r.kill()
	r.wait()
	if d := dispatched.Load(); d > budget {
		t.Fatalf("%d message bytes dispatched for a %d-byte budget", d, budget)
	}
}

// TestHugeMetaNotDecoded: a meta over MaxMetaBytes is validated but not
// decoded (decoded, a meta of small values takes many times its size).
func TestHugeMetaNotDecoded(t *testing.T) {
	meta := `{"a":[` + strings.Repeat("0,", 2<<20) + `0]}`
	line := []byte(`{"type":"log","level":"info","message":"m","meta":` + meta + `}`)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, err := Parse(line)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	got := m.(LogMessage).Meta
	if len(got) != 1 || got[monitor.MetaTruncatedKey] != len(meta) {
		t.Fatalf("meta %v, want {%q: %d}", got, monitor.MetaTruncatedKey, len(meta))
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 3*uint64(len(line)) {
		t.Fatalf("Parse allocated %d bytes for a %d-byte line", alloc, len(line))
	}
	if _, err := Parse([]byte(`{"type":"log","level":"info","message":"m","meta":[` + strings.Repeat("0,", MaxMetaBytes) + `0]}`)); err == nil {
		t.Fatal("a large meta that is not an object was accepted")
	}
	small, err := Parse([]byte(`{"type":"log","level":"info","message":"m","meta":{"k":"v"}}`))
	if err != nil || small.(LogMessage).Meta["k"] != "v" {
		t.Fatalf("a small meta: %v, %v", small, err)
	}
}
