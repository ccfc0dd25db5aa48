package server

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/kb-labs/sandbox"
	"github.com/kb-labs/sandbox/internal/testenv"
)

type obj = map[string]any

func TestRunFilesEnvStdin(t *testing.T) {
	t.Setenv("SBXTEST_FROM_HOST", "host-value")
	t.Setenv("SBXTEST_HIDDEN", "secret")
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	cfg := sandbox.Config{Server: sandbox.ServerConfig{EnvAllowCeiling: []string{"SBXTEST_FROM_*"}}}
	ts := startServer(t, cfg, Options{Token: "s3cret", TracerProvider: tp})

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	var res sandbox.Result
	resp := ts.do(t, "POST", "/v1/runs", obj{
		"handler": obj{"command": []string{"sh", "-c",
			`./bin/greet.sh; echo "allowed=$SBXTEST_FROM_HOST hidden=$SBXTEST_HIDDEN"; stat -c '%a %U' bin/greet.sh data.txt; echo made > out.txt && cat out.txt; cat -`}},
		"files": []obj{
			{"path": "bin/greet.sh", "content": "#!/bin/sh\necho \"$GREETING $(cat name.bin)\"\n", "mode": "0750"},
			{"path": "name.bin", "content": base64.StdEncoding.EncodeToString([]byte("world")), "encoding": "base64"},
			{"path": "data.txt", "content": "x", "mode": "0600"},
		},
		"stdin":       "from stdin\n",
		"permissions": obj{"env": obj{"allow": []string{"SBXTEST_FROM_HOST"}, "set": obj{"GREETING": "hello"}}},
		"context":     obj{"requestId": "req-42", "pluginId": "p"},
	}, &res, "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	want := "hello world\nallowed=host-value hidden=\n750 sandbox\n600 sandbox\nmade\nfrom stdin\n"
	if res.Status != sandbox.StatusOK || string(res.Stdout) != want {
		t.Fatalf("status %s stdout %q stderr %q error %+v; want stdout %q", res.Status, res.Stdout, res.Stderr, res.Error, want)
	}
	if res.RequestID != "req-42" {
		t.Errorf("requestId %q, want the context's req-42", res.RequestID)
	}
	if len(res.Traces) != 0 {
		t.Errorf("traces returned although monitoring.collectTraces is off: %d", len(res.Traces))
	}
	if got := leftovers(t, ts.runDir); len(got) != 0 {
		t.Errorf("run directories left behind: %v", got)
	}
	// The incoming trace is continued: request, run and engine phase spans
	// all carry its id.
	names := map[string]bool{}
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID().String() != traceID {
			t.Errorf("span %s in trace %s, want %s", s.Name(), s.SpanContext().TraceID(), traceID)
		}
		names[s.Name()] = true
	}
	for _, n := range []string{"POST /v1/runs", "body", "queue", "run", "sandbox.setup", "sandbox.execute"} {
		if !names[n] {
			t.Errorf("no span %q among %v", n, names)
		}
	}
	if !strings.Contains(ts.logs.String(), `"requestId":"`) {
		t.Errorf("access log lacks request ids:\n%s", ts.logs.String())
	}
}

func TestRunTimeoutAndExit(t *testing.T) {
	ts := startServer(t, sandbox.Config{}, Options{})
	start := time.Now()
	res := ts.run(t, obj{"handler": obj{"command": []string{"sleep", "10"}}, "limits": obj{"timeoutMs": 300, "graceMs": 100}})
	if res.Status != sandbox.StatusTimeout || res.Error == nil || res.Error.Code != sandbox.CodeTimeout {
		t.Fatalf("status %s error %+v, want timeout/TIMEOUT", res.Status, res.Error)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a 300ms timeout took %v to answer", d)
	}
	res = ts.run(t, obj{"handler": obj{"command": []string{"sh", "-c", "exit 3"}}})
	if res.Status != sandbox.StatusNonzeroExit || res.ExitCode != 3 {
		t.Errorf("status %s exit %d, want nonzero_exit 3 (answered 200 like every run)", res.Status, res.ExitCode)
	}
	res = ts.run(t, obj{"handler": obj{"command": []string{"no-such-program"}}})
	if res.Status != sandbox.StatusSetupError {
		t.Errorf("status %s, want setup_error for a missing program", res.Status)
	}
	if res.Error != nil && strings.Contains(res.Error.Message, ts.runDir) {
		t.Errorf("the result leaks the host run directory: %q", res.Error.Message)
	}
}

func TestErrorPaths(t *testing.T) {
	cfg := sandbox.Config{Server: sandbox.ServerConfig{
		MaxBodyBytes:    4 * sandbox.KiB,
		EnvAllowCeiling: []string{"LANG", "MYAPP_*"},
		Ceilings:        sandbox.Execution{Memory: 256 * sandbox.MiB},
		Defaults:        sandbox.Execution{Memory: 128 * sandbox.MiB},
	}}
	ts := startServer(t, cfg, Options{Token: "tok"})
	cmd := obj{"command": []string{"true"}}
	tests := []struct {
		name     string
		method   string
		path     string
		body     any
		hdr      []string
		status   int
		code     string
		mentions string
	}{
		{"malformed JSON", "POST", "/v1/runs", `{"handler":`, nil, 400, CodeBadRequest, ""},
		{"not an object", "POST", "/v1/runs", `[1,2]`, nil, 400, CodeBadRequest, ""},
		{"two objects", "POST", "/v1/runs", `{"handler":{"command":["true"]}} {}`, nil, 400, CodeBadRequest, "exactly one"},
		{"empty body", "POST", "/v1/runs", ``, nil, 400, CodeBadRequest, "empty"},
		{"unknown field", "POST", "/v1/runs", obj{"handler": cmd, "extra": 1}, nil, 400, CodeBadRequest, "extra"},
		{"unknown nested field", "POST", "/v1/runs", obj{"handler": obj{"command": []string{"true"}, "shell": true}}, nil, 400, CodeBadRequest, "shell"},
		{"wrong type", "POST", "/v1/runs", obj{"handler": cmd, "limits": obj{"timeoutMs": "1s"}}, nil, 400, CodeBadRequest, "timeoutMs"},
		{"no handler", "POST", "/v1/runs", obj{}, nil, 400, CodeBadRequest, "handler"},
		{"command and runtime", "POST", "/v1/runs", obj{"handler": obj{"command": []string{"x"}, "runtime": "node", "file": "a.js"}}, nil, 400, CodeBadRequest, "either"},
		{"bad runtime", "POST", "/v1/runs", obj{"handler": obj{"runtime": "ruby", "file": "a.rb"}}, nil, 400, CodeBadRequest, "runtime"},
		{"dot-dot path", "POST", "/v1/runs", obj{"handler": cmd, "files": []obj{{"path": "a/../../etc/x", "content": ""}}}, nil, 400, CodeBadRequest, ".."},
		{"absolute path", "POST", "/v1/runs", obj{"handler": cmd, "files": []obj{{"path": "/etc/passwd", "content": ""}}}, nil, 400, CodeBadRequest, "absolute"},
		{"bad mode", "POST", "/v1/runs", obj{"handler": cmd, "files": []obj{{"path": "a", "content": "", "mode": "4755"}}}, nil, 400, CodeBadRequest, "mode"},
		{"bad base64", "POST", "/v1/runs", obj{"handler": cmd, "files": []obj{{"path": "a", "content": "!!", "encoding": "base64"}}}, nil, 400, CodeBadRequest, "base64"},
		{"stdin twice", "POST", "/v1/runs", obj{"handler": cmd, "stdin": "a", "stdinBase64": "YQ=="}, nil, 400, CodeBadRequest, "at most one"},
		{"context workdir", "POST", "/v1/runs", obj{"handler": cmd, "context": obj{"workdir": "/etc"}}, nil, 400, CodeBadRequest, "context.workdir"},
		{"context pluginRoot", "POST", "/v1/runs", obj{"handler": cmd, "context": obj{"pluginRoot": "/"}}, nil, 400, CodeBadRequest, "context.pluginRoot"},
		{"context version", "POST", "/v1/runs", obj{"handler": cmd, "context": obj{"version": "2.0.0"}}, nil, 400, CodeBadRequest, "version"},
		{"timeout above ceiling", "POST", "/v1/runs", obj{"handler": cmd, "limits": obj{"timeoutMs": 60000}}, nil, 422, CodeLimitAboveCeiling, "timeoutMs"},
		{"memory above ceiling", "POST", "/v1/runs", obj{"handler": cmd, "limits": obj{"memoryBytes": 512 << 20}}, nil, 422, CodeLimitAboveCeiling, "memoryBytes"},
		{"pids above default", "POST", "/v1/runs", obj{"handler": cmd, "limits": obj{"pids": 100000}}, nil, 422, CodeLimitAboveCeiling, "pids"},
		{"negative limit", "POST", "/v1/runs", obj{"handler": cmd, "limits": obj{"graceMs": -5}}, nil, 400, CodeBadRequest, "graceMs"},
		{"memory below engine minimum", "POST", "/v1/runs", obj{"handler": cmd, "limits": obj{"memoryBytes": 1024}}, nil, 400, CodeBadRequest, "memoryBytes"},
		{"env allow star", "POST", "/v1/runs", obj{"handler": cmd, "permissions": obj{"env": obj{"allow": []string{"*"}}}}, nil, 422, CodeLimitAboveCeiling, "env.allow"},
		{"env allow outside ceiling", "POST", "/v1/runs", obj{"handler": cmd, "permissions": obj{"env": obj{"allow": []string{"HOME"}}}}, nil, 422, CodeLimitAboveCeiling, "envAllowCeiling"},
		{"env allow wider glob", "POST", "/v1/runs", obj{"handler": cmd, "permissions": obj{"env": obj{"allow": []string{"MY*"}}}}, nil, 422, CodeLimitAboveCeiling, "envAllowCeiling"},
		{"env set bad name", "POST", "/v1/runs", obj{"handler": cmd, "permissions": obj{"env": obj{"set": obj{"1X": "y"}}}}, nil, 400, CodeBadRequest, "env.set"},
		{"network host", "POST", "/v1/runs", obj{"handler": cmd, "permissions": obj{"network": "host"}}, nil, 422, CodeLimitAboveCeiling, "network"},
		{"network bogus", "POST", "/v1/runs", obj{"handler": cmd, "permissions": obj{"network": "bridge"}}, nil, 400, CodeBadRequest, "network"},
		{"body too large", "POST", "/v1/runs", obj{"handler": cmd, "stdin": strings.Repeat("x", 8<<10)}, nil, 413, CodeBodyTooLarge, ""},
		{"no token", "POST", "/v1/runs", obj{"handler": cmd}, []string{"Authorization", ""}, 401, CodeUnauthorized, "token"},
		{"wrong token", "GET", "/v1/capabilities", nil, []string{"Authorization", "Bearer tok2"}, 401, CodeUnauthorized, "token"},
		{"basic auth", "GET", "/metrics", nil, []string{"Authorization", "Basic dG9rOg=="}, 401, CodeUnauthorized, "token"},
		{"unknown path", "GET", "/v2/runs", nil, nil, 404, CodeNotFound, ""},
		{"wrong method", "GET", "/v1/runs", nil, nil, 405, CodeBadRequest, "Allow"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var eb errorBody
			resp := ts.do(t, tc.method, tc.path, tc.body, &eb, tc.hdr...)
			msg := eb.Error.Message
			if resp.StatusCode != tc.status || eb.Error.Code != tc.code {
				t.Fatalf("%d %s (%q), want %d %s", resp.StatusCode, eb.Error.Code, msg, tc.status, tc.code)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if !strings.Contains(msg, tc.mentions) {
				t.Errorf("message %q does not name %q", msg, tc.mentions)
			}
			for _, leak := range []string{"json:", "sandbox:", ts.runDir, "runtime error", "/tmp"} {
				if strings.Contains(msg, leak) {
					t.Errorf("message %q leaks %q", msg, leak)
				}
			}
			if tc.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if tc.status == 405 && resp.Header.Get("Allow") != "POST" {
				t.Errorf("Allow %q, want POST", resp.Header.Get("Allow"))
			}
		})
	}
	if got := leftovers(t, ts.runDir); len(got) != 0 {
		t.Errorf("run directories left behind: %v", got)
	}
	// Public probes need no token.
	for _, p := range []string{"/healthz", "/readyz"} {
		if resp := ts.do(t, "GET", p, nil, nil, "Authorization", ""); resp.StatusCode != 200 {
			t.Errorf("GET %s without token: %d", p, resp.StatusCode)
		}
	}
}

func TestLimitsLoweredAndEnvWithinCeiling(t *testing.T) {
	t.Setenv("MYAPP_COLOR", "blue")
	cfg := sandbox.Config{Server: sandbox.ServerConfig{EnvAllowCeiling: []string{"MYAPP_*"},
		Ceilings: sandbox.Execution{Pids: 256}}}
	ts := startServer(t, cfg, Options{})
	res := ts.run(t, obj{
		"handler":     obj{"command": []string{"sh", "-c", "echo $MYAPP_COLOR; ulimit -f; exec head -c 5000 /dev/zero > big"}},
		"limits":      obj{"maxFileSizeBytes": 1024, "pids": 200, "memoryBytes": 64 << 20},
		"permissions": obj{"env": obj{"allow": []string{"MYAPP_*"}}, "network": "loopback"},
	})
	// ulimit -f counts 512-byte blocks: 1024 bytes is 2.
	if string(res.Stdout) != "blue\n2\n" {
		t.Errorf("stdout %q, want the allowed host variable and a file size limit of 2 blocks", res.Stdout)
	}
	if res.Status != sandbox.StatusFileSizeLimit {
		t.Errorf("status %s, want file_size_limit from the lowered maxFileSizeBytes (stdout %q stderr %q)", res.Status, res.Stdout, res.Stderr)
	}
	if res.Isolation.Network != sandbox.NetworkLoopback {
		t.Errorf("network %q, want loopback", res.Isolation.Network)
	}
}

func TestClientGoneCancelsRun(t *testing.T) {
	ts := startServer(t, sandbox.Config{}, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.url+"/v1/runs",
		strings.NewReader(`{"handler":{"command":["sleep","30"]}}`))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	if !waitFor(5*time.Second, func() bool { return ts.gate.inFlight() == 1 && children(t) > 0 }) {
		t.Fatal("the run never started")
	}
	cancel()
	<-done
	start := time.Now()
	if !waitFor(10*time.Second, func() bool { return ts.gate.inFlight() == 0 }) {
		t.Fatal("the run went on after its client left")
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("cancellation took %v", d)
	}
	if n := children(t); n != 0 {
		t.Errorf("%d sandbox processes left", n)
	}
	if got := leftovers(t, ts.runDir); len(got) != 0 {
		t.Errorf("run directories left behind: %v", got)
	}
	body := ts.do(t, "GET", "/metrics", nil, nil)
	b := make([]byte, 1<<20)
	n, _ := body.Body.Read(b)
	if !strings.Contains(string(b[:n]), `sandbox_runs_total{status="cancelled"} 1`) {
		t.Errorf("metrics do not count the cancelled run")
	}
}

func TestRuntimeHandlerFromFiles(t *testing.T) {
	for _, tc := range []struct {
		runtime, file, code string
	}{
		{"node", "lib/handler.js", "exports.run = async (input) => ({sum: input.a + input.b});\n"},
		{"python", "lib/handler.py", "def run(input, ctx):\n    return {'sum': input['a'] + input['b']}\n"},
	} {
		t.Run(tc.runtime, func(t *testing.T) {
			testenv.Require(t, "root", "userns", tc.runtime)
			ts := startServer(t, sandbox.Config{}, Options{})
			res := ts.run(t, obj{
				"handler": obj{"runtime": tc.runtime, "file": tc.file},
				"files":   []obj{{"path": tc.file, "content": tc.code}},
				"input":   obj{"a": 2, "b": 3},
			})
			if res.Status != sandbox.StatusOK || !strings.Contains(string(res.Data), `"sum":5`) {
				t.Fatalf("status %s data %s error %+v stderr %q", res.Status, res.Data, res.Error, res.Stderr)
			}
			if got := leftovers(t, ts.runDir); len(got) != 0 {
				t.Errorf("run directories left behind: %v", got)
			}
		})
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	testenv.Require(t, "root", "userns")
	dir := testRunDir(t)
	t.Setenv("TMPDIR", dir)
	tests := []struct {
		name string
		cfg  sandbox.Config
		opts Options
		want string
	}{
		{"default above ceiling", sandbox.Config{Server: sandbox.ServerConfig{Defaults: sandbox.Execution{Memory: sandbox.GiB}, Ceilings: sandbox.Execution{Memory: 256 * sandbox.MiB}}}, Options{}, "memoryBytes"},
		{"unlimited default under a ceiling", sandbox.Config{Server: sandbox.ServerConfig{Ceilings: sandbox.Execution{CPUTime: sandbox.Duration(time.Second)}}}, Options{}, "cpuTimeMs"},
		{"bad env ceiling", sandbox.Config{Server: sandbox.ServerConfig{EnvAllowCeiling: []string{"*"}}}, Options{}, "envAllowCeiling"},
		{"inprocess", sandbox.Config{Mode: sandbox.InProcess}, Options{}, "subprocess"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error naming %q", err, tc.want)
			}
		})
	}
	if n, _ := os.ReadDir(dir); len(n) != 0 {
		t.Errorf("New left %d entries in TMPDIR", len(n))
	}
}

// TestBodyDeadline: a body that does not arrive in time is refused (408),
// and the body deadline never cancels a run that lasts longer than it.
func TestBodyDeadline(t *testing.T) {
	ts := startServer(t, sandbox.Config{}, Options{bodyTimeout: 300 * time.Millisecond})
	res := ts.run(t, obj{"handler": obj{"command": []string{"sh", "-c", "sleep 1; echo survived"}}})
	if res.Status != sandbox.StatusOK || string(res.Stdout) != "survived\n" {
		t.Errorf("a run longer than the body deadline: %s %q", res.Status, res.Stdout)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"handler\":")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	var eb errorBody
	json.NewDecoder(resp.Body).Decode(&eb)
	if resp.StatusCode != http.StatusRequestTimeout || eb.Error.Code != CodeBadRequest {
		t.Errorf("slow body: %d %+v, want 408 BAD_REQUEST", resp.StatusCode, eb)
	}
}
