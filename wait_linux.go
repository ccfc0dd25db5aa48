package sandbox

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/kb-labs/sandbox/internal/proc"
	"github.com/kb-labs/sandbox/internal/procevents"
)

// cpuPoll is how often the run's CPU usage is compared with its limit.
const cpuPoll = 5 * time.Millisecond

// wait runs until the program ends, enforcing the wall-clock limit, the CPU
// limit, and the caller's cancellation. Ending a run: SIGTERM to every
// process, then after the grace period SIGKILL of the whole pid namespace and
// cgroup.
func (r *subRun) wait(ctx context.Context, deadline time.Time) proc.Exit {
	rs := r.rs
	exitCh := make(chan proc.Exit, 1)
	go func() { exitCh <- r.box.WaitExit() }()

	var timeout <-chan time.Time
	if r.exec.Timeout != Unlimited {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	var cpuTick <-chan time.Time
	var cpuLimit time.Duration
	if r.exec.CPUTime != Unlimited && r.group != nil {
		cpuLimit = time.Duration(r.exec.CPUTime)
		t := time.NewTicker(cpuPoll)
		defer t.Stop()
		cpuTick = t.C
	}
	var grace <-chan time.Time
	terminating := false
	terminate := func() {
		if terminating {
			return
		}
		terminating = true
		r.cancelProtocol() // {"type":"cancel"} goes with the SIGTERM (protocol_linux.go)
		g := time.Duration(r.exec.Grace)
		if g <= time.Millisecond {
			r.kill()
			return
		}
		r.bySandbox.Store(true)
		r.box.Signal(syscall.SIGTERM)
		t := time.NewTimer(g)
		grace = t.C
	}
	done := ctx.Done()
	for {
		select {
		case e := <-exitCh:
			return e
		case <-done:
			done = nil
			rs.limit(StatusCancelled, "cancelled by the caller: "+context.Cause(ctx).Error())
			terminate()
		case <-timeout:
			timeout = nil
			rs.limit(StatusTimeout, fmt.Sprintf("killed after the %s wall-clock limit", r.exec.Timeout))
			terminate()
		case <-cpuTick:
			if used, err := r.group.CPUUsage(); err == nil && used >= cpuLimit {
				cpuTick = nil
				rs.limit(StatusCPULimit, fmt.Sprintf("killed after %s of CPU time (limit %s)", used.Round(time.Millisecond), r.exec.CPUTime))
				r.kill()
			}
		case <-grace:
			grace = nil
			r.kill()
		}
	}
}

// endRun kills whatever the program left behind: the run ends with its
// program, and no pipe a daemon holds may keep it open.
//
// The init is pid 1 of the run's pid namespace: the kernel kills every
// process of the namespace when it dies, and it is reaped only once they are
// all gone. Waiting for that event empties the run without polling its
// cgroups; the cgroup kill after it finds nothing, and remains the backstop
// when the init could not be reaped in time.
func (r *subRun) endRun() {
	if r.box != nil {
		r.box.Kill()
		select {
		case <-r.box.Done():
		case <-time.After(endWait):
		}
	}
	if r.group != nil {
		r.group.Kill()
	}
}

// endWait bounds the wait for the init's end in endRun: a process in
// uninterruptible sleep can hold its pid namespace for a while.
const endWait = 2 * time.Second

// collect turns the exit and the cgroup's accounting into the result.
func (r *subRun) collect(e proc.Exit) {
	if r.ipc != nil {
		defer r.finishProtocol(e) // the protocol's verdict over the exit's (protocol_linux.go)
	}
	rs := r.rs
	res := &rs.result
	res.Stdout, res.StdoutTruncated = r.stdout.bytes()
	res.Stderr, res.StderrTruncated = r.stderr.bytes()
	res.Metrics.TimeMs = ms(time.Since(rs.start))

	oom := 0
	if e.Reported && (e.CPUUser > 0 || e.CPUSystem > 0) {
		// Without a cgroup (rootless without delegation), the init's
		// account of what its processes used; a cgroup's is exact and
		// replaces it below.
		setCPU(&res.Metrics, 0, e.CPUUser, e.CPUSystem)
	}
	if r.group != nil {
		if st, err := r.group.Stats(); err == nil {
			if st.HasCPU {
				setCPU(&res.Metrics, st.CPUUsage, st.CPUUser, st.CPUSystem)
			}
			if st.HasMemoryPeak {
				setMemPeak(&res.Metrics, st.MemoryPeak)
			}
			if st.HasPidsPeak {
				p := st.PidsPeak
				res.Metrics.PidsPeak = &p
			}
			hit := st.PidsLimitHit
			res.Metrics.PidsLimitHit = &hit
			oom = st.OOMKills
		}
	}
	if r.doneEvents() {
		rs.limit(StatusFileSizeLimit, fmt.Sprintf("a process was killed by SIGXFSZ: a file passed the %s limit", r.exec.MaxFileSize))
	}
	if oom > 0 {
		rs.limit(StatusMemoryLimit, fmt.Sprintf("out of memory: the %s limit was reached (%d OOM kill(s))", r.exec.Memory, oom))
	}
	if r.listener != nil {
		for _, v := range r.listener.Violations() {
			res.Violations = append(res.Violations, Violation{Syscall: v.Syscall, Count: v.Count})
		}
		res.ViolationsIncomplete = r.ownFilter.Load()
	}

	if !e.Reported {
		res.ExitCode = -1
		if r.bySandbox.Load() {
			res.Signal = "SIGKILL"
			rs.outcome(StatusSignaled, CodeProcessSignaled, "killed by the sandbox")
			return
		}
		rs.outcome(StatusSetupError, CodeSetupFailed, "the sandbox init ended before the program: "+e.Err)
		return
	}
	ws := e.Status
	switch {
	case ws.Exited():
		res.ExitCode = ws.ExitStatus()
		if res.ExitCode == 0 {
			rs.outcome(StatusOK, "", "")
		} else {
			rs.outcome(StatusNonzeroExit, CodeProcessExit, fmt.Sprintf("exited with code %d", res.ExitCode))
		}
	case ws.Signaled():
		sig := ws.Signal()
		res.ExitCode = -1
		res.Signal = signalName(int(sig))
		switch sig {
		case syscall.SIGXCPU:
			rs.limit(StatusCPULimit, "killed by SIGXCPU: the CPU-time limit was reached")
		case syscall.SIGXFSZ:
			rs.limit(StatusFileSizeLimit, fmt.Sprintf("killed by SIGXFSZ: a file passed the %s limit", r.exec.MaxFileSize))
		case syscall.SIGSYS:
			if r.s.cfg.Security.OnViolation == ViolationKill {
				rs.limit(StatusViolation, "killed by a denied system call")
			}
		}
		rs.outcome(StatusSignaled, CodeProcessSignaled, "killed by "+res.Signal)
	default:
		res.ExitCode = -1
		rs.outcome(StatusSetupError, CodeSetupFailed, fmt.Sprintf("unexpected wait status %#x", int(ws)))
	}
}

// doneEvents stops following the run's processes, after reading every
// event already queued; it reports whether one of them died of SIGXFSZ.
func (r *subRun) doneEvents() bool {
	if r.events == nil {
		return false
	}
	if w, err := procevents.Shared(); err == nil {
		w.Done(r.events)
	}
	hit := r.events.KilledBySIGXFSZ()
	r.events = nil
	return hit
}

// cleanup releases everything the run holds, whatever happened.
func (r *subRun) cleanup() {
	r.closeProtocol()
	if r.box != nil {
		r.box.Kill()
	}
	if r.box != nil {
		r.box.Close()
	}
	if r.listener != nil {
		// The listener reports POLLHUP once the last filtered task is
		// gone (the init was just reaped); only then is its fd closed, so
		// Serve never polls a descriptor number that was closed under it.
		select {
		case <-r.listenerDone:
		case <-time.After(time.Second):
		}
		r.stopListener()
		<-r.listenerDone
		r.listener.Close()
	}
	if r.group != nil {
		r.group.Close()
	}
	if r.s.pool != nil {
		r.s.pool.done()
	}
}
