package sandbox

// Internal test: the status precedence (decide) and the run state that
// applies it are unexported.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

func gF64(v float64) *float64 { return &v }
func gI64(v int64) *int64     { return &v }
func gBool(v bool) *bool      { return &v }

var goldenTime = time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)

func goldenResults() map[string]*Result {
	return map[string]*Result{
		"ok": {
			RequestID: "3f2a9c0e5b7d4e1f8a6b2c3d4e5f6a7b", OK: true, Status: StatusOK, ExitCode: 0,
			Data:   json.RawMessage(`{"answer":42}`),
			Stdout: []byte("hello\n"),
			Metrics: Metrics{TimeMs: gF64(12.5), CPUMs: gF64(3.25), UserMs: gF64(2), SysMs: gF64(1.25), MemMb: gF64(1.8),
				MemPeakBytes: gI64(1884160), PidsPeak: gI64(1), PidsLimitHit: gBool(false)},
			Logs: []LogLine{{Time: goldenTime, Level: "info", Source: "stdout", Message: "hello"}},
			Traces: []Span{{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7",
				ParentSpanID: "b7ad6b7169203331", Name: "execute", StartTime: goldenTime,
				EndTime: goldenTime.Add(12 * time.Millisecond), Attributes: map[string]any{"pid": 7.0}}},
			Isolation: Isolation{Mode: Subprocess, Namespaces: []string{"user", "pid", "mount", "net", "ipc", "uts", "cgroup"},
				Cgroup: "v1", Seccomp: true, LandlockABI: 7, NoNewPrivs: true, Network: NetworkNone},
		},
		"timeout": {
			RequestID: "req-timeout", Status: StatusTimeout, ExitCode: -1, Signal: "SIGKILL",
			Error:      &ErrorInfo{Code: CodeTimeout, Message: "killed after 1s wall-clock limit"},
			Stderr:     []byte("partial\n"),
			Metrics:    Metrics{TimeMs: gF64(1003.2), PidsLimitHit: gBool(true)},
			Violations: []Violation{{Syscall: "ptrace", Count: 1}},
			Isolation: Isolation{Mode: Subprocess, Namespaces: []string{"user", "pid", "mount"}, Cgroup: "v1",
				Seccomp: true, NoNewPrivs: true, Network: NetworkNone,
				Degraded: []Degradation{{Layer: "landlock", Reason: "kernel lacks Landlock"}}},
		},
		"binary-stdout": {
			RequestID: "req-binary", Status: StatusNonzeroExit, ExitCode: 3,
			Error:           &ErrorInfo{Code: CodeProcessExit, Message: "exited with code 3"},
			Stdout:          []byte{0xff, 0xfe, 'a', 0x00, 0x80},
			Stderr:          []byte("plain text é\n"),
			StdoutTruncated: true,
			Metrics:         Metrics{TimeMs: gF64(4)},
			Isolation:       Isolation{Mode: Subprocess, Network: NetworkNone},
		},
		"empty": {
			RequestID: "req-empty", Status: StatusHandlerError, ExitCode: -1,
			Error:     &ErrorInfo{Code: CodeHandlerCrashed, Message: "panic: boom", Stack: "goroutine 1 [running]:\nmain.f()"},
			Isolation: Isolation{Mode: InProcess, Runtime: "go", Network: NetworkNone},
		},
		"no-error": {
			RequestID: "req-null", OK: true, Status: StatusOK, ExitCode: 0,
			Isolation: Isolation{Mode: InProcess, Runtime: "wasm", Network: NetworkNone},
		},
	}
}

func TestResultGolden(t *testing.T) {
	for name, r := range goldenResults() {
		t.Run(name, func(t *testing.T) {
			got, err := json.MarshalIndent(r, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			file := filepath.Join("testdata", "golden", "result-"+name+".json")
			if *updateGolden {
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run go test -run TestResultGolden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the encoding:\n got %s\nwant %s", file, got, want)
			}

			// Decoding the golden file gives back the same Result.
			var back Result
			if err := json.Unmarshal(want, &back); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back.Stdout, r.Stdout) || !bytes.Equal(back.Stderr, r.Stderr) {
				t.Errorf("output round trip: stdout %q stderr %q, want %q %q", back.Stdout, back.Stderr, r.Stdout, r.Stderr)
			}
			if !reflect.DeepEqual(back.Error, r.Error) || !reflect.DeepEqual(back.Metrics, r.Metrics) ||
				back.Status != r.Status || back.OK != r.OK || back.ExitCode != r.ExitCode || back.Signal != r.Signal ||
				back.RequestID != r.RequestID || back.StdoutTruncated != r.StdoutTruncated {
				t.Errorf("round trip:\n got %+v\nwant %+v", back, *r)
			}
			if (r.Data == nil) != (back.Data == nil) {
				t.Errorf("data round trip: %q, want %q", back.Data, r.Data)
			}
			if len(r.Logs) > 0 && !back.Logs[0].Time.Equal(r.Logs[0].Time) {
				t.Errorf("log time round trip: %v, want %v", back.Logs[0].Time, r.Logs[0].Time)
			}
			again, _ := json.Marshal(&back)
			orig, _ := json.Marshal(r)
			var a, b any
			json.Unmarshal(again, &a)
			json.Unmarshal(orig, &b)
			if !reflect.DeepEqual(a, b) {
				t.Errorf("re-encoding the decoded result differs:\n%s\n%s", again, orig)
			}
		})
	}
}

// The JSON rules of docs/result.md, checked on the encoding itself (the
// golden files would accept a wrong rule once regenerated).
func TestResultJSONRules(t *testing.T) {
	enc := func(r *Result) map[string]any {
		t.Helper()
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	rs := goldenResults()

	base := []string{"requestId", "ok", "status", "exitCode", "signal", "data", "error", "stdout", "stderr",
		"stdoutTruncated", "stderrTruncated", "metrics", "violations", "logs", "traces", "isolation"}
	empty := enc(rs["empty"])
	if keys := goldenKeys(empty); !reflect.DeepEqual(keys, goldenSorted(base)) {
		t.Errorf("top-level keys = %v, want %v", keys, goldenSorted(base))
	}
	for _, k := range []string{"violations", "logs", "traces"} {
		if l, ok := empty[k].([]any); !ok || len(l) != 0 {
			t.Errorf("%s = %#v, want []", k, empty[k])
		}
	}
	iso := empty["isolation"].(map[string]any)
	for _, k := range []string{"namespaces", "degraded"} {
		if l, ok := iso[k].([]any); !ok || len(l) != 0 {
			t.Errorf("isolation.%s = %#v, want []", k, iso[k])
		}
	}
	if iso["mode"] != "inprocess" || iso["runtime"] != "go" {
		t.Errorf("isolation = %v, want mode inprocess runtime go", iso)
	}
	if m := empty["metrics"].(map[string]any); len(m) != 0 {
		t.Errorf("unmeasured metrics = %v, want absent (never 0)", m)
	}
	// violationsIncomplete is present only when true, and decodes back.
	inc := enc(&Result{ViolationsIncomplete: true})
	if inc["violationsIncomplete"] != true {
		t.Errorf("violationsIncomplete = %#v, want true", inc["violationsIncomplete"])
	}
	var back Result
	if b, _ := json.Marshal(&Result{ViolationsIncomplete: true}); json.Unmarshal(b, &back) != nil || !back.ViolationsIncomplete {
		t.Errorf("violationsIncomplete lost in a round trip: %+v", back)
	}
	if empty["data"] != nil || empty["signal"] != "" || empty["stdout"] != "" {
		t.Errorf("data %v signal %q stdout %q, want null, \"\", \"\"", empty["data"], empty["signal"], empty["stdout"])
	}
	if e := empty["error"].(map[string]any); e["stack"] == "" || e["code"] != CodeHandlerCrashed {
		t.Errorf("error = %v", e)
	}

	noErr := enc(rs["no-error"])
	if v, ok := noErr["error"]; !ok || v != nil {
		t.Errorf("error of an ok result = %#v (present %v), want null", v, ok)
	}
	if v, ok := noErr["data"]; !ok || v != nil {
		t.Errorf("absent data = %#v (present %v), want null", v, ok)
	}

	to := enc(rs["timeout"])
	m := to["metrics"].(map[string]any)
	if keys := goldenKeys(m); !reflect.DeepEqual(keys, []string{"pidsLimitHit", "timeMs"}) {
		t.Errorf("metrics keys = %v, want only the measured timeMs and pidsLimitHit", keys)
	}
	if m["pidsLimitHit"] != true || to["signal"] != "SIGKILL" || to["exitCode"] != -1.0 || to["ok"] != false {
		t.Errorf("timeout encoding: %v", to)
	}

	// An ok result measures zero as 0, present: absent means unmeasured.
	zero := &Result{OK: true, Status: StatusOK, Metrics: Metrics{CPUMs: gF64(0), PidsPeak: gI64(0)}}
	zm := enc(zero)["metrics"].(map[string]any)
	if v, ok := zm["cpuMs"]; !ok || v != 0.0 {
		t.Errorf("measured cpuMs 0 encoded as %v (present %v)", v, ok)
	}

	bin := enc(rs["binary-stdout"])
	if bin["stdoutEncoding"] != "base64" || bin["stdout"] != "//5hAIA=" {
		t.Errorf("non-UTF-8 stdout = %q encoding %v, want base64 //5hAIA=", bin["stdout"], bin["stdoutEncoding"])
	}
	if _, ok := bin["stderrEncoding"]; ok || bin["stderr"] != "plain text é\n" {
		t.Errorf("UTF-8 stderr = %q, encoding present %v; want it as text with no encoding field", bin["stderr"], ok)
	}
	if _, ok := empty["stdoutEncoding"]; ok {
		t.Error("stdoutEncoding present for empty output")
	}

	// A log line without meta and a span without attributes encode {} (not null).
	lr := enc(&Result{Logs: []LogLine{{Level: "info", Source: "sandbox"}}, Traces: []Span{{Name: "setup"}}})
	if meta := lr["logs"].([]any)[0].(map[string]any)["meta"]; !reflect.DeepEqual(meta, map[string]any{}) {
		t.Errorf("meta = %#v, want {}", meta)
	}
	if attrs := lr["traces"].([]any)[0].(map[string]any)["attributes"]; !reflect.DeepEqual(attrs, map[string]any{}) {
		t.Errorf("attributes = %#v, want {}", attrs)
	}

	// Unknown encodings and bad base64 are refused on decode.
	for _, doc := range []string{`{"stdout":"x","stdoutEncoding":"rot13"}`, `{"stderr":"!!","stderrEncoding":"base64"}`} {
		var r Result
		if err := json.Unmarshal([]byte(doc), &r); err == nil {
			t.Errorf("Unmarshal(%s) accepted it", doc)
		}
	}
}

func goldenKeys(m map[string]any) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	return goldenSorted(k)
}

func goldenSorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestDecidePrecedence(t *testing.T) {
	all := []Status{StatusCancelled, StatusTimeout, StatusMemoryLimit, StatusCPULimit, StatusOutputLimit,
		StatusFileSizeLimit, StatusViolation}
	tests := []struct {
		fired []Status
		own   Status
		want  Status
	}{
		{nil, StatusOK, StatusOK},
		{nil, StatusNonzeroExit, StatusNonzeroExit},
		{nil, StatusSignaled, StatusSignaled},
		{nil, StatusHandlerError, StatusHandlerError},
		{all, StatusOK, StatusCancelled},
		{all[1:], StatusSignaled, StatusTimeout},
		{all[2:], StatusSignaled, StatusMemoryLimit},
		{all[3:], StatusSignaled, StatusCPULimit},
		{all[4:], StatusNonzeroExit, StatusOutputLimit},
		{all[5:], StatusSignaled, StatusFileSizeLimit},
		{all[6:], StatusSignaled, StatusViolation},
		{[]Status{StatusViolation, StatusCancelled}, StatusSignaled, StatusCancelled},
		{[]Status{StatusOutputLimit, StatusMemoryLimit}, StatusOK, StatusMemoryLimit},
		{[]Status{StatusViolation, StatusFileSizeLimit}, StatusSignaled, StatusFileSizeLimit},
		{[]Status{StatusCPULimit, StatusTimeout}, StatusSignaled, StatusTimeout},
		// A limit beats even a clean exit: the limit fired, the run is not ok.
		{[]Status{StatusOutputLimit}, StatusOK, StatusOutputLimit},
	}
	for _, tt := range tests {
		fired := map[Status]bool{}
		for _, s := range tt.fired {
			fired[s] = true
		}
		if got := decide(fired, tt.own); got != tt.want {
			t.Errorf("decide(%v, %s) = %s, want %s", tt.fired, tt.own, got, tt.want)
		}
	}
}

// runState.finish applies the precedence: the limit's code replaces the
// program's, and exitCode keeps the real code.
func TestFinishAppliesPrecedence(t *testing.T) {
	cfg := Config{}.withDefaults()
	rs := newRunState(&cfg, newDispatcher(nil), Command("true"), KindCommand, nil, ExecutionContext{RequestID: "r1"})
	rs.result.ExitCode = 137
	rs.outcome(StatusSignaled, CodeProcessSignaled, "killed by SIGKILL")
	rs.limit(StatusMemoryLimit, "OOM kill in the run's cgroup")
	rs.limit(StatusOutputLimit, "stdout passed 1MiB")
	rs.limit(StatusMemoryLimit, "a second report is ignored")
	res := rs.finish()
	if res.Status != StatusMemoryLimit || res.OK || res.Error == nil || res.Error.Code != CodeMemoryLimit ||
		res.Error.Message != "OOM kill in the run's cgroup" || res.ExitCode != 137 || res.RequestID != "r1" {
		t.Errorf("finish = %+v (error %+v)", res, res.Error)
	}
	if res.Metrics.TimeMs == nil || *res.Metrics.TimeMs < 0 {
		t.Errorf("timeMs = %v, want measured", res.Metrics.TimeMs)
	}

	// No outcome at all is a set-up error, never ok.
	rs = newRunState(&cfg, newDispatcher(nil), Command("true"), KindCommand, nil, ExecutionContext{RequestID: "r2"})
	res = rs.finish()
	if res.Status != StatusSetupError || res.Error == nil || res.Error.Code != CodeSetupFailed || res.OK {
		t.Errorf("finish without outcome = %+v", res)
	}
}

func TestResultErr(t *testing.T) {
	if err := (&Result{OK: true, Status: StatusOK}).Err(); err != nil {
		t.Errorf("ok Err() = %v", err)
	}
	if err := (*Result)(nil).Err(); err != nil {
		t.Errorf("nil Err() = %v", err)
	}
	tests := []struct {
		status Status
		code   string
		is     []error
		isNot  []error
	}{
		{StatusTimeout, CodeTimeout, []error{ErrTimeout, context.DeadlineExceeded}, []error{context.Canceled, ErrCancelled, ErrCPULimit}},
		{StatusCancelled, CodeCancelled, []error{ErrCancelled, context.Canceled}, []error{context.DeadlineExceeded, ErrTimeout}},
		{StatusCPULimit, CodeCPULimit, []error{ErrCPULimit}, []error{context.DeadlineExceeded, ErrTimeout}},
		{StatusMemoryLimit, CodeMemoryLimit, []error{ErrMemoryLimit}, []error{ErrCPULimit}},
		{StatusOutputLimit, CodeOutputLimit, []error{ErrOutputLimit}, nil},
		{StatusFileSizeLimit, CodeFileSizeLimit, []error{ErrFileSizeLimit}, nil},
		{StatusViolation, CodeSeccompViolation, []error{ErrViolation}, nil},
		{StatusSetupError, CodeCommandNotFound, []error{ErrSetup}, []error{ErrHandler}},
		{StatusHandlerError, "MY_CODE", []error{ErrHandler}, []error{ErrSetup, ErrExit}},
		{StatusNonzeroExit, CodeProcessExit, []error{ErrExit}, []error{ErrHandler}},
		{StatusSignaled, CodeProcessSignaled, []error{ErrExit}, []error{context.Canceled}},
	}
	for _, tt := range tests {
		r := &Result{Status: tt.status, Error: &ErrorInfo{Code: tt.code, Message: "why"}}
		err := r.Err()
		if err == nil {
			t.Errorf("%s: Err() = nil", tt.status)
			continue
		}
		for _, target := range tt.is {
			if !errors.Is(err, target) {
				t.Errorf("%s: errors.Is(%v, %v) = false", tt.status, err, target)
			}
		}
		for _, target := range tt.isNot {
			if errors.Is(err, target) {
				t.Errorf("%s: errors.Is(%v, %v) = true", tt.status, err, target)
			}
		}
		var re *RunError
		if !errors.As(err, &re) || re.Status != tt.status || re.Code != tt.code || re.Message != "why" {
			t.Errorf("%s: errors.As = %+v", tt.status, re)
		}
		if msg := err.Error(); !bytes.Contains([]byte(msg), []byte(tt.code)) || !bytes.Contains([]byte(msg), []byte(tt.status)) {
			t.Errorf("%s: message %q lacks status or code", tt.status, msg)
		}
		// Wrapped by a caller, it still matches.
		if wrapped := errors.Join(errors.New("context"), err); !errors.Is(wrapped, tt.is[0]) {
			t.Errorf("%s: wrapped error lost its identity", tt.status)
		}
	}
	// A non-ok result without Error info still gives an error.
	if err := (&Result{Status: StatusTimeout}).Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timeout without ErrorInfo: %v", err)
	}
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		status   Status
		code     string
		exitCode int
		signal   string
		want     int
	}{
		{StatusOK, "", 0, "", 0},
		{StatusNonzeroExit, CodeProcessExit, 7, "", 7},
		{StatusNonzeroExit, CodeProcessExit, 255, "", 255},
		{StatusNonzeroExit, CodeProcessExit, 300, "", 1},
		{StatusSignaled, CodeProcessSignaled, -1, "SIGSEGV", 128 + 11},
		{StatusSignaled, CodeProcessSignaled, -1, "SIGKILL", 128 + 9},
		{StatusSignaled, CodeWASMTrap, -1, "", 128},
		{StatusTimeout, CodeTimeout, -1, "SIGKILL", 124},
		{StatusCPULimit, CodeCPULimit, -1, "SIGXCPU", 124},
		{StatusMemoryLimit, CodeMemoryLimit, -1, "SIGKILL", 124},
		{StatusOutputLimit, CodeOutputLimit, -1, "SIGKILL", 124},
		{StatusFileSizeLimit, CodeFileSizeLimit, -1, "SIGXFSZ", 124},
		{StatusViolation, CodeSeccompViolation, -1, "SIGSYS", 124},
		{StatusHandlerError, CodeHandlerError, 0, "", 1},
		{StatusHandlerError, CodeHandlerExitCode, 3, "", 3}, // the handler's own code
		{StatusHandlerError, CodeHandlerExitCode, 0, "", 1},
		{StatusHandlerError, CodeHandlerCrashed, 3, "", 1},
		{StatusCancelled, CodeCancelled, -1, "SIGKILL", 130},
		{StatusSetupError, CodeSetupFailed, -1, "", 125},
		{StatusSetupError, CodeHandlerNotFound, -1, "", 126},
		{StatusSetupError, CodeCommandNotExec, -1, "", 126},
		{StatusSetupError, CodeCommandNotFound, -1, "", 127},
		{StatusSetupError, "", -1, "", 125},
	}
	for _, tt := range tests {
		r := &Result{OK: tt.status == StatusOK, Status: tt.status, ExitCode: tt.exitCode, Signal: tt.signal}
		if tt.code != "" {
			r.Error = &ErrorInfo{Code: tt.code}
		}
		if got := r.ExitStatus(); got != tt.want {
			t.Errorf("ExitStatus(%s %s exit %d %s) = %d, want %d", tt.status, tt.code, tt.exitCode, tt.signal, got, tt.want)
		}
	}
}

// cpuMs, userMs and sysMs come from one clock: the split always adds up to
// the total, whatever the tick samples said.
func TestSetCPU(t *testing.T) {
	us := time.Microsecond
	tests := []struct {
		total, user, sys      time.Duration
		wantCPU, wantU, wantS float64
	}{
		{1137 * us, 0, 4 * time.Millisecond, 1.137, 0, 1.137}, // cgroup v1: usage exact, ticks coarse
		{10 * time.Millisecond, 3 * time.Millisecond, 1 * time.Millisecond, 10, 7.5, 2.5},
		{1191 * us, 0, 0, 1.191, 1.191, 0},                       // no tick landed: all user, as the kernel's cputime_adjust
		{0, 2 * time.Millisecond, 1 * time.Millisecond, 3, 2, 1}, // rusage only
		{1001 * us, 1, 2, 1.001, 0.333, 0.668},
	}
	for _, tt := range tests {
		var m Metrics
		setCPU(&m, tt.total, tt.user, tt.sys)
		if *m.CPUMs != tt.wantCPU || *m.UserMs != tt.wantU || *m.SysMs != tt.wantS {
			t.Errorf("setCPU(%v, %v, %v) = %v %v %v, want %v %v %v", tt.total, tt.user, tt.sys,
				*m.CPUMs, *m.UserMs, *m.SysMs, tt.wantCPU, tt.wantU, tt.wantS)
		}
		if d := *m.UserMs + *m.SysMs - *m.CPUMs; d > 1e-9 || d < -1e-9 {
			t.Errorf("setCPU(%v, %v, %v): user + sys = %v, cpu %v", tt.total, tt.user, tt.sys, *m.UserMs+*m.SysMs, *m.CPUMs)
		}
	}
}
