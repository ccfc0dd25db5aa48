package wasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func newEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// run runs s (stdout and stderr captured unless set) and fails the test on
// an error.
func run(t testing.TB, e *Engine, ctx context.Context, s Spec) (Outcome, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if s.Stdout == nil {
		s.Stdout = &stdout
	}
	if s.Stderr == nil {
		s.Stderr = &stderr
	}
	out, err := e.Run(ctx, s)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return out, stdout.String(), stderr.String()
}

// warm compiles the module of s into e, so that timings measure runs only
// (compiling a Go module takes seconds under the race detector).
func warm(t testing.TB, e *Engine, s Spec) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Run(ctx, s); err != nil {
		t.Fatal(err)
	}
}

func TestArgsExactlyAsGiven(t *testing.T) {
	e := newEngine(t, Config{})
	out, stdout, stderr := run(t, e, context.Background(), Spec{Path: guest("args"), Args: []string{"args", "a b", "", "x=y"}})
	if !out.Exited || out.ExitCode != 0 {
		t.Fatalf("outcome %+v, stderr %q", out, stderr)
	}
	if want := "0=args\n1=a b\n2=\n3=x=y\n"; stdout != want {
		t.Fatalf("stdout %q, want %q", stdout, want)
	}
}

func TestEnvNothingOfTheHost(t *testing.T) {
	t.Setenv("WASM_TEST_SECRET", "s3cret")
	e := newEngine(t, Config{})
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"none", nil, ""},
		{"given only", []string{"A=1", "B=x=y"}, "A=1\nB=x=y\n"},
		{"host var named", []string{"WASM_TEST_SECRET=visible"}, "WASM_TEST_SECRET=visible\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stdout, _ := run(t, e, context.Background(), Spec{Path: guest("env"), Args: []string{"env"}, Env: tc.env})
			if !out.Exited || out.ExitCode != 0 || stdout != tc.want {
				t.Fatalf("outcome %+v stdout %q, want %q", out, stdout, tc.want)
			}
		})
	}
}

func TestFilesystemOnlyMounts(t *testing.T) {
	host := t.TempDir()
	ro := filepath.Join(host, "ro")
	rw := filepath.Join(host, "rw")
	for _, d := range []string{ro, rw} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, filepath.Join(ro, "in.txt"), "original")
	mustWrite(t, filepath.Join(host, "secret.txt"), "host secret")
	// Links planted on the host that lead out of the mount.
	for name, target := range map[string]string{"abs": "/etc/passwd", "up": "../secret.txt", "updir": ".."} {
		if err := os.Symlink(target, filepath.Join(rw, name)); err != nil {
			t.Fatal(err)
		}
	}
	mounts := []Mount{{HostPath: ro, GuestPath: "/ro", ReadOnly: true}, {HostPath: rw, GuestPath: "/rw"}}
	e := newEngine(t, Config{})
	for _, tc := range []struct {
		name   string
		mounts []Mount
		ops    []string
		want   []string // prefixes of the result lines, in order
	}{
		{"no mounts", nil, []string{"read", "/etc/passwd", "read", "/ro/in.txt"},
			[]string{"read /etc/passwd: err", "read /ro/in.txt: err"}},
		{"read-only mount", mounts, []string{"read", "/ro/in.txt", "write", "/ro/in.txt", "changed", "write", "/ro/new.txt", "x", "read", "/etc/passwd"},
			[]string{"read /ro/in.txt: ok original", "write /ro/in.txt: err", "write /ro/new.txt: err", "read /etc/passwd: err"}},
		{"read-write mount", mounts, []string{"write", "/rw/out.txt", "written", "read", "/rw/out.txt"},
			[]string{"write /rw/out.txt: ok", "read /rw/out.txt: ok written"}},
		{"planted links do not lead out", mounts, []string{"read", "/rw/abs", "read", "/rw/up", "read", "/rw/updir/secret.txt", "write", "/rw/updir/planted.txt", "x"},
			[]string{"read /rw/abs: err", "read /rw/up: err", "read /rw/updir/secret.txt: err", "write /rw/updir/planted.txt: err"}},
		{"guest links", mounts, []string{"symlink", "../../secret.txt", "/rw/esc", "symlink", "/etc/passwd", "/rw/esc2", "symlink", "out.txt", "/rw/ok", "read", "/rw/ok"},
			[]string{"symlink /rw/esc: err", "symlink /rw/esc2: err", "symlink /rw/ok: ok", "read /rw/ok: ok written"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stdout, stderr := run(t, e, context.Background(), Spec{Path: guest("files"), Args: append([]string{"files"}, tc.ops...), Mounts: tc.mounts})
			if !out.Exited || out.ExitCode != 0 {
				t.Fatalf("outcome %+v stderr %q", out, stderr)
			}
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("stdout %q, want lines starting %q", stdout, tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("line %d: %q, want prefix %q", i, lines[i], w)
				}
			}
		})
	}
	// The effects on the host.
	if b, _ := os.ReadFile(filepath.Join(ro, "in.txt")); string(b) != "original" {
		t.Errorf("read-only host file changed: %q", b)
	}
	for _, p := range []string{filepath.Join(ro, "new.txt"), filepath.Join(host, "planted.txt"), filepath.Join(rw, "esc"), filepath.Join(rw, "esc2")} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists on the host (err %v)", p, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(rw, "out.txt")); string(b) != "written" {
		t.Errorf("read-write host file: %q, want %q", b, "written")
	}
}

func mustWrite(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestMemoryLimit(t *testing.T) {
	e := newEngine(t, Config{})
	const limit = 64 << 20
	t.Run("go allocator without end", func(t *testing.T) {
		out, _, stderr := run(t, e, context.Background(), Spec{Path: guest("alloc"), Args: []string{"alloc"}, MemoryLimitBytes: limit})
		if !out.MemoryLimitHit {
			t.Fatalf("MemoryLimitHit false: %+v, stderr %q", out, stderr)
		}
		if out.MemoryPeakBytes > limit || out.MemoryPeakBytes < limit/2 {
			t.Errorf("peak %d bytes, want in (%d, %d]", out.MemoryPeakBytes, limit/2, limit)
		}
		// The Go runtime reports the refusal itself and exits 2.
		if !out.Exited || out.ExitCode != 2 || !strings.Contains(stderr, "out of memory") {
			t.Errorf("outcome %+v, stderr %q", out, stderr)
		}
	})
	t.Run("guest that ignores refusals", func(t *testing.T) {
		out, _, _ := run(t, e, context.Background(), Spec{Bytes: tinyModule(bodyGrowForever, 1), MemoryLimitBytes: 1<<20 + 100})
		if !out.MemoryLimitHit || out.MemoryPeakBytes != 1<<20 || out.Trap != "wasm error: unreachable" {
			t.Fatalf("outcome %+v, want MemoryLimitHit, peak 1 MiB, unreachable trap", out)
		}
	})
	t.Run("initial memory above the limit", func(t *testing.T) {
		out, _, _ := run(t, e, context.Background(), Spec{Bytes: tinyModule(bodyNop, 2000), MemoryLimitBytes: limit})
		if !out.MemoryLimitHit || out.Exited || out.MemoryPeakBytes != 0 {
			t.Fatalf("outcome %+v, want MemoryLimitHit without running", out)
		}
	})
	t.Run("under the limit", func(t *testing.T) {
		out, stdout, _ := run(t, e, context.Background(), Spec{Path: guest("hello"), MemoryLimitBytes: limit})
		if out.MemoryLimitHit || !out.Exited || stdout != "hello, world\n" || out.MemoryPeakBytes <= 0 {
			t.Fatalf("outcome %+v stdout %q", out, stdout)
		}
	})
}

func TestInterruptedWithoutCooperation(t *testing.T) {
	e := newEngine(t, Config{})
	for _, tc := range []struct {
		name string
		spec Spec
	}{
		{"go spin loop", Spec{Path: guest("spin")}},
		{"wasm loop", Spec{Bytes: tinyModule(bodyLoop, 0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			warm(t, e, tc.spec)
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			start := time.Now()
			out, _, _ := run(t, e, ctx, tc.spec)
			took := time.Since(start)
			if !out.Interrupted || out.Exited || out.Trap != "" {
				t.Fatalf("outcome %+v, want Interrupted", out)
			}
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) || took < 500*time.Millisecond || took > 3*time.Second {
				t.Fatalf("took %v (ctx %v), want 500ms..3s", took, ctx.Err())
			}
		})
	}
}

func TestExitAndTrap(t *testing.T) {
	e := newEngine(t, Config{})
	for _, tc := range []struct {
		name       string
		spec       Spec
		exited     bool
		code       int
		trap       string // prefix
		stdoutPart string
		stderrPart string
	}{
		{"exit 3", Spec{Path: guest("exit3")}, true, 3, "", "exiting with 3", ""},
		{"return from _start", Spec{Bytes: tinyModule(bodyNop, 0)}, true, 0, "", "", ""},
		{"go panic exits 2", Spec{Path: guest("panic")}, true, 2, "", "", "panic: guest panic"},
		{"out of bounds", Spec{Path: guest("trap")}, false, 0, "wasm error: out of bounds memory access", "", ""},
		{"unreachable", Spec{Bytes: tinyModule(bodyUnreachable, 0)}, false, 0, "wasm error: unreachable", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stdout, stderr := run(t, e, context.Background(), tc.spec)
			if out.Exited != tc.exited || out.ExitCode != tc.code || !strings.HasPrefix(out.Trap, tc.trap) || (tc.trap == "") != (out.Trap == "") {
				t.Fatalf("outcome %+v, want exited=%v code=%d trap %q", out, tc.exited, tc.code, tc.trap)
			}
			if !strings.Contains(stdout, tc.stdoutPart) || !strings.Contains(stderr, tc.stderrPart) {
				t.Fatalf("stdout %q stderr %q, want %q and %q", stdout, stderr, tc.stdoutPart, tc.stderrPart)
			}
			if tc.trap != "" && out.TrapStack == "" {
				t.Errorf("no trap stack")
			}
		})
	}
}

// failingWriter fails every write after the first n bytes.
type failingWriter struct {
	n   int
	err error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, w.err
	}
	w.n -= len(p)
	return len(p), nil
}

func TestOutputErrorEndsRun(t *testing.T) {
	e := newEngine(t, Config{})
	limitErr := errors.New("output limit")
	warm(t, e, Spec{Path: guest("alloc")})
	start := time.Now()
	// alloc prints forever (and would allocate up to the limit).
	out, err := e.Run(context.Background(), Spec{Path: guest("alloc"), Stdout: &failingWriter{n: 10, err: limitErr}, MemoryLimitBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(out.OutputErr, limitErr) || out.Exited || out.Interrupted || out.MemoryLimitHit {
		t.Fatalf("outcome %+v, want OutputErr only", out)
	}
	if out.MemoryPeakBytes > 256<<20 || time.Since(start) > 3*time.Second {
		t.Fatalf("run went on after the write error: peak %d, took %v", out.MemoryPeakBytes, time.Since(start))
	}
}

func TestDeterministic(t *testing.T) {
	det := newEngine(t, Config{Deterministic: true})
	real := newEngine(t, Config{})
	_, a, _ := run(t, det, context.Background(), Spec{Path: guest("clockrand")})
	_, b, _ := run(t, det, context.Background(), Spec{Path: guest("clockrand")})
	var detNow int64
	_, _ = fmt.Sscanf(a, "now=%d", &detNow)
	epoch := deterministicEpoch.UnixNano()
	if a != b || detNow < epoch || detNow > epoch+int64(time.Second) || !strings.Contains(a, "slept=true") {
		t.Fatalf("deterministic runs: %q and %q", a, b)
	}
	_, c, _ := run(t, real, context.Background(), Spec{Path: guest("clockrand")})
	_, d, _ := run(t, real, context.Background(), Spec{Path: guest("clockrand")})
	if c == d || !strings.Contains(c, "slept=true") {
		t.Fatalf("real runs: %q and %q", c, d)
	}
	now := time.Now().UnixNano()
	var got int64
	_, _ = fmt.Sscanf(c, "now=%d", &got)
	if got > now || got < now-int64(time.Minute) {
		t.Fatalf("real wall clock %d, host %d", got, now)
	}
}

func TestCompileOnceAndCacheDir(t *testing.T) {
	dir := t.TempDir()
	e := newEngine(t, Config{CacheDir: dir})
	first, _, _ := run(t, e, context.Background(), Spec{Path: guest("hello")})
	second, stdout, _ := run(t, e, context.Background(), Spec{Path: guest("hello")})
	if first.CacheHit || !second.CacheHit || stdout != "hello, world\n" {
		t.Fatalf("first %+v, second %+v", first, second)
	}
	if second.CompileTime*10 > first.CompileTime {
		t.Errorf("warm CompileTime %v not well below cold %v", second.CompileTime, first.CompileTime)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) == 0 {
		t.Fatalf("nothing written to the cache directory")
	}
	t.Logf("cold compile %v, warm lookup %v, run %v", first.CompileTime, second.CompileTime, second.RunTime)
}

func TestMisuse(t *testing.T) {
	e := newEngine(t, Config{})
	for _, tc := range []struct {
		name string
		spec Spec
		want error
	}{
		{"no module", Spec{}, ErrInvalidSpec},
		{"two modules", Spec{Path: guest("hello"), Bytes: []byte("x")}, ErrInvalidSpec},
		{"not wasm", Spec{Bytes: []byte("not wasm at all")}, ErrInvalidModule},
		{"missing file", Spec{Path: "/nonexistent/x.wasm"}, ErrInvalidModule},
		{"env without =", Spec{Path: guest("hello"), Env: []string{"NOEQUALS"}}, ErrInvalidSpec},
		{"memory below a page", Spec{Path: guest("hello"), MemoryLimitBytes: 1000}, ErrInvalidSpec},
		{"relative mount", Spec{Path: guest("hello"), Mounts: []Mount{{HostPath: "rel", GuestPath: "/x"}}}, ErrInvalidSpec},
		{"missing mount", Spec{Path: guest("hello"), Mounts: []Mount{{HostPath: "/nonexistent", GuestPath: "/x"}}}, ErrInvalidSpec},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.Run(context.Background(), tc.spec); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
	closed, _ := NewEngine(Config{})
	_ = closed.Close()
	if _, err := closed.Run(context.Background(), Spec{Path: guest("hello")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed engine: err %v", err)
	}
}

func TestCloseStopsRunsInFlight(t *testing.T) {
	e, err := NewEngine(Config{})
	if err != nil {
		t.Fatal(err)
	}
	warm(t, e, Spec{Path: guest("spin")})
	errc := make(chan error, 1)
	go func() {
		_, err := e.Run(context.Background(), Spec{Path: guest("spin")})
		errc <- err
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) || time.Since(start) > 3*time.Second {
		t.Fatalf("run in flight: err %v after %v", err, time.Since(start))
	}
}

func TestConcurrentRuns(t *testing.T) {
	e := newEngine(t, Config{})
	var wg sync.WaitGroup
	errs := make(chan error, 8*5)
	for g := range 8 {
		wg.Go(func() {
			for i := range 5 {
				arg := fmt.Sprintf("g%d-i%d", g, i)
				var stdout bytes.Buffer
				out, err := e.Run(context.Background(), Spec{Path: guest("args"), Args: []string{"args", arg}, Stdout: &stdout})
				if err != nil || !out.Exited || out.ExitCode != 0 || stdout.String() != "0=args\n1="+arg+"\n" {
					errs <- fmt.Errorf("%s: err %v outcome %+v stdout %q", arg, err, out, stdout.String())
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRunsDoNotGrowHeap(t *testing.T) {
	e := newEngine(t, Config{})
	bin, err := os.ReadFile(guest("hello"))
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Bytes: bin, MemoryLimitBytes: 64 << 20}
	run(t, e, context.Background(), spec) // compile, and first-use allocations
	before := heapInuse()
	for range 1000 {
		var stdout bytes.Buffer
		spec.Stdout = &stdout
		out, err := e.Run(context.Background(), spec)
		if err != nil || !out.Exited || stdout.String() != "hello, world\n" {
			t.Fatalf("err %v outcome %+v", err, out)
		}
	}
	after := heapInuse()
	t.Logf("HeapInuse before %d MiB, after 1000 runs %d MiB", before>>20, after>>20)
	if after > before+64<<20 {
		t.Fatalf("HeapInuse grew by %d MiB over 1000 runs, bound 64 MiB", (after-before)>>20)
	}
}

func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func TestStdin(t *testing.T) {
	e := newEngine(t, Config{})
	t.Run("given bytes", func(t *testing.T) {
		in := strings.Repeat("0123456789", 20000)
		out, stdout, _ := run(t, e, context.Background(), Spec{Path: guest("cat"), Stdin: strings.NewReader(in)})
		if !out.Exited || out.ExitCode != 0 || stdout != in {
			t.Fatalf("outcome %+v, stdout %d bytes, want %d", out, len(stdout), len(in))
		}
	})
	t.Run("streamed", func(t *testing.T) {
		r, w := io.Pipe()
		go func() {
			for i := range 100 {
				fmt.Fprintf(w, "line %d\n", i)
			}
			w.Close()
		}()
		out, stdout, _ := run(t, e, context.Background(), Spec{Path: guest("cat"), Stdin: r})
		if !out.Exited || strings.Count(stdout, "\n") != 100 || !strings.HasSuffix(stdout, "line 99\n") {
			t.Fatalf("outcome %+v, stdout %q", out, stdout)
		}
	})
	t.Run("blocked read ends with the context", func(t *testing.T) {
		r, w := io.Pipe() // never written
		defer w.Close()
		warm(t, e, Spec{Path: guest("cat")})
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		out, _, _ := run(t, e, ctx, Spec{Path: guest("cat"), Stdin: r})
		if !out.Interrupted || time.Since(start) > 3*time.Second {
			t.Fatalf("outcome %+v after %v, want Interrupted", out, time.Since(start))
		}
	})
}
