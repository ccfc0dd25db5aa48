package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kb-labs/sandbox/internal/cgroup"
	"github.com/kb-labs/sandbox/internal/monitor"
	"github.com/kb-labs/sandbox/internal/mount"
	"github.com/kb-labs/sandbox/internal/proc"
	"github.com/kb-labs/sandbox/internal/seccomp"
	"github.com/kb-labs/sandbox/internal/spec"
)

// violationBound is how many denied calls a run may attempt before it is
// killed: a program hammering the filter is hostile or broken.
const violationBound = 10000

// subRun is one subprocess run.
type subRun struct {
	s     *subprocess
	rs    *runState
	exec  Execution
	group cgroup.Group
	box   *proc.Sandbox

	stdout, stderr *capture
	readers        sync.WaitGroup
	listener       *seccomp.Listener
	stopListener   context.CancelFunc
	listenerDone   chan struct{}

	killOnce  sync.Once
	killed    chan struct{} // closed when the run is being ended by the sandbox
	bySandbox bool

	ipc *ipcRun // the handler protocol (protocol_linux.go); nil when not spoken
}

func (s *subprocess) run(ctx context.Context, rs *runState) {
	r := &subRun{s: s, rs: rs, exec: s.cfg.Execution, killed: make(chan struct{})}
	r.setIsolation()
	defer r.cleanup()
	r.execute(ctx)
}

func (r *subRun) setIsolation() {
	cfg := r.s.cfg
	iso := Isolation{
		Mode:        Subprocess,
		Namespaces:  []string{"user", "pid", "mount", "net", "ipc", "uts", "cgroup"},
		Seccomp:     r.s.seccomp,
		LandlockABI: 0,
		NoNewPrivs:  true,
		Network:     cfg.Permissions.Network,
		Degraded:    append([]Degradation(nil), r.s.degraded...),
	}
	if cfg.Permissions.Network == NetworkHost {
		iso.Namespaces = []string{"user", "pid", "mount", "ipc", "uts", "cgroup"}
	}
	if r.s.cg != nil {
		iso.Cgroup = r.s.cg.Version()
	}
	if !*cfg.Security.Seccomp {
		iso.Degraded = append(iso.Degraded, Degradation{Layer: "seccomp", Reason: "turned off by configuration (security.seccomp: false)"})
	}
	if !*cfg.Security.Landlock {
		iso.Degraded = append(iso.Degraded, Degradation{Layer: "landlock", Reason: "turned off by configuration (security.landlock: false)"})
	}
	r.rs.result.Isolation = iso
}

func (r *subRun) execute(ctx context.Context) {
	rs := r.rs
	deadline := rs.start.Add(time.Duration(r.exec.Timeout))
	setup := rs.span("setup")

	plan, err := r.plan()
	if err != nil {
		setup.End()
		rs.setupError(CodeSetupFailed, err.Error())
		return
	}
	if r.s.cg != nil {
		r.group, err = r.s.cg.Create(r.s.prefix+fmt.Sprint(runSeq.Add(1)), r.cgroupLimits())
		if err != nil {
			setup.End()
			rs.setupError(CodeSetupFailed, "create the run's cgroup: "+err.Error())
			return
		}
	}

	// Pipes: the program's ends go to the init, ours are read here.
	stdin, stdinW, err := os.Pipe()
	if err != nil {
		setup.End()
		rs.setupError(CodeSetupFailed, "pipe: "+err.Error())
		return
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		stdin.Close()
		stdinW.Close()
		setup.End()
		rs.setupError(CodeSetupFailed, "pipe: "+err.Error())
		return
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		stdin.Close()
		stdinW.Close()
		outR.Close()
		outW.Close()
		setup.End()
		rs.setupError(CodeSetupFailed, "pipe: "+err.Error())
		return
	}
	childEnds := []*os.File{stdin, outW, errW}
	closeChildEnds := func() {
		for _, f := range childEnds {
			f.Close()
		}
	}

	prep, execSpec, err := r.specs(plan)
	if err == nil && r.ipc != nil {
		childEnds = append(childEnds, r.ipc.child) // the protocol socket, fd 3 (protocol_linux.go)
	}
	if err != nil {
		closeChildEnds()
		stdinW.Close()
		outR.Close()
		errR.Close()
		setup.End()
		rs.setupError(CodeSetupFailed, err.Error())
		return
	}

	spawn := rs.span("spawn")
	var box *proc.Sandbox
	prepared := false
	if r.s.pool != nil {
		box = r.s.pool.get()
		prepared = box != nil
	}
	if box == nil {
		box, err = proc.Start(prep, proc.Options{HostIDBase: r.s.cfg.Security.HostIDBase, HostNetwork: r.s.cfg.Permissions.Network == NetworkHost})
	}
	if err != nil {
		closeChildEnds()
		stdinW.Close()
		outR.Close()
		errR.Close()
		spawn.End()
		setup.End()
		rs.setupError(CodeSetupFailed, err.Error())
		return
	}
	r.box = box
	started, err := box.Exec(execSpec, childEnds, prepared)
	closeChildEnds()
	if err != nil {
		stdinW.Close()
		outR.Close()
		errR.Close()
		spawn.End()
		setup.End()
		r.execFailed(err)
		return
	}
	if started.LandlockABI > 0 {
		rs.result.Isolation.LandlockABI = started.LandlockABI
	}
	if r.group != nil {
		if err := r.group.AddProcess(started.Pid); err != nil {
			if started.Listener >= 0 {
				unix.Close(started.Listener)
			}
			stdinW.Close()
			outR.Close()
			errR.Close()
			spawn.End()
			setup.End()
			rs.setupError(CodeSetupFailed, "place the program in its cgroup: "+err.Error())
			return
		}
	}
	if started.Listener >= 0 {
		r.serveViolations(started.Listener)
	}

	r.stdout = newCapture(rs, "stdout", "info", r.exec.MaxOutput)
	r.stderr = newCapture(rs, "stderr", "error", r.exec.MaxOutput)
	if rs.stream != nil {
		r.stdout.passthru = passthru(rs.stream.Stdout)
		r.stderr.passthru = passthru(rs.stream.Stderr)
	}
	r.readStream(outR, r.stdout)
	r.readStream(errR, r.stderr)
	go r.feedStdin(stdinW)

	if err := box.Release(); err != nil {
		spawn.End()
		setup.End()
		rs.setupError(CodeSetupFailed, err.Error())
		return
	}
	spawn.End()
	setup.End()
	r.startProtocol(ctx) // handshake and run message (protocol_linux.go)

	execSpan := rs.span("execute")
	exit := r.wait(ctx, deadline)
	execSpan.End()

	collect := rs.span("collect")
	r.endRun()
	r.readers.Wait()
	r.collect(exit)
	collect.End()
}

// plan returns the mount plan: the Runner's, or one rebuilt for the run's
// own host paths (library and CLI only).
func (r *subRun) plan() (*mount.Plan, error) {
	ec := r.rs.ec
	if ec.Workdir == "" && ec.Outdir == "" && r.rs.kind != KindFile {
		return r.s.plan, nil
	}
	o := r.s.planOpts
	if ec.Workdir != "" {
		o.Workdir = ec.Workdir
	}
	if ec.Outdir != "" {
		o.Outdir = ec.Outdir
	}
	if r.rs.kind == KindFile {
		special, err := runtimeMounts(r.rs)
		if err != nil {
			return nil, err
		}
		o.Special = append(o.Special, special...)
	}
	p, err := mount.NewPlan(o)
	if err != nil {
		return nil, planError(err)
	}
	if r.rs.kind == KindFile {
		p.Run = append(p.Run, bootstrapFiles()...) // /sandbox/bootstrap (runtime_linux.go)
	}
	return p, nil
}

func (r *subRun) cgroupLimits() cgroup.Limits {
	var l cgroup.Limits
	if r.exec.Memory != Unlimited {
		l.MemoryBytes = int64(r.exec.Memory)
	}
	if r.exec.Pids != Unlimited {
		l.Pids = int64(r.exec.Pids)
	}
	if r.exec.CPUs != Unlimited {
		l.CPUs = float64(r.exec.CPUs)
	}
	return l
}

// specs builds the two set-up messages.
func (r *subRun) specs(plan *mount.Plan) (spec.Prepare, spec.Exec, error) {
	cfg := r.s.cfg
	base, err := json.Marshal(&mount.Plan{Base: plan.Base, BaseID: plan.BaseID})
	if err != nil {
		return spec.Prepare{}, spec.Exec{}, err
	}
	run, err := json.Marshal(&mount.Plan{Run: plan.Run, BaseID: plan.BaseID})
	if err != nil {
		return spec.Prepare{}, spec.Exec{}, err
	}
	prep := spec.Prepare{
		Hostname:         cfg.Permissions.Hostname,
		Loopback:         cfg.Permissions.Network == NetworkLoopback,
		Mounts:           base,
		InotifyInstances: 16,
		InotifyWatches:   8192,
	}
	argv, extraEnv, ipc, err := r.command()
	if err != nil {
		return prep, spec.Exec{}, err
	}
	e := spec.Exec{
		Argv:        argv,
		Env:         resolveEnv(cfg.Permissions.Env, extraEnv),
		Dir:         mount.Workspace,
		RunMounts:   run,
		UID:         mount.SandboxUID,
		GID:         mount.SandboxGID,
		Rlimits:     r.rlimits(),
		IPC:         ipc,
		OOMScoreAdj: 1000,
	}
	if r.s.seccomp {
		e.Seccomp = &spec.Seccomp{Kill: cfg.Security.OnViolation == ViolationKill, Notify: true}
	}
	if r.s.landlock > 0 {
		e.Landlock = landlockRules(plan, cfg.BestEffort)
	}
	return prep, e, nil
}

// command returns the argv, extra environment and whether the protocol
// socket is wanted.
func (r *subRun) command() ([]string, map[string]string, bool, error) {
	env := map[string]string{}
	if span := r.rs.traces; span != nil {
		env["TRACEPARENT"] = monitor.FormatTraceparent(span.TraceID(), monitor.NewSpanID(), true)
	}
	h := r.rs.handler
	if r.rs.kind == KindCommand && !h.Protocol {
		return h.Command, env, false, nil
	}
	// File handlers and protocol commands: the socket and session are made
	// here (protocol_linux.go).
	argv, err := r.protocolCommand(env)
	return argv, env, err == nil, err
}

func (r *subRun) rlimits() []spec.Rlimit {
	lim := func(res int, v int64) spec.Rlimit { return spec.Rlimit{Resource: res, Cur: v, Max: v} }
	fsize := int64(-1)
	if r.exec.MaxFileSize != Unlimited {
		fsize = int64(r.exec.MaxFileSize)
	}
	nofile := int64(1 << 20)
	if r.exec.MaxOpenFiles != Unlimited {
		nofile = int64(r.exec.MaxOpenFiles)
	}
	out := []spec.Rlimit{
		lim(unix.RLIMIT_FSIZE, fsize),
		lim(unix.RLIMIT_NOFILE, nofile),
		{Resource: unix.RLIMIT_STACK, Cur: 8 << 20, Max: 8 << 20},
		lim(unix.RLIMIT_CORE, 0),
		lim(unix.RLIMIT_MEMLOCK, 64<<10),
		lim(unix.RLIMIT_MSGQUEUE, 1<<20),
		lim(unix.RLIMIT_SIGPENDING, 4096),
		lim(unix.RLIMIT_RTTIME, 0),
		lim(unix.RLIMIT_RTPRIO, 0),
	}
	if r.exec.CPUTime != Unlimited {
		// A backstop per process: the cgroup's usage is polled against the
		// limit for the run as a whole.
		secs := int64((time.Duration(r.exec.CPUTime) + time.Second - 1) / time.Second)
		out = append(out, spec.Rlimit{Resource: unix.RLIMIT_CPU, Cur: secs + 1, Max: secs + 2})
	}
	return out
}

// execFailed maps a failed start to setup_error with the right code.
func (r *subRun) execFailed(err error) {
	var se *proc.SetupError
	if errors.As(err, &se) && se.Step == "exec" {
		switch se.Errno {
		case syscall.ENOENT:
			r.rs.setupError(CodeCommandNotFound, se.Err)
			return
		case syscall.EACCES, syscall.ENOEXEC, syscall.EISDIR, syscall.EPERM:
			r.rs.setupError(CodeCommandNotExec, se.Err)
			return
		}
	}
	msg := err.Error()
	if r.box != nil {
		if out := strings.TrimSpace(r.box.Stderr()); out != "" && !strings.Contains(msg, out) {
			msg += " (init: " + out + ")"
		}
	}
	r.rs.setupError(CodeSetupFailed, msg)
}

func (r *subRun) readStream(f *os.File, c *capture) {
	r.readers.Add(1)
	go func() {
		defer r.readers.Done()
		defer f.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					r.kill() // output_limit was recorded by the capture
					io.Copy(io.Discard, f)
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
}

func (r *subRun) feedStdin(w *os.File) {
	defer w.Close()
	switch v := r.rs.input.(type) {
	case nil:
	case []byte:
		w.Write(v)
	case string:
		w.Write([]byte(v))
	case json.RawMessage:
		w.Write(v)
	case io.Reader:
		io.Copy(w, v)
	default:
		if b, err := json.Marshal(v); err == nil {
			w.Write(b)
		}
	}
}

func passthru(w io.Writer) func([]byte) {
	if w == nil {
		return nil
	}
	return func(p []byte) { w.Write(p) }
}

func (r *subRun) serveViolations(fd int) {
	r.listener = seccomp.NewListener(fd)
	kill := r.s.cfg.Security.OnViolation == ViolationKill
	ctx, cancel := context.WithCancel(context.Background())
	r.stopListener, r.listenerDone = cancel, make(chan struct{})
	go func() {
		defer close(r.listenerDone)
		r.serve(ctx, kill)
	}()
}

// serve answers the run's denied system calls until its last task is gone.
func (r *subRun) serve(ctx context.Context, kill bool) {
	total := 0
	r.listener.Serve(ctx, func(nr int, name string) bool {
		total++
		if kill {
			r.rs.limit(StatusViolation, "denied system call "+name)
			r.kill()
			return true
		}
		if total > violationBound {
			r.rs.limit(StatusViolation, fmt.Sprintf("more than %d denied system calls (last: %s)", violationBound, name))
			r.kill()
			return true
		}
		return false
	})
}

// kill ends the run at once: SIGKILL to the pid namespace and the cgroup.
func (r *subRun) kill() {
	r.killOnce.Do(func() {
		r.bySandbox = true
		close(r.killed)
		if r.box != nil {
			r.box.Kill()
		}
		if r.group != nil {
			r.group.Kill()
		}
	})
}
