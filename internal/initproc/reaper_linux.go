package initproc

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kb-labs/sandbox/internal/mount"
)

// The program is pid 2 of its own pid namespace, under a minimal reaper that
// is pid 1 there (see RATIONALE.md, "Why the program is pid 2").
//
// The Go init cannot be that pid 1: its runtime's threads take pids 2..N
// before any of our code runs. So the forking thread unshares a second pid
// namespace for its children and forks, without exec, a reaper: a copy of
// the init with one thread that runs only the raw system calls below (like
// the child half of syscall.ForkExec, it may not touch the Go runtime). It
// becomes pid 1 of the new namespace; the program, forked next from the same
// thread, becomes pid 2. The reaper mounts the namespace's /proc (with the
// plan's masks) when told to, drops its capabilities, then reaps orphans
// until the run ends. The Go init stays the supervisor's peer: it is the
// program's parent, waits for it and reports its status.

//go:linkname runtime_BeforeFork syscall.runtime_BeforeFork
func runtime_BeforeFork()

//go:linkname runtime_AfterFork syscall.runtime_AfterFork
func runtime_AfterFork()

//go:linkname runtime_AfterForkInChild syscall.runtime_AfterForkInChild
func runtime_AfterForkInChild()

// rawMount is one mount(2) call with NUL-terminated arguments, prepared
// before the fork: the reaper cannot allocate.
type rawMount struct {
	source, target, fstype, data *byte
	flags                        uintptr
}

// What the reaper reads; written before the fork, read only by the child.
var (
	reaperMounts []rawMount
	reaperGo     int    // read end: one byte means "mount /proc now"
	reaperDone   int    // write end: 'k' when mounted, else the failed index+1
	reaperFull   uint64 = ^uint64(0)
	reaperChld   uint64 = 1 << (uint(syscall.SIGCHLD) - 1)
	reaperBuf    [128]byte
	reaperCapHdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	reaperCaps   [2]unix.CapUserData
)

// reaper is the supervisor side of the reaper: started by startReaper,
// told to mount /proc by mountProc.
type reaper struct {
	pid      int // in the init's pid namespace
	goW      *os.File
	doneR    *os.File
	mounts   []rawMount
	keepRefs [][]byte
}

func cstr(r *reaper, s string) *byte {
	b := append([]byte(s), 0)
	r.keepRefs = append(r.keepRefs, b)
	return &b[0]
}

// procMounts turns the plan's /proc steps into raw mounts for the new pid
// namespace's /proc: the procfs itself, masks, read-only directories. Steps
// for entries the kernel lacks are skipped here (never silently in the
// reaper: a prepared mount that fails fails the run).
func procMounts(r *reaper, plan *mount.Plan) error {
	const locked = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	add := func(src, target, fstype, data string, flags uintptr) {
		m := rawMount{target: cstr(r, target), flags: flags}
		if src != "" {
			m.source = cstr(r, src)
		}
		if fstype != "" {
			m.fstype = cstr(r, fstype)
		}
		if data != "" {
			m.data = cstr(r, data)
		}
		r.mounts = append(r.mounts, m)
	}
	haveProc := false
	for _, m := range plan.Base {
		if m.Kind == mount.KindProc && m.Target == "/proc" {
			haveProc = true
		}
	}
	if !haveProc {
		return errors.New("the mount plan has no /proc")
	}
	add("proc", "/proc", "proc", "", locked)
	// The reaper stays in the supervisor's cgroups (it is not the run's to
	// account), and its cgroup file, read against the program's cgroup
	// namespace, would show their host paths: masked.
	var st unix.Stat_t
	if unix.Lstat("/proc/self/cgroup", &st) == nil {
		add("/dev/null", "/proc/1/cgroup", "", "", unix.MS_BIND)
		add("/dev/null", "/proc/1/task/1/cgroup", "", "", unix.MS_BIND)
	}
	for _, m := range plan.Base {
		if !strings.HasPrefix(m.Target, "/proc/") {
			continue
		}
		var st unix.Stat_t
		if err := unix.Lstat(m.Target, &st); err != nil {
			continue // absent on this kernel (the plan skips it too)
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		switch m.Kind {
		case mount.KindMask:
			if isDir {
				add("tmpfs", m.Target, "tmpfs", "size=0,nr_inodes=1,mode=0555", locked|unix.MS_RDONLY)
			} else {
				add("/dev/null", m.Target, "", "", unix.MS_BIND)
			}
		case mount.KindReadOnly:
			add(m.Target, m.Target, "", "", unix.MS_BIND|unix.MS_REC)
			add("", m.Target, "", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|locked)
		default:
			return fmt.Errorf("unexpected %s step under /proc: %s", m.Kind, path.Clean(m.Target))
		}
	}
	return nil
}

// startReaper unshares a pid namespace for the calling thread's children
// and forks the reaper into it, as its pid 1. It must run on the locked
// forking thread, which keeps its capabilities until the program is forked.
func startReaper(plan *mount.Plan) (*reaper, error) {
	r := &reaper{}
	if err := procMounts(r, plan); err != nil {
		return nil, err
	}
	if err := unix.Unshare(unix.CLONE_NEWPID); err != nil {
		return nil, fmt.Errorf("unshare a pid namespace: %w", err)
	}
	goR, goW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	doneR, doneW, err := os.Pipe()
	if err != nil {
		goR.Close()
		goW.Close()
		return nil, err
	}
	reaperMounts, reaperGo, reaperDone = r.mounts, int(goR.Fd()), int(doneW.Fd())
	pid, errno := forkReaper()
	goR.Close()
	doneW.Close()
	if errno != 0 {
		goW.Close()
		doneR.Close()
		return nil, fmt.Errorf("fork the reaper: %w", errno)
	}
	r.pid, r.goW, r.doneR = pid, goW, doneR
	return r, nil
}

// mountProc has the reaper mount the new namespace's /proc and waits for it.
func (r *reaper) mountProc() error {
	defer r.goW.Close()
	defer r.doneR.Close()
	if _, err := r.goW.Write([]byte{'m'}); err != nil {
		return fmt.Errorf("reaper: %w", err)
	}
	var b [1]byte
	if n, err := r.doneR.Read(b[:]); n != 1 {
		return fmt.Errorf("reaper ended before mounting /proc: %v", err)
	}
	if b[0] != 'k' {
		i := int(b[0]) - 1
		target := "?"
		if i >= 0 && i < len(r.mounts) {
			target = unix.BytePtrToString(r.mounts[i].target)
		}
		return fmt.Errorf("mount %s in the program's pid namespace failed", target)
	}
	return nil
}

// forkReaper forks without exec; the child never returns from it.
//
//go:norace
func forkReaper() (int, syscall.Errno) {
	runtime_BeforeFork()
	pid, _, errno := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if errno != 0 || pid != 0 {
		runtime_AfterFork()
		return int(pid), errno
	}
	runtime_AfterForkInChild()
	reaperMain()
	return 0, 0 // not reached
}

// reaperMain is the whole life of the reaper. It runs in a forked copy of
// the init with one thread and must not call into the Go runtime: raw
// system calls on data prepared before the fork only.
//
//go:nosplit
//go:norace
func reaperMain() {
	sys := syscall.RawSyscall6
	// Keep only the two pipes, as 0 and 1.
	sys(unix.SYS_DUP3, uintptr(reaperGo), 100, 0, 0, 0, 0)
	sys(unix.SYS_DUP3, uintptr(reaperDone), 101, 0, 0, 0, 0)
	sys(unix.SYS_DUP3, 100, 0, 0, 0, 0, 0)
	sys(unix.SYS_DUP3, 101, 1, 0, 0, 0, 0)
	sys(unix.SYS_CLOSE_RANGE, 2, ^uintptr(0), 0, 0, 0, 0)
	sys(unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&reaperFull)), 0, 8, 0, 0)

	if n, _, _ := sys(unix.SYS_READ, 0, uintptr(unsafe.Pointer(&reaperBuf[0])), 1, 0, 0, 0); n != 1 {
		sys(unix.SYS_EXIT_GROUP, 1, 0, 0, 0, 0, 0)
	}
	for i := 0; i < len(reaperMounts); i++ {
		m := &reaperMounts[i]
		_, _, e := sys(unix.SYS_MOUNT, uintptr(unsafe.Pointer(m.source)), uintptr(unsafe.Pointer(m.target)),
			uintptr(unsafe.Pointer(m.fstype)), m.flags, uintptr(unsafe.Pointer(m.data)), 0)
		if e != 0 {
			reaperBuf[0] = byte(i + 1)
			sys(unix.SYS_WRITE, 1, uintptr(unsafe.Pointer(&reaperBuf[0])), 1, 0, 0, 0)
			sys(unix.SYS_EXIT_GROUP, 2, 0, 0, 0, 0, 0)
		}
	}
	// Nothing more needs privilege: drop every capability and the ability
	// to regain any.
	sys(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&reaperCapHdr)), uintptr(unsafe.Pointer(&reaperCaps[0])), 0, 0, 0, 0)
	sys(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0)
	reaperBuf[0] = 'k'
	sys(unix.SYS_WRITE, 1, uintptr(unsafe.Pointer(&reaperBuf[0])), 1, 0, 0, 0)
	sys(unix.SYS_CLOSE, 0, 0, 0, 0, 0, 0)
	sys(unix.SYS_CLOSE, 1, 0, 0, 0, 0, 0)

	// Reap orphans for the rest of the run: SIGCHLD (blocked) wakes a
	// signalfd read; every signal stays blocked, and as pid 1 of its
	// namespace only SIGKILL from the init's namespace can end it.
	fd, _, e := sys(unix.SYS_SIGNALFD4, ^uintptr(0), uintptr(unsafe.Pointer(&reaperChld)), 8, unix.SFD_CLOEXEC, 0, 0)
	if e != 0 {
		sys(unix.SYS_EXIT_GROUP, 3, 0, 0, 0, 0, 0)
	}
	for {
		for {
			pid, _, e := sys(unix.SYS_WAIT4, ^uintptr(0), 0, unix.WNOHANG|unix.WALL, 0, 0, 0)
			if e != 0 || pid == 0 {
				break
			}
		}
		sys(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&reaperBuf[0])), uintptr(len(reaperBuf)), 0, 0, 0)
	}
}
