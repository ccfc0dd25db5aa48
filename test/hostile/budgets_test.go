//go:build linux

package hostile

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kb-labs/sandbox"
)

// TestHostBudgets: kernel budgets shared host-wide must leave host root its
// share, however many runs are in flight.
func TestHostBudgets(t *testing.T) {
	t.Run("inotify_instances_not_charged_to_root", testInotifyNotChargedToRoot)
	t.Run("pipe_buffers_per_run", testPipeBudgetPerRun)
	t.Run("aio_contexts", testAIONotShared)
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
	// Every run gets its 16: each is charged to its own host ids, so no
	// run's instances come out of another's budget (with one id for all
	// runs, they shared hostMax between them).
	if held != runs*perRun {
		t.Errorf("HOST EFFECT: %d runs held %d inotify instances, want %d each: runs share a host budget", runs, held, perRun)
	}
	if hostErr != nil {
		t.Errorf("HOST EFFECT: host root's inotify_init1 failed while runs held their instances: %v", hostErr)
	}
	if err := host.intact(c.mark); err != nil {
		t.Error(err)
	}
}

// One run grows 64 pipes to 1 MiB, which spends the per-user soft limit of
// pipe buffers (fs.pipe-user-pages-soft, 64 MiB): that user's new pipes
// shrink to one page and F_SETPIPE_SZ fails. A second run in flight at the
// same time is another host user, so its pipes keep the default size and
// can still grow.
func testPipeBudgetPerRun(t *testing.T) {
	c := newCtx(t, true)
	b, err := os.ReadFile("/proc/sys/fs/pipe-user-pages-soft")
	if err != nil {
		t.Skipf("no pipe budget: %v", err)
	}
	if soft, _ := strconv.Atoi(strings.TrimSpace(string(b))); soft == 0 || soft > 16384 {
		t.Skipf("fs.pipe-user-pages-soft = %q: 64 pipes of 1 MiB do not reach it", b)
	}
	grow := "import fcntl,os,sys\nF_SETPIPE_SZ,F_GETPIPE_SZ=1031,1032\nps=[os.pipe() for _ in range(%d)]\nok=0\n" +
		"for r,w in ps:\n  try: fcntl.fcntl(w,F_SETPIPE_SZ,1<<20); ok+=1\n  except OSError: pass\n" +
		"r,w=os.pipe()\nprint('grown=%%d\\ndefault=%%d' %% (ok, fcntl.fcntl(w,F_GETPIPE_SZ)), flush=True)\n%s"
	hold := fmt.Sprintf(grow, 64, "sys.stdin.read()\n")
	probe := fmt.Sprintf(grow, 1, "")
	cfg := c.cfg
	cfg.Execution.Timeout = sandbox.Duration(30 * time.Second)
	runMu.Lock()
	defer runMu.Unlock()
	r, pw, done := holdRun(t, cfg, hold, c.mark, "grown=64")
	second, err := r.Run(context.Background(), sandbox.Command("python3", "-c", probe, c.mark), nil, nil)
	pw.Close()
	first := <-done
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range []*sandbox.Result{first, second} {
		if res == nil || res.Status != sandbox.StatusOK {
			t.Fatalf("run: %+v", res)
		}
	}
	kv1, kv2 := parseKV(first.Stdout), parseKV(second.Stdout)
	t.Logf("holding run: %s; second run: %s", strings.TrimSpace(string(first.Stdout)), strings.TrimSpace(string(second.Stdout)))
	if kv1["grown"] != "64" {
		t.Fatalf("the holding run grew %s pipes, want 64", kv1["grown"])
	}
	if kv2["grown"] != "1" || kv2["default"] != "65536" {
		t.Errorf("HOST EFFECT: while another run held 64 MiB of pipe buffers, a second run's pipe grew %s times (want 1) and its new pipe holds %s bytes (want 65536): the runs share one host user's pipe budget", kv2["grown"], kv2["default"])
	}
	if err := host.intact(c.mark); err != nil {
		t.Error(err)
	}
}

// AIO contexts have no per-user or per-namespace limit: every io_setup
// counts against the host-wide fs.aio-max-nr. A run asking for 65536
// events (the default maximum) used to take them all, and host root's own
// io_setup then failed with EAGAIN. The run must get ENOSYS instead, and
// while it is in flight the host's count must not have grown by its
// request and root's io_setup must work.
func testAIONotShared(t *testing.T) {
	c := newCtx(t, true)
	before, err := aioNr()
	if err != nil {
		t.Skipf("no AIO counters: %v", err)
	}
	script := "import ctypes,errno,platform,sys\n" +
		"nr={'x86_64':206,'aarch64':0}[platform.machine()]\n" +
		"libc=ctypes.CDLL(None,use_errno=True)\nctx=ctypes.c_ulong(0)\n" +
		"r=libc.syscall(nr,65536,ctypes.byref(ctx))\n" +
		"print('io_setup=%s' % ('ok' if r == 0 else errno.errorcode.get(ctypes.get_errno(),'?')), flush=True)\n" +
		"sys.stdin.read()\n"
	runMu.Lock()
	defer runMu.Unlock()
	_, pw, done := holdRun(t, c.cfg, script, c.mark, "io_setup=")
	during, _ := aioNr()
	// Host root's own context, while the run is still in flight.
	var ctx uint64
	_, _, hostErr := unix.Syscall(unix.SYS_IO_SETUP, 1, uintptr(unsafe.Pointer(&ctx)), 0)
	if hostErr == 0 {
		unix.Syscall(unix.SYS_IO_DESTROY, uintptr(ctx), 0, 0)
	}
	pw.Close()
	res := <-done
	after, _ := aioNr()
	t.Logf("fs.aio-nr before %d, during %d, after %d; run: %s; host io_setup(1) errno %d", before, during, after,
		strings.TrimSpace(string(res.Stdout)), int(hostErr))
	if res.Status != sandbox.StatusOK {
		t.Errorf("run: %s %+v\n%s", res.Status, res.Error, res.Stderr)
	}
	if v := parseKV(res.Stdout)["io_setup"]; v != "ENOSYS" {
		t.Errorf("io_setup(65536) inside answered %s, want ENOSYS", v)
	}
	if during-before >= 65536 {
		t.Errorf("HOST EFFECT: fs.aio-nr grew from %d to %d while the run was in flight", before, during)
	}
	if hostErr != 0 {
		t.Errorf("HOST EFFECT: host root's io_setup(1) failed while the run was in flight: %v", hostErr)
	}
	if err := host.intact(c.mark); err != nil {
		t.Error(err)
	}
}

// aioNr reads the host's count of AIO events in use (fs.aio-nr).
func aioNr() (int, error) {
	b, err := os.ReadFile("/proc/sys/fs/aio-nr")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// holdRun starts a python3 script in a run of its own Runner and returns
// once the run has logged a line starting with prefix; the script then
// blocks on stdin, held open by pw until the caller closes it, and done
// delivers the Result. The Runner is closed at the end of the test.
func holdRun(t *testing.T, cfg sandbox.Config, script, mark, prefix string) (*sandbox.Runner, *os.File, <-chan *sandbox.Result) {
	t.Helper()
	reached := make(chan struct{}, 1)
	cfg.Observers = append(cfg.Observers, sandbox.Observer{OnLog: func(e sandbox.LogEvent) {
		if strings.HasPrefix(e.Line.Message, prefix) {
			select {
			case reached <- struct{}{}:
			default:
			}
		}
	}})
	r, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pw.Close() })
	done := make(chan *sandbox.Result, 1)
	go func() {
		res, err := r.Run(context.Background(), sandbox.Command("python3", "-c", script, mark), pr, nil)
		pr.Close()
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	select {
	case <-reached:
	case res := <-done:
		t.Fatalf("the held run ended before logging %q: %s %+v\n%s\n%s", prefix, res.Status, res.Error, res.Stdout, res.Stderr)
	case <-time.After(20 * time.Second):
		t.Fatalf("the held run did not log %q in 20s", prefix)
	}
	return r, pw, done
}
