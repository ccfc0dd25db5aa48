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

func TestEnterLeaveThreadFake(t *testing.T) {
	f := fakeHybrid(t)
	for _, p := range []string{"memory/process_api/abc", "pids", "cpu", "cpuacct"} {
		f.write("sys/fs/cgroup/"+p+"/tasks", "")
	}
	f.write("proc/77/task/77/cgroup", "9:name=systemd:/\n8:pids:/\n6:freezer:/gone\n4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n")
	m, err := f.detect(0)
	noErr(t, err)
	g, err := m.Create("r", Limits{Pids: 5})
	noErr(t, err)
	f.log = nil
	noErr(t, g.EnterThread(77))
	sameStrings(t, "enter", f.writes(""), []string{
		"sys/fs/cgroup/pids/sandbox/r/pids.max=6",
		"sys/fs/cgroup/memory/sandbox/r/tasks=77",
		"sys/fs/cgroup/pids/sandbox/r/tasks=77",
		"sys/fs/cgroup/cpu/sandbox/r/tasks=77",
		"sys/fs/cgroup/cpuacct/sandbox/r/tasks=77",
		"sys/fs/cgroup/freezer/sandbox/r/tasks=77",
	})
	if err := g.EnterThread(77); !errors.Is(err, ErrInvalid) {
		t.Errorf("second EnterThread = %v, want ErrInvalid", err)
	}
	f.log = nil
	noErr(t, g.LeaveThread(77))
	sameStrings(t, "leave", f.writes(""), []string{
		"sys/fs/cgroup/pids/sandbox/r/pids.max=5", // before the thread leaves
		"sys/fs/cgroup/memory/process_api/abc/tasks=77",
		"sys/fs/cgroup/pids/tasks=77",
		"sys/fs/cgroup/cpu/tasks=77",
		"sys/fs/cgroup/cpuacct/tasks=77",
		"sys/fs/cgroup/freezer/sandbox/tasks=77", // its cgroup is gone: parked in sandbox/
	})
	if err := g.LeaveThread(77); !errors.Is(err, ErrInvalid) {
		t.Errorf("LeaveThread of a thread not inside = %v, want ErrInvalid", err)
	}
	// Close moves a thread still inside back out before killing.
	noErr(t, g.EnterThread(77))
	f.log = nil
	noErr(t, g.Close())
	if w := f.writes("tasks"); len(w) != 5 || w[0] != "sys/fs/cgroup/memory/process_api/abc/tasks=77" {
		t.Errorf("Close did not move the entered thread out first: %q", f.log)
	}
}

func TestEnterThreadFailureRollsBack(t *testing.T) {
	f := fakeHybrid(t)
	f.write("sys/fs/cgroup/memory/tasks", "")
	f.write("proc/78/task/78/cgroup", "4:memory:/\n")
	m, err := f.detect(0)
	noErr(t, err)
	g, err := m.Create("r", Limits{Pids: 5})
	noErr(t, err)
	f.fail = func(op, rel string) error {
		if rel == "sys/fs/cgroup/cpu/sandbox/r/tasks" {
			return fmt.Errorf("injected")
		}
		return nil
	}
	f.log = nil
	if err := g.EnterThread(78); err == nil {
		t.Fatal("EnterThread succeeded despite the injected failure")
	}
	sameStrings(t, "rollback", f.writes(""), []string{
		"sys/fs/cgroup/pids/sandbox/r/pids.max=6",
		"sys/fs/cgroup/memory/sandbox/r/tasks=78",
		"sys/fs/cgroup/pids/sandbox/r/tasks=78",
		"sys/fs/cgroup/memory/tasks=78",
		"sys/fs/cgroup/pids/sandbox/tasks=78", // no pids line: parked in sandbox/
		"sys/fs/cgroup/pids/sandbox/r/pids.max=5",
	})
	f.fail = nil
	noErr(t, g.Close())
}

func TestV2RefusesThreadEntry(t *testing.T) {
	f := fakeV2(t)
	m, err := f.detect(0)
	noErr(t, err)
	g, err := m.Create("r", Limits{})
	noErr(t, err)
	defer g.Close()
	if err := g.EnterThread(1); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("EnterThread on v2 = %v, want ErrUnsupported", err)
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
