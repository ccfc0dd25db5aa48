package sandbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kb-labs/sandbox"
)

// inProcessRunner returns an in-process Runner closed at the end of the test.
func goRunner(t *testing.T, cfg sandbox.Config) *sandbox.Runner {
	t.Helper()
	cfg.Mode = sandbox.InProcess
	r, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func runFunc(t *testing.T, r *sandbox.Runner, ctx context.Context, f sandbox.Func, input any, ec *sandbox.ExecutionContext) *sandbox.Result {
	t.Helper()
	res, err := r.Run(ctx, sandbox.GoFunc(f), input, ec)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

var (
	reTraceID = regexp.MustCompile(`^[0-9a-f]{32}$`)
	reSpanID  = regexp.MustCompile(`^[0-9a-f]{16}$`)
)

func TestInProcessOK(t *testing.T) {
	r := goRunner(t, sandbox.Config{})
	type in struct{ A, B int }
	res := runFunc(t, r, t.Context(), func(ctx context.Context, input any, h *sandbox.HandlerContext) (any, error) {
		v, ok := input.(in)
		if !ok {
			return nil, fmt.Errorf("input is %T", input)
		}
		h.Log("info", "adding", map[string]any{"a": v.A})
		return map[string]int{"sum": v.A + v.B}, nil
	}, in{1, 2}, nil)
	if !res.OK || res.Status != sandbox.StatusOK || res.Error != nil || res.ExitCode != 0 || res.Err() != nil {
		t.Fatalf("result = %+v, error %+v", res, res.Error)
	}
	if string(res.Data) != `{"sum":3}` {
		t.Errorf("data = %s, want {\"sum\":3}", res.Data)
	}
	if iso := res.Isolation; iso.Mode != sandbox.InProcess || iso.Runtime != "go" || iso.Network != sandbox.NetworkHost { // a Go function has this process's network
		t.Errorf("isolation = %+v", iso)
	}
	if res.Metrics.TimeMs == nil || *res.Metrics.TimeMs < 0 || *res.Metrics.TimeMs > 5000 {
		t.Errorf("timeMs = %v", res.Metrics.TimeMs)
	}
	if res.Metrics.MemPeakBytes != nil || res.Metrics.PidsPeak != nil || res.Metrics.CPUMs != nil {
		t.Errorf("in-process run claims metrics it cannot measure: %+v", res.Metrics)
	}
	if len(res.Logs) != 1 || res.Logs[0].Message != "adding" || res.Logs[0].Source != "handler" ||
		res.Logs[0].Level != "info" || res.Logs[0].Meta["a"] != 1 || res.Logs[0].Time.IsZero() {
		t.Errorf("logs = %+v", res.Logs)
	}

	// A function returning nothing has null data; a value JSON cannot encode
	// is a handler error, not a panic.
	res = runFunc(t, r, t.Context(), func(context.Context, any, *sandbox.HandlerContext) (any, error) { return nil, nil }, nil, nil)
	if !res.OK || res.Data != nil {
		t.Errorf("nil return: ok %v data %q", res.OK, res.Data)
	}
	res = runFunc(t, r, t.Context(), func(context.Context, any, *sandbox.HandlerContext) (any, error) { return make(chan int), nil }, nil, nil)
	if res.Status != sandbox.StatusHandlerError || res.Error.Code != sandbox.CodeHandlerError || !strings.Contains(res.Error.Message, "JSON") {
		t.Errorf("unencodable data: %s %+v", res.Status, res.Error)
	}
}

func TestInProcessErrors(t *testing.T) {
	r := goRunner(t, sandbox.Config{})
	tests := []struct {
		name     string
		err      error
		code     string
		contains string
	}{
		{"coded", sandbox.NewError("E_QUOTA", "quota exceeded"), "E_QUOTA", "quota exceeded"},
		{"wrapped coded", fmt.Errorf("saving: %w", sandbox.NewError("E_DISK", "disk full")), "E_DISK", "saving: disk full"},
		{"plain", errors.New("nope"), sandbox.CodeHandlerError, "nope"},
		{"empty code", sandbox.NewError("", "no code"), sandbox.CodeHandlerError, "no code"},
	}
	for _, tt := range tests {
		res := runFunc(t, r, t.Context(), func(context.Context, any, *sandbox.HandlerContext) (any, error) {
			return "ignored", tt.err
		}, nil, nil)
		if res.OK || res.Status != sandbox.StatusHandlerError || res.Error == nil || res.Error.Code != tt.code ||
			!strings.Contains(res.Error.Message, tt.contains) || res.Data != nil {
			t.Errorf("%s: %s %+v data %s", tt.name, res.Status, res.Error, res.Data)
		}
		if !errors.Is(res.Err(), sandbox.ErrHandler) || res.ExitStatus() != 1 {
			t.Errorf("%s: Err %v, exit %d", tt.name, res.Err(), res.ExitStatus())
		}
	}
}

func crashingHandler(context.Context, any, *sandbox.HandlerContext) (any, error) {
	var m map[string]int
	m["boom"]++ //lint:ignore SA5000 the panic is the point: a crashing handler
	return nil, nil
}

func TestInProcessPanic(t *testing.T) {
	r := goRunner(t, sandbox.Config{})
	res := runFunc(t, r, t.Context(), crashingHandler, nil, nil)
	if res.OK || res.Status != sandbox.StatusHandlerError || res.Error == nil || res.Error.Code != sandbox.CodeHandlerCrashed {
		t.Fatalf("result = %s %+v", res.Status, res.Error)
	}
	if !strings.Contains(res.Error.Message, "panic: assignment to entry in nil map") {
		t.Errorf("message = %q", res.Error.Message)
	}
	if !strings.Contains(res.Error.Stack, "crashingHandler") || !strings.Contains(res.Error.Stack, "inprocess_test.go") {
		t.Errorf("stack does not show the panicking function:\n%s", res.Error.Stack)
	}
	// The runner keeps working after a panic.
	res = runFunc(t, r, t.Context(), func(context.Context, any, *sandbox.HandlerContext) (any, error) { return 1, nil }, nil, nil)
	if !res.OK {
		t.Errorf("run after a panic: %s", res.Status)
	}
}

func TestInProcessTimeout(t *testing.T) {
	const timeout, grace = 150 * time.Millisecond, 2 * time.Second
	r := goRunner(t, sandbox.Config{Execution: sandbox.Execution{Timeout: sandbox.Duration(timeout), Grace: sandbox.Duration(grace)}})
	start := time.Now()
	res := runFunc(t, r, t.Context(), func(ctx context.Context, _ any, _ *sandbox.HandlerContext) (any, error) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Second):
			return "too late", nil
		}
	}, nil, nil)
	elapsed := time.Since(start)
	if res.Status != sandbox.StatusTimeout || res.OK || res.Error == nil || res.Error.Code != sandbox.CodeTimeout || res.ExitCode != -1 {
		t.Fatalf("result = %s %+v exit %d", res.Status, res.Error, res.ExitCode)
	}
	if !errors.Is(res.Err(), context.DeadlineExceeded) || !errors.Is(res.Err(), sandbox.ErrTimeout) || errors.Is(res.Err(), context.Canceled) {
		t.Errorf("Err() = %v", res.Err())
	}
	// A function honouring its context ends well within the grace period.
	if elapsed < timeout || elapsed > timeout+time.Second {
		t.Errorf("Run took %v with a %v timeout", elapsed, timeout)
	}
	if res.ExitStatus() != 124 {
		t.Errorf("exit status %d, want 124", res.ExitStatus())
	}
}

func TestInProcessCancel(t *testing.T) {
	r := goRunner(t, sandbox.Config{})
	ctx, cancel := context.WithCancel(t.Context())
	started := make(chan struct{})
	go func() {
		<-started
		time.Sleep(20 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	res := runFunc(t, r, ctx, func(ctx context.Context, _ any, _ *sandbox.HandlerContext) (any, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}, nil, nil)
	if res.Status != sandbox.StatusCancelled || res.Error == nil || res.Error.Code != sandbox.CodeCancelled {
		t.Fatalf("result = %s %+v", res.Status, res.Error)
	}
	if !errors.Is(res.Err(), context.Canceled) || !errors.Is(res.Err(), sandbox.ErrCancelled) || errors.Is(res.Err(), context.DeadlineExceeded) {
		t.Errorf("Err() = %v", res.Err())
	}
	if res.ExitStatus() != 130 || time.Since(start) > 2*time.Second {
		t.Errorf("exit %d after %v", res.ExitStatus(), time.Since(start))
	}
	// A caller's deadline is the caller ending the run: cancelled, not the
	// configured timeout.
	ctx, cancel2 := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel2()
	res = runFunc(t, r, ctx, func(ctx context.Context, _ any, _ *sandbox.HandlerContext) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}, nil, nil)
	if res.Status != sandbox.StatusCancelled {
		t.Errorf("caller deadline: status %s", res.Status)
	}
}

func TestInProcessAbandonsFunctionIgnoringContext(t *testing.T) {
	const timeout, grace = 100 * time.Millisecond, 200 * time.Millisecond
	r := goRunner(t, sandbox.Config{Execution: sandbox.Execution{Timeout: sandbox.Duration(timeout), Grace: sandbox.Duration(grace)}})
	release := make(chan struct{})
	defer close(release)
	start := time.Now()
	res := runFunc(t, r, t.Context(), func(context.Context, any, *sandbox.HandlerContext) (any, error) {
		<-release // ignores its context
		return "late", nil
	}, nil, nil)
	elapsed := time.Since(start)
	if res.Status != sandbox.StatusTimeout || res.Error.Code != sandbox.CodeTimeout || res.Data != nil {
		t.Fatalf("result = %s %+v data %s", res.Status, res.Error, res.Data)
	}
	if elapsed < timeout+grace || elapsed > timeout+grace+time.Second {
		t.Errorf("abandoned after %v, want about timeout %v + grace %v", elapsed, timeout, grace)
	}
	found := false
	for _, l := range res.Logs {
		if l.Source == "sandbox" && l.Level == "warn" && strings.Contains(l.Message, "abandoned") {
			found = true
		}
	}
	if !found {
		t.Errorf("no sandbox note about the abandoned function in %+v", res.Logs)
	}
}

func TestInProcessConcurrentRunsKeepTheirLogs(t *testing.T) {
	const runs, lines = 100, 20
	var mu sync.Mutex
	streamed := map[string][]string{} // requestId -> OnLog messages
	r := goRunner(t, sandbox.Config{Observers: []sandbox.Observer{{
		OnLog: func(e sandbox.LogEvent) {
			mu.Lock()
			streamed[e.RequestID] = append(streamed[e.RequestID], e.Line.Message)
			mu.Unlock()
		},
	}}})
	results := make([]*sandbox.Result, runs)
	var wg sync.WaitGroup
	for i := range runs {
		wg.Go(func() {
			res, err := r.Run(t.Context(), sandbox.GoFunc(func(_ context.Context, input any, h *sandbox.HandlerContext) (any, error) {
				n := input.(int)
				for j := range lines {
					h.Log("info", fmt.Sprintf("run %d line %d", n, j), nil)
					if j%5 == 0 {
						time.Sleep(time.Millisecond) // interleave with the other runs
					}
				}
				return n, nil
			}), i, &sandbox.ExecutionContext{RequestID: fmt.Sprintf("req-%03d", i)})
			if err != nil {
				t.Error(err)
				return
			}
			results[i] = res
		})
	}
	wg.Wait()
	for i, res := range results {
		if res == nil {
			continue
		}
		if !res.OK || string(res.Data) != fmt.Sprint(i) || res.RequestID != fmt.Sprintf("req-%03d", i) {
			t.Errorf("run %d: %s data %s id %s", i, res.Status, res.Data, res.RequestID)
		}
		if len(res.Logs) != lines {
			t.Errorf("run %d has %d log lines, want %d", i, len(res.Logs), lines)
			continue
		}
		for j, l := range res.Logs {
			if want := fmt.Sprintf("run %d line %d", i, j); l.Message != want {
				t.Errorf("run %d log %d = %q, want %q", i, j, l.Message, want)
				break
			}
		}
	}
	// Observers see each run's lines under its own requestId, in order. Run
	// waits for OnComplete only, so give the stream a moment to drain.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		total := 0
		for _, l := range streamed {
			total += len(l)
		}
		mu.Unlock()
		if total == runs*lines || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range runs {
		got := streamed[fmt.Sprintf("req-%03d", i)]
		if len(got) != lines {
			t.Errorf("observer saw %d lines of run %d, want %d", len(got), i, lines)
			continue
		}
		for j, m := range got {
			if want := fmt.Sprintf("run %d line %d", i, j); m != want {
				t.Errorf("observer: run %d line %d = %q", i, j, m)
				break
			}
		}
	}
}

func TestInProcessTraces(t *testing.T) {
	const traceID, spanID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	r := goRunner(t, sandbox.Config{Monitoring: sandbox.Monitoring{CollectTraces: true}})
	f := func(context.Context, any, *sandbox.HandlerContext) (any, error) {
		time.Sleep(5 * time.Millisecond)
		return nil, nil
	}
	res := runFunc(t, r, t.Context(), f, nil, &sandbox.ExecutionContext{TraceID: traceID, SpanID: spanID})
	if len(res.Traces) == 0 {
		t.Fatal("no spans with CollectTraces on")
	}
	names := map[string]bool{}
	for _, s := range res.Traces {
		names[s.Name] = true
		if s.TraceID != traceID || s.ParentSpanID != spanID || !reSpanID.MatchString(s.SpanID) || s.SpanID == spanID {
			t.Errorf("span %+v does not continue trace %s under %s", s, traceID, spanID)
		}
		if s.StartTime.IsZero() || s.EndTime.Before(s.StartTime) || s.StartTime.Location() != time.UTC {
			t.Errorf("span %s times %v..%v", s.Name, s.StartTime, s.EndTime)
		}
	}
	if !names["execute"] {
		t.Errorf("span names %v, want execute", names)
	}
	if ex := res.Traces[0]; ex.EndTime.Sub(ex.StartTime) < 5*time.Millisecond {
		t.Errorf("execute span lasted %v, the function slept 5ms", ex.EndTime.Sub(ex.StartTime))
	}

	// Without a caller's trace: a new trace, root spans.
	res = runFunc(t, r, t.Context(), f, nil, nil)
	if len(res.Traces) == 0 || !reTraceID.MatchString(res.Traces[0].TraceID) || res.Traces[0].TraceID == traceID || res.Traces[0].ParentSpanID != "" {
		t.Errorf("new trace: %+v", res.Traces)
	}
	// An invalid caller trace id is not propagated.
	res = runFunc(t, r, t.Context(), f, nil, &sandbox.ExecutionContext{TraceID: "NOT-HEX", SpanID: spanID})
	if len(res.Traces) == 0 || !reTraceID.MatchString(res.Traces[0].TraceID) || res.Traces[0].ParentSpanID != "" {
		t.Errorf("invalid trace id: %+v", res.Traces)
	}

	// Off (the default): none.
	off := goRunner(t, sandbox.Config{})
	if res := runFunc(t, off, t.Context(), f, nil, &sandbox.ExecutionContext{TraceID: traceID}); len(res.Traces) != 0 {
		t.Errorf("traces with CollectTraces off: %+v", res.Traces)
	}
}

func TestInProcessRequestIDAndContext(t *testing.T) {
	var starts []sandbox.StartEvent
	var mu sync.Mutex
	r := goRunner(t, sandbox.Config{Observers: []sandbox.Observer{{OnStart: func(e sandbox.StartEvent) {
		mu.Lock()
		starts = append(starts, e)
		mu.Unlock()
	}}}})
	var seen sandbox.ExecutionContext
	echo := func(_ context.Context, _ any, h *sandbox.HandlerContext) (any, error) {
		seen = h.Context
		return nil, nil
	}
	res := runFunc(t, r, t.Context(), echo, nil, nil)
	if !reTraceID.MatchString(res.RequestID) || seen.RequestID != res.RequestID {
		t.Errorf("generated requestId %q, handler saw %q", res.RequestID, seen.RequestID)
	}
	res2 := runFunc(t, r, t.Context(), echo, nil, &sandbox.ExecutionContext{})
	if res2.RequestID == res.RequestID || !reTraceID.MatchString(res2.RequestID) {
		t.Errorf("second generated requestId %q (first %q)", res2.RequestID, res.RequestID)
	}
	ec := &sandbox.ExecutionContext{RequestID: "caller-42", PluginID: "p", Version: "1.4.0", User: &sandbox.User{ID: "u1"},
		Adapter: map[string]any{"type": "cli", "argv": []string{"x"}}}
	res = runFunc(t, r, t.Context(), echo, nil, ec)
	if res.RequestID != "caller-42" || seen.RequestID != "caller-42" || seen.PluginID != "p" || seen.User.ID != "u1" {
		t.Errorf("echo: result %q, handler saw %+v", res.RequestID, seen)
	}
	if ec.RequestID != "caller-42" {
		t.Error("Run modified the caller's context")
	}
	mu.Lock()
	if len(starts) != 3 || starts[2].RequestID != "caller-42" || starts[2].Kind != sandbox.KindFunc || starts[2].Context.PluginID != "p" {
		t.Errorf("start events %+v", starts)
	}
	mu.Unlock()

	// Misuse is an error from Run, never a Result.
	for _, bad := range []*sandbox.ExecutionContext{
		{Version: "2.0.0"}, {Version: "0.9.1"}, {Version: "banana"},
		{Adapter: map[string]any{"type": "carrier-pigeon"}},
		{RequestID: strings.Repeat("x", 129)},
	} {
		res, err := r.Run(t.Context(), sandbox.GoFunc(echo), nil, bad)
		if !errors.Is(err, sandbox.ErrInvalidHandler) || res != nil {
			t.Errorf("context %+v: Run = %v, %v; want ErrInvalidHandler and no result", bad, res, err)
		}
	}
	if _, err := r.Run(t.Context(), sandbox.GoFunc(echo), nil, &sandbox.ExecutionContext{Version: "2.0.0"}); err == nil || !strings.Contains(err.Error(), "2.0.0") {
		t.Errorf("version error %v does not name the version", err)
	}
	for _, good := range []string{"1.0.0", "1.2.3", "v1.0.0"} {
		if _, err := r.Run(t.Context(), sandbox.GoFunc(echo), nil, &sandbox.ExecutionContext{Version: good}); err != nil {
			t.Errorf("version %s refused: %v", good, err)
		}
	}
}

func TestInProcessMisuse(t *testing.T) {
	r := goRunner(t, sandbox.Config{})
	ok := func(context.Context, any, *sandbox.HandlerContext) (any, error) { return nil, nil }
	for _, tt := range []struct {
		h    sandbox.Handler
		want error
	}{
		{sandbox.Command("echo", "hi"), sandbox.ErrUnsupportedHandler},
		{sandbox.File("node", "h.js", ""), sandbox.ErrUnsupportedHandler},
		{sandbox.Handler{}, sandbox.ErrInvalidHandler},
		{sandbox.Handler{Func: ok, Command: []string{"x"}}, sandbox.ErrInvalidHandler},
		{sandbox.Handler{Func: ok, Protocol: true}, sandbox.ErrInvalidHandler},
	} {
		res, err := r.Run(t.Context(), tt.h, nil, nil)
		if !errors.Is(err, tt.want) || res != nil {
			t.Errorf("Run(%+v) = %v, %v; want %v", tt.h, res, err, tt.want)
		}
	}
	// Close waits for nothing here, and Run after Close is refused.
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if res, err := r.Run(t.Context(), sandbox.GoFunc(ok), nil, nil); !errors.Is(err, sandbox.ErrClosed) || res != nil {
		t.Errorf("Run after Close = %v, %v", res, err)
	}
}

// Close waits for the runs in flight.
func TestInProcessCloseWaitsForRuns(t *testing.T) {
	r := goRunner(t, sandbox.Config{})
	started := make(chan struct{})
	var finished atomic.Bool
	done := make(chan *sandbox.Result, 1)
	go func() {
		res, _ := r.Run(context.Background(), sandbox.GoFunc(func(context.Context, any, *sandbox.HandlerContext) (any, error) {
			close(started)
			time.Sleep(100 * time.Millisecond)
			finished.Store(true)
			return "done", nil
		}), nil, nil)
		done <- res
	}()
	<-started
	r.Close()
	if !finished.Load() {
		t.Error("Close returned before the run in flight ended")
	}
	if res := <-done; !res.OK {
		t.Errorf("run in flight during Close: %s", res.Status)
	}
}

func TestInProcessCollectLogsOff(t *testing.T) {
	var mu sync.Mutex
	var streamed []string
	r := goRunner(t, sandbox.Config{
		Monitoring: sandbox.Monitoring{CollectLogs: sandbox.Bool(false)},
		Observers: []sandbox.Observer{{OnLog: func(e sandbox.LogEvent) {
			mu.Lock()
			streamed = append(streamed, e.Line.Message)
			mu.Unlock()
		}}},
	})
	res := runFunc(t, r, t.Context(), func(_ context.Context, _ any, h *sandbox.HandlerContext) (any, error) {
		h.Log("bogus-level", "hello", nil)
		return nil, nil
	}, nil, nil)
	if len(res.Logs) != 0 {
		t.Errorf("logs collected with collectLogs off: %+v", res.Logs)
	}
	b, _ := json.Marshal(res)
	if !strings.Contains(string(b), `"logs":[]`) {
		t.Errorf("encoding: %s", b)
	}
	waitUntil(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(streamed) == 1 })
}

// waitFor polls cond for up to 5 seconds.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
