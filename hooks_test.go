package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kb-labs/sandbox"
)

// hookRecorder is an Observer that writes every hook call as one string.
type hookRecorder struct {
	mu     sync.Mutex
	events []string
}

func (r *hookRecorder) add(s string) {
	r.mu.Lock()
	r.events = append(r.events, s)
	r.mu.Unlock()
}

func (r *hookRecorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *hookRecorder) observer() sandbox.Observer {
	return sandbox.Observer{
		OnStart:    func(e sandbox.StartEvent) { r.add("start " + string(e.Kind)) },
		OnLog:      func(e sandbox.LogEvent) { r.add("log " + e.Line.Message) },
		OnProgress: func(e sandbox.ProgressEvent) { r.add(fmt.Sprintf("progress %g %s", e.Percent, e.Message)) },
		OnCancel:   func(e sandbox.CancelEvent) { r.add("cancel") },
		OnError:    func(res *sandbox.Result) { r.add("error " + string(res.Status)) },
		OnComplete: func(res *sandbox.Result) { r.add("complete " + string(res.Status)) },
	}
}

// completed returns the events r has seen once every run before it has
// ended. A sentinel run on runner follows: each observer's events arrive in
// order, so what r saw before the sentinel's start is final, and an event
// delivered after a run's OnComplete would show up in what is returned.
func (r *hookRecorder) completed(t *testing.T, runner *sandbox.Runner) []string {
	t.Helper()
	res, err := runner.Run(t.Context(), sandbox.GoFunc(func(_ context.Context, _ any, h *sandbox.HandlerContext) (any, error) {
		h.Log("info", sentinel, nil)
		return nil, nil
	}), nil, nil)
	if err != nil || !res.OK {
		t.Fatalf("sentinel run: %v %+v", err, res)
	}
	var ev []string
	waitUntil(t, func() bool {
		ev = r.get()
		return slices.Contains(ev, "log "+sentinel)
	})
	i := slices.Index(ev, "log "+sentinel)
	if i < 1 || ev[i-1] != "start func" {
		t.Fatalf("events before the sentinel's log: %q", ev[:i])
	}
	return ev[:i-1]
}

const sentinel = "sentinel: every earlier run has ended"

func TestHooksOrder(t *testing.T) {
	work := func(ctx context.Context, _ any, h *sandbox.HandlerContext) (any, error) {
		h.Log("info", "one", nil)
		h.Progress(50, "half")
		h.Log("warn", "two", nil)
		h.Progress(150, "clamped")
		return "ok", nil
	}
	failing := func(ctx context.Context, _ any, h *sandbox.HandlerContext) (any, error) {
		h.Log("error", "failing", nil)
		return nil, sandbox.NewError("E_X", "bad")
	}
	var cancelRun context.CancelFunc // the running subtest's
	tests := []struct {
		name   string
		f      sandbox.Func
		cancel bool
		want   []string
	}{
		{"ok", work, false, []string{"start func", "log one", "progress 50 half", "log two", "progress 100 clamped", "complete ok"}},
		{"error", failing, false, []string{"start func", "log failing", "error handler_error", "complete handler_error"}},
		{"cancelled", func(ctx context.Context, _ any, h *sandbox.HandlerContext) (any, error) {
			h.Progress(10, "waiting")
			cancelRun() // the caller cancels while the function runs
			<-ctx.Done()
			return nil, ctx.Err()
		}, true, []string{"start func", "progress 10 waiting", "cancel", "error cancelled", "complete cancelled"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &hookRecorder{}
			r := goRunner(t, sandbox.Config{Observers: []sandbox.Observer{rec.observer()}})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			cancelRun = cancel
			res := runFunc(t, r, ctx, tt.f, nil, nil)
			// OnComplete is delivered before Run returns (for an observer
			// that keeps up).
			ev := rec.get()
			if len(ev) == 0 || ev[len(ev)-1] != "complete "+string(res.Status) {
				t.Errorf("when Run returned, the observer had seen %v", ev)
			}
			if got := rec.completed(t, r); !slices.Equal(got, tt.want) {
				t.Errorf("hooks:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestHooksManyObserversSameOrder(t *testing.T) {
	recs := []*hookRecorder{{}, {}, {}}
	var obs []sandbox.Observer
	for _, rec := range recs {
		obs = append(obs, rec.observer())
	}
	obs = append(obs, sandbox.Observer{}) // every field optional
	r := goRunner(t, sandbox.Config{Observers: obs})
	runFunc(t, r, t.Context(), func(_ context.Context, _ any, h *sandbox.HandlerContext) (any, error) {
		for i := range 50 {
			h.Log("info", fmt.Sprint(i), nil)
		}
		return nil, errors.New("x")
	}, nil, nil)
	first := recs[0].completed(t, r)
	if len(first) != 1+50+2 {
		t.Errorf("observer 0 saw %d events, want 53", len(first))
	}
	for i, rec := range recs[1:] {
		if got := rec.completed(t, r); !slices.Equal(got, first) {
			t.Errorf("observer %d saw %v, observer 0 saw %v", i+1, got, first)
		}
	}
}

func TestHooksPanickingObserver(t *testing.T) {
	var calls atomic.Int64
	panicker := sandbox.Observer{
		OnStart:    func(sandbox.StartEvent) { calls.Add(1); panic("observer bug in OnStart") },
		OnLog:      func(sandbox.LogEvent) { calls.Add(1); panic("observer bug in OnLog") },
		OnProgress: func(sandbox.ProgressEvent) { calls.Add(1); panic(errors.New("observer bug")) },
		OnError:    func(*sandbox.Result) { calls.Add(1); panic("observer bug in OnError") },
		OnComplete: func(*sandbox.Result) { calls.Add(1); panic("observer bug in OnComplete") },
	}
	rec := &hookRecorder{}
	r := goRunner(t, sandbox.Config{Observers: []sandbox.Observer{panicker, rec.observer()}})
	for i := range 3 {
		res := runFunc(t, r, t.Context(), func(_ context.Context, _ any, h *sandbox.HandlerContext) (any, error) {
			h.Log("info", "line", nil)
			h.Progress(1, "p")
			return i, nil
		}, nil, nil)
		if !res.OK || string(res.Data) != fmt.Sprint(i) {
			t.Fatalf("run %d with a panicking observer: %s %+v", i, res.Status, res.Error)
		}
	}
	res := runFunc(t, r, t.Context(), func(context.Context, any, *sandbox.HandlerContext) (any, error) {
		return nil, errors.New("fails")
	}, nil, nil)
	if res.Status != sandbox.StatusHandlerError {
		t.Fatalf("failing run: %s", res.Status)
	}
	// The other observer saw everything; the panicking one kept being called
	// after its first panic (4 runs: 3×(start, log, progress, complete) +
	// start, error, complete).
	want := []string{}
	for range 3 {
		want = append(want, "start func", "log line", "progress 1 p", "complete ok")
	}
	want = append(want, "start func", "error handler_error", "complete handler_error")
	if got := rec.completed(t, r); !slices.Equal(got, want) {
		t.Errorf("healthy observer:\n got %q\nwant %q", got, want)
	}
	// 15 calls for the four runs, 3 (start, log, complete) for the sentinel.
	waitUntil(t, func() bool { return calls.Load() == 18 })
}

func TestHooksBlockingObserver(t *testing.T) {
	block := make(chan struct{})
	var entered atomic.Int64
	blocker := sandbox.Observer{
		OnStart: func(sandbox.StartEvent) { entered.Add(1); <-block },
		OnLog:   func(sandbox.LogEvent) { <-block },
	}
	rec := &hookRecorder{}
	cfg := sandbox.Config{Mode: sandbox.InProcess, Observers: []sandbox.Observer{blocker, rec.observer()}}
	r, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer close(block) // runs before Close: the blocked goroutine ends

	const bound = 2 * time.Second // hooks wait at most a fraction of this
	const lines = 3000            // below one observer queue: the healthy observer loses none
	for i := range 3 {
		start := time.Now()
		res := runFunc(t, r, t.Context(), func(_ context.Context, _ any, h *sandbox.HandlerContext) (any, error) {
			for j := range lines {
				h.Log("info", fmt.Sprint(j), nil)
			}
			return nil, nil
		}, nil, nil)
		if d := time.Since(start); d > bound {
			t.Errorf("run %d took %v with a blocked observer (bound %v)", i, d, bound)
		}
		if !res.OK || len(res.Logs) != lines {
			t.Errorf("run %d: %s, %d log lines", i, res.Status, len(res.Logs))
		}
		// By the second run the blocked observer's queue is full: its
		// events are dropped instead of holding anyone up.
		waitUntil(t, func() bool { return len(rec.get()) == (i+1)*(lines+2) })
	}
	if entered.Load() != 1 {
		t.Errorf("blocked observer entered OnStart %d times, want 1 (still blocked)", entered.Load())
	}
	// The healthy observer got every event of every run, in order.
	ev := rec.get()
	for i := range 3 {
		base := i * (lines + 2)
		if ev[base] != "start func" || ev[base+1] != "log 0" || ev[base+lines] != fmt.Sprint("log ", lines-1) || ev[base+lines+1] != "complete ok" {
			t.Errorf("run %d events: %q ... %q", i, ev[base:base+2], ev[base+lines:base+lines+2])
		}
	}
}

// A slow OnComplete delays Run by a bounded wait, not by the observer's time.
func TestHooksSlowOnComplete(t *testing.T) {
	release := make(chan struct{})
	var done atomic.Bool
	slow := sandbox.Observer{OnComplete: func(*sandbox.Result) {
		<-release
		done.Store(true)
	}}
	r := goRunner(t, sandbox.Config{Observers: []sandbox.Observer{slow}})
	start := time.Now()
	res := runFunc(t, r, t.Context(), func(context.Context, any, *sandbox.HandlerContext) (any, error) { return 1, nil }, nil, nil)
	if d := time.Since(start); d > 2*time.Second || !res.OK {
		t.Errorf("Run took %v (%s) with a slow OnComplete", d, res.Status)
	}
	close(release)
	// It still gets its call once unblocked.
	waitUntil(t, done.Load)
}
