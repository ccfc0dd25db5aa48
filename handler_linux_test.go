package sandbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kb-labs/sandbox"
	"github.com/kb-labs/sandbox/internal/testenv"
)

// plugin returns the absolute path of a test plugin under testdata/plugins.
func testPlugin(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", "plugins", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func handlerRunner(t testing.TB, cfg sandbox.Config) *sandbox.Runner {
	t.Helper()
	r, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func runHandler(t *testing.T, r *sandbox.Runner, h sandbox.Handler, input any, ec *sandbox.ExecutionContext) *sandbox.Result {
	t.Helper()
	res, err := r.Run(context.Background(), h, input, ec)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func dumpResult(t *testing.T, res *sandbox.Result) {
	t.Helper()
	b, _ := json.MarshalIndent(res, "", "  ")
	t.Logf("result: %s", b)
}

const handlerTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"

// progressLog is an Observer collecting progress events.
type progressLog struct {
	mu  sync.Mutex
	got []sandbox.ProgressEvent
}

func (p *progressLog) observer() sandbox.Observer {
	return sandbox.Observer{OnProgress: func(e sandbox.ProgressEvent) {
		p.mu.Lock()
		p.got = append(p.got, e)
		p.mu.Unlock()
	}}
}

func (p *progressLog) events() []sandbox.ProgressEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}

// TestFileHandlerOK: the acceptance run of issue 5, in both runtimes: the
// handler logs, reports progress and returns {sum}; the result is ok with
// data.sum, the log line (source handler, its level and meta) is in the
// result, and an observer saw the progress.
func TestFileHandlerOK(t *testing.T) {
	testenv.Require(t, "root", "userns")
	for _, tc := range []struct {
		runtime, feature, dir, file string
	}{
		{"node", "node", "node", "handler"},
		{"python", "python", "python", "handler"},
	} {
		t.Run(tc.runtime, func(t *testing.T) {
			testenv.Require(t, tc.feature)
			var rec progressLog
			r := handlerRunner(t, sandbox.Config{Observers: []sandbox.Observer{rec.observer()},
				Monitoring: sandbox.Monitoring{CollectTraces: true}})
			res := runHandler(t, r, sandbox.File(tc.runtime, tc.file, ""), map[string]int{"a": 2, "b": 3},
				&sandbox.ExecutionContext{PluginRoot: testPlugin(t, tc.dir), RequestID: "req-" + tc.runtime,
					TraceID: handlerTraceID, SpanID: "00f067aa0ba902b7"})
			if res.Status != sandbox.StatusOK {
				dumpResult(t, res)
				t.Fatalf("status %s, want ok (error %+v)", res.Status, res.Error)
			}
			var data struct {
				Sum  int `json:"sum"`
				Seen struct {
					Workdir, PluginRoot, RequestID string
					Outdir                         *string
				} `json:"seen"`
				IPCFd       string   `json:"ipcFd"`
				Traceparent string   `json:"traceparent"`
				ExecArgv    []string `json:"execArgv"`
				PluginRoot  string   `json:"pluginRoot"`
			}
			if err := json.Unmarshal(res.Data, &data); err != nil {
				t.Fatalf("data %s: %v", res.Data, err)
			}
			if data.Sum != 5 {
				t.Errorf("data.sum = %d, want 5 (data %s)", data.Sum, res.Data)
			}
			var line *sandbox.LogLine
			for i, l := range res.Logs {
				if l.Source == "handler" && l.Message == "adding 2 and 3" {
					line = &res.Logs[i]
				}
			}
			if line == nil {
				t.Errorf("no handler log line %q in %+v", "adding 2 and 3", res.Logs)
			} else if line.Level != "info" || line.Meta["n"] != float64(2) {
				t.Errorf("log line %+v: want level info, meta n=2", *line)
			}
			deadline := time.Now().Add(2 * time.Second)
			for len(rec.events()) == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if ev := rec.events(); len(ev) != 1 || ev[0].Percent != 50 || ev[0].Message != "half way" || ev[0].RequestID != "req-"+tc.runtime {
				t.Errorf("observer saw progress %+v, want one 50%% \"half way\"", ev)
			}
			// Spans for loading and calling the handler, in the caller's trace.
			for _, name := range []string{"handler.load", "handler.call"} {
				i := slices.IndexFunc(res.Traces, func(s sandbox.Span) bool { return s.Name == name })
				if i < 0 {
					t.Errorf("no %s span in %+v", name, res.Traces)
				} else if s := res.Traces[i]; s.TraceID != handlerTraceID || s.EndTime.Before(s.StartTime) || s.EndTime.IsZero() {
					t.Errorf("span %+v: want trace %s, ended", s, handlerTraceID)
				}
			}
			switch tc.runtime {
			case "node":
				if !strings.HasPrefix(data.Traceparent, "00-"+handlerTraceID+"-") {
					t.Errorf("TRACEPARENT = %q, want the caller's trace %s", data.Traceparent, handlerTraceID)
				}
				// The context carries the paths as seen inside, and V8's
				// heap limit follows the default 512MiB memory limit.
				if data.Seen.Workdir != "/workspace" || data.Seen.PluginRoot != "/plugin" || data.Seen.Outdir != nil || data.Seen.RequestID != "req-node" {
					t.Errorf("context seen inside: %+v", data.Seen)
				}
				if data.IPCFd != "3" {
					t.Errorf("SANDBOX_IPC_FD = %q, want 3", data.IPCFd)
				}
				if !slices.Contains(data.ExecArgv, "--max-old-space-size=384") {
					t.Errorf("node flags %v: want --max-old-space-size=384 for 512MiB", data.ExecArgv)
				}
			case "python":
				if data.PluginRoot != "/plugin" {
					t.Errorf("ctx.pluginRoot = %q, want /plugin", data.PluginRoot)
				}
			}
		})
	}
}

// TestFileHandlerErrors: how a handler's failures map to results.
func TestFileHandlerErrors(t *testing.T) {
	testenv.Require(t, "root", "userns")
	for _, tc := range []struct {
		name, runtime, file, export string
		noPluginRoot                bool
		status                      sandbox.Status
		code                        string
		exit                        int
	}{
		{name: "node-thrown-code", runtime: "node", file: "handler", export: "fail", status: sandbox.StatusHandlerError, code: "E_X", exit: 1},
		{name: "node-missing-export", runtime: "node", file: "handler", export: "nope", status: sandbox.StatusSetupError, code: sandbox.CodeHandlerNotFound, exit: 126},
		{name: "node-missing-file", runtime: "node", file: "nope", status: sandbox.StatusSetupError, code: sandbox.CodeHandlerNotFound, exit: 126},
		{name: "node-no-plugin-root", runtime: "node", file: "handler", noPluginRoot: true, status: sandbox.StatusSetupError, code: sandbox.CodeHandlerNotFound, exit: 126},
		{name: "node-exit-code-3", runtime: "node", file: "handler", export: "three", status: sandbox.StatusHandlerError, code: sandbox.CodeHandlerExitCode, exit: 3},
		{name: "python-thrown-code", runtime: "python", file: "handler", export: "fail", status: sandbox.StatusHandlerError, code: "E_X", exit: 1},
		{name: "python-missing-export", runtime: "python", file: "handler", export: "nope", status: sandbox.StatusSetupError, code: sandbox.CodeHandlerNotFound, exit: 126},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testenv.Require(t, tc.runtime)
			r := handlerRunner(t, sandbox.Config{})
			ec := &sandbox.ExecutionContext{}
			if !tc.noPluginRoot {
				ec.PluginRoot = testPlugin(t, tc.runtime)
			}
			res := runHandler(t, r, sandbox.File(tc.runtime, tc.file, tc.export), map[string]int{"a": 1, "b": 1}, ec)
			if res.Status != tc.status || res.Error == nil || res.Error.Code != tc.code {
				dumpResult(t, res)
				t.Fatalf("status %s error %+v, want %s %s", res.Status, res.Error, tc.status, tc.code)
			}
			if got := res.ExitStatus(); got != tc.exit {
				t.Errorf("ExitStatus() = %d, want %d", got, tc.exit)
			}
			if tc.code == "E_X" && !strings.Contains(res.Error.Stack, "boom") {
				t.Errorf("stack %q does not carry the error", res.Error.Stack)
			}
			if res.OK || res.Err() == nil {
				t.Errorf("a failed result must not be ok: ok=%v err=%v", res.OK, res.Err())
			}
		})
	}
}

// TestFileHandlerLimits: the engine's limits apply to handlers.
func TestFileHandlerLimits(t *testing.T) {
	testenv.Require(t, "root", "userns")
	// node meets V8's heap limit (set from the memory limit) first, python
	// the cgroup's OOM killer (or its own MemoryError): memory_limit both.
	for _, runtime := range []string{"node", "python"} {
		t.Run("memory-"+runtime, func(t *testing.T) {
			testenv.Require(t, runtime)
			cfg := sandbox.Config{}
			cfg.Execution.Memory = 128 * sandbox.MiB
			r := handlerRunner(t, cfg)
			res := runHandler(t, r, sandbox.File(runtime, "handler", "hog"), nil, &sandbox.ExecutionContext{PluginRoot: testPlugin(t, runtime)})
			if res.Status != sandbox.StatusMemoryLimit || !errors.Is(res.Err(), sandbox.ErrMemoryLimit) {
				dumpResult(t, res)
				t.Fatalf("status %s, want memory_limit", res.Status)
			}
			t.Logf("memory_limit: %s (signal %q)", res.Error.Message, res.Signal)
		})
	}
	t.Run("timeout", func(t *testing.T) {
		testenv.Require(t, "node")
		cfg := sandbox.Config{}
		cfg.Execution.Timeout = sandbox.Duration(time.Second)
		cfg.Execution.Grace = sandbox.Duration(200 * time.Millisecond)
		r := handlerRunner(t, cfg)
		begin := time.Now()
		res := runHandler(t, r, sandbox.File("node", "handler", "spin"), nil, &sandbox.ExecutionContext{PluginRoot: testPlugin(t, "node")})
		took := time.Since(begin)
		if res.Status != sandbox.StatusTimeout || !errors.Is(res.Err(), context.DeadlineExceeded) {
			dumpResult(t, res)
			t.Fatalf("status %s, want timeout", res.Status)
		}
		if took < time.Second || took > 4*time.Second {
			t.Errorf("a 1s timeout took %s", took)
		}
	})
}

// TestFileHandlerCancel: cancelling the caller's context fires the
// handler's AbortSignal (it leaves a file in /out and logs after it) and
// the run ends cancelled.
func TestFileHandlerCancel(t *testing.T) {
	testenv.Require(t, "root", "userns", "node")
	out := t.TempDir()
	// The sandbox user (its own host ids, so only the "other" bits
	// count) writes /out; the temp directories' ancestors must be
	// searchable from inside.
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{})
	var once sync.Once
	obs := sandbox.Observer{OnLog: func(e sandbox.LogEvent) {
		if e.Line.Source == "handler" && e.Line.Message == "waiting for abort" {
			once.Do(func() { close(waiting) })
		}
	}}
	r := handlerRunner(t, sandbox.Config{Observers: []sandbox.Observer{obs}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-waiting:
		case <-time.After(20 * time.Second):
		}
		cancel()
	}()
	begin := time.Now()
	res, err := r.Run(ctx, sandbox.File("node", "handler", "waitAbort"), nil,
		&sandbox.ExecutionContext{PluginRoot: testPlugin(t, "node"), Outdir: out})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != sandbox.StatusCancelled || !errors.Is(res.Err(), context.Canceled) {
		dumpResult(t, res)
		t.Fatalf("status %s, want cancelled", res.Status)
	}
	b, err := os.ReadFile(filepath.Join(out, "aborted"))
	if err != nil || !strings.HasPrefix(string(b), "aborted:") {
		dumpResult(t, res)
		t.Fatalf("the handler's abort signal did not fire: /out/aborted %q, %v", b, err)
	}
	found := false
	for _, l := range res.Logs {
		found = found || (l.Source == "handler" && l.Message == "aborted")
	}
	if !found {
		t.Errorf("no \"aborted\" log line after the abort: %+v", res.Logs)
	}
	// The handler returned after the abort: no need to wait for the grace.
	if took := time.Since(begin); took > 4*time.Second {
		t.Errorf("cancelled run took %s (grace is 5s: the handler's own return should end it)", took)
	}
}

// TestProtocolCommand: a command with Protocol speaks on fd 3 without the
// ready handshake; its result's data is the run's data, and without a
// result an exit 0 is ok with data null.
func TestProtocolCommand(t *testing.T) {
	testenv.Require(t, "root", "userns")
	r := handlerRunner(t, sandbox.Config{})
	for _, tc := range []struct {
		name   string
		script string
		status sandbox.Status
		data   string
		code   string
	}{
		{"result", `echo '{"type":"result","ok":true,"data":5}' >&3`, sandbox.StatusOK, "5", ""},
		{"log-and-result", `echo '{"type":"log","level":"warn","message":"hi"}' >&3; echo '{"type":"result","ok":true,"data":{"x":1}}' >&3`, sandbox.StatusOK, `{"x":1}`, ""},
		{"no-result", `test "$SANDBOX_IPC_FD" = 3`, sandbox.StatusOK, "", ""},
		{"failed-result", `echo '{"type":"result","ok":false,"error":{"code":"E_Y","message":"no","stack":""}}' >&3`, sandbox.StatusHandlerError, "", "E_Y"},
		{"garbage", `echo 'not json' >&3; sleep 10`, sandbox.StatusHandlerError, "", sandbox.CodeInvalidMessage},
		{"crash-after-result", `echo '{"type":"result","ok":true,"data":1}' >&3; exit 3`, sandbox.StatusHandlerError, "", sandbox.CodeHandlerCrashed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := sandbox.Handler{Command: []string{"sh", "-c", tc.script}, Protocol: true}
			begin := time.Now()
			res := runHandler(t, r, h, nil, nil)
			if res.Status != tc.status || string(res.Data) != tc.data || (tc.code != "" && (res.Error == nil || res.Error.Code != tc.code)) {
				dumpResult(t, res)
				t.Fatalf("status %s data %q error %+v, want %s %q %s", res.Status, res.Data, res.Error, tc.status, tc.data, tc.code)
			}
			if tc.name == "log-and-result" && !slices.ContainsFunc(res.Logs, func(l sandbox.LogLine) bool {
				return l.Source == "handler" && l.Level == "warn" && l.Message == "hi"
			}) {
				t.Errorf("protocol log line missing: %+v", res.Logs)
			}
			if took := time.Since(begin); took > 5*time.Second {
				t.Errorf("took %s: an invalid message must end the run at once", took)
			}
		})
	}
}

// TestProtocolOutputLimit: protocol log bytes count toward maxOutput.
func TestProtocolOutputLimit(t *testing.T) {
	testenv.Require(t, "root", "userns")
	cfg := sandbox.Config{}
	cfg.Execution.MaxOutput = 64 * sandbox.KiB
	r := handlerRunner(t, cfg)
	h := sandbox.Handler{Command: []string{"sh", "-c",
		`while :; do echo '{"type":"log","level":"info","message":"flooding the parent with log lines"}'; done >&3`}, Protocol: true}
	res := runHandler(t, r, h, nil, nil)
	if res.Status != sandbox.StatusOutputLimit {
		dumpResult(t, res)
		t.Fatalf("status %s, want output_limit", res.Status)
	}
	n := 0
	for _, l := range res.Logs {
		if l.Source == "handler" {
			n++
		}
	}
	// 64 KiB of 77-byte lines: about 850 lines, never unbounded.
	if n == 0 || n > 64<<10/70 {
		t.Errorf("%d handler log lines for a 64KiB budget", n)
	}
}

// BenchmarkFileHandler runs a trivial handler end to end in the sandbox
// and, in the same loop, the bare interpreter start (`node -e 0`,
// `python3 -c 0`) outside it and as a sandboxed command, reporting the p50
// of each and the handler's overhead over the bare start. The cold variants
// prepare every sandbox on demand; the pooled ones take it from a warm pool
// (refilled outside the timed part), which leaves the bootstrap, the
// protocol and the interpreter itself.
func BenchmarkFileHandler(b *testing.B) {
	// The host's environment can slow an interpreter down by itself
	// (NODE_EXTRA_CA_CERTS alone costs node ~35ms), so the baseline gets
	// the environment the sandbox gives its programs.
	bareEnv := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "TMPDIR=/tmp", "LANG=C.UTF-8"}
	testenv.Require(b, "root", "userns")
	const poolSize = 2
	for _, rt := range []struct{ runtime, feature, bare string }{
		{"node", "node", "/usr/bin/node -e 0"},
		{"python", "python", "/usr/bin/python3 -c 0"},
	} {
		for _, mode := range []string{"cold", "pooled"} {
			b.Run(rt.runtime+"/"+mode, func(b *testing.B) {
				testenv.Require(b, rt.feature)
				cfg := sandbox.Config{}
				if mode == "pooled" {
					cfg.Pool = sandbox.PoolConfig{Size: poolSize}
				}
				r := handlerRunner(b, cfg)
				ec := &sandbox.ExecutionContext{PluginRoot: testPlugin(b, rt.runtime)}
				h := sandbox.File(rt.runtime, "handler", "noop")
				bare := strings.Fields(rt.bare)
				refill := func() {
					if mode == "pooled" {
						waitPool(r, poolSize)
					}
				}
				var boxed, plain, boxedBare []time.Duration
				for b.Loop() {
					t0 := time.Now()
					cmd := exec.Command(bare[0], bare[1:]...)
					cmd.Env = bareEnv // the sandbox's base environment: a fair baseline
					if err := cmd.Run(); err != nil {
						b.Fatal(err)
					}
					plain = append(plain, time.Since(t0))
					refill()
					t0 = time.Now()
					res, err := r.Run(context.Background(), h, nil, ec)
					if err != nil || res.Status != sandbox.StatusOK {
						b.Fatalf("run: %v %+v", err, res)
					}
					boxed = append(boxed, time.Since(t0))
					refill()
					t0 = time.Now()
					res, err = r.Run(context.Background(), sandbox.Command(bare...), nil, nil)
					if err != nil || res.Status != sandbox.StatusOK {
						b.Fatalf("run: %v %+v", err, res)
					}
					boxedBare = append(boxedBare, time.Since(t0))
				}
				p50 := func(ds []time.Duration) float64 {
					slices.Sort(ds)
					return float64(ds[len(ds)/2].Microseconds()) / 1000
				}
				sb, pb, sbb := p50(boxed), p50(plain), p50(boxedBare)
				b.ReportMetric(sb, "p50-handler-ms")
				b.ReportMetric(pb, "p50-bare-ms")
				// The same bare start as a sandboxed command: what isolation
				// alone costs, apart from the bootstrap and the protocol.
				b.ReportMetric(sbb, "p50-sandboxed-bare-ms")
				b.ReportMetric(sb-pb, "p50-overhead-ms")
				// The bootstrap and the protocol alone: the handler run over
				// the same interpreter started bare in the same sandbox.
				b.ReportMetric(sb-sbb, "p50-bootstrap-ms")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// TestProtocolNoLeaks: the protocol socket, its session goroutines and the
// bootstraps leave nothing behind, whatever the outcome.
func TestProtocolNoLeaks(t *testing.T) {
	testenv.Require(t, "root", "userns", "node")
	cfg := sandbox.Config{}
	cfg.Execution.Timeout = sandbox.Duration(2 * time.Second)
	cfg.Execution.Grace = sandbox.Duration(100 * time.Millisecond)
	r := handlerRunner(t, cfg)
	fds := func() map[string]string {
		m := map[string]string{}
		entries, _ := os.ReadDir("/proc/self/fd")
		for _, e := range entries {
			target, _ := os.Readlink("/proc/self/fd/" + e.Name())
			m[e.Name()] = target
		}
		return m
	}
	ec := &sandbox.ExecutionContext{PluginRoot: testPlugin(t, "node")}
	// A first run opens what lives as long as the process (the sealed init).
	if res := runHandler(t, r, sandbox.File("node", "handler", "noop"), nil, ec); !res.OK {
		t.Fatalf("warm-up: %+v", res)
	}
	before := fds()
	cases := []sandbox.Handler{
		sandbox.File("node", "handler", "noop"),
		sandbox.File("node", "handler", "fail"),
		sandbox.File("node", "handler", "nope"),
		sandbox.File("node", "handler", "waitAbort"), // cancelled below
		{Command: []string{"sh", "-c", "echo garbage >&3; sleep 5"}, Protocol: true},
		{Command: []string{"sh", "-c", "sleep 5 & exec 3>&-; echo x"}, Protocol: true},
	}
	for i := 0; i < 2*len(cases); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		res, err := r.Run(ctx, cases[i%len(cases)], nil, ec)
		cancel()
		if err != nil || res.Status == "" {
			t.Fatalf("run %d: %v %+v", i, err, res)
		}
	}
	var leaked []string
	for try := 0; try < 20; try++ {
		leaked = leaked[:0]
		for fd, target := range fds() {
			if before[fd] != target && !strings.HasPrefix(target, "/proc/") {
				leaked = append(leaked, fd+" -> "+target)
			}
		}
		if len(leaked) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(leaked) > 0 {
		t.Errorf("descriptors left open: %v", leaked)
	}
}
