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
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kb-labs/sandbox/internal/cgroup"
	"github.com/kb-labs/sandbox/internal/monitor"
	"github.com/kb-labs/sandbox/internal/mount"
	"github.com/kb-labs/sandbox/internal/proc"
	"github.com/kb-labs/sandbox/internal/procevents"
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
	// entered: the init's forking thread moves itself into the run's
	// cgroups, so the program is born there (cgroup v1).
	entered bool

	stdout, stderr *capture
	readers        sync.WaitGroup
	listener       *seccomp.Listener
	stopListener   context.CancelFunc
	events         *procevents.Run // nil when process events are unavailable
	prepared       bool            // the init answered Prepare before Exec (a warm sandbox)
	listenerDone   chan struct{}
	ownFilter      atomic.Bool // the program installed a seccomp filter of its own

	killOnce  sync.Once
	killed    chan struct{} // closed when the run is being ended by the sandbox
	overOnce  sync.Once
	over      chan struct{} // closed when the program ended or is being killed
	bySandbox atomic.Bool   // the sandbox ended the run (a limit, cancellation)

	// mu guards box and group against kill, which may come from another
	// goroutine (the protocol reader, the violation server) before they are
	// set.
	mu sync.Mutex

	ipc *ipcRun // the handler protocol (protocol_linux.go); nil when not spoken
}

func (s *subprocess) run(ctx context.Context, rs *runState) {
	r := &subRun{s: s, rs: rs, exec: s.cfg.Execution, killed: make(chan struct{}), over: make(chan struct{})}
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

// noteDegraded lists what the init could not apply: a Landlock right the
// kernel's ABI does not know is not restricted (resolve_unix needs ABI 9),
// and the isolation report must not claim it.
func (r *subRun) noteDegraded(notes []string) {
	iso := &r.rs.result.Isolation
	for _, n := range notes {
		layer, what, ok := strings.Cut(n, ": ")
		if !ok {
			layer, what = "init", n
		}
		reason := what
		if layer == "landlock" {
			reason = landlockNote(what, iso.LandlockABI)
		}
		iso.Degraded = append(iso.Degraded, Degradation{Layer: layer, Reason: reason})
	}
}

// landlockNote explains a Landlock right or scope the kernel lacks.
func landlockNote(what string, abi int) string {
	need := map[string]string{
		"truncate":            "ABI 3 (Linux 6.2): truncating files is not restricted",
		"ioctl_dev":           "ABI 5 (Linux 6.10): ioctl on device files is not restricted",
		"resolve_unix":        "ABI 9: connecting to named unix sockets is not restricted by path",
		"scope_signals":       "ABI 6 (Linux 6.12): signals to processes outside the sandbox are not scoped",
		"scope_abstract_unix": "ABI 6 (Linux 6.12): abstract unix sockets outside the sandbox are not scoped",
		"landlock":            "the kernel has no Landlock",
	}[what]
	if need == "" {
		return what + " not applied"
	}
	if what == "landlock" {
		return need
	}
	return fmt.Sprintf("%s needs Landlock %s (this kernel has ABI %d)", what, need, abi)
}

func (r *subRun) execute(ctx context.Context) {
	rs := r.rs
	deadline := rs.start.Add(time.Duration(r.exec.Timeout))
	setup := rs.span("setup")
	p, err := r.start()
	if err != nil {
		setup.End()
		r.execFailed(err)
		return
	}
	r.stdout = newCapture(rs, "stdout", "info", r.exec.MaxOutput)
	r.stderr = newCapture(rs, "stderr", "error", r.exec.MaxOutput)
	endStream := stream(rs.stream, r.over, r.stdout, r.stderr)
	defer endStream()
	r.readStream(p.stdout, r.stdout)
	r.readStream(p.stderr, r.stderr)
	go r.feedStdin(p.stdin)

	if err := r.box.Release(); err != nil {
		setup.End()
		// Wait for what was started before answering: no log line may
		// arrive after the result is built.
		r.endRun()
		r.readers.Wait()
		r.doneEvents()
		rs.setupError(CodeSetupFailed, err.Error())
		return
	}
	setup.End()
	r.startProtocol(ctx) // handshake and run message (protocol_linux.go)

	execSpan := rs.span("execute")
	exit := r.wait(ctx, deadline)
	r.end()
	execSpan.End()

	collect := rs.span("collect")
	r.endRun()
	r.readers.Wait()
	r.collect(exit)
	collect.End()
}

// pipes are the supervisor's ends of the program's stdio.
type pipes struct{ stdin, stdout, stderr *os.File }

// start builds the sandbox and the program, and leaves the program stopped
// before its first instruction, inside its cgroups.
func (r *subRun) start() (pipes, error) {
	plan, err := r.plan()
	if err != nil {
		return pipes{}, err
	}
	var ours, theirs []*os.File
	fail := func(err error) (pipes, error) {
		closeFiles(ours)
		closeFiles(theirs)
		return pipes{}, err
	}
	for i := 0; i < 3; i++ {
		rd, wr, err := os.Pipe()
		if err != nil {
			return fail(fmt.Errorf("pipe: %w", err))
		}
		if i == 0 { // stdin: the program reads
			theirs, ours = append(theirs, rd), append(ours, wr)
		} else {
			theirs, ours = append(theirs, wr), append(ours, rd)
		}
	}
	prep, execSpec, err := r.specs(plan)
	if err != nil {
		return fail(err)
	}
	if r.ipc != nil {
		theirs = append(theirs, r.ipc.child) // the protocol socket, fd 3 (protocol_linux.go)
	}
	spawn := r.rs.span("spawn")
	defer spawn.End()
	if err := r.acquire(prep); err != nil {
		return fail(err)
	}
	// cgroup v1 moves single threads: the forking thread moves itself in
	// just before it forks, and the program is born inside, with no
	// migration (and no window) of its own. v2 places the stopped program
	// instead (place).
	if r.group != nil && r.s.cg.Features().ThreadEntry {
		tasks, err := r.group.OpenTasks()
		if err != nil {
			return fail(fmt.Errorf("open the run's cgroup: %w", err))
		}
		theirs = append(theirs, tasks...)
		execSpec.CgroupTasks = len(tasks)
		r.entered = true
	}
	if len(execSpec.Files) > 0 {
		content, err := filesContent(r.rs.handler.Files)
		if err != nil {
			return fail(err)
		}
		theirs = append(theirs, content)
	}
	// The host trees, made for this sandbox's own host user (hostpath_linux.go).
	trees, err := openTrees(plan, r.box.HostUser)
	if err != nil {
		return fail(err)
	}
	theirs = append(theirs, trees...)
	execSpec.Trees = len(trees)
	started, err := r.box.Exec(execSpec, theirs, r.prepared)
	closeFiles(theirs)
	theirs = nil
	if err != nil {
		return fail(err)
	}
	if started.LandlockABI > 0 {
		r.rs.result.Isolation.LandlockABI = started.LandlockABI
	}
	r.noteDegraded(started.Notes)

	if err := r.place(started); err != nil {
		if started.Listener >= 0 {
			unix.Close(started.Listener)
		}
		return fail(fmt.Errorf("place the program in its cgroup: %w", err))
	}
	if started.Listener >= 0 {
		r.serveViolations(started.Listener)
	}
	// Follow every process of the run (it is still stopped, so no fork is
	// missed) to see any of them die of SIGXFSZ.
	if w, err := procevents.Shared(); err == nil {
		r.events = w.Track(started.Pid)
	}
	return pipes{stdin: ours[0], stdout: ours[1], stderr: ours[2]}, nil
}

// acquire takes a warm sandbox from the pool, or prepares one now.
func (r *subRun) acquire(prep spec.Prepare) error {
	if r.s.pool != nil {
		if w := r.s.pool.get(); w != nil {
			r.use(w)
			return nil
		}
	}
	w, err := r.s.prepare(prep, false)
	if err != nil {
		return err
	}
	r.use(w)
	return nil
}

// place puts the stopped program in the run's cgroups. When the forking
// thread entered them beforehand (cgroup v1), the program was born inside
// and the thread, which ends on release, is only forgotten.
func (r *subRun) place(started proc.Started) error {
	switch {
	case r.group == nil:
		return nil
	case r.entered:
		return r.group.ForgetThread()
	}
	return r.group.AddProcess(started.Pid)
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
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
		return nil, planError(err, r.s.cfg.Permissions.Filesystem)
	}
	if os.Geteuid() == 0 && !o.IDMap { // id-mapped trees are opened by start
		if err := checkSources(o); err != nil {
			return nil, err
		}
	}
	if r.rs.kind == KindFile {
		p.Run = append(p.Run, bootstrapFiles()...) // /sandbox/bootstrap (runtime_linux.go)
	}
	if r.filesArePlugin() {
		for _, m := range p.Run {
			if pathWithin(m.Target, pluginTarget) {
				return nil, &ConfigError{Field: "permissions.filesystem", Value: m.Target,
					Want: "no mount at or under " + pluginTarget + ": the handler's Files are its plugin root there"}
			}
		}
		// The workspace, where the init writes the files, seen read-only.
		p.Run = append(p.Run, mount.Mount{Kind: mount.KindRebind, Source: mount.Workspace, Target: pluginTarget, Dir: true, ReadOnly: true})
	}
	return p, nil
}

// filesArePlugin reports whether the handler's Files form its plugin root:
// a file handler with Files and no plugin root of the caller's.
func (r *subRun) filesArePlugin() bool {
	return r.rs.kind == KindFile && len(r.rs.handler.Files) > 0 && r.rs.ec.PluginRoot == ""
}

func cgroupLimits(e Execution) cgroup.Limits {
	var l cgroup.Limits
	if e.Memory != Unlimited {
		l.MemoryBytes = int64(e.Memory)
	}
	if e.Pids != Unlimited {
		l.Pids = int64(e.Pids)
	}
	if e.CPUs != Unlimited {
		l.CPUs = float64(e.CPUs)
	}
	return l
}

// basePrepare is the Prepare message of the Runner's own mount plan, which
// warm sandboxes are built from.
func (s *subprocess) basePrepare() (spec.Prepare, error) {
	return s.prepareSpec(s.plan)
}

func (s *subprocess) seccompSpec() *spec.Seccomp {
	if !s.seccomp {
		return nil
	}
	return &spec.Seccomp{Kill: s.cfg.Security.OnViolation == ViolationKill, Notify: true}
}

func (s *subprocess) prepareSpec(plan *mount.Plan) (spec.Prepare, error) {
	cfg := s.cfg
	base, err := json.Marshal(&mount.Plan{Base: plan.Base, BaseID: plan.BaseID})
	if err != nil {
		return spec.Prepare{}, err
	}
	return spec.Prepare{
		Hostname:         cfg.Permissions.Hostname,
		Loopback:         cfg.Permissions.Network == NetworkLoopback,
		Mounts:           base,
		InotifyInstances: 16,
		InotifyWatches:   8192,
		Seccomp:          s.seccompSpec(),
	}, nil
}

// specs builds the two set-up messages.
func (r *subRun) specs(plan *mount.Plan) (spec.Prepare, spec.Exec, error) {
	cfg := r.s.cfg
	prep, err := r.s.prepareSpec(plan)
	if err != nil {
		return prep, spec.Exec{}, err
	}
	run, err := json.Marshal(&mount.Plan{Run: plan.Run, BaseID: plan.BaseID})
	if err != nil {
		return prep, spec.Exec{}, err
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
	for _, f := range r.rs.handler.Files {
		e.Files = append(e.Files, spec.File{Path: f.Path, Mode: uint32(fileMode(f.Mode)), Size: int64(len(f.Content))})
	}
	e.Seccomp = r.s.seccompSpec()
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
	if r.s.cg == nil && r.exec.Pids != Unlimited {
		// No cgroup (rootless without delegation): RLIMIT_NPROC, counted per
		// user namespace since Linux 5.14, still bounds the run's tasks.
		out = append(out, lim(unix.RLIMIT_NPROC, int64(r.exec.Pids)))
	}
	return out
}

// notFoundHint explains where a command is looked up: a path the user typed
// on the host (./tool) is not inside the sandbox unless a mount puts it there.
func notFoundHint(argv []string) string {
	if len(argv) == 0 {
		return ""
	}
	if strings.Contains(argv[0], "/") && !strings.HasPrefix(argv[0], "/") {
		return " (the command is looked up inside the sandbox, relative to /workspace: --workdir DIR mounts a host directory there)"
	}
	if strings.HasPrefix(argv[0], "/") {
		return " (the command is looked up inside the sandbox: its root holds the host's /usr, /bin and /lib read-only and a minimal /etc; --ro SRC mounts more)"
	}
	return " (the command is looked up in $PATH inside the sandbox: /usr/local/bin, /usr/bin, /bin; --ro SRC mounts more)"
}

// execFailed maps a failed start to setup_error with the right code.
func (r *subRun) execFailed(err error) {
	var se *proc.SetupError
	if errors.As(err, &se) && se.Step == "exec" {
		switch se.Errno {
		case syscall.ENOENT:
			r.rs.setupError(CodeCommandNotFound, se.Err+notFoundHint(r.rs.handler.Command))
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
//
// A program installing a seccomp filter of its own is told apart: its
// filter could answer denied calls before the sandbox's notification (the
// kernel ranks ERRNO, TRAP and KILL above USER_NOTIF), so under kill mode
// the install itself ends the run, and otherwise it goes ahead and the
// violations report is marked incomplete (RATIONALE.md, "A filter of the
// program's own").
func (r *subRun) serve(ctx context.Context, kill bool) (err error) {
	total := 0
	// A held call is counted by Serve before it returns; the run is killed
	// after that, so the count is in before the verdict is collected.
	defer func() {
		if errors.Is(err, seccomp.ErrKill) {
			r.kill()
		}
	}()
	err = r.listener.Serve(ctx, func(c seccomp.Call) seccomp.Verdict {
		if c.Install && !kill {
			if !r.ownFilter.Swap(true) {
				r.rs.log(LogLine{Level: "warn", Source: "sandbox", Message: "the program installed a seccomp filter of its own (" +
					c.Name + "): denied calls that filter answers first are not reported, so violations may be incomplete"})
			}
			return seccomp.Continue
		}
		total++
		if kill {
			msg := "denied system call " + c.Name
			if c.Install {
				msg = "installed a seccomp filter of its own (" + c.Name + "), which could hide denied calls from onViolation: kill"
			}
			r.rs.limit(StatusViolation, msg)
			return seccomp.Hold
		}
		if total > violationBound {
			r.rs.limit(StatusViolation, fmt.Sprintf("more than %d denied system calls (last: %s)", violationBound, c.Name))
			return seccomp.Hold
		}
		return seccomp.Deny
	})
	return err
}

// kill ends the run at once: SIGKILL to the pid namespace and the cgroup.
func (r *subRun) kill() {
	r.killOnce.Do(func() {
		r.bySandbox.Store(true)
		close(r.killed)
		r.end()
		r.mu.Lock()
		box, group := r.box, r.group
		r.mu.Unlock()
		if box != nil {
			box.Kill()
		}
		if group != nil {
			group.Kill()
		}
	})
}

// end marks the run as over: live output copies stop waiting for a slow
// writer from now on.
func (r *subRun) end() { r.overOnce.Do(func() { close(r.over) }) }

// use makes w the run's sandbox; a kill that came first applies to it.
func (r *subRun) use(w *warm) {
	r.mu.Lock()
	r.box, r.group, r.prepared = w.box, w.group, w.prepared
	r.mu.Unlock()
	select {
	case <-r.killed:
		w.box.Kill()
	default:
	}
}
