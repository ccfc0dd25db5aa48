package cgroup

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kb-labs/sandbox/internal/testenv"
)

func init() {
	// The hybrid host's cgroup2 hierarchy: no controllers, but a child gets
	// cgroup.kill (5.14+).
	testenv.Register("cgroup-v2-leaf", func() error {
		d := fmt.Sprintf("/sys/fs/cgroup/unified/cgprobe-%d", os.Getpid())
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("no writable cgroup2 hierarchy at /sys/fs/cgroup/unified: %w", err)
		}
		defer os.Remove(d)
		if !exists(filepath.Join(d, "cgroup.kill")) {
			return errors.New("cgroup2 child has no cgroup.kill (kernel < 5.14)")
		}
		return nil
	})
}

// testPrefix keeps this test process's runs apart from other packages
// testing at the same time (and from leftovers of a crashed run).
var (
	testPrefix = fmt.Sprintf("sbxtest-%d-", os.Getpid())
	testSeq    atomic.Int64
)

func realManager(t *testing.T) Manager {
	t.Helper()
	testenv.Require(t, "root", "cgroup-v1")
	m, err := Detect("/")
	noErr(t, err)
	return m
}

func newRun(t *testing.T, m Manager, l Limits) Group {
	t.Helper()
	g, err := m.Create(fmt.Sprintf("%s%d", testPrefix, testSeq.Add(1)), l)
	noErr(t, err)
	t.Cleanup(func() { g.Close() })
	return g
}

// runDirs lists the run's directory in every hierarchy on this host.
func runDirs(name string) []string {
	var out []string
	for _, h := range []string{"memory", "pids", "cpu", "cpuacct", "freezer", "unified"} {
		out = append(out, filepath.Join("/sys/fs/cgroup", h, Parent, name))
	}
	return out
}

// startGated starts sh -c script, which waits for a line on stdin: the test
// adds it to the run first, then releases it.
func startGated(t *testing.T, g Group, script string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "read _; "+script)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	in, err := cmd.StdinPipe()
	noErr(t, err)
	noErr(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	noErr(t, g.AddProcess(cmd.Process.Pid))
	_, err = io.WriteString(in, "go\n")
	noErr(t, err)
	return cmd, &out
}

func TestIntegrationMemoryLimit(t *testing.T) {
	m := realManager(t)
	const limit = 32 << 20
	g := newRun(t, m, Limits{MemoryBytes: limit})
	cmd, _ := startGated(t, g, "head -c 100M /dev/zero | tail")
	err := cmd.Wait()
	if err == nil {
		t.Fatal("tail of 100 MiB without newline succeeded under a 32 MiB limit")
	}
	s, err := g.Stats()
	noErr(t, err)
	if s.OOMKills < 1 {
		t.Errorf("OOMKills = %d, want >= 1", s.OOMKills)
	}
	if !s.HasMemoryPeak || s.MemoryPeak < limit*3/4 || s.MemoryPeak > limit {
		t.Errorf("MemoryPeak = %d (has %v), want within [24 MiB, 32 MiB]", s.MemoryPeak, s.HasMemoryPeak)
	}
	t.Logf("OOM kills %d, peak %.1f MiB", s.OOMKills, float64(s.MemoryPeak)/(1<<20))
}

func TestIntegrationPidsLimit(t *testing.T) {
	m := realManager(t)
	g := newRun(t, m, Limits{Pids: 4})
	cmd, out := startGated(t, g, "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait")
	_ = cmd.Wait()
	s, err := g.Stats()
	noErr(t, err)
	if !s.PidsLimitHit {
		t.Errorf("PidsLimitHit = false; output %q", out.String())
	}
	if s.HasPidsPeak && s.PidsPeak > 4 {
		t.Errorf("PidsPeak = %d above the limit 4", s.PidsPeak)
	}
	if !strings.Contains(out.String(), "fork") && !strings.Contains(out.String(), "resource") {
		t.Logf("shell output does not mention the failed fork: %q", out.String())
	}
}

func TestIntegrationCPUUsage(t *testing.T) {
	m := realManager(t)
	g := newRun(t, m, Limits{CPUs: 0.5})
	startGated(t, g, "while :; do :; done")
	var last time.Duration
	deadline := time.Now().Add(10 * time.Second)
	for last < 200*time.Millisecond && time.Now().Before(deadline) {
		u, err := g.CPUUsage()
		noErr(t, err)
		if u < last {
			t.Fatalf("CPUUsage went backwards: %v after %v", u, last)
		}
		last = u
		time.Sleep(20 * time.Millisecond)
	}
	if last < 200*time.Millisecond {
		t.Fatalf("busy child used only %v of CPU in 10 s", last)
	}
	s, err := g.Stats()
	noErr(t, err)
	if !s.HasCPU || s.CPUUsage < last || s.CPUUser+s.CPUSystem == 0 {
		t.Errorf("Stats = %+v after CPUUsage %v", s, last)
	}
	noErr(t, g.Kill())
}

// listed returns every pid in the run across hierarchies.
func listed(t *testing.T, name string) []int {
	var all []int
	for _, d := range runDirs(name) {
		p, err := procsOf(d)
		noErr(t, err)
		all = append(all, p...)
	}
	return all
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

// withoutLeaf is the v1 manager as on a host without cgroup2: Kill must
// then rely on the freezer and per-process SIGKILL alone.
func withoutLeaf(t *testing.T, m Manager) Manager {
	v1, ok := m.(*v1Manager)
	if !ok {
		t.Skip("not a v1 host")
	}
	c := *v1
	c.leaf = nil
	c.feat.Leaf, c.feat.KillFile, c.feat.CloneIntoCgroup = false, false, false
	return &c
}

func TestIntegrationKillTree(t *testing.T) {
	m := realManager(t)
	t.Run("default", func(t *testing.T) { testKillTree(t, m) })
	t.Run("freezer only", func(t *testing.T) { testKillTree(t, withoutLeaf(t, m)) })
}

func testKillTree(t *testing.T, m Manager) {
	g := newRun(t, m, Limits{Pids: 64})
	// Grandchildren that ignore SIGTERM, one double-forked out of the tree.
	cmd, _ := startGated(t, g, `trap "" TERM; for i in 1 2 3; do (trap "" TERM; sleep 1000) & done; (sleep 1000 &); sleep 1000`)
	var pids []int
	deadline := time.Now().Add(5 * time.Second)
	for len(pids) < 6 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		pids = listedIn(t, "/sys/fs/cgroup/pids/sandbox/"+g.Name())
	}
	if len(pids) < 6 {
		t.Fatalf("only %d processes in the run", len(pids))
	}
	start := time.Now()
	noErr(t, g.Kill())
	if rest := listed(t, g.Name()); len(rest) != 0 {
		t.Errorf("processes left after Kill: %v", rest)
	}
	for _, p := range pids {
		if alive(p) {
			t.Errorf("pid %d still alive after Kill", p)
		}
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("shell ended with %v, want SIGKILL", err)
	}
	t.Logf("killed %d processes in %v", len(pids), time.Since(start))
}

func listedIn(t *testing.T, dir string) []int {
	p, err := procsOf(dir)
	noErr(t, err)
	return p
}

func TestIntegrationCloseRemovesEverything(t *testing.T) {
	m := realManager(t)
	g, err := m.Create(fmt.Sprintf("%s%d", testPrefix, testSeq.Add(1)), Limits{MemoryBytes: 64 << 20, Pids: 16, CPUs: 1})
	noErr(t, err)
	dirs := runDirs(g.Name())
	for _, d := range dirs {
		if !exists(d) {
			t.Errorf("Create did not make %s", d)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dirs[0], "memory.memsw.limit_in_bytes")); strings.TrimSpace(string(b)) != "67108864" {
		t.Errorf("memsw limit = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dirs[2], "cpu.cfs_quota_us")); strings.TrimSpace(string(b)) != "100000" {
		t.Errorf("cfs_quota_us = %q", b)
	}
	cmd, _ := startGated(t, g, "sleep 1000 & sleep 1000")
	noErr(t, g.Close())
	noErr(t, g.Close())
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("Close left %s (%v)", d, err)
		}
	}
	if cmd.Wait() == nil {
		t.Error("child survived Close")
	}
	for _, h := range []string{"memory", "pids", "cpu", "cpuacct", "freezer", "unified"} {
		if !exists(filepath.Join("/sys/fs/cgroup", h, Parent)) {
			t.Errorf("Close removed the parent %s/%s", h, Parent)
		}
	}
}

func TestIntegrationSweep(t *testing.T) {
	m := realManager(t)
	pfx := fmt.Sprintf("%ssweep%d-", testPrefix, testSeq.Add(1))
	var victims []Group
	for i := range 2 {
		g, err := m.Create(fmt.Sprintf("%s%d", pfx, i), Limits{})
		noErr(t, err)
		victims = append(victims, g)
	}
	cmd, _ := startGated(t, victims[0], "sleep 1000")
	other := newRun(t, m, Limits{})
	n, err := m.Sweep(pfx)
	noErr(t, err)
	if n != 2 {
		t.Errorf("Sweep removed %d, want 2", n)
	}
	for _, g := range victims {
		for _, d := range runDirs(g.Name()) {
			if exists(d) {
				t.Errorf("Sweep left %s", d)
			}
		}
	}
	if cmd.Wait() == nil {
		t.Error("process of a swept run survived")
	}
	for _, d := range runDirs(other.Name()) {
		if !exists(d) {
			t.Errorf("Sweep removed %s, which does not have the prefix", d)
		}
	}
}

// On the hybrid host the v2 leaf takes the program at fork
// (CLONE_INTO_CGROUP through Dir) and kills it through cgroup.kill even
// when it is in no v1 group of the run.
func TestIntegrationV2Leaf(t *testing.T) {
	m := realManager(t)
	testenv.Require(t, "cgroup-v2-leaf")
	if f := m.Features(); !f.Leaf || !f.KillFile || !f.CloneIntoCgroup {
		t.Fatalf("Features = %+v, want the v2 leaf with cgroup.kill", f)
	}
	g := newRun(t, m, Limits{})
	fd, err := g.Dir()
	noErr(t, err)
	cmd := exec.Command("sleep", "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	noErr(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid))
	noErr(t, err)
	if !strings.Contains(string(b), "0::/"+Parent+"/"+g.Name()+"\n") {
		t.Fatalf("CLONE_INTO_CGROUP child is not in the leaf:\n%s", b)
	}
	if strings.Contains(string(b), ":pids:/"+Parent) {
		t.Fatalf("child unexpectedly in the v1 run groups:\n%s", b)
	}
	noErr(t, g.Kill())
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("leaf member ended with %v, want SIGKILL from cgroup.kill", err)
	}
}

// A thread moves itself in through OpenTasks (writing "0"), raising the
// pids limit by one until ForgetThread, and a child it forks is born
// inside every v1 hierarchy of the run.
func TestIntegrationOpenTasks(t *testing.T) {
	m := realManager(t)
	g := newRun(t, m, Limits{Pids: 8})
	pidsFile := filepath.Join("/sys/fs/cgroup/pids", Parent, g.Name(), "pids.max")
	if err := g.ForgetThread(); err == nil {
		t.Error("ForgetThread before OpenTasks: want an error")
	}
	files, err := g.OpenTasks()
	noErr(t, err)
	if _, err := g.OpenTasks(); err == nil {
		t.Error("OpenTasks twice: want an error")
	}
	type entered struct {
		cgroup []byte
		child  *exec.Cmd
		err    error
	}
	ch := make(chan entered, 1)
	go func() {
		runtime.LockOSThread()
		var e entered
		// The engine's forking thread ends inside the run; this one may be
		// the main thread, which cannot end, so it moves out (the same
		// way, into the parent sandbox/) before it unlocks.
		defer func() {
			for _, h := range []string{"memory", "pids", "cpu", "cpuacct", "freezer"} {
				if err := os.WriteFile(filepath.Join("/sys/fs/cgroup", h, Parent, "tasks"), []byte("0"), 0); err != nil && e.err == nil {
					e.err = err
				}
			}
			ch <- e
			runtime.UnlockOSThread()
		}()
		for _, f := range files {
			if _, e.err = f.Write([]byte("0")); e.err != nil {
				break
			}
		}
		if e.err == nil {
			e.cgroup, e.err = os.ReadFile("/proc/thread-self/cgroup")
		}
		if e.err == nil {
			e.child = exec.Command("sleep", "1000")
			e.err = e.child.Start()
		}
	}()
	e := <-ch
	for _, f := range files {
		f.Close()
	}
	noErr(t, e.err)
	t.Cleanup(func() { e.child.Process.Kill(); e.child.Wait() })
	if b, _ := os.ReadFile(pidsFile); strings.TrimSpace(string(b)) != "9" {
		t.Errorf("pids.max while the thread is inside = %q, want 9", b)
	}
	noErr(t, g.ForgetThread())
	if b, _ := os.ReadFile(pidsFile); strings.TrimSpace(string(b)) != "8" {
		t.Errorf("pids.max after ForgetThread = %q, want 8", b)
	}
	child, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", e.child.Process.Pid))
	noErr(t, err)
	for _, c := range []string{"memory", "pids", "cpu", "cpuacct", "freezer"} {
		want := ":" + c + ":/" + Parent + "/" + g.Name() + "\n"
		if !strings.Contains(string(e.cgroup), want) {
			t.Errorf("thread not in the run's %s cgroup:\n%s", c, e.cgroup)
		}
		if !strings.Contains(string(child), want) {
			t.Errorf("child not in the run's %s cgroup:\n%s", c, child)
		}
	}
	noErr(t, g.Close())
	if e.child.Wait() == nil {
		t.Error("child survived Close")
	}
}
