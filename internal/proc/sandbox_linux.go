package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kb-labs/sandbox/internal/spec"
)

// Options are the host-side choices for a new sandbox.
type Options struct {
	// HostRoot and HostUser (root only): inside uid/gid 0 maps to HostRoot,
	// 1000 to HostUser; the caller leases them for this sandbox alone.
	// Rootless, inside 1000 is the caller (see setIdentity).
	HostRoot, HostUser int
	// Reaped, if set, is called once when no process of the sandbox can
	// hold its host ids any more: after the init was reaped (a pid
	// namespace's processes are gone before its init is), or at once when
	// Start fails before an init existed. It gives the ids back.
	Reaped func()
	// HostNetwork keeps the host's network namespace (explicit opt-in).
	HostNetwork bool
	// CgroupFD, when not -1, is a cgroup v2 directory the init is born in
	// (clone3 CLONE_INTO_CGROUP: no migration afterwards). The zero value
	// 0 is a valid descriptor, so callers set -1 for none.
	CgroupFD int
}

// Sandbox is one started init. Its methods are not safe for concurrent use
// except Signal, Kill and Done, which may be called from any goroutine.
type Sandbox struct {
	cmd    *exec.Cmd
	conn   *spec.Conn
	pidfd  int
	stderr *boundedBuffer

	answered bool // a reply came: the process is a sandbox init

	mu       sync.Mutex
	killed   bool
	gate     *os.File // write end of the release gate, until Release
	waitDone chan struct{}
	waitErr  error

	// Pid is the init's host pid; ProgramPid the program's, once started.
	Pid        int
	ProgramPid int
	// HostUser is the host uid and gid the sandbox user maps to (root
	// only; 0 rootless): id-mapped host trees are made for it.
	HostUser int
}

// SetupError is a failure to build the sandbox; Step names the set-up step.
type SetupError struct {
	Step  string
	Err   string
	Errno syscall.Errno
}

func (e *SetupError) Error() string { return fmt.Sprintf("setup step %q: %s", e.Step, e.Err) }

// Start starts an init in new namespaces and sends it prep. It returns once
// the init runs; the prepared reply is read by Exec (pipelined), or by
// WaitPrepared for a warm sandbox.
func Start(prep spec.Prepare, opts Options) (*Sandbox, error) {
	reaped := opts.Reaped
	if reaped == nil {
		reaped = func() {}
	}
	started := false
	defer func() {
		if !started {
			reaped()
		}
	}()
	if os.Geteuid() == 0 && (opts.HostRoot <= 0 || opts.HostUser <= 0 || opts.HostRoot == opts.HostUser) {
		return nil, &SetupError{Step: "identity", Err: fmt.Sprintf("no host id pair for the sandbox (root %d, user %d)", opts.HostRoot, opts.HostUser)}
	}
	bin, err := binaryFile(hostIDs(opts, os.Geteuid(), os.Getegid()))
	if err != nil {
		return nil, &SetupError{Step: "seal-binary", Err: err.Error()}
	}
	conn, child, err := spec.Pair()
	if err != nil {
		return nil, &SetupError{Step: "socketpair", Err: err.Error()}
	}
	defer child.Close()
	flags := uintptr(unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWIPC |
		unix.CLONE_NEWUTS | unix.CLONE_NEWCGROUP)
	if !opts.HostNetwork {
		flags |= unix.CLONE_NEWNET
	}
	s := &Sandbox{conn: conn, pidfd: -1, stderr: &boundedBuffer{max: 8 << 10}, waitDone: make(chan struct{}), HostUser: opts.HostUser}
	pidfd := -1
	s.cmd = initCmd(bin, child, s.stderr, flags, &pidfd)
	if opts.CgroupFD >= 0 {
		s.cmd.SysProcAttr.UseCgroupFD, s.cmd.SysProcAttr.CgroupFD = true, opts.CgroupFD
	}
	setIdentity(s.cmd.SysProcAttr, opts, prep.Loopback, os.Geteuid(), os.Getegid())
	var startErr error
	onSpawnerThread(func() {
		if os.Geteuid() == 0 {
			// The namespace's owner is the sandbox root's host id, not host
			// root: see asCreator.
			startErr = asCreator(opts.HostRoot, opts.HostRoot, s.cmd.Start)
			return
		}
		startErr = s.cmd.Start()
	})
	if err := startErr; err != nil {
		conn.Close()
		se := &SetupError{Step: "clone", Err: explainClone(err)}
		errors.As(err, &se.Errno)
		return nil, se
	}
	s.Pid = s.cmd.Process.Pid
	s.pidfd = pidfd
	started = true
	go func() {
		s.waitErr = s.cmd.Wait()
		reaped()
		close(s.waitDone)
	}()
	if err := conn.Send(spec.Message{Kind: spec.KindPrepare, Prepare: &prep}); err != nil {
		s.Close()
		return nil, &SetupError{Step: "prepare", Err: "send: " + err.Error()}
	}
	return s, nil
}

// initCmd is the command that starts an init from the file bin, with the
// set-up channel child as its descriptor 3 (spec.ChannelFD).
func initCmd(bin, child *os.File, stderr io.Writer, cloneflags uintptr, pidfd *int) *exec.Cmd {
	return &exec.Cmd{
		// The binary travels as the child's descriptor 4 (spec.BinaryFD)
		// and is executed from there: a fixed slot. Any other number the
		// supervisor held it on could be overwritten in the child, which
		// moves its error pipe to just above the highest descriptor passed
		// before it execs (exec then fails with EACCES on a pipe: seen
		// about once in 600 starts when it was kept on descriptor 32).
		Path: fmt.Sprintf("/proc/self/fd/%d", spec.BinaryFD),
		Args: []string{spec.Argv0},
		// The init's Go runtime must not keep host files open (cgroup-aware
		// GOMAXPROCS reads the host's cpu quota files).
		Env:        []string{"GODEBUG=containermaxprocs=0,updatemaxprocs=0", "GOMAXPROCS=1", "GOGC=400"},
		ExtraFiles: []*os.File{child, bin},
		Stderr:     stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: cloneflags,
			// A session of its own: a terminal's signals for the caller's
			// process group (Ctrl-C) are the supervisor's to forward.
			Setsid:    true,
			Pdeathsig: syscall.SIGKILL,
			PidFD:     pidfd,
		},
	}
}

// Rootless reports whether sandboxes started by this process are rootless:
// the supervisor is not root, so the user namespace can map only its own ids.
func Rootless() bool { return os.Geteuid() != 0 }

// initCaps are the capabilities a rootless init needs in its user namespace
// for set-up, found by removing each until a run failed: mounts, pivot_root
// and sethostname (SYS_ADMIN), the per-namespace limits in /proc/sys/user
// (SYS_RESOURCE), emptying the bounding set (SETPCAP), and bringing up lo
// (NET_ADMIN, only with the loopback network). They are raised as ambient
// capabilities because the init execs as uid 1000, not 0, and an exec by a
// non-root uid otherwise clears every capability the namespace's creator
// held. The init drops them all (bounding, inheritable, ambient; the
// program's exec as 1000 then clears permitted and effective) before the
// program starts.
func initCaps(loopback bool) []uintptr {
	caps := []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_SYS_RESOURCE, unix.CAP_SETPCAP}
	if loopback {
		caps = append(caps, unix.CAP_NET_ADMIN)
	}
	return caps
}

// setIdentity sets the user namespace's id maps and the init's credentials.
//
// As root: inside 0 and 1000 map to opts.HostRoot and HostUser;
// the init starts as the inside root 0 (so it never holds host-root
// credentials) and the program later runs as 1000.
//
// As an ordinary user (euid, egid): the kernel lets an unprivileged process
// write one line, its own id, and only with setgroups denied. Inside 1000
// maps to the caller; the init starts as 1000 with the set-up capabilities
// ambient (see initCaps), and the program runs as 1000, that is, as the
// caller on the host, with no capabilities. Inside 0 is unmapped.
func setIdentity(a *syscall.SysProcAttr, opts Options, loopback bool, euid, egid int) {
	if euid == 0 {
		a.UidMappings = []syscall.SysProcIDMap{
			{ContainerID: 0, HostID: opts.HostRoot, Size: 1},
			{ContainerID: 1000, HostID: opts.HostUser, Size: 1},
		}
		a.GidMappings = []syscall.SysProcIDMap{
			{ContainerID: 0, HostID: opts.HostRoot, Size: 1},
			{ContainerID: 1000, HostID: opts.HostUser, Size: 1},
		}
		a.GidMappingsEnableSetgroups = true
		a.Credential = &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}}
		return
	}
	a.UidMappings = []syscall.SysProcIDMap{{ContainerID: 1000, HostID: euid, Size: 1}}
	a.GidMappings = []syscall.SysProcIDMap{{ContainerID: 1000, HostID: egid, Size: 1}}
	a.GidMappingsEnableSetgroups = false
	a.AmbientCaps = initCaps(loopback)
}

// hostIDs are the host ids that processes of the sandbox can hold (as uid or
// gid), matching setIdentity's maps.
func hostIDs(opts Options, euid, egid int) []int {
	if euid == 0 {
		return []int{opts.HostRoot, opts.HostUser}
	}
	// Rootless, the program keeps the caller's supplementary groups.
	ids := []int{euid, egid}
	if groups, err := os.Getgroups(); err == nil {
		ids = append(ids, groups...)
	}
	return ids
}

func explainClone(err error) string {
	msg := err.Error()
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EINVAL) {
		msg += " (user namespaces unavailable? check /proc/sys/user/max_user_namespaces and kernel.unprivileged_userns_clone)"
	}
	return msg
}

// WaitPrepared reads the init's answer to Prepare: the sandbox is built and
// waits for its command.
func (s *Sandbox) WaitPrepared() error {
	r, _, err := s.recvReply(0)
	if err != nil {
		return err
	}
	if r.Step != "prepared" {
		return s.replyErr(r)
	}
	return nil
}

// Started is what Exec reports once the program is stopped before its first
// instruction.
type Started struct {
	Pid         int // host pid
	LandlockABI int
	Listener    int // seccomp listener fd, -1 when none (the caller owns it)
	Notes       []string
}

// Exec delivers the run and returns when the program is stopped before its
// first instruction; the caller places it (cgroups) and calls Release.
// stdio is stdin, stdout, stderr (and the protocol socket when e.IPC); Exec
// does not close them.
func (s *Sandbox) Exec(e spec.Exec, stdio []*os.File, prepared bool) (Started, error) {
	st := Started{Listener: -1}
	fds := make([]int, len(stdio), len(stdio)+1)
	for i, f := range stdio {
		fds[i] = int(f.Fd())
	}
	gateR, gateW, err := os.Pipe()
	if err != nil {
		return st, &SetupError{Step: "exec", Err: "gate pipe: " + err.Error()}
	}
	err = s.conn.Send(spec.Message{Kind: spec.KindExec, Exec: &e}, append(fds, int(gateR.Fd()))...)
	gateR.Close()
	if err != nil {
		gateW.Close()
		return st, s.deadErr("exec", err)
	}
	s.mu.Lock()
	s.gate = gateW
	s.mu.Unlock()
	if !prepared {
		if err := s.WaitPrepared(); err != nil {
			return st, err
		}
	}
	r, got, err := s.recvReply(2)
	if err != nil {
		return st, err
	}
	if r.Step != "stopped" {
		closeFDs(got)
		return st, s.replyErr(r)
	}
	want := 1 // the program's pidfd
	if r.Listener {
		want++
	}
	if !r.PidFD || len(got) != want {
		closeFDs(got)
		return st, &SetupError{Step: "stopped", Err: fmt.Sprintf("got %d descriptors (pidfd %v), want %d", len(got), r.PidFD, want)}
	}
	pid, err := pidOfPidfd(got[0])
	unix.Close(got[0])
	got = got[1:]
	if r.Listener {
		st.Listener = got[0]
	}
	st.LandlockABI, st.Notes = r.LandlockABI, r.Notes
	if err != nil {
		if st.Listener >= 0 {
			unix.Close(st.Listener)
		}
		return st, &SetupError{Step: "find-program", Err: err.Error()}
	}
	st.Pid = pid
	s.ProgramPid = pid
	return st, nil
}

// Release lets the stopped program run.
func (s *Sandbox) Release() error {
	s.mu.Lock()
	gate := s.gate
	s.gate = nil
	s.mu.Unlock()
	if gate == nil {
		return &SetupError{Step: "release", Err: "no stopped program to release"}
	}
	defer gate.Close()
	if _, err := gate.Write([]byte{1}); err != nil {
		return s.deadErr("release", err)
	}
	return nil
}

// Signal sends sig to every process of the run (through the init).
func (s *Sandbox) Signal(sig syscall.Signal) error {
	return s.conn.Send(spec.Message{Kind: spec.KindSignal, Signal: int(sig)})
}

// Kill ends the whole pid namespace: SIGKILL to its init through the pidfd
// (the kernel then kills every process in the namespace). Safe to repeat.
func (s *Sandbox) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pidfd >= 0 {
		unix.PidfdSendSignal(s.pidfd, unix.SIGKILL, nil, 0)
	}
	s.killed = true
}

// Exit is how the program ended, from the init's report.
type Exit struct {
	Reported bool // false when the init died before reporting
	Status   unix.WaitStatus
	Err      string
	// CPUUser and CPUSystem are what the init's reaped processes used (the
	// program and its orphans), from getrusage in the init.
	CPUUser, CPUSystem time.Duration
}

// WaitExit blocks until the init reports the program's end or dies.
func (s *Sandbox) WaitExit() Exit {
	for {
		r, got, err := s.recvReply(0)
		closeFDs(got)
		if err != nil {
			return Exit{Err: err.Error()}
		}
		if r.Step == "exited" {
			if r.Err != "" { // the init lost track of the program: never a status
				return Exit{Err: r.Err}
			}
			return Exit{Reported: true, Status: unix.WaitStatus(r.Status),
				CPUUser: time.Duration(r.UserUsec) * time.Microsecond, CPUSystem: time.Duration(r.SysUsec) * time.Microsecond}
		}
	}
}

// Done is closed when the init process has been reaped.
func (s *Sandbox) Done() <-chan struct{} { return s.waitDone }

// Close kills what is left and releases the sandbox's descriptors. It waits
// for the init to be reaped (bounded).
func (s *Sandbox) Close() error {
	s.Kill()
	var err error
	select {
	case <-s.waitDone:
	case <-time.After(10 * time.Second):
		err = fmt.Errorf("sandbox init %d not reaped after SIGKILL", s.Pid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pidfd >= 0 {
		unix.Close(s.pidfd)
		s.pidfd = -1
	}
	if s.gate != nil {
		s.gate.Close()
		s.gate = nil
	}
	return errors.Join(err, s.conn.Close())
}

// Stderr returns what the init wrote on its stderr (bounded), for errors.
func (s *Sandbox) Stderr() string { return s.stderr.String() }

func (s *Sandbox) recvReply(maxFDs int) (spec.Reply, []int, error) {
	m, fds, err := s.conn.Recv(maxFDs)
	if err != nil {
		return spec.Reply{}, nil, s.deadErr("reply", err)
	}
	if m.Kind != spec.KindReply || m.Reply == nil {
		closeFDs(fds)
		return spec.Reply{}, nil, &SetupError{Step: "protocol", Err: "unexpected message " + string(m.Kind)}
	}
	s.answered = true
	return *m.Reply, fds, nil
}

func (s *Sandbox) replyErr(r spec.Reply) error {
	msg := r.Err
	if msg == "" {
		msg = "unexpected reply " + r.Step
	}
	return &SetupError{Step: r.Step, Err: msg, Errno: syscall.Errno(r.Errno)}
}

// deadErr explains a channel failure: usually the init died.
func (s *Sandbox) deadErr(step string, err error) error {
	select {
	case <-s.waitDone:
	case <-time.After(100 * time.Millisecond):
	}
	msg := err.Error()
	if out := strings.TrimSpace(s.stderr.String()); out != "" {
		msg += ": init said: " + out
	}
	select {
	case <-s.waitDone:
		if !s.answered {
			// Our init answers every message, failures included; a process
			// that ended without a word ran the caller's main instead.
			msg = "call sandbox.InitMain() first in main: the sandbox's init is this program re-executed, and it exited without answering (" + msg + ")"
		}
	default:
	}
	return &SetupError{Step: step, Err: msg}
}

// pidOfPidfd reads the pid a pidfd refers to, as this process's pid
// namespace numbers it, from the descriptor's fdinfo.
func pidOfPidfd(fd int) (int, error) {
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Pid:"); ok {
			pid, err := strconv.Atoi(strings.TrimSpace(rest))
			if err != nil || pid <= 0 {
				return 0, fmt.Errorf("pidfd %d: bad pid %q", fd, rest)
			}
			return pid, nil
		}
	}
	return 0, fmt.Errorf("pidfd %d: no Pid line in its fdinfo", fd)
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

type boundedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The init's PDEATHSIG fires when the thread that started it exits, not the
// process: a Go program may end threads (a goroutine that exits locked to
// its thread), which would kill warm or running sandboxes at random. Every
// init is therefore started from one thread that lives as long as the
// process.
var spawner struct {
	once sync.Once
	reqs chan func()
}

func onSpawnerThread(f func()) {
	spawner.once.Do(func() {
		spawner.reqs = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread must never end
			for f := range spawner.reqs {
				f()
			}
		}()
	})
	done := make(chan struct{})
	spawner.reqs <- func() { f(); close(done) }
	<-done
}
