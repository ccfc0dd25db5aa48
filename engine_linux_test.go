package sandbox_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kb-labs/sandbox"
	"github.com/kb-labs/sandbox/internal/testenv"
)

// newRunner returns a subprocess Runner for cfg, closed with the test.
func newEngineRunner(t *testing.T, cfg sandbox.Config) *sandbox.Runner {
	t.Helper()
	testenv.Require(t, "root", "userns", "cgroup-v1")
	r, err := sandbox.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func run(t *testing.T, r *sandbox.Runner, argv ...string) *sandbox.Result {
	t.Helper()
	res, err := r.Run(context.Background(), sandbox.Command(argv...), nil, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func sh(t *testing.T, r *sandbox.Runner, script string) *sandbox.Result {
	t.Helper()
	return run(t, r, "sh", "-c", script)
}

func wantStatus(t *testing.T, res *sandbox.Result, want sandbox.Status) {
	t.Helper()
	if res.Status != want {
		t.Fatalf("status %s, want %s (error %+v, stdout %q, stderr %q)", res.Status, want, res.Error, res.Stdout, res.Stderr)
	}
}

func TestIdentity(t *testing.T) {
	r := newEngineRunner(t, sandbox.Config{})
	res := sh(t, r, `echo $$; id -u; id -G; hostname; ls /proc | grep -c '^[0-9]'; cat /proc/self/status | grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):'`)
	wantStatus(t, res, sandbox.StatusOK)
	lines := strings.Split(strings.TrimSpace(string(res.Stdout)), "\n")
	if len(lines) < 9 {
		t.Fatalf("short output %q", res.Stdout)
	}
	if lines[0] != "2" {
		t.Errorf("the program is pid %s, want 2", lines[0])
	}
	lines = lines[1:]
	if lines[0] != "1000" || lines[1] != "1000" || lines[2] != "sandbox" {
		t.Errorf("uid, groups, hostname = %q, %q, %q; want 1000, 1000, sandbox", lines[0], lines[1], lines[2])
	}
	// Only the run's own processes: the init, sh, ls and grep.
	if n, _ := strconv.Atoi(lines[3]); n < 2 || n > 6 {
		t.Errorf("/proc lists %d processes, want only the run's own", n)
	}
	status := strings.Join(lines[4:], "\n")
	for _, want := range []string{"CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(status, want) {
			t.Errorf("/proc/self/status lacks %q:\n%s", want, status)
		}
	}
	iso := res.Isolation
	if iso.Mode != sandbox.Subprocess || len(iso.Namespaces) != 7 || iso.Cgroup != "v1" || !iso.Seccomp || iso.LandlockABI < 6 || !iso.NoNewPrivs {
		t.Errorf("isolation %+v", iso)
	}
}

func TestVerdicts(t *testing.T) {
	r := newEngineRunner(t, sandbox.Config{Execution: sandbox.Execution{Grace: sandbox.Duration(time.Second)}})
	cases := []struct {
		name   string
		argv   []string
		status sandbox.Status
		exit   int
		signal string
	}{
		{"exit 7", []string{"sh", "-c", "exit 7"}, sandbox.StatusNonzeroExit, 7, ""},
		{"sigterm self", []string{"sh", "-c", "kill -TERM $$"}, sandbox.StatusSignaled, 143, "SIGTERM"},
		{"not found", []string{"/nonexistent"}, sandbox.StatusSetupError, 127, ""},
		{"not found in PATH", []string{"no-such-command"}, sandbox.StatusSetupError, 127, ""},
		{"not executable", []string{"/etc/passwd"}, sandbox.StatusSetupError, 126, ""},
		{"ok", []string{"true"}, sandbox.StatusOK, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := run(t, r, c.argv...)
			wantStatus(t, res, c.status)
			if got := res.ExitStatus(); got != c.exit {
				t.Errorf("exit status %d, want %d", got, c.exit)
			}
			if res.Signal != c.signal {
				t.Errorf("signal %q, want %q", res.Signal, c.signal)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		r := newEngineRunner(t, sandbox.Config{Execution: sandbox.Execution{Timeout: sandbox.Duration(300 * time.Millisecond), Grace: sandbox.Duration(time.Second)}})
		start := time.Now()
		res := run(t, r, "sleep", "10")
		wantStatus(t, res, sandbox.StatusTimeout)
		if el := time.Since(start); el > 300*time.Millisecond+time.Second+time.Second {
			t.Errorf("timeout took %v, want within deadline + grace + 1s", el)
		}
		if res.ExitStatus() != 124 {
			t.Errorf("exit status %d, want 124", res.ExitStatus())
		}
	})
	t.Run("sigterm ignored", func(t *testing.T) {
		r := newEngineRunner(t, sandbox.Config{Execution: sandbox.Execution{Timeout: sandbox.Duration(200 * time.Millisecond), Grace: sandbox.Duration(300 * time.Millisecond)}})
		start := time.Now()
		res := sh(t, r, `trap '' TERM; while :; do :; done`)
		wantStatus(t, res, sandbox.StatusTimeout)
		if res.Signal != "SIGKILL" {
			t.Errorf("signal %q, want SIGKILL after the grace period", res.Signal)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("took %v", el)
		}
	})
	t.Run("cpu time", func(t *testing.T) {
		r := newEngineRunner(t, sandbox.Config{Execution: sandbox.Execution{CPUTime: sandbox.Duration(500 * time.Millisecond)}})
		res := sh(t, r, `while :; do :; done`)
		wantStatus(t, res, sandbox.StatusCPULimit)
		if res.Metrics.CPUMs == nil || *res.Metrics.CPUMs < 450 {
			t.Errorf("cpuMs %v, want about 500", res.Metrics.CPUMs)
		}
	})
	t.Run("memory", func(t *testing.T) {
		r := newEngineRunner(t, sandbox.Config{Execution: sandbox.Execution{Memory: 32 * sandbox.MiB}})
		res := run(t, r, "python3", "-c", "x = bytearray(1 << 30)")
		wantStatus(t, res, sandbox.StatusMemoryLimit)
		if p := res.Metrics.MemPeakBytes; p == nil || *p < 24<<20 || *p > 33<<20 {
			t.Errorf("memPeakBytes %s, want near 32 MiB", fmtPtr(p))
		}
	})
	t.Run("memory peak", func(t *testing.T) {
		r := newEngineRunner(t, sandbox.Config{Execution: sandbox.Execution{Memory: 256 * sandbox.MiB}})
		res := run(t, r, "python3", "-c", "x = bytearray(50 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1")
		wantStatus(t, res, sandbox.StatusOK)
		// The peak holds the 50 MiB array plus the interpreter and, on
		// cgroup v1, the page cache of the files it read: at least the
		// array, at most the array plus a generous allowance.
		p := res.Metrics.MemPeakBytes
		if p == nil {
			t.Fatal("memPeakBytes missing")
		}
		if *p < 50<<20 || *p > 90<<20 {
			t.Errorf("memPeakBytes %d (%.1f MiB), want between 50 and 90 MiB", *p, float64(*p)/(1<<20))
		}
	})
	t.Run("file size", func(t *testing.T) {
		r := newEngineRunner(t, sandbox.Config{Execution: sandbox.Execution{MaxFileSize: sandbox.MiB}})
		res := run(t, r, "dd", "if=/dev/zero", "of=/tmp/f", "bs=1M", "count=4")
		wantStatus(t, res, sandbox.StatusFileSizeLimit)
	})
	t.Run("file size in a child", func(t *testing.T) {
		// Any process of the run, not only the program: the shell survives
		// its child's SIGXFSZ and exits 153.
		r := newEngineRunner(t, sandbox.Config{Execution: sandbox.Execution{MaxFileSize: sandbox.MiB}})
		res := sh(t, r, "head -c 4M /dev/zero > /tmp/f; exit $?")
		wantStatus(t, res, sandbox.StatusFileSizeLimit)
		if res.ExitCode != 153 {
			t.Errorf("exit code %d, want the shell's own 153", res.ExitCode)
		}
	})
	t.Run("fork bomb", func(t *testing.T) {
		r := newEngineRunner(t, sandbox.Config{Execution: sandbox.Execution{Pids: 20, Timeout: sandbox.Duration(3 * time.Second), Grace: sandbox.Duration(100 * time.Millisecond)}})
		start := time.Now()
		res := sh(t, r, `f() { f | f & }; f; sleep 1`)
		if time.Since(start) > 8*time.Second {
			t.Errorf("fork bomb took %v to end", time.Since(start))
		}
		if res.Metrics.PidsLimitHit == nil || !*res.Metrics.PidsLimitHit {
			t.Errorf("pidsLimitHit %v, want true", res.Metrics.PidsLimitHit)
		}
	})
	t.Run("output", func(t *testing.T) {
		r := newEngineRunner(t, sandbox.Config{Execution: sandbox.Execution{MaxOutput: 10 * sandbox.KiB}})
		start := time.Now()
		res := run(t, r, "yes")
		wantStatus(t, res, sandbox.StatusOutputLimit)
		if !res.StdoutTruncated || len(res.Stdout) != 10<<10 {
			t.Errorf("stdout %d bytes truncated=%v, want the 10 KiB prefix", len(res.Stdout), res.StdoutTruncated)
		}
		if time.Since(start) > 3*time.Second {
			t.Errorf("output limit took %v", time.Since(start))
		}
	})
}

// hostProcesses lists host pids whose command line contains marker.
func hostProcesses(marker string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(b), marker) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestNothingOutlivesTheProgram(t *testing.T) {
	r := newEngineRunner(t, sandbox.Config{})
	marker := fmt.Sprintf("daemon-marker-%d", time.Now().UnixNano())
	// Each daemon is a shell whose command line carries the marker.
	res := sh(t, r, `setsid sh -c 'sleep 300; :' `+marker+` </dev/null >/dev/null 2>&1 &
nohup sh -c 'sleep 300; :' `+marker+` >/dev/null 2>&1 &
(sh -c 'sleep 300; :' `+marker+` &) ; sleep 0.2; ps -eo args | grep -c '^sh -c sleep 300; : `+marker+`'`)
	wantStatus(t, res, sandbox.StatusOK)
	if n := strings.TrimSpace(string(res.Stdout)); n != "3" {
		t.Fatalf("%s daemons were running inside, want 3 (stdout %q, stderr %q)", n, res.Stdout, res.Stderr)
	}
	if got := hostProcesses(marker); len(got) > 0 {
		t.Fatalf("processes left on the host: %v", got)
	}
}

func TestHostIsolation(t *testing.T) {
	r := newEngineRunner(t, sandbox.Config{Permissions: sandbox.Permissions{Env: sandbox.EnvPolicy{Allow: []string{"SBX_ALLOWED_*"}}}})
	t.Run("host file", func(t *testing.T) {
		secret := filepath.Join(os.TempDir(), fmt.Sprintf("sbx-secret-%d", time.Now().UnixNano()))
		if err := os.WriteFile(secret, []byte("s3cret"), 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(secret)
		res := run(t, r, "cat", secret)
		if res.OK || strings.Contains(string(res.Stdout), "s3cret") {
			t.Fatalf("host file readable: %s %q", res.Status, res.Stdout)
		}
	})
	t.Run("environment", func(t *testing.T) {
		t.Setenv("SBX_SECRET_TOKEN", "hunter2")
		t.Setenv("SBX_ALLOWED_X", "visible")
		res := run(t, r, "env")
		wantStatus(t, res, sandbox.StatusOK)
		if strings.Contains(string(res.Stdout), "hunter2") {
			t.Error("a host variable leaked into the sandbox")
		}
		if !strings.Contains(string(res.Stdout), "SBX_ALLOWED_X=visible") {
			t.Error("an allowed variable is missing")
		}
		for _, want := range []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/workspace", "TMPDIR=/tmp", "LANG=C.UTF-8"} {
			if !strings.Contains(string(res.Stdout), want) {
				t.Errorf("base environment lacks %s", want)
			}
		}
	})
	t.Run("read-only system", func(t *testing.T) {
		marker := fmt.Sprintf("sbx-write-%d", time.Now().UnixNano())
		for _, dir := range []string{"/usr", "/etc", "/", "/usr/bin"} {
			res := sh(t, r, "echo x > "+filepath.Join(dir, marker))
			if res.OK {
				t.Errorf("write to %s succeeded", dir)
			}
			if _, err := os.Stat(filepath.Join(dir, marker)); err == nil {
				os.Remove(filepath.Join(dir, marker))
				t.Errorf("file appeared on the host in %s", dir)
			}
		}
	})
	t.Run("network none", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan struct{}, 1)
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
				accepted <- struct{}{}
			}
		}()
		port := ln.Addr().(*net.TCPAddr).Port
		res := run(t, r, "python3", "-c", fmt.Sprintf("import socket; socket.create_connection(('127.0.0.1', %d), timeout=1)", port))
		if res.OK {
			t.Error("connection to a host port succeeded")
		}
		select {
		case <-accepted:
			t.Error("the host listener accepted a connection from the sandbox")
		case <-time.After(100 * time.Millisecond):
		}
	})
	t.Run("leaked fd", func(t *testing.T) {
		f, err := os.CreateTemp("", "sbx-leak")
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(f.Name())
		f.WriteString("leaked-secret")
		// Clear close-on-exec on purpose: the engine must still not pass it.
		syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_SETFD, 0)
		defer f.Close()
		res := sh(t, r, fmt.Sprintf("ls /proc/self/fd; cat /proc/self/fd/%d", f.Fd()))
		if strings.Contains(string(res.Stdout), "leaked-secret") {
			t.Fatal("a leaked host fd is readable inside")
		}
		fds := strings.Fields(string(res.Stdout))
		for _, fd := range fds {
			if n, err := strconv.Atoi(fd); err == nil && n > 3 {
				t.Errorf("unexpected fd %d open in the program (fds %v)", n, fds)
			}
		}
	})
}

// TestPerRunHostIDs: two runs in flight at once are two different host
// users. Each leaves a file in a shared workdir and waits until the other's
// is there, so both are alive together; on the host the files' owners
// differ and both lie in the range.
func TestPerRunHostIDs(t *testing.T) {
	testenv.Require(t, "root", "userns")
	dir, err := os.MkdirTemp("", "sbx-ids")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o777)
	// Plain binds: an id-mapped workdir would give both files its owner.
	r := newEngineRunner(t, sandbox.Config{Permissions: sandbox.Permissions{Filesystem: sandbox.Filesystem{Workdir: dir, IDMap: sandbox.IDMapNone}}})
	var wg sync.WaitGroup
	results := make([]*sandbox.Result, 2)
	for i, pair := range [][2]string{{"a", "b"}, {"b", "a"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = sh(t, r, fmt.Sprintf("touch /workspace/%s; n=0; while [ ! -e /workspace/%s ] && [ $n -lt 1000 ]; do sleep 0.01; n=$((n+1)); done; [ -e /workspace/%s ]", pair[0], pair[1], pair[1]))
		}()
	}
	wg.Wait()
	for _, res := range results {
		wantStatus(t, res, sandbox.StatusOK)
	}
	var owners []uint32
	for _, f := range []string{"a", "b"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		owners = append(owners, st.Sys().(*syscall.Stat_t).Uid)
	}
	if owners[0] == owners[1] || !sandboxOwned(owners[0]) || !sandboxOwned(owners[1]) {
		t.Errorf("two runs in flight wrote as host uids %v: want two different ids of %s", owners, sandbox.DefaultHostIDRange)
	}
	// Once the runs are over (and the Runner's warm sandboxes closed),
	// their pairs are free again: the lock file holds no lock on them.
	r.Close()
	lf, err := os.Open("/run/sandbox/hostids.lock")
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	for _, user := range owners {
		fl := unix.Flock_t{Type: unix.F_WRLCK, Start: int64(user) - 1, Len: 2}
		if err := unix.FcntlFlock(lf.Fd(), unix.F_OFD_GETLK, &fl); err != nil {
			t.Fatal(err)
		}
		if fl.Type != unix.F_UNLCK {
			t.Errorf("host ids %d and %d are still leased after the runs ended", user-1, user)
		}
	}
}

// TestKilledSupervisorLeavesNothing kills a `sandbox run` process (the test
// binary acting as the CLI) with SIGKILL mid-run.
func TestKilledSupervisorLeavesNothing(t *testing.T) {
	testenv.Require(t, "root", "userns")
	id := fmt.Sprint(time.Now().UnixNano())
	marker := "orphan-marker-" + id
	// The marker is assembled inside, so that only the sandboxed program's
	// command line holds it (not the supervisor's).
	cmd := exec.Command(os.Args[0], "run", "--", "sh", "-c", "m=orphan; sh -c 'sleep 300; :' $m-marker-"+id)
	cmd.Env = append(os.Environ(), "SANDBOX_TEST_AS_CLI=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(hostProcesses(marker)) == 0 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("the sandboxed program never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	dead := cmd.Process.Pid
	cmd.Process.Kill()
	cmd.Wait()
	deadline = time.Now().Add(5 * time.Second)
	for len(hostProcesses(marker)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("processes left after the supervisor died: %v", hostProcesses(marker))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The dead supervisor's run cgroup is swept by the next process that
	// starts a sandbox.
	owned := func() []string {
		var out []string
		entries, _ := os.ReadDir("/sys/fs/cgroup/memory/sandbox")
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), fmt.Sprintf("sbx-%d.", dead)) {
				out = append(out, e.Name())
			}
		}
		return out
	}
	// (Another test process starting meanwhile may have swept them
	// already: packages test in parallel.)
	next := exec.Command(os.Args[0], "run", "--", "true")
	next.Env = append(os.Environ(), "SANDBOX_TEST_AS_CLI=1")
	if out, err := next.CombinedOutput(); err != nil {
		t.Fatalf("next run: %v\n%s", err, out)
	}
	if left := owned(); len(left) > 0 {
		t.Errorf("cgroups of the dead supervisor not swept: %v", left)
	}
}

// TestNoLeaks runs 200 mixed runs, 8 at a time, then checks that nothing the
// test process created is left: processes, cgroups, mounts, descriptors.
func TestNoLeaks(t *testing.T) {
	r := newEngineRunner(t, sandbox.Config{Execution: sandbox.Execution{
		Timeout: sandbox.Duration(2 * time.Second), Grace: sandbox.Duration(50 * time.Millisecond),
		Memory: 64 * sandbox.MiB, MaxOutput: 4 * sandbox.KiB, Pids: 16}})
	mountsBefore := countLines("/proc/self/mountinfo")
	fdsBefore := fdTargets()
	scripts := []string{
		"true", "exit 3", "echo hi", "yes", "sleep 5", "kill -KILL $$",
		"sleep 100 & sleep 100 & echo bg", "f() { f | f & }; f", "/nonexistent",
		"head -c 100000000 /dev/zero | tail -c 1 > /dev/null",
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			ctx := context.Background()
			if i%17 == 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
				defer cancel()
			}
			res, err := r.Run(ctx, sandbox.Command("sh", "-c", scripts[i%len(scripts)]), nil, nil)
			if err != nil || res.Status == "" {
				t.Errorf("run %d: %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	prefix := fmt.Sprintf("sbx-%d.", os.Getpid())
	for _, dir := range []string{"/sys/fs/cgroup/memory/sandbox", "/sys/fs/cgroup/pids/sandbox", "/sys/fs/cgroup/cpu/sandbox", "/sys/fs/cgroup/cpuacct/sandbox", "/sys/fs/cgroup/freezer/sandbox", "/sys/fs/cgroup/unified/sandbox"} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix) {
				t.Errorf("cgroup left: %s/%s", dir, e.Name())
			}
		}
	}
	if n := countLines("/proc/self/mountinfo"); n != mountsBefore {
		t.Errorf("mounts: %d before, %d after", mountsBefore, n)
	}
	// Descriptors the runs opened must all be closed again (a moment is
	// allowed for goroutines that are still returning).
	var leaked []string
	for try := 0; try < 20; try++ {
		leaked = leaked[:0]
		for fd, target := range fdTargets() {
			if fdsBefore[fd] != target {
				leaked = append(leaked, fd+" -> "+target)
			}
		}
		if len(leaked) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(leaked) > 0 {
		t.Errorf("descriptors left open: %v", leaked)
	}
	if kids := childrenOf(os.Getpid()); len(kids) > 0 {
		t.Errorf("child processes left: %v", kids)
	}
}

func countLines(path string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), "\n")
}

func fdTargets() map[string]string {
	m := map[string]string{}
	entries, _ := os.ReadDir("/proc/self/fd")
	for _, e := range entries {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil {
			m[e.Name()] = target
		}
	}
	return m
}

func childrenOf(pid int) []string {
	var out []string
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		out = append(out, strings.Fields(string(b))...)
	}
	return out
}

// TestViolations: a denied system call is counted in violations (errno
// mode: the call fails with EPERM and the program goes on), or ends the run
// as violation (kill mode).
func TestViolations(t *testing.T) {
	r := newEngineRunner(t, sandbox.Config{})
	res := run(t, r, "unshare", "-U", "true")
	if res.OK {
		t.Fatal("unshare -U succeeded inside the sandbox")
	}
	found := false
	for _, v := range res.Violations {
		if v.Syscall == "unshare" && v.Count >= 1 {
			found = true
		}
	}
	if !found {
		t.Errorf("violations %+v, want unshare counted", res.Violations)
	}

	// Kill mode ends the whole run, whichever process made the call (here
	// a child of a shell that would otherwise exit 0), and still reports it.
	k := newEngineRunner(t, sandbox.Config{Security: sandbox.Security{OnViolation: sandbox.ViolationKill}})
	for _, argv := range [][]string{{"unshare", "-U", "true"}, {"sh", "-c", "unshare -U true; exit 0"}} {
		res = run(t, k, argv...)
		wantStatus(t, res, sandbox.StatusViolation)
		if res.ExitStatus() != 124 || res.Error.Code != sandbox.CodeSeccompViolation {
			t.Errorf("%v: exit %d error %+v, want 124, SECCOMP_VIOLATION", argv, res.ExitStatus(), res.Error)
		}
		if len(res.Violations) == 0 || res.Violations[0].Syscall != "unshare" {
			t.Errorf("%v: violations %+v, want unshare", argv, res.Violations)
		}
	}
}

// TestLargeCommandLine: argv and environment well past the default socket
// buffer (208 KiB) reach the program (each string under the kernel's 128 KiB
// per-string limit).
func TestLargeCommandLine(t *testing.T) {
	chunk := strings.Repeat("x", 100<<10)
	r := newEngineRunner(t, sandbox.Config{Permissions: sandbox.Permissions{Env: sandbox.EnvPolicy{
		Set: map[string]string{"BIG1": chunk, "BIG2": chunk, "BIG3": chunk}}}})
	res := run(t, r, "sh", "-c", `echo ${#BIG1} ${#BIG2} ${#BIG3} ${#0}`, chunk)
	wantStatus(t, res, sandbox.StatusOK)
	if got := strings.TrimSpace(string(res.Stdout)); got != "102400 102400 102400 102400" {
		t.Errorf("sizes seen inside %q", got)
	}
}

// TestReadWriteFile: a single host file bound read-write is writable inside
// (Landlock allows it) and the write lands on the host.
func TestReadWriteFile(t *testing.T) {
	testenv.Require(t, "root", "userns")
	dir, err := os.MkdirTemp("", "sbx-rwfile")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	file := filepath.Join(dir, "db.txt")
	if err := os.WriteFile(file, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(file, 0o666)
	r := newEngineRunner(t, sandbox.Config{Permissions: sandbox.Permissions{Filesystem: sandbox.Filesystem{
		ReadWrite: []sandbox.Mount{{Source: file, Target: "/data/db.txt"}}}}})
	res := sh(t, r, "echo new >> /data/db.txt")
	wantStatus(t, res, sandbox.StatusOK)
	if b, _ := os.ReadFile(file); string(b) != "old\nnew\n" {
		t.Errorf("host file reads %q", b)
	}
}

// sandboxOwned reports whether uid is one of the built-in range's host ids,
// from which every run as root takes its own pair.
func sandboxOwned(uid uint32) bool {
	first, count, _ := strings.Cut(sandbox.DefaultHostIDRange, ":")
	f, _ := strconv.ParseUint(first, 10, 32)
	c, _ := strconv.ParseUint(count, 10, 32)
	return uint64(uid) >= f && uint64(uid) < f+c
}

// fmtPtr prints an optional number by value, not by address.
func fmtPtr(p *int64) string {
	if p == nil {
		return "<nil>"
	}
	return fmt.Sprint(*p)
}
