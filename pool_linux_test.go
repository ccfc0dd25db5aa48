package sandbox_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kb-labs/sandbox"
)

// TestPoolRunsAreFresh checks that pooled runs are fully isolated from each
// other: no file, process or cgroup usage passes from one run to the next.
func TestPoolRunsAreFresh(t *testing.T) {
	r := newEngineRunner(t, sandbox.Config{Pool: sandbox.PoolConfig{Size: 2}, Execution: sandbox.Execution{Pids: 8}})
	waitPool(r, 2)
	ctx := context.Background()
	res, err := r.Run(ctx, sandbox.Command("sh", "-c", "echo secret > /tmp/left; echo secret > /workspace/left; sleep 100 & echo started"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, res, sandbox.StatusOK)
	for i := 0; i < 4; i++ {
		waitPool(r, 1)
		res, err = r.Run(ctx, sandbox.Command("sh", "-c", "cat /tmp/left /workspace/left 2>&1; ls /proc | grep -c '^[0-9]'; cat /proc/self/status | grep -E '^(NoNewPrivs|Seccomp):'"), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, res, sandbox.StatusOK)
		out := string(res.Stdout)
		if strings.Contains(out, "secret") {
			t.Fatalf("a file of an earlier run is visible: %q", out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 4 || lines[len(lines)-2] != "NoNewPrivs:\t1" || lines[len(lines)-1] != "Seccomp:\t2" {
			t.Errorf("pooled run lacks a protection: %q", out)
		}
		if p := res.Metrics.PidsPeak; p != nil && *p > 6 {
			t.Errorf("pidsPeak %d: an earlier run's processes are counted", *p)
		}
	}
	// The pids limit holds on the pooled path too.
	waitPool(r, 1)
	res, _ = r.Run(ctx, sandbox.Command("sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1 & done; wait"), nil, nil)
	if res.Metrics.PidsLimitHit == nil || !*res.Metrics.PidsLimitHit {
		t.Errorf("pids limit not hit on a pooled run: %+v", res.Metrics)
	}
	r.Close()
	prefix := fmt.Sprintf("sbx-%d.", os.Getpid())
	entries, _ := os.ReadDir("/sys/fs/cgroup/memory/sandbox")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			t.Errorf("cgroup left after Close: %s", e.Name())
		}
	}
	_ = time.Second
}
