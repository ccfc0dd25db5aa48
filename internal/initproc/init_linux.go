package initproc

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/kb-labs/sandbox/internal/landlock"
	"github.com/kb-labs/sandbox/internal/mount"
	"github.com/kb-labs/sandbox/internal/seccomp"
	"github.com/kb-labs/sandbox/internal/spec"
)

// init pins the main goroutine to the main thread, before main runs, in a
// process started as an init (and only there: a supervisor is left alone).
// Locking it later, in MaybeRun, is not enough: between the runtime's own
// unlock after package initialisation and main's first statement the main
// goroutine can be rescheduled onto another thread, and then the forking
// goroutine may later lock the main thread instead. A locked goroutine that
// ends on the main thread wedges it rather than ending it, and the program,
// whose tracer that thread is, would stay stopped forever (seen about once
// in 3,000 runs). The runtime documents an init function's LockOSThread as
// the way to run main on the main thread.
func init() {
	if len(os.Args) > 0 && os.Args[0] == spec.Argv0 {
		runtime.LockOSThread()
	}
}

// MaybeRun becomes the sandbox init and never returns when this process was
// started as one; otherwise it returns at once. Call it first in main.
func MaybeRun() {
	if len(os.Args) == 0 || os.Args[0] != spec.Argv0 {
		return
	}
	typ, err := unix.GetsockoptInt(spec.ChannelFD, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil || typ != unix.SOCK_SEQPACKET {
		fmt.Fprintln(os.Stderr, "sandbox-init: not started by a sandbox supervisor (no set-up channel on fd 3)")
		os.Exit(125)
	}
	// The main goroutine keeps the main thread (locked since init, see
	// there), so the locked forking goroutine never runs on it.
	runtime.LockOSThread()
	os.Exit(run())
}

type initState struct {
	conn *spec.Conn
	root *mount.Root
	prog int // program pid (inside), 0 before start
	// prepared is closed once Prepare is answered: the forking thread then
	// reads the Exec message; started carries its outcome to the main
	// goroutine, which supervises the run.
	prepared chan struct{}
	started  chan execResult
	reaper   *reaper // pid 1 of the program's pid namespace

	prebuilt    []bpf.RawInstruction // the seccomp filter, built by prepare
	prebuiltFor spec.Seccomp
	plan        *mount.Plan
}

func run() int {
	nameThread()
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	unix.Close(spec.BinaryFD) // the file this process was executed from
	unix.CloseOnExec(spec.ChannelFD)
	closeStrayFDs()
	s := &initState{conn: spec.NewConn(spec.ChannelFD)}
	// Signals are not for the init itself: the supervisor forwards them as
	// messages. The init runs in a session of its own (proc.Start), so no
	// terminal's SIGINT reaches it, and the kernel drops any other
	// termination signal from outside (defaultSignals).
	if err := defaultSignals(); err != nil {
		fmt.Fprintln(os.Stderr, "sandbox-init: reset signal dispositions:", err)
		return 125
	}
	for {
		m, fds, err := s.conn.Recv(spec.MaxFDs)
		if err != nil {
			return 125
		}
		switch m.Kind {
		case spec.KindPrepare:
			closeAll(fds)
			if err := s.prepare(m.Prepare); err != nil {
				s.fail(err)
				return 125
			}
			if err := s.startForker(); err != nil {
				s.fail(err)
				return 125
			}
			s.reply(spec.Reply{Step: "prepared"})
			// The forking thread reads the Exec message and answers it
			// itself: no hand-off between threads on the run's path.
			close(s.prepared)
			r := <-s.started
			if r.code != 0 {
				return r.code
			}
			s.prog = r.pid
			return s.supervise()
		case spec.KindExec:
			closeAll(fds)
			s.fail(stepErr("exec", errors.New("exec before prepare")))
			return 125
		default:
			closeAll(fds)
			s.fail(&spec.StepError{Step: "protocol", Err: "unexpected message " + string(m.Kind)})
			return 125
		}
	}
}

func (s *initState) reply(r spec.Reply, fds ...int) {
	s.conn.Send(spec.Message{Kind: spec.KindReply, Reply: &r}, fds...)
}

func (s *initState) fail(err error) {
	r := spec.Reply{Step: "setup", Err: err.Error()}
	var se *spec.StepError
	var me *mount.StepError
	var errno unix.Errno
	switch {
	case errors.As(err, &se):
		r.Step, r.Err, r.Errno = se.Step, se.Err, se.Errno
	case errors.As(err, &me):
		r.Step, r.Err = me.Step, me.Err.Error()
	}
	if r.Errno == 0 && errors.As(err, &errno) {
		r.Errno = int(errno)
	}
	s.reply(r)
}

func stepErr(step string, err error) error {
	e := &spec.StepError{Step: step, Err: err.Error()}
	var errno unix.Errno
	if errors.As(err, &errno) {
		e.Errno = int(errno)
	}
	return e
}

// prepare is phase 1: everything known before the command.
func (s *initState) prepare(p *spec.Prepare) error {
	if p == nil {
		return stepErr("prepare", errors.New("empty prepare message"))
	}
	if err := unix.Sethostname([]byte(p.Hostname)); err != nil {
		return stepErr("sethostname", err)
	}
	if p.Loopback {
		if err := loopbackUp(); err != nil {
			return stepErr("loopback", err)
		}
	}
	// Per-user-namespace limits, written through the host's /proc before it
	// goes away: they apply to the namespace of the writer, this one.
	limits := map[string]int{"max_user_namespaces": 0}
	if p.InotifyInstances > 0 {
		limits["max_inotify_instances"] = p.InotifyInstances
	}
	if p.InotifyWatches > 0 {
		limits["max_inotify_watches"] = p.InotifyWatches
	}
	for name, v := range limits {
		if err := os.WriteFile("/proc/sys/user/"+name, []byte(strconv.Itoa(v)), 0); err != nil {
			return stepErr("userns-limit "+name, err)
		}
	}
	var plan mount.Plan
	if err := json.Unmarshal(p.Mounts, &plan); err != nil {
		return stepErr("mount-plan", err)
	}
	if os.Getuid() != 0 { // rootless: the set-up runs as 1000, 0 is unmapped
		ownRootTmpfs(&plan)
	}
	root, err := mount.Prepare(&plan)
	if err != nil {
		return err
	}
	s.root, s.plan = root, &plan
	if p.Seccomp != nil {
		if arch, err := seccomp.Native(); err == nil {
			s.prebuiltFor = *p.Seccomp
			s.prebuilt, _ = s.filter(arch, *p.Seccomp)
		}
	}
	return nil
}

// setOOMScoreAdj sets the init's oom_score_adj, which the program inherits.
// A non-dumpable process's /proc files belong to the inside root; rootless,
// that is unmapped and nobody may write them, so the init is dumpable for the
// write. Nothing else runs in the namespace yet (the program is forked after)
// and only the caller's own uid could trace it from the host.
func setOOMScoreAdj(v int) error {
	if os.Getuid() != 0 {
		unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0)
		defer unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	}
	return os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(v)), 0)
}

// ownRootTmpfs gives the tmpfs mounts the plan wants owned by the inside
// root (/dev) to the set-up user instead: in a rootless namespace uid 0 is
// unmapped and tmpfs refuses uid=0. The mount plan keeps them unwritable
// for the program otherwise (Landlock grants only the device nodes and
// /dev/shm under /dev).
func ownRootTmpfs(p *mount.Plan) {
	for i := range p.Base {
		m := &p.Base[i]
		if m.Kind == mount.KindTmpfs && m.UID == 0 && m.GID == 0 {
			m.UID, m.GID = os.Getuid(), os.Getgid()
		}
	}
}

// filter returns the seccomp program for o, built ahead by prepare when the
// supervisor announced the same options (a warm sandbox then pays nothing
// for it at run time).
func (s *initState) filter(arch *seccomp.Arch, o spec.Seccomp) ([]bpf.RawInstruction, error) {
	if s.prebuilt != nil && s.prebuiltFor == o {
		return s.prebuilt, nil
	}
	// With a supervisor listening, a denied call is reported to it even in
	// kill mode: it records the violation and ends the whole run, whichever
	// process made the call. Without one, the kernel kills the caller.
	opts := seccomp.Options{Notify: o.Notify, TraceMe: true}
	if o.Kill && !o.Notify {
		opts.OnViolation = seccomp.Kill
	}
	return seccomp.Build(arch, opts)
}

// execResult is the forking thread's outcome of the Exec step: the program's
// pid, or the init's exit code when the step failed (already reported).
type execResult struct {
	pid  int
	code int
}

// nameThread names the calling thread sandbox-init: the kernel names a
// process after the file it executes, here /proc/self/fd/N, which shows as
// "N" in ps and top.
func nameThread() {
	if name, err := unix.BytePtrFromString(spec.Argv0); err == nil {
		unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(name)), 0, 0, 0)
	}
}

// startForker starts the forking thread, which forks the reaper (pid 1 of
// the program's pid namespace) at once. On cgroup v1 the thread later moves
// itself into the run's cgroups before it forks the program (startProgram),
// so the program is born there with no migration of its own.
func (s *initState) startForker() error {
	s.prepared, s.started = make(chan struct{}), make(chan execResult, 1)
	type started struct {
		rp  *reaper
		err error
	}
	ch := make(chan started, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: this thread dies with the goroutine
		if unix.Gettid() == unix.Getpid() {
			// Cannot happen while init keeps the main goroutine on the main
			// thread; if it did, the program would never be released.
			ch <- started{err: stepErr("forker", errors.New("the forking goroutine runs on the main thread, which cannot end"))}
			select {} // keep the main thread to ourselves until the init ends
		}
		nameThread() // the reaper, forked from here, inherits the name
		rp, err := startReaper(s.plan)
		if err != nil {
			err = stepErr("reaper", err)
		} else {
			// The program is forked from this thread and inherits its
			// empty bounding, inheritable and ambient sets. Done now, off
			// the run's path; the thread keeps the effective capabilities
			// it still needs (setuid and setgid for the fork). The reaper,
			// forked just before, keeps what it needs to mount /proc.
			if err = dropBoundingSet(); err != nil {
				err = stepErr("capabilities", err)
			}
		}
		ch <- started{rp: rp, err: err}
		if err != nil {
			return
		}
		<-s.prepared // the main goroutine has answered Prepare
		m, fds, err := s.conn.Recv(spec.MaxFDs)
		switch {
		case err != nil:
			s.started <- execResult{code: 125}
			return
		case m.Kind != spec.KindExec:
			closeAll(fds)
			s.fail(&spec.StepError{Step: "protocol", Err: "unexpected message " + string(m.Kind)})
			s.started <- execResult{code: 125}
			return
		}
		gate, code := s.exec(m.Exec, fds)
		s.started <- execResult{pid: s.prog, code: code}
		if code == 0 {
			// Returning without UnlockOSThread ends this thread, and with
			// it the ptrace link: the program continues from its first
			// instruction.
			waitRelease(gate)
		}
	}()
	st := <-ch
	if st.err != nil {
		return st.err
	}
	s.reaper = st.rp
	return nil
}

// exec is phase 2, on the forking thread: it finishes the sandbox, forks the
// program into its stop and answers "stopped". It returns the release gate,
// or, when the step failed (and was reported), the init's exit code.
func (s *initState) exec(e *spec.Exec, fds []int) (gate, code int) {
	gate = -1
	defer func() {
		closeAll(fds)
		if code != 0 && gate >= 0 {
			unix.Close(gate)
		}
	}()
	if e == nil || s.root == nil {
		s.fail(stepErr("exec", errors.New("exec before prepare")))
		return gate, 125
	}
	want := 4 // stdio and the release gate
	if e.IPC {
		want++
	}
	if len(e.Files) > 0 {
		want++ // the files' content
	}
	if e.CgroupTasks < 0 || e.Trees < 0 || e.Trees > spec.MaxTrees || len(fds) != want+e.CgroupTasks+e.Trees {
		s.fail(stepErr("exec", fmt.Errorf("got %d descriptors, want %d", len(fds), want+max(e.CgroupTasks, 0)+max(e.Trees, 0))))
		return gate, 125
	}
	// The gate is last. The forking thread reads it after this function
	// has closed the others, and closes it itself.
	gate, fds = fds[len(fds)-1], fds[:len(fds)-1]
	trees := fds[len(fds)-e.Trees:]
	fds = fds[:len(fds)-e.Trees]
	defer closeAll(trees)
	content := -1
	if len(e.Files) > 0 {
		content, fds = fds[len(fds)-1], fds[:len(fds)-1]
		defer unix.Close(content)
	}
	// Blocking, whatever the sender's end was opened with: the forking
	// thread sleeps in read until the release.
	if err := unix.SetNonblock(gate, false); err != nil {
		s.fail(stepErr("exec", fmt.Errorf("gate: %w", err)))
		return gate, 125
	}
	plan := *s.plan
	if len(e.RunMounts) > 0 {
		var run mount.Plan
		if err := json.Unmarshal(e.RunMounts, &run); err != nil {
			s.fail(stepErr("mount-plan", err))
			return gate, 125
		}
		plan.Run = run.Run
	}
	if err := s.root.Finish(&plan, trees); err != nil {
		s.fail(err)
		return gate, 125
	}
	s.root = nil
	if content >= 0 {
		if err := writeFiles(e.Files, content, e.UID, e.GID); err != nil {
			s.fail(stepErr("workspace-files", err))
			return gate, 125
		}
	}
	if err := mount.VerifyCwd(e.Dir); err != nil {
		s.fail(stepErr("chdir", err))
		return gate, 125
	}
	for _, rl := range e.Rlimits {
		if err := setrlimit(rl); err != nil {
			s.fail(stepErr("rlimit "+strconv.Itoa(rl.Resource), err))
			return gate, 125
		}
	}
	if err := setOOMScoreAdj(e.OOMScoreAdj); err != nil {
		s.fail(stepErr("oom_score_adj", err))
		return gate, 125
	}

	// From here on /proc is the program's: the init, outside that pid
	// namespace, has no /proc/self.
	if err := s.reaper.mountProc(); err != nil {
		s.fail(stepErr("proc", err))
		return gate, 125
	}
	st := s.startProgram(e, fds)
	if st.err != nil {
		s.fail(st.err)
		return gate, 125
	}
	s.prog = st.pid
	r := spec.Reply{Step: "stopped", Pid: st.pid, LandlockABI: st.abi, Listener: st.listener >= 0, Notes: st.notes}
	// A pidfd tells the supervisor the program's host pid without a walk
	// through /proc (whose dentries the kernel must then prune when the
	// init is reaped: measured as the hottest lock of a busy host).
	pfd, err := unix.PidfdOpen(st.pid, 0)
	if err != nil {
		unix.Kill(st.pid, unix.SIGKILL)
		if st.listener >= 0 {
			unix.Close(st.listener)
		}
		s.fail(stepErr("pidfd", err))
		return gate, 125
	}
	r.PidFD = true
	out := []int{pfd}
	if st.listener >= 0 {
		out = append(out, st.listener)
	}
	s.reply(r, out...)
	closeAll(out)
	return gate, 0
}

type startResult struct {
	pid      int
	abi      int
	listener int
	notes    []string
	err      error
}

// startProgram runs on its own locked thread: every per-thread protection is
// applied here, the program is forked from this thread and inherits them, and
// the thread ends (never unlocked) once the supervisor has placed the program
// in its cgroups — which releases the program from its ptrace stop.
func (s *initState) startProgram(e *spec.Exec, fds []int) startResult {
	res := startResult{listener: -1}
	fail := func(err error) startResult {
		res.err = err
		return res
	}
	// Into the run's cgroups first, so everything forked from here is born
	// inside (the supervisor raised the pids limit by one for this thread).
	nstd := len(fds) - e.CgroupTasks
	for _, fd := range fds[nstd:] {
		if _, err := unix.Write(fd, []byte("0")); err != nil {
			return fail(stepErr("cgroup", fmt.Errorf("enter the run's cgroup: %w", err)))
		}
	}
	fds = fds[:nstd]
	// A cgroup namespace rooted where this thread now is: the program, born
	// here, sees its cgroups as "/" rather than their host paths (which name
	// the supervisor's pid and cgroup). The namespace made at clone is rooted
	// at the supervisor's cgroups, which the thread has just left. On pure v2
	// the program is moved in only after its exec, so there it still sees
	// its path relative to the init's cgroup (RATIONALE.md, "What a run can
	// see of its host").
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fail(stepErr("cgroupns", err))
	}
	if err := seccomp.SetNoNewPrivs(); err != nil {
		return fail(stepErr("no_new_privs", err))
	}
	if e.Landlock != nil {
		lr, err := landlock.Apply(landlock.Rules{ReadOnly: e.Landlock.ReadOnly, ReadExec: e.Landlock.ReadExec, ReadWrite: e.Landlock.ReadWrite,
			ScopeSignals: true, ScopeAbstractUnix: true}, e.Landlock.BestEffort)
		if err != nil {
			return fail(stepErr("landlock", err))
		}
		res.abi = lr.ABI
		for _, d := range lr.Dropped {
			res.notes = append(res.notes, "landlock: "+d)
		}
	}
	if e.Seccomp != nil {
		arch, err := seccomp.Native()
		if err != nil {
			return fail(stepErr("seccomp", err))
		}
		prog, err := s.filter(arch, *e.Seccomp)
		if err != nil {
			return fail(stepErr("seccomp", err))
		}
		flags := seccomp.FlagTSync
		if e.Seccomp.Notify {
			flags |= seccomp.FlagNewListener
		}
		l, err := seccomp.Install(prog, flags)
		if err != nil {
			return fail(stepErr("seccomp", err))
		}
		if flags&seccomp.FlagNewListener != 0 {
			res.listener = l
		}
	}
	path, err := lookPath(e.Argv[0], e.Env)
	if err != nil {
		return fail(err)
	}
	files := []uintptr{uintptr(fds[0]), uintptr(fds[1]), uintptr(fds[2])}
	if e.IPC {
		files = append(files, uintptr(fds[3]))
	}
	cred := &syscall.Credential{Uid: uint32(e.UID), Gid: uint32(e.GID), Groups: []uint32{}}
	if os.Getuid() != 0 {
		// Rootless (the set-up runs as 1000, not the inside root): an
		// unprivileged user namespace must deny setgroups, so the caller's
		// supplementary groups cannot be dropped (the supervisor reports
		// them in isolation.degraded).
		cred.Groups, cred.NoSetGroups = nil, true
	}
	pid, err := syscall.ForkExec(path, e.Argv, &syscall.ProcAttr{
		Dir:   e.Dir,
		Env:   e.Env,
		Files: files,
		Sys: &syscall.SysProcAttr{
			Credential: cred,
			Setsid:     true,
			Ptrace:     true,
		},
	})
	if err != nil {
		if res.listener >= 0 {
			unix.Close(res.listener)
		}
		return fail(execErr(path, err))
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil || !ws.Stopped() {
		unix.Kill(pid, unix.SIGKILL)
		if res.listener >= 0 {
			unix.Close(res.listener)
		}
		return fail(stepErr("exec", fmt.Errorf("program did not stop after exec (status %v, %v)", ws, err)))
	}
	res.pid = pid
	return res
}

// waitRelease blocks until the supervisor releases the program: a byte on
// the gate pipe, read right on this thread. A gate closed without its byte
// (or failing) means the supervisor is gone: the run ends here, with the
// program still stopped.
func waitRelease(gate int) {
	defer unix.Close(gate)
	var b [1]byte
	for {
		n, err := unix.Read(gate, b[:])
		switch {
		case n == 1:
			return
		case err == unix.EINTR:
			continue
		}
		unix.Kill(-1, unix.SIGKILL)
		unix.Exit(137)
	}
}

func execErr(path string, err error) error {
	e := stepErr("exec", fmt.Errorf("%s: %w", path, err))
	return e
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// closeStrayFDs closes every descriptor but 0, 1, 2 and the channel: the
// Go runtime may have opened host files (cgroup cpu quota files) before main.
func closeStrayFDs() {
	unix.CloseRange(spec.ChannelFD+1, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
}
