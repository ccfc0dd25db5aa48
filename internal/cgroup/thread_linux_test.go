package cgroup

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestV2RefusesThreadEntry(t *testing.T) {
	f := fakeV2(t)
	m, err := f.detect(0)
	noErr(t, err)
	g, err := m.Create("r", Limits{})
	noErr(t, err)
	defer g.Close()
	if _, err := g.OpenTasks(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("OpenTasks on v2 = %v, want ErrUnsupported", err)
	}
	if err := g.ForgetThread(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("ForgetThread on v2 = %v, want ErrUnsupported", err)
	}
	fd, err := g.Dir()
	if err != nil || fd < 0 {
		t.Errorf("Dir on v2 = %d, %v", fd, err)
	}
	noErr(t, g.Close())
	if _, err := g.Dir(); err == nil {
		t.Errorf("Dir after Close succeeded")
	}
}

// A pid listed in cgroup.procs whose /proc/<pid>/cgroup says it is elsewhere
// (a recycled pid) must never be signalled.
func TestKillSparesNonMembers(t *testing.T) {
	old := killTimeout
	killTimeout = 300 * time.Millisecond
	t.Cleanup(func() { killTimeout = old })
	f := fakeHybrid(t)
	m, err := f.detect(0)
	noErr(t, err)
	g, err := m.Create("r", Limits{})
	noErr(t, err)
	bystander := exec.Command("sleep", "30")
	noErr(t, bystander.Start())
	t.Cleanup(func() { bystander.Process.Kill(); bystander.Wait() })
	pid := bystander.Process.Pid
	f.write("sys/fs/cgroup/pids/sandbox/r/cgroup.procs", fmt.Sprintf("%d\n", pid))
	f.write(fmt.Sprintf("proc/%d/cgroup", pid), "8:pids:/elsewhere\n4:memory:/elsewhere\n0::/\n")
	f.log = nil
	err = g.Kill()
	if !errors.Is(err, ErrBusy) {
		t.Errorf("Kill = %v, want ErrBusy", err)
	}
	if w := f.writes("freezer.state"); len(w) < 2 || !strings.HasSuffix(w[0], "=FROZEN") || !strings.HasSuffix(w[len(w)-1], "=THAWED") {
		t.Errorf("freezer writes = %q, want FROZEN ... THAWED", w)
	}
	if w := f.writes("unified/sandbox/r/cgroup.kill"); len(w) != 1 {
		t.Errorf("leaf cgroup.kill writes = %q", w)
	}
	if bystander.ProcessState != nil || bystander.Process.Signal(syscall.Signal(0)) != nil {
		t.Fatalf("bystander pid %d was signalled", pid)
	}
	f.write("sys/fs/cgroup/pids/sandbox/r/cgroup.procs", "")
	noErr(t, g.Close())
}
