package protocol

import (
	"encoding/json"
	"errors"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func fakeChild(t testing.TB, name string, opts Options) *run {
	t.Helper()
	return startRun(t, opts, []string{"PROTOCOL_FAKE_CHILD=" + name}, os.Args[0])
}

var testRun = RunMessage{Handler: HandlerRef{File: "h"}, Input: json.RawMessage(`{"a":1}`)}

// TestHostileChildren covers children that break the protocol: the
// verdict, and that the run ends (the child is never left blocked).
func TestHostileChildren(t *testing.T) {
	tests := []struct {
		child    string
		opts     Options
		startErr error // expected from Start; nil: Start succeeds
		anyStart bool  // ready then a bad message: Start may or may not see the failure first
		kill     bool  // the engine ends the run (as it would on a Start error)
		verdict  Verdict
		code     string
		invalid  string
		data     string
	}{
		{child: "garbage", opts: Options{RequireReady: true}, anyStart: true, kill: true, verdict: VerdictHandlerError, code: CodeInvalidMessage, invalid: "not a JSON object"},
		{child: "oversized", opts: Options{RequireReady: true, MaxMessageBytes: 1 << 20}, anyStart: true, verdict: VerdictHandlerError, code: CodeInvalidMessage, invalid: "longer than 1048576"},
		{child: "two-results", opts: Options{RequireReady: true}, verdict: VerdictHandlerError, code: CodeInvalidMessage, invalid: "second result"},
		{child: "run-from-child", opts: Options{RequireReady: true}, anyStart: true, verdict: VerdictHandlerError, code: CodeInvalidMessage, invalid: "parent-to-child"},
		{child: "log-before-ready", opts: Options{RequireReady: true}, startErr: ErrInvalidMessage, verdict: VerdictHandlerError, code: CodeInvalidMessage, invalid: "log before ready"},
		{child: "log-before-ready", opts: Options{}, verdict: VerdictHandlerError, code: CodeInvalidMessage, invalid: "ready out of order"},
		{child: "no-ready", opts: Options{RequireReady: true, HandshakeTimeout: 200 * time.Millisecond}, startErr: ErrHandshakeTimeout, kill: true, verdict: VerdictHandlerError, code: CodeHandshakeTimeout},
		{child: "result-exit0", opts: Options{RequireReady: true}, verdict: VerdictOK, data: `{"n":1}`},
		{child: "result-exit3", opts: Options{RequireReady: true}, verdict: VerdictHandlerError, code: CodeHandlerCrashed},
		{child: "result-sigkill", opts: Options{RequireReady: true}, verdict: VerdictHandlerError, code: CodeHandlerCrashed},
		{child: "result-linger", opts: Options{RequireReady: true}, kill: true, verdict: VerdictOK, data: `{"n":1}`},
		{child: "command", opts: Options{}, verdict: VerdictOK, data: `{"n":1}`},
		{child: "command-silent", opts: Options{}, verdict: VerdictOK},
		{child: "command-silent", opts: Options{RequireReady: true}, startErr: ErrClosed, verdict: VerdictHandlerError, code: CodeNoResult},
	}
	for _, tt := range tests {
		t.Run(tt.child, func(t *testing.T) {
			r := fakeChild(t, tt.child, tt.opts)
			begin := time.Now()
			err := r.start(testRun)
			switch {
			case tt.anyStart:
				if err != nil && !errors.Is(err, ErrInvalidMessage) {
					t.Fatalf("Start = %v, want nil or E_INVALID_MESSAGE", err)
				}
			case tt.startErr == nil && err != nil || tt.startErr != nil && !errors.Is(err, tt.startErr):
				t.Fatalf("Start = %v, want %v", err, tt.startErr)
			}
			if tt.child == "no-ready" {
				if d := time.Since(begin); d < 200*time.Millisecond || d > 5*time.Second {
					t.Fatalf("handshake timeout after %v, want ~200ms", d)
				}
			}
			if tt.kill {
				time.Sleep(100 * time.Millisecond) // let a lingering child's messages arrive
				r.kill()
			}
			o := r.wait()
			code := ""
			if o.Err != nil {
				code = o.Err.Code
			}
			if o.Verdict != tt.verdict || code != tt.code || string(o.Data) != tt.data {
				t.Fatalf("outcome %+v (err %+v), want verdict %s code %q data %s", o, o.Err, tt.verdict, tt.code, tt.data)
			}
			if !strings.Contains(o.Invalid, tt.invalid) || (tt.invalid == "") != (o.Invalid == "") {
				t.Fatalf("Invalid = %q, want it to mention %q", o.Invalid, tt.invalid)
			}
		})
	}
}

// TestFloodStopsAtBudget: a child flooding logs is cut off when CountBytes
// says the output budget is gone; reading stops there.
func TestFloodStopsAtBudget(t *testing.T) {
	const budget = 256 << 10
	var counted, calls atomic.Int64
	var logs atomic.Int64
	r := fakeChild(t, "flood", Options{
		RequireReady: true,
		OnLog:        func(string, string, map[string]any) { logs.Add(1) },
		CountBytes: func(n int) bool {
			calls.Add(1)
			return counted.Add(int64(n)) <= budget
		},
	})
	if err := r.start(testRun); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for counted.Load() <= budget {
		if time.Now().After(deadline) {
			t.Fatalf("budget never exhausted; counted %d", counted.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	before := calls.Load()
	time.Sleep(200 * time.Millisecond)
	if after := calls.Load(); after != before {
		t.Fatalf("still reading after the budget: CountBytes calls %d -> %d", before, after)
	}
	r.kill() // the engine ends the run with output_limit
	o := r.wait()
	if !o.OutputExhausted {
		t.Fatalf("OutputExhausted false: %+v", o)
	}
	if c := counted.Load(); c > budget+2*1100 {
		t.Fatalf("counted %d bytes past a %d budget", c, budget)
	}
	if n := logs.Load(); n > budget/1000+1 {
		t.Fatalf("%d log lines dispatched for a %d-byte budget", n, budget)
	}
	t.Logf("flood: %d bytes counted, %d logs dispatched, verdict %s", counted.Load(), logs.Load(), o.Verdict)
}

// TestPassedFDsAreClosed: 4000 descriptors sent with SCM_RIGHTS are all
// closed; the parent's descriptor count does not grow.
func TestPassedFDsAreClosed(t *testing.T) {
	before := openFDs(t)
	r := fakeChild(t, "fds", Options{RequireReady: true})
	if err := r.start(testRun); err != nil {
		t.Fatal(err)
	}
	o := r.wait()
	if o.Verdict != VerdictOK || o.ClosedFDs != 4000 {
		t.Fatalf("verdict %s, closed %d fds; want ok and 4000 (err %+v)", o.Verdict, o.ClosedFDs, o.Err)
	}
	if n := len(r.seenLogs()); n != 16 {
		t.Fatalf("%d log lines, want the 16 that carried descriptors", n)
	}
	after := openFDs(t)
	if after > before+2 {
		t.Fatalf("open fds grew from %d to %d", before, after)
	}
	t.Logf("fds: %d received and closed; open fds %d before, %d after", o.ClosedFDs, before, after)
}

// TestChildNeverReads: with a child that never reads fd 3, Start with a
// large run message, Cancel, and Finish all return promptly.
func TestChildNeverReads(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	r := fakeChild(t, "never-read", Options{RequireReady: true})
	big := RunMessage{Handler: HandlerRef{File: "h"}, Input: json.RawMessage(`"` + strings.Repeat("x", 8<<20) + `"`)}
	begin := time.Now()
	if err := r.start(big); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r.sess.Cancel()
	}
	if d := time.Since(begin); d > time.Second {
		t.Fatalf("Start+Cancel took %v with a child that never reads", d)
	}
	r.kill()
	begin = time.Now()
	o := r.wait()
	if d := time.Since(begin); d > 2*time.Second {
		t.Fatalf("Finish took %v", d)
	}
	if o.Verdict != VerdictExit {
		t.Fatalf("verdict %s, want exit (the engine judges the kill)", o.Verdict)
	}
	// The session's reader and writer are gone (the writer was blocked in
	// a write to a child that never read).
	for i := 0; runtime.NumGoroutine() > goroutines; i++ {
		if i == 100 {
			t.Fatalf("goroutines: %d before, %d after Finish", goroutines, runtime.NumGoroutine())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFinishWithoutChildExit: a descendant holding the socket open cannot
// hold Finish longer than DrainTimeout; Close after Finish is harmless.
func TestFinishBoundedByDrainTimeout(t *testing.T) {
	r := fakeChild(t, "never-read", Options{RequireReady: true, DrainTimeout: 300 * time.Millisecond})
	if err := r.start(testRun); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	o := r.sess.Finish(ExitInfo{Code: 0}) // the child is still alive and holds fd 3
	if d := time.Since(begin); d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("Finish took %v, want ~300ms", d)
	}
	if o.Verdict != VerdictHandlerError || o.Err.Code != CodeNoResult {
		t.Fatalf("outcome %+v", o)
	}
	if again := r.sess.Finish(ExitInfo{Code: 1}); again.Err.Code != CodeNoResult {
		t.Fatal("second Finish changed the outcome")
	}
	r.sess.Close()
}
