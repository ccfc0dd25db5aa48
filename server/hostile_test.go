package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kb-labs/sandbox"
	"github.com/kb-labs/sandbox/internal/testenv"
)

// The hostile HTTP cases: a real server on loopback, attacked the way a
// client of the service can. Each checks an effect on the host (a host
// directory not read or written, a request answered in time, no byte on the
// host's disk), not only the answer.

// TestHostileKeySpelling: a key spelled in another case, a key given twice,
// or a host-path key must be refused with 400 naming it, and a run must not
// reach the host directory a context key names.
func TestHostileKeySpelling(t *testing.T) {
	ts := startServer(t, sandbox.Config{}, Options{})
	// Reachable by the sandbox's host ids (t.TempDir's parent is 0700).
	host, err := os.MkdirTemp("/tmp", "sbx-hostile-host-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(host)
	os.Chmod(host, 0o777)
	if err := os.WriteFile(filepath.Join(host, "host-secret.txt"), []byte("host-secret-value\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	touch := `cat /out/host-secret.txt /workspace/host-secret.txt /plugin/host-secret.txt 2>/dev/null; echo pwned > /out/written; echo pwned > written`
	cmd := `{"command":["sh","-c",` + strconv.Quote(touch) + `]}`
	hostJSON := strconv.Quote(host)
	tests := []struct{ name, body, mentions string }{
		{"context Outdir", `{"handler":` + cmd + `,"context":{"Outdir":` + hostJSON + `}}`, "context.Outdir"},
		{"context OUTDIR", `{"handler":` + cmd + `,"context":{"OUTDIR":` + hostJSON + `}}`, "context.OUTDIR"},
		{"context Workdir", `{"handler":` + cmd + `,"context":{"Workdir":` + hostJSON + `}}`, "context.Workdir"},
		{"context pluginroot", `{"handler":` + cmd + `,"context":{"pluginroot":` + hostJSON + `}}`, "context.pluginroot"},
		{"context outdir", `{"handler":` + cmd + `,"context":{"outdir":` + hostJSON + `}}`, "not accepted over HTTP"},
		{"context escaped key", `{"handler":` + cmd + `,"context":{"\u004futdir":` + hostJSON + `}}`, "context.Outdir"},
		{"top-level Handler", `{"Handler":` + cmd + `}`, "Handler"},
		{"handler Command", `{"handler":{"Command":["true"]}}`, "handler.Command"},
		{"limits TimeoutMS", `{"handler":` + cmd + `,"limits":{"TimeoutMS":100}}`, "limits.TimeoutMS"},
		{"permissions Network", `{"handler":` + cmd + `,"permissions":{"Network":"loopback"}}`, "permissions.Network"},
		{"permissions env Allow", `{"handler":` + cmd + `,"permissions":{"env":{"Allow":["HOME"]}}}`, "permissions.env.Allow"},
		{"files Path", `{"handler":` + cmd + `,"files":[{"path":"a","content":"x"},{"Path":"b","content":"y"}]}`, "files[1].Path"},
		{"context user ID", `{"handler":` + cmd + `,"context":{"user":{"ID":"x"}}}`, "context.user.ID"},
		{"duplicate handler", `{"handler":{"command":["true"]},"handler":` + cmd + `}`, "handler"},
		{"duplicate context key", `{"handler":` + cmd + `,"context":{"requestId":"a","requestId":"b"}}`, "context.requestId"},
		{"duplicate input key", `{"handler":` + cmd + `,"input":{"a":1,"a":2}}`, "input.a"},
		{"duplicate env.set key", `{"handler":` + cmd + `,"permissions":{"env":{"set":{"X":"1","X":"2"}}}}`, "permissions.env.set.X"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var eb errorBody
			resp := ts.do(t, "POST", "/v1/runs", tc.body, &eb)
			if resp.StatusCode != 400 || eb.Error.Code != CodeBadRequest || !strings.Contains(eb.Error.Message, tc.mentions) {
				t.Errorf("%d %s %q, want 400 BAD_REQUEST naming %q", resp.StatusCode, eb.Error.Code, eb.Error.Message, tc.mentions)
			}
			if _, err := os.Lstat(filepath.Join(host, "written")); err == nil {
				os.Remove(filepath.Join(host, "written"))
				t.Errorf("HOST EFFECT: the run wrote into the host directory %s", host)
			}
		})
	}
}

// TestHostileSlowBodies: clients that send headers and then their body a
// byte at a time must not hold the run slots: with one slot, a real
// request is answered at once.
func TestHostileSlowBodies(t *testing.T) {
	cfg := sandbox.Config{Server: sandbox.ServerConfig{MaxConcurrency: 1}}
	ts := startServer(t, cfg, Options{})
	addr := strings.TrimPrefix(ts.url, "http://")
	for i := 0; i < 3; i++ {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close() // before the server's shutdown: ends the slow handlers
		fmt.Fprintf(conn, "POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
	}
	// A server that admits before reading gives the slow bodies the slot
	// and the queue: wait (bounded) for that to show, so the real request
	// comes last either way.
	waitFor(2*time.Second, func() bool { return ts.gate.inFlight()+int(ts.gate.waiting()) >= 3 })

	client := &http.Client{Timeout: 8 * time.Second}
	start := time.Now()
	resp, err := client.Post(ts.url+"/v1/runs", "application/json", strings.NewReader(`{"handler":{"command":["echo","served"]}}`))
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("the real request was not answered (after %v): %v", elapsed.Round(time.Millisecond), err)
	}
	defer resp.Body.Close()
	var res sandbox.Result
	json.NewDecoder(resp.Body).Decode(&res)
	if resp.StatusCode != 200 || string(res.Stdout) != "served\n" {
		t.Fatalf("%d %s %q, want 200 and the run's output", resp.StatusCode, res.Status, res.Stdout)
	}
	if elapsed > 2*time.Second {
		t.Errorf("the real request took %v behind three slow bodies, want well under 2s", elapsed.Round(time.Millisecond))
	}
}

// TestHostileWorkspaceOnHostDisk: what a run writes to /workspace must stay
// in the sandbox's own bounded tmpfs: no host directory appears (under
// TMPDIR or the run directory) while it runs, and the writes stop at
// permissions.filesystem.workspaceSize.
func TestHostileWorkspaceOnHostDisk(t *testing.T) {
	tmp, err := os.MkdirTemp("", "sbx-hostile-tmpdir-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	os.Chmod(tmp, 0o711)
	t.Setenv("TMPDIR", tmp)
	cfg := sandbox.Config{
		Execution:   sandbox.Execution{MaxFileSize: sandbox.GiB, Timeout: sandbox.Duration(60 * time.Second)},
		Permissions: sandbox.Permissions{Filesystem: sandbox.Filesystem{WorkspaceSize: 32 * sandbox.MiB}},
	}
	ts := startServer(t, cfg, Options{})
	before := tree(tmp)

	type answer struct {
		res  sandbox.Result
		code int
	}
	body, _ := json.Marshal(obj{
		"handler": obj{"command": []string{"sh", "-c",
			`i=0; while [ $i -lt 50 ]; do head -c 8000000 /dev/zero > f$i || break; i=$((i+1)); done; echo "total=$(cat f* | wc -c)"`}},
		"files": []obj{{"path": "seed.txt", "content": "uploaded"}},
	})
	done := make(chan answer, 1)
	go func() {
		var a answer
		resp, err := http.Post(ts.url+"/v1/runs", "application/json", bytes.NewReader(body))
		if err == nil {
			a.code = resp.StatusCode
			json.NewDecoder(resp.Body).Decode(&a.res)
			resp.Body.Close()
		}
		done <- a
	}()
	var appeared []string
	var a answer
watch:
	for {
		select {
		case a = <-done:
			break watch
		case <-time.After(2 * time.Millisecond):
			for p := range tree(tmp) {
				if !before[p] {
					appeared = append(appeared, p)
				}
			}
			if len(appeared) > 0 {
				a = <-done
				break watch
			}
		}
	}
	if len(appeared) > 0 {
		t.Errorf("HOST EFFECT: the run created host paths under TMPDIR/the run directory: %v", appeared)
	}
	if a.code != 200 {
		t.Fatalf("status %d", a.code)
	}
	total := -1
	if v, ok := strings.CutPrefix(strings.TrimSpace(string(a.res.Stdout)), "total="); ok {
		total, _ = strconv.Atoi(v)
	}
	if total < 0 || total > 32<<20 {
		t.Errorf("HOST EFFECT: the run wrote %d bytes to its workspace, past the 32 MiB workspaceSize (stdout %q stderr %q)", total, a.res.Stdout, a.res.Stderr)
	}
	if !strings.Contains(string(a.res.Stderr), "No space left") {
		t.Errorf("stderr %q, want the workspace full (ENOSPC)", a.res.Stderr)
	}
}

// tree lists every path under dir.
func tree(dir string) map[string]bool {
	out := map[string]bool{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		out[p] = true
		return nil
	})
	return out
}

// TestHostileWorkspaceIsTmpfs: an HTTP run's /workspace is a tmpfs of the
// sandbox, and a runtime handler's upload is its plugin root, read-only at
// /plugin (no host directory is mounted for either).
func TestHostileWorkspaceIsTmpfs(t *testing.T) {
	testenv.Require(t, "root", "userns", "python")
	ts := startServer(t, sandbox.Config{}, Options{})
	code := `import os
def run(input, ctx):
    mounts = {}
    for line in open('/proc/self/mountinfo'):
        f = line.split()
        sep = f.index('-')
        mounts[f[4]] = (f[sep + 1], f[5].split(',')[0])
    try:
        open('/plugin/lib/new.txt', 'w').write('x')
        plugin_write = 'ok'
    except OSError as e:
        plugin_write = e.strerror
    return {'workspace': mounts.get('/workspace'), 'plugin': mounts.get('/plugin'),
            'files': sorted(os.listdir('/plugin/lib')), 'pluginWrite': plugin_write,
            'data': open('/workspace/lib/data.txt').read()}
`
	res := ts.run(t, obj{
		"handler": obj{"runtime": "python", "file": "lib/h.py"},
		"files":   []obj{{"path": "lib/h.py", "content": code}, {"path": "lib/data.txt", "content": "payload"}},
	})
	if res.Status != sandbox.StatusOK {
		t.Fatalf("status %s error %+v stderr %q", res.Status, res.Error, res.Stderr)
	}
	var got struct {
		Workspace, Plugin []string
		Files             []string
		PluginWrite       string
		Data              string
	}
	if err := json.Unmarshal(res.Data, &got); err != nil {
		t.Fatalf("data %s: %v", res.Data, err)
	}
	if len(got.Workspace) != 2 || got.Workspace[0] != "tmpfs" || got.Workspace[1] != "rw" {
		t.Errorf("/workspace is %v, want the sandbox's own tmpfs, read-write", got.Workspace)
	}
	if len(got.Plugin) != 2 || got.Plugin[0] != "tmpfs" || got.Plugin[1] != "ro" {
		t.Errorf("/plugin is %v, want the upload (the workspace tmpfs), read-only", got.Plugin)
	}
	if strings.Join(got.Files, ",") != "data.txt,h.py" || got.Data != "payload" || got.PluginWrite == "ok" {
		t.Errorf("plugin files %v data %q plugin write %q; want the upload, read-only", got.Files, got.Data, got.PluginWrite)
	}
}

// TestHostileSetIDOverHTTP: a run started through the API can no more give a
// file a set-id bit than one started from the library (the seccomp rule is
// the engine's; the API adds nothing that bypasses it).
func TestHostileSetIDOverHTTP(t *testing.T) {
	testenv.Require(t, "root", "userns")
	ts := startServer(t, sandbox.Config{}, Options{})
	script := `cd /workspace && : > f && chmod 4755 f; echo chmod=$?; mkdir -m 2755 d; echo mkdir=$?; stat -c mode=%a f`
	res := ts.run(t, obj{"handler": obj{"command": []string{"sh", "-c", script}}})
	if res.Status != sandbox.StatusOK {
		t.Fatalf("status %s error %+v stderr %q", res.Status, res.Error, res.Stderr)
	}
	out := string(res.Stdout)
	for _, want := range []string{"chmod=1", "mkdir=1", "mode=644"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout %q lacks %q: a set-id mode got through", out, want)
		}
	}
	if len(res.Violations) == 0 {
		t.Errorf("no violation reported for the set-id attempts (stderr %q)", res.Stderr)
	}
}
