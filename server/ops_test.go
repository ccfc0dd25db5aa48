package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kb-labs/sandbox"
	"github.com/kb-labs/sandbox/internal/testenv"
)

// TestLoadBounded: 1,000 requests from 16 clients against 2 slots and a
// queue of 4: every answer is 200 or 429, and afterwards nothing is left
// (directories, processes, goroutines) and the heap is small.
func TestLoadBounded(t *testing.T) {
	cfg := sandbox.Config{Server: sandbox.ServerConfig{MaxConcurrency: 2, MaxQueue: 4}}
	ts := startServer(t, cfg, Options{})
	runtime.GC()
	baseG := runtime.NumGoroutine()

	const total, clients = 1000, 16
	body := []byte(`{"handler":{"command":["true"]}}`)
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var next atomic.Int64
	var mu sync.Mutex
	codes := map[int]int{}
	statuses := map[sandbox.Status]int{}
	var maxG atomic.Int64
	stopSample := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopSample:
				return
			case <-time.After(20 * time.Millisecond):
				if g := int64(runtime.NumGoroutine()); g > maxG.Load() {
					maxG.Store(g)
				}
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= total {
				resp, err := client.Post(ts.url+"/v1/runs", "application/json", bytes.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				codes[resp.StatusCode]++
				switch resp.StatusCode {
				case 200:
					var r sandbox.Result
					json.Unmarshal(data, &r)
					statuses[r.Status]++
					if r.Status != sandbox.StatusOK {
						t.Logf("run %s: %s", r.Status, data)
					}
				case 429:
					if resp.Header.Get("Retry-After") == "" || !bytes.Contains(data, []byte(CodeOverloaded)) {
						t.Errorf("429 without Retry-After or OVERLOADED: %s", data)
					}
				}
				mu.Unlock()
				if resp.StatusCode == 429 {
					// A polite client backs off (a shortened Retry-After), so
					// the load mixes runs and rejections.
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	close(stopSample)
	elapsed := time.Since(start)
	tr.CloseIdleConnections()
	t.Logf("%d requests in %v: answers %v, run statuses %v, peak goroutines %d (base %d)", total, elapsed, codes, statuses, maxG.Load(), baseG)
	if codes[200]+codes[429] != total {
		t.Errorf("answers %v: want only 200 and 429", codes)
	}
	if codes[200] == 0 || codes[429] == 0 {
		t.Errorf("answers %v: want both runs and rejections with 16 clients on 2 slots + 4 queued", codes)
	}
	if statuses[sandbox.StatusOK] != codes[200] {
		t.Errorf("run statuses %v, want all ok", statuses)
	}
	// Bounded by connections and slots, not by requests: per keep-alive
	// connection four (the client's read and write loops, the server's
	// conn goroutine and its background read), per running slot up to
	// eight (output copiers, the waiter, the deadline and cgroup watchers),
	// and a margin for connections a 429 closed that have not yet wound
	// down. A leak per request would put 1,000 on top.
	const slots = 2
	if g := maxG.Load(); g > int64(baseG+4*clients+8*slots+24) {
		t.Errorf("peak goroutines %d with %d clients (base %d)", g, clients, baseG)
	}
	if !waitFor(5*time.Second, func() bool { return runtime.NumGoroutine() <= baseG+5 }) {
		t.Errorf("goroutines %d after the load, %d before", runtime.NumGoroutine(), baseG)
	}
	if n := children(t); n != 0 {
		t.Errorf("%d sandbox processes left", n)
	}
	if got := leftovers(t, ts.runDir); len(got) != 0 {
		t.Errorf("%d run directories left behind", len(got))
	}
	if ts.gate.inFlight() != 0 || ts.runners.len() > 1 {
		t.Errorf("in flight %d, runners %d after the load", ts.gate.inFlight(), ts.runners.len())
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.HeapInuse > 64<<20 {
		t.Errorf("heap in use %d MiB after the load", ms.HeapInuse>>20)
	}
}

// TestShutdownDrains: a run in flight when Shutdown starts completes and is
// answered; a queued one gets 503; a run past the drain timeout is cancelled
// and still answered.
func TestShutdownDrains(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cmd    string
		drain  time.Duration
		status sandbox.Status
		stdout string
	}{
		{"completes", "sleep 0.5; echo done", 10 * time.Second, sandbox.StatusOK, "done\n"},
		{"cancelled after drain timeout", "sleep 30", 300 * time.Millisecond, sandbox.StatusCancelled, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, sandbox.Config{Server: sandbox.ServerConfig{MaxConcurrency: 1}}, Options{})
			type answer struct {
				code int
				res  sandbox.Result
			}
			post := func(cmd string, out chan<- answer) {
				resp, err := http.Post(ts.url+"/v1/runs", "application/json",
					strings.NewReader(fmt.Sprintf(`{"handler":{"command":["sh","-c",%q]}}`, cmd)))
				if err != nil {
					t.Error(err)
					out <- answer{}
					return
				}
				defer resp.Body.Close()
				var a answer
				a.code = resp.StatusCode
				json.NewDecoder(resp.Body).Decode(&a.res)
				out <- a
			}
			first, queued := make(chan answer, 1), make(chan answer, 1)
			go post(tc.cmd, first)
			if !waitFor(5*time.Second, func() bool { return ts.gate.inFlight() == 1 && children(t) > 0 }) {
				t.Fatal("the run never started")
			}
			go post("echo queued", queued)
			if !waitFor(5*time.Second, func() bool { return ts.gate.waiting() == 1 }) {
				t.Fatal("the second run was not queued")
			}
			ctx, cancel := context.WithTimeout(context.Background(), tc.drain)
			defer cancel()
			start := time.Now()
			if err := ts.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			took := time.Since(start)
			a := <-first
			if a.code != 200 || a.res.Status != tc.status || string(a.res.Stdout) != tc.stdout {
				t.Errorf("in-flight run answered %d %s %q, want 200 %s %q", a.code, a.res.Status, a.res.Stdout, tc.status, tc.stdout)
			}
			if q := <-queued; q.code != 503 {
				t.Errorf("queued run answered %d, want 503 while shutting down", q.code)
			}
			if took > tc.drain+5*time.Second {
				t.Errorf("Shutdown took %v with a drain timeout of %v", took, tc.drain)
			}
			if _, err := http.Get(ts.url + "/healthz"); err == nil {
				t.Error("the server still accepts connections after Shutdown")
			}
			if n := children(t); n != 0 {
				t.Errorf("%d sandbox processes left", n)
			}
			if got := leftovers(t, ts.runDir); len(got) != 0 {
				t.Errorf("run directories left behind: %v", got)
			}
		})
	}
}

// TestMainSIGTERM: `sandbox serve` gets SIGTERM during a run; the run
// completes and is answered, then Main returns 0.
func TestMainSIGTERM(t *testing.T) {
	testenv.Require(t, "root", "userns")
	dir := testRunDir(t)
	t.Setenv("TMPDIR", dir)
	t.Setenv("SANDBOX_TOKEN", "")
	addrc := make(chan net.Addr, 1)
	onListen = func(a net.Addr) { addrc <- a }
	defer func() { onListen = nil }()
	var stderr bytes.Buffer
	exit := make(chan int, 1)
	go func() {
		exit <- Main([]string{"--listen", "127.0.0.1:0", "--drain-timeout", "20s"}, io.Discard, &stderr)
	}()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case code := <-exit:
		t.Fatalf("Main exited %d: %s", code, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("Main did not listen")
	}
	got := make(chan string, 1)
	go func() {
		resp, err := http.Post("http://"+addr.String()+"/v1/runs", "application/json",
			strings.NewReader(`{"handler":{"command":["sh","-c","sleep 0.5; echo finished"]}}`))
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		var r sandbox.Result
		json.NewDecoder(resp.Body).Decode(&r)
		got <- fmt.Sprintf("%d %s %s", resp.StatusCode, r.Status, r.Stdout)
	}()
	if !waitFor(5*time.Second, func() bool { return children(t) > 0 }) {
		t.Fatal("the run never started")
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	if g := <-got; g != "200 ok finished\n" {
		t.Errorf("run during SIGTERM answered %q", g)
	}
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("Main exited %d, want 0: %s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Main did not exit after SIGTERM")
	}
	if !strings.Contains(stderr.String(), `"msg":"shut down"`) {
		t.Errorf("log lacks the shutdown:\n%s", stderr.String())
	}
	if got := leftovers(t, dir); len(got) != 0 {
		t.Errorf("left behind: %v", got)
	}
}

func TestMainFlags(t *testing.T) {
	testenv.Require(t, "root", "userns")
	t.Setenv("SANDBOX_TOKEN", "")
	tokenFile := t.TempDir() + "/empty"
	os.WriteFile(tokenFile, []byte("\n"), 0o600)
	cfgFile := t.TempDir() + "/bad.yaml"
	os.WriteFile(cfgFile, []byte("execution: {memory: lots}\n"), 0o600)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown flag", []string{"--port", "1"}, 125, "--listen"},
		{"argument", []string{"extra"}, 125, "flags only"},
		{"empty token file", []string{"--token-file", tokenFile}, 125, "one token"},
		{"bad config", []string{"--config", cfgFile}, 125, "execution.memory"},
		{"beyond loopback without token", []string{"--listen", "0.0.0.0:0"}, 125, "without a bearer token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(context.Background(), tc.args, io.Discard, &stderr, nil)
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want %d naming %q", code, stderr.String(), tc.code, tc.want)
			}
		})
	}
}

func TestMetricsAndCapabilities(t *testing.T) {
	ts := startServer(t, sandbox.Config{}, Options{Token: "t"})
	ts.run(t, obj{"handler": obj{"command": []string{"true"}}})
	ts.do(t, "GET", "/v1/capabilities", nil, nil, "Authorization", "Bearer wrong")
	resp := ts.do(t, "GET", "/metrics", nil, nil)
	text, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`sandbox_runs_total{status="ok"} 1`,
		`sandbox_run_duration_seconds_count{status="ok"} 1`,
		`sandbox_run_memory_peak_bytes_count 1`,
		`sandbox_runs_in_flight 0`,
		`sandbox_queue_depth 0`,
		`sandbox_pool_depth 0`,
		`sandbox_rejected_total{reason="unauthorized"} 1`,
		`sandbox_setup_duration_seconds_count{phase="body"} 1`,
		`sandbox_setup_duration_seconds_count{phase="sandbox"} 1`,
		`sandbox_setup_duration_seconds_count{phase="queue"} 1`,
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	var c Capabilities
	if resp := ts.do(t, "GET", "/v1/capabilities", nil, &c); resp.StatusCode != 200 {
		t.Fatalf("capabilities: %d", resp.StatusCode)
	}
	if !c.Passed || c.Isolation == nil || c.Isolation.Mode != sandbox.Subprocess || !c.Isolation.Seccomp {
		t.Errorf("capabilities passed=%v isolation=%+v checks=%+v", c.Passed, c.Isolation, c.Checks)
	}
	if c.Defaults.TimeoutMs == nil || *c.Defaults.TimeoutMs != 30000 || c.Ceilings.MemoryBytes == nil || *c.Ceilings.MemoryBytes != int64(sandbox.DefaultMemory) || c.Defaults.CPUTimeMs != nil {
		t.Errorf("defaults %+v ceilings %+v", c.Defaults, c.Ceilings)
	}
	if !slices.Equal(c.Networks, []string{"none", "loopback"}) || c.MaxQueue != DefaultMaxQueue || c.MaxConcurrency != runtime.NumCPU() {
		t.Errorf("networks %v queue %d concurrency %d", c.Networks, c.MaxQueue, c.MaxConcurrency)
	}
	var st map[string]string
	ts.do(t, "GET", "/readyz", nil, &st)
	if st["status"] != "ready" {
		t.Errorf("readyz %v", st)
	}
}

func TestRefusesNonLoopbackWithoutToken(t *testing.T) {
	testenv.Require(t, "root", "userns")
	srv, err := New(sandbox.Config{}, Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ServeListener(context.Background(), ln); err != ErrNoToken {
		t.Fatalf("ServeListener on %s without a token: %v, want ErrNoToken", ln.Addr(), err)
	}
}

// TestOpenAPIMatchesRouter: every route is documented and every documented
// operation is routed.
func TestOpenAPIMatchesRouter(t *testing.T) {
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q, want 3.x", doc.OpenAPI)
	}
	var documented, routed []string
	for p, ops := range doc.Paths {
		for m := range ops {
			switch m {
			case "get", "post", "put", "patch", "delete", "head", "options":
				documented = append(documented, strings.ToUpper(m)+" "+p)
			}
		}
	}
	s := &Server{metrics: newMetrics()}
	for _, r := range s.routeTable() {
		routed = append(routed, r.method+" "+r.path)
	}
	sort.Strings(documented)
	sort.Strings(routed)
	if !slices.Equal(documented, routed) {
		t.Errorf("documented %v\nrouted     %v", documented, routed)
	}
	for _, r := range s.routeTable() {
		op := doc.Paths[r.path][strings.ToLower(r.method)].(map[string]any)
		sec, has := op["security"]
		if public := has && len(sec.([]any)) == 0; public != r.public {
			t.Errorf("%s %s: documented public=%v, routed public=%v", r.method, r.path, public, r.public)
		}
	}
}
