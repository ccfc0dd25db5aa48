package hostile

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kb-labs/sandbox"
)

// TestHostBudgets: kernel budgets shared host-wide must leave host root its
// share, however many runs are in flight.
func TestHostBudgets(t *testing.T) {
	t.Run("inotify_instances_not_charged_to_root", testInotifyNotChargedToRoot)
}

// Each run may hold 16 inotify instances (its namespace's limit). The
// kernel also charges them to the user namespace's owner at the host
// level, against fs.inotify.max_user_instances. Enough concurrent runs to
// pass that limit hold their instances while the host's root opens one:
// it must still get it.
func testInotifyNotChargedToRoot(t *testing.T) {
	c := newCtx(t, true)
	b, err := os.ReadFile("/proc/sys/fs/inotify/max_user_instances")
	if err != nil {
		t.Skipf("no inotify limits: %v", err)
	}
	hostMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || hostMax > 1024 {
		t.Skipf("fs.inotify.max_user_instances = %q: too many runs needed to reach it", b)
	}
	const perRun = 16
	runs := hostMax/perRun + 1
	ready := make(chan struct{}, runs)
	cfg := c.cfg
	cfg.Execution.Timeout = sandbox.Duration(30 * time.Second)
	cfg.Observers = []sandbox.Observer{{OnLog: func(e sandbox.LogEvent) {
		if strings.Contains(e.Line.Message, "held=") {
			ready <- struct{}{}
		}
	}}}
	runMu.Lock() // no other Runner's runs meanwhile (see cctx.run)
	defer runMu.Unlock()
	r, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Each run opens its instances, says how many, and holds them until
	// its stdin closes (the test releases every run at once).
	script := "import ctypes,sys\nlibc=ctypes.CDLL(None)\nfds=[libc.inotify_init1(0) for _ in range(16)]\n" +
		"print('held=%d' % sum(f >= 0 for f in fds), flush=True)\nsys.stdin.read()\n"
	release := make(chan struct{})
	var wg sync.WaitGroup
	results := make([]*sandbox.Result, runs)
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Error(err)
				return
			}
			go func() { <-release; pw.Close() }()
			res, err := r.Run(context.Background(), sandbox.Command("python3", "-c", script, c.mark), pr, nil)
			pr.Close()
			if err != nil {
				t.Error(err)
			}
			results[i] = res
		}()
	}
	got := 0
	timeout := time.After(20 * time.Second)
	for got < runs {
		select {
		case <-ready:
			got++
		case <-timeout:
			got = runs + 1
		}
	}
	fd, hostErr := unix.InotifyInit1(unix.IN_CLOEXEC)
	if hostErr == nil {
		unix.Close(fd)
	}
	close(release)
	wg.Wait()
	held := 0
	for _, res := range results {
		if res == nil {
			continue
		}
		if res.Status != sandbox.StatusOK {
			t.Errorf("run: %s %+v\n%s", res.Status, res.Error, res.Stderr)
		}
		if v, ok := parseKV(res.Stdout)["held"]; ok {
			n, _ := strconv.Atoi(v)
			held += n
		}
	}
	t.Logf("%d runs held %d inotify instances (host limit per user %d)", runs, held, hostMax)
	if held < hostMax {
		t.Fatalf("the runs held only %d instances, not enough to test the host limit %d", held, hostMax)
	}
	if hostErr != nil {
		t.Errorf("HOST EFFECT: host root's inotify_init1 failed while runs held their instances: %v", hostErr)
	}
	if err := host.intact(c.mark); err != nil {
		t.Error(err)
	}
}
