package protocol

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kb-labs/sandbox/internal/protocol/bootstrap"
	"github.com/kb-labs/sandbox/internal/testenv"
)

const nodeHandler = `
export async function run(input, ctx) {
  ctx.log('info', 'adding', { n: input.a.length });
  ctx.progress(50, 'half');
  await new Promise((r) => setTimeout(r, 1));
  ctx.progress(100);
  return { sum: input.a.reduce((x, y) => x + y, 0), requestId: ctx.requestId };
}
export async function fail() {
  const e = new Error('boom');
  e.code = 'E_X';
  throw e;
}
export function plain() { throw new Error('plain'); }
export function three() { return 3; }
export function zero() { return 0; }
export function chatty() {
  console.log('hello %s', 'world');
  console.warn('careful');
  console.error('bad', { a: 1 });
  console.debug('dbg');
  return 'done';
}
export async function waitAbort(input, ctx) {
  const aborted = new Promise((r) => ctx.signal.addEventListener('abort', r));
  ctx.log('info', 'waiting');
  await aborted;
  return { aborted: ctx.signal.aborted };
}
export function reject() {
  Promise.reject(Object.assign(new Error('nobody catches me'), { code: 'E_LOST' }));
  return new Promise(() => {});
}
export function cmd(ctx, argv, flags) {
  return { argv, flags, cwd: ctx.adapterContext.cwd, hasSignal: ctx.signal instanceof AbortSignal };
}
export const notAFunction = 1;
export function bench(input) { return { n: input.a.length }; }
`

const pythonHandler = `
import threading

async def run(input, ctx):
    ctx.log("info", "adding", {"n": len(input["a"])})
    ctx.progress(50, "half")
    ctx.progress(100)
    return {"sum": sum(input["a"]), "requestId": ctx.requestId}

class CodedError(Exception):
    code = "E_X"

def fail(input, ctx):
    raise CodedError("boom")

def plain(input, ctx):
    raise ValueError("plain")

def three(input, ctx):
    return 3

def zero(input, ctx):
    return 0

def chatty(input, ctx):
    import sys
    print("hello", "world")
    print("careful", file=sys.stderr)
    return "done"

def waitAbort(input, ctx):
    ctx.log("info", "waiting")
    ctx.cancelled.wait(10)
    return {"aborted": ctx.cancelled.is_set()}

def oom(input, ctx):
    return bytearray(1 << 62)

def cmd(ctx, argv, flags):
    return {"argv": argv, "flags": flags, "cwd": ctx.adapterContext["cwd"], "hasSignal": isinstance(ctx.cancelled, threading.Event)}

notAFunction = 1

def bench(input, ctx):
    return {"n": len(input["a"])}
`

// plugin writes the handlers and the bootstraps to a temp dir.
func plugin(t testing.TB) (root, boot string) {
	t.Helper()
	root = t.TempDir()
	boot = t.TempDir()
	files := map[string]string{
		"package.json":    `{"type":"module"}`,
		"dist/handler.js": nodeHandler, // found first for "handler"
		"handler.py":      pythonHandler,
		"empty.mjs":       "",
		"empty.py":        "",
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(boot, bootstrap.NodeFile), bootstrap.Node(), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(boot, bootstrap.PythonFile), bootstrap.Python(), 0o444); err != nil {
		t.Fatal(err)
	}
	return root, boot
}

func interpreter(t testing.TB, runtime, boot string) []string {
	t.Helper()
	switch runtime {
	case "node":
		testenv.Require(t, "node")
		return []string{"node", filepath.Join(boot, bootstrap.NodeFile)}
	default:
		testenv.Require(t, "python")
		return []string{"python3", filepath.Join(boot, bootstrap.PythonFile)}
	}
}

func TestBootstraps(t *testing.T) {
	root, boot := plugin(t)
	cliCtx := `{"requestId":"r1","adapterMeta":{"type":"cli","signature":"command"},"adapterContext":{"type":"cli","cwd":"/workspace","argv":["a","b"],"flags":{"v":true}}}`
	tests := []struct {
		name     string
		export   string
		file     string
		input    string
		context  string
		verdict  Verdict
		code     string
		data     string
		logs     []logLine
		progress []float64
		msgPart  string
		stack    string
	}{
		{name: "sum", export: "run", input: `{"a":[1,2,3]}`, context: `{"requestId":"r1"}`, verdict: VerdictOK,
			data: `{"requestId":"r1","sum":6}`, logs: []logLine{{"info", "adding"}}, progress: []float64{50, 100}},
		{name: "thrown code", export: "fail", verdict: VerdictHandlerError, code: "E_X", msgPart: "boom", stack: "fail"},
		{name: "thrown plain", export: "plain", verdict: VerdictHandlerError, code: CodeHandlerError, msgPart: "plain", stack: "plain"},
		{name: "exit code", export: "three", verdict: VerdictHandlerError, code: CodeHandlerExitCode, msgPart: "exit code 3"},
		{name: "zero", export: "zero", verdict: VerdictOK},
		{name: "missing export", export: "nope", verdict: VerdictSetupError, code: CodeHandlerNotFound},
		{name: "not a function", export: "notAFunction", verdict: VerdictSetupError, code: CodeHandlerNotFound},
		{name: "missing file", export: "run", file: "absent", verdict: VerdictSetupError, code: CodeHandlerNotFound},
		{name: "outside root", export: "run", file: "../../../../etc/passwd", verdict: VerdictSetupError, code: CodeHandlerNotFound},
		{name: "console", export: "chatty", verdict: VerdictOK, data: `"done"`},
		{name: "command signature", export: "cmd", context: cliCtx, verdict: VerdictOK,
			data: `{"argv":["a","b"],"cwd":"/workspace","flags":{"v":true},"hasSignal":true}`},
	}
	for _, runtime := range []string{"node", "python"} {
		t.Run(runtime, func(t *testing.T) {
			argv := interpreter(t, runtime, boot)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					r := startRun(t, Options{RequireReady: true}, []string{"SANDBOX_PLUGIN_ROOT=" + root}, argv...)
					file := tt.file
					if file == "" {
						file = "handler"
					}
					msg := RunMessage{Handler: HandlerRef{File: file, Export: tt.export}}
					if tt.input != "" {
						msg.Input = json.RawMessage(tt.input)
					}
					if tt.context != "" {
						msg.Context = json.RawMessage(tt.context)
					}
					if err := r.start(msg); err != nil {
						t.Fatalf("Start: %v; stderr:\n%s", err, r.stderr.String())
					}
					o := r.wait()
					code := ""
					if o.Err != nil {
						code = o.Err.Code
					}
					if o.Verdict != tt.verdict || code != tt.code {
						t.Fatalf("outcome %s/%s (%+v), want %s/%s; stderr:\n%s", o.Verdict, code, o.Err, tt.verdict, tt.code, r.stderr.String())
					}
					if tt.data != "" || o.Verdict == VerdictOK {
						if got := compact(t, o.Data); got != compact(t, json.RawMessage(tt.data)) {
							t.Fatalf("data %s, want %s", got, tt.data)
						}
					}
					if tt.msgPart != "" && !strings.Contains(o.Err.Message, tt.msgPart) {
						t.Fatalf("message %q lacks %q", o.Err.Message, tt.msgPart)
					}
					if tt.stack != "" && !strings.Contains(o.Err.Stack, tt.stack) {
						t.Fatalf("stack %q lacks %q", o.Err.Stack, tt.stack)
					}
					if tt.logs != nil && !slices.Equal(r.seenLogs(), tt.logs) {
						t.Fatalf("logs %v, want %v", r.seenLogs(), tt.logs)
					}
					if tt.progress != nil && !slices.Equal(r.seenPercent(), tt.progress) {
						t.Fatalf("progress %v, want %v", r.seenPercent(), tt.progress)
					}
					if runtime == "node" && tt.name == "console" {
						want := []logLine{{"info", "hello world"}, {"warn", "careful"}, {"error", "bad { a: 1 }"}, {"debug", "dbg"}}
						if !slices.Equal(r.seenLogs(), want) {
							t.Fatalf("console logs %v, want %v", r.seenLogs(), want)
						}
					}
					if runtime == "python" && tt.name == "console" {
						want := []logLine{{"info", "hello world"}, {"error", "careful"}}
						if !slices.Equal(r.seenLogs(), want) {
							t.Fatalf("print logs %v, want %v", r.seenLogs(), want)
						}
					}
					if tt.name == "console" && r.stderr.Len() != 0 {
						t.Fatalf("console output reached stderr: %q", r.stderr.String())
					}
				})
			}
		})
	}
}

func compact(t testing.TB, raw json.RawMessage) string {
	if len(raw) == 0 {
		return "null"
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("bad JSON %s: %v", raw, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// TestBootstrapCancel: a cancel message, or the SIGTERM the sandbox sends
// with it, fires the handler's abort signal (node: ctx.signal; python:
// ctx.cancelled) and the handler's answer stands.
func TestBootstrapCancel(t *testing.T) {
	root, boot := plugin(t)
	for _, c := range []struct{ runtime, how string }{
		{"node", "message"}, {"node", "sigterm"}, {"python", "message"}, {"python", "sigterm"},
	} {
		t.Run(c.runtime+"/"+c.how, func(t *testing.T) {
			argv := interpreter(t, c.runtime, boot)
			r := startRun(t, Options{RequireReady: true}, []string{"SANDBOX_PLUGIN_ROOT=" + root}, argv...)
			if err := r.start(RunMessage{Handler: HandlerRef{File: "handler", Export: "waitAbort"}}); err != nil {
				t.Fatal(err)
			}
			if err := r.waitLog("waiting"); err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			if c.how == "sigterm" {
				_ = r.cmd.Process.Signal(syscall.SIGTERM)
			} else {
				r.sess.Cancel()
			}
			o := r.wait()
			if o.Verdict != VerdictOK || compact(t, o.Data) != `{"aborted":true}` {
				t.Fatalf("outcome %s %s (%+v); stderr:\n%s", o.Verdict, o.Data, o.Err, r.stderr.String())
			}
			if d := time.Since(begin); d > 5*time.Second {
				t.Fatalf("cancel took %v to reach the handler", d)
			}
		})
	}
}

// TestBootstrapCrash: an unhandled rejection is HANDLER_CRASHED, and the
// bootstrap exits 1 after saying so.
func TestBootstrapCrash(t *testing.T) {
	root, boot := plugin(t)
	r := startRun(t, Options{RequireReady: true}, []string{"SANDBOX_PLUGIN_ROOT=" + root}, interpreter(t, "node", boot)...)
	if err := r.start(RunMessage{Handler: HandlerRef{File: "handler", Export: "reject"}}); err != nil {
		t.Fatal(err)
	}
	o := r.wait()
	if o.Verdict != VerdictHandlerError || o.Err.Code != CodeHandlerCrashed || !strings.Contains(o.Err.Message, "nobody catches me") {
		t.Fatalf("outcome %s %+v", o.Verdict, o.Err)
	}
	if !o.HasResult || r.cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("want a result and exit 1, got result=%v exit %d", o.HasResult, r.cmd.ProcessState.ExitCode())
	}
}

// TestPythonMemoryError: MemoryError is reported as MEMORY_LIMIT, which
// the outcome turns into memory_limit.
func TestPythonMemoryError(t *testing.T) {
	root, boot := plugin(t)
	r := startRun(t, Options{RequireReady: true}, []string{"SANDBOX_PLUGIN_ROOT=" + root}, interpreter(t, "python", boot)...)
	if err := r.start(RunMessage{Handler: HandlerRef{File: "handler", Export: "oom"}}); err != nil {
		t.Fatal(err)
	}
	o := r.wait()
	if o.Verdict != VerdictMemoryLimit || o.Err.Code != CodeMemoryLimit {
		t.Fatalf("outcome %s %+v; stderr:\n%s", o.Verdict, o.Err, r.stderr.String())
	}
}

// TestIsNodeHeapOOM runs node into its own heap limit and checks the
// detector on the real stderr and exit status, and on near misses.
func TestIsNodeHeapOOM(t *testing.T) {
	testenv.Require(t, "node")
	cmd := exec.Command("node", "--max-old-space-size=16", "-e", "const a = []; for (;;) a.push(new Array(1e5).fill(1));")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	_ = cmd.Run()
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	exit := ExitInfo{Code: ws.ExitStatus()}
	if ws.Signaled() {
		exit.Code, exit.Signal = -1, ws.Signal()
	}
	if !IsNodeHeapOOM([]byte(stderr.String()), exit) {
		t.Fatalf("real heap OOM not detected: exit %+v, stderr tail %q", exit, tail(stderr.String(), 300))
	}
	msg := []byte("FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory")
	for _, c := range []struct {
		stderr []byte
		exit   ExitInfo
		want   bool
	}{
		{msg, ExitInfo{Code: 134}, true},
		{msg, ExitInfo{Code: 1}, false},
		{msg, ExitInfo{}, false},
		{[]byte("Aborted"), ExitInfo{Code: -1, Signal: syscall.SIGABRT}, false},
	} {
		if got := IsNodeHeapOOM(c.stderr, c.exit); got != c.want {
			t.Errorf("IsNodeHeapOOM(%q, %+v) = %v", c.stderr, c.exit, got)
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
