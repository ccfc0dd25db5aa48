package sandbox_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kb-labs/sandbox"
)

// inits lists the sandbox inits this process started (the reapers, named
// alike, are their children).
func inits(t *testing.T) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], "(sandbox-init") {
			continue
		}
		if f := strings.Fields(s[i+1:]); len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			out = append(out, pid)
		}
	}
	return out
}

// TestInitIgnoresSignalsFromOutside: termination signals sent from the host
// to a run's init (a service manager stopping every process of the server's
// cgroup, a stray kill) are dropped by the kernel, and the run goes on to
// its normal end; the supervisor alone ends runs.
func TestInitIgnoresSignalsFromOutside(t *testing.T) {
	r := newEngineRunner(t, sandbox.Config{})
	done := make(chan *sandbox.Result, 1)
	go func() {
		res, _ := r.Run(context.Background(), sandbox.Command("sh", "-c", "sleep 1; echo survived"), nil, nil)
		done <- res
	}()
	var pids []int
	for deadline := time.Now().Add(5 * time.Second); len(pids) == 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		pids = inits(t)
	}
	if len(pids) == 0 {
		t.Fatal("no sandbox init found among this process's children")
	}
	time.Sleep(200 * time.Millisecond) // past set-up: the program runs
	for _, pid := range pids {
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1} {
			if err := syscall.Kill(pid, sig); err != nil {
				t.Fatalf("kill %d %v: %v", pid, sig, err)
			}
		}
	}
	select {
	case res := <-done:
		if res == nil || !res.OK || strings.TrimSpace(string(res.Stdout)) != "survived" {
			t.Fatalf("run after signals to its init: %+v", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not end")
	}
}
