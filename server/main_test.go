package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kb-labs/sandbox"
	"github.com/kb-labs/sandbox/internal/initproc"
	"github.com/kb-labs/sandbox/internal/testenv"
)

func TestMain(m *testing.M) {
	initproc.MaybeRun()
	os.Exit(m.Run())
}

// testServer is a Server listening on a real loopback port.
type testServer struct {
	*Server
	url   string
	token string
	// runDir is the server's TMPDIR for the test, where a host directory
	// of a run would appear: runs must leave it empty.
	runDir string
	logs   *syncBuffer
	errc   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testRunDir returns a fresh directory, searchable by the sandbox user
// (t.TempDir's parent is 0700), for the server's TMPDIR.
func testRunDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sbx-server-test-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o711)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startServer(t testing.TB, cfg sandbox.Config, opts Options) *testServer {
	t.Helper()
	testenv.Require(t, "root", "userns")
	ts := &testServer{logs: &syncBuffer{}, errc: make(chan error, 1)}
	ts.runDir = testRunDir(t)
	t.Setenv("TMPDIR", ts.runDir)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(ts.logs, nil))
	}
	srv, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ts.Server, ts.token = srv, opts.Token
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.url = "http://" + ln.Addr().String()
	go func() { ts.errc <- srv.ServeListener(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-ts.errc; err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	})
	return ts
}

// do sends a request with the token (when the server has one) and decodes
// a JSON answer into out (when not nil).
func (ts *testServer) do(t testing.TB, method, path string, body any, out any, hdr ...string) *http.Response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, ts.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ts.token != "" {
		req.Header.Set("Authorization", "Bearer "+ts.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: answer %d is not the expected JSON: %v\n%s", method, path, resp.StatusCode, err, data)
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(data))
	return resp
}

// run posts a run request and wants a 200 with a Result.
func (ts *testServer) run(t testing.TB, req any) *sandbox.Result {
	t.Helper()
	var res sandbox.Result
	resp := ts.do(t, "POST", "/v1/runs", req, &res)
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST /v1/runs: %d %s", resp.StatusCode, b)
	}
	return &res
}

// leftovers lists what runs left (or made) in dir.
func leftovers(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// children counts the live child processes of this test binary (sandbox
// inits are its children).
func children(t testing.TB) int {
	t.Helper()
	me := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == itoa(me) && f[0] != "Z" {
			n++
		}
	}
	return n
}

func itoa(n int) string { return strconv.Itoa(n) }

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}
