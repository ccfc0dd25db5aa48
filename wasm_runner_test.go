//go:build linux

package sandbox_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kb-labs/sandbox"
)

var (
	wasmOnce sync.Once
	wasmDir  string
	wasmErr  error
)

// wasmModule builds wasm/testdata/<name> for GOOS=wasip1 once per process.
func wasmModule(t *testing.T, name string) string {
	t.Helper()
	wasmOnce.Do(func() { wasmDir, wasmErr = os.MkdirTemp("", "sbx-wasm") })
	if wasmErr != nil {
		t.Fatal(wasmErr)
	}
	out := filepath.Join(wasmDir, name+".wasm")
	if _, err := os.Stat(out); err == nil {
		return out
	}
	cmd := exec.Command("go", "build", "-o", out, "./wasm/testdata/"+name)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, b)
	}
	return out
}

func TestWASMThroughRunner(t *testing.T) {
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "in.txt"), []byte("host data"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SBX_WASM_SECRET", "hunter2")
	var mu sync.Mutex
	var logged []string
	r, err := sandbox.New(sandbox.Config{
		Mode:        sandbox.InProcess,
		Execution:   sandbox.Execution{Timeout: sandbox.Duration(20 * time.Second), Memory: 64 * sandbox.MiB},
		Permissions: sandbox.Permissions{Filesystem: sandbox.Filesystem{ReadOnly: []sandbox.Mount{{Source: data, Target: "/data"}}}},
		Observers: []sandbox.Observer{{OnLog: func(e sandbox.LogEvent) {
			mu.Lock()
			logged = append(logged, e.Line.Message)
			mu.Unlock()
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()

	res, err := r.Run(ctx, sandbox.WASM(wasmModule(t, "args"), "args.wasm", "a", "b"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, res, sandbox.StatusOK)
	if !strings.Contains(string(res.Stdout), "1=a") || res.Isolation.Runtime != "wasm" || res.Isolation.Mode != sandbox.InProcess {
		t.Errorf("stdout %q isolation %+v", res.Stdout, res.Isolation)
	}
	if len(res.Logs) == 0 || res.Logs[0].Source != "stdout" {
		t.Errorf("logs %+v, want stdout lines", res.Logs)
	}
	mu.Lock()
	if len(logged) == 0 {
		t.Error("the observer saw no log line")
	}
	mu.Unlock()

	res, _ = r.Run(ctx, sandbox.WASM(wasmModule(t, "env"), "env.wasm"), nil, nil)
	if strings.Contains(string(res.Stdout), "hunter2") || !strings.Contains(string(res.Stdout), "HOME=/workspace") {
		t.Errorf("environment: %q", res.Stdout)
	}

	res, _ = r.Run(ctx, sandbox.WASM(wasmModule(t, "files"), "files.wasm", "read", "/data/in.txt", "write", "/data/new.txt", "x", "read", "/etc/passwd"), nil, nil)
	out := string(res.Stdout)
	if !strings.Contains(out, "read /data/in.txt: ok host data") || !strings.Contains(out, "write /data/new.txt: err") || !strings.Contains(out, "read /etc/passwd: err") {
		t.Errorf("files: %q", out)
	}
	if _, err := os.Stat(filepath.Join(data, "new.txt")); err == nil {
		t.Error("a read-only mount was written on the host")
	}

	spin, err := sandbox.New(sandbox.Config{Mode: sandbox.InProcess, Execution: sandbox.Execution{Timeout: sandbox.Duration(500 * time.Millisecond)}})
	if err != nil {
		t.Fatal(err)
	}
	defer spin.Close()
	// The first run builds and compiles the module (slow under -race, and
	// not what is measured); the second, on the compiled module, must stop
	// promptly once its deadline passes.
	spinWasm := wasmModule(t, "spin")
	res, _ = spin.Run(ctx, sandbox.WASM(spinWasm, "spin.wasm"), nil, nil)
	wantStatus(t, res, sandbox.StatusTimeout)
	start := time.Now()
	res, _ = spin.Run(ctx, sandbox.WASM(spinWasm, "spin.wasm"), nil, nil)
	wantStatus(t, res, sandbox.StatusTimeout)
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("the spin loop took %v to stop", el)
	}

	res, _ = r.Run(ctx, sandbox.WASM(wasmModule(t, "alloc"), "alloc.wasm"), nil, nil)
	wantStatus(t, res, sandbox.StatusMemoryLimit)

	res, _ = r.Run(ctx, sandbox.WASM(wasmModule(t, "exit3"), "exit3.wasm"), nil, nil)
	wantStatus(t, res, sandbox.StatusNonzeroExit)
	if res.ExitStatus() != 3 {
		t.Errorf("exit status %d, want 3", res.ExitStatus())
	}

	res, _ = r.Run(ctx, sandbox.WASM(wasmModule(t, "trap"), "trap.wasm"), nil, nil)
	if res.Status != sandbox.StatusSignaled || res.Error == nil || res.Error.Code != sandbox.CodeWASMTrap {
		t.Errorf("trap: %s %+v", res.Status, res.Error)
	}
}
