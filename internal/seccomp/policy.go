package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"sort"
)

//go:generate go run gen_tables.go

// Arch is a system call ABI the filter can be generated for. The values are
// the package-level AMD64 and ARM64; an Arch is immutable.
type Arch struct {
	name  string
	audit uint32   // AUDIT_ARCH_* as seen in seccomp_data.arch
	x32   bool     // the ABI has an x32 twin to refuse (nr & x32Bit)
	names []string // nr -> kernel name, "" for holes
	nrs   map[string]int
	max   int // newest known system call number
}

// x32Bit is __X32_SYSCALL_BIT: on x86_64 a system call number with this bit
// set enters the x32 ABI, a second table the allow-list does not describe.
const x32Bit = 0x40000000

// Supported architectures.
var (
	AMD64 = newArch("amd64", 0xc000003e, true, amd64Names[:])
	ARM64 = newArch("arm64", 0xc00000b7, false, arm64Names[:])
)

func newArch(name string, audit uint32, x32 bool, names []string) *Arch {
	a := &Arch{name: name, audit: audit, x32: x32, names: names, nrs: map[string]int{}}
	for nr, n := range names {
		if n != "" {
			a.nrs[n] = nr
			a.max = nr
		}
	}
	return a
}

// ErrUnsupportedArch is returned for a GOARCH without a system call table.
var ErrUnsupportedArch = errors.New("seccomp: unsupported architecture")

// Native returns the Arch of the running binary (runtime.GOARCH).
func Native() (*Arch, error) {
	switch runtime.GOARCH {
	case "amd64":
		return AMD64, nil
	case "arm64":
		return ARM64, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrUnsupportedArch, runtime.GOARCH)
}

// String returns the GOARCH name ("amd64").
func (a *Arch) String() string { return a.name }

// Name returns the kernel's name of system call nr, or "" when nr is not a
// known system call of this ABI.
func (a *Arch) Name(nr int) string {
	if nr < 0 || nr >= len(a.names) {
		return ""
	}
	return a.names[nr]
}

// Number returns the number of the named system call in this ABI.
func (a *Arch) Number(name string) (nr int, ok bool) {
	nr, ok = a.nrs[name]
	return nr, ok
}

// Max returns the newest known system call number; the filter answers ENOSYS
// above it.
func (a *Arch) Max() int { return a.max }

// Action says what a denied known system call does.
type Action int

const (
	// Errno fails a denied call with EPERM (the default).
	Errno Action = iota
	// Kill kills the whole process with SIGSYS (SECCOMP_RET_KILL_PROCESS).
	Kill
)

// Options configure the filter. The zero value is the default: denied calls
// fail with EPERM and are not reported.
type Options struct {
	OnViolation Action
	// Notify turns every denied known call into a user notification
	// (SECCOMP_RET_USER_NOTIF) so the supervisor can count it; the
	// supervisor answers EPERM (see Listener). It applies to Errno only:
	// with Kill the kernel kills at once and nothing is reported, so a kill
	// never depends on the supervisor being alive. With Notify, the
	// program installing a seccomp filter of its own is notified too
	// (Call.Install): such a filter can answer a call before the
	// notification, since the kernel ranks ERRNO, TRAP and KILL above
	// USER_NOTIF among stacked filters.
	Notify bool
	// TraceMe allows ptrace(PTRACE_TRACEME) and nothing else of ptrace: the
	// sandbox's init starts the program traced so that it stops before its
	// first instruction while the supervisor places it in its cgroups. A
	// tracee gains nothing from it (every other ptrace request stays denied,
	// so its tracer can only wait for it); see RATIONALE.md.
	TraceMe bool
}

func (o Options) validate() error {
	if o.OnViolation != Errno && o.OnViolation != Kill {
		return fmt.Errorf("seccomp: unknown violation action %d", o.OnViolation)
	}
	return nil
}

// allowed is the allow-list: what sh/coreutils, Python, Node.js and Go
// binaries need, after Docker's default profile, less everything that reaches
// privileged kernel surface (see doc.go). Names absent from an ABI's table are
// ignored for that ABI. Calls with argument rules are in rules and modeRules,
// not here; calls answered ENOSYS in unsupported.
var allowed = setOf(
	// files and directories
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "preadv2", "pwritev", "pwritev2",
	"close", "close_range", "lseek",
	"stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs",
	"access", "faccessat", "faccessat2", "readlink", "readlinkat", "getcwd", "chdir", "fchdir",
	"getdents", "getdents64", "rmdir",
	"link", "linkat", "symlink", "symlinkat", "unlink", "unlinkat", "rename", "renameat", "renameat2",
	"chown", "fchown", "lchown", "fchownat", "umask",
	"truncate", "ftruncate", "fallocate", "fadvise64", "readahead", "fsync", "fdatasync",
	"sync", "syncfs", "sync_file_range", "flock", "fcntl", "dup", "dup2", "dup3",
	"utime", "utimes", "utimensat", "futimesat", "sendfile", "copy_file_range", "splice", "tee", "vmsplice",
	"getxattr", "lgetxattr", "fgetxattr", "getxattrat", "setxattr", "lsetxattr", "fsetxattr", "setxattrat",
	"listxattr", "llistxattr", "flistxattr", "listxattrat",
	"removexattr", "lremovexattr", "fremovexattr", "removexattrat", "file_getattr", "file_setattr",
	"inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "fanotify_mark",
	"pipe", "pipe2", "memfd_create", "memfd_secret", "cachestat",
	// memory
	"brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync", "remap_file_pages",
	"mlock", "mlock2", "mlockall", "munlock", "munlockall", "membarrier", "mseal", "map_shadow_stack",
	// memory protection keys: per-process page permissions; V8 probes them
	"pkey_alloc", "pkey_free", "pkey_mprotect",
	// processes, threads, signals
	"fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid",
	"getpid", "getppid", "gettid", "getpgid", "setpgid", "getpgrp", "getsid", "setsid",
	"getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
	"setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid",
	"capget", "capset", "arch_prctl", "set_tid_address", "set_thread_area", "get_thread_area",
	"set_robust_list", "get_robust_list", "rseq",
	"landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
	"futex", "futex_waitv", "futex_wake", "futex_wait", "futex_requeue",
	"kill", "tkill", "tgkill", "pidfd_open", "pidfd_send_signal", "process_mrelease",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigsuspend", "rt_sigtimedwait",
	"rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "signalfd", "signalfd4", "restart_syscall", "pause",
	"getrlimit", "setrlimit", "prlimit64", "getrusage", "getpriority", "setpriority", "ioprio_get", "ioprio_set",
	"sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam", "sched_setparam",
	"sched_getscheduler", "sched_setscheduler", "sched_getattr", "sched_setattr",
	"sched_get_priority_max", "sched_get_priority_min", "sched_rr_get_interval",
	// time
	"time", "gettimeofday", "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "times",
	"alarm", "getitimer", "setitimer", "timer_create", "timer_delete", "timer_settime", "timer_gettime",
	"timer_getoverrun", "timerfd_create", "timerfd_settime", "timerfd_gettime",
	// waiting and events
	"select", "pselect6", "poll", "ppoll", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait",
	"epoll_pwait", "epoll_pwait2", "epoll_ctl_old", "epoll_wait_old", "eventfd", "eventfd2",
	// sockets (socket and socketpair are in rules)
	"bind", "connect", "listen", "accept", "accept4", "shutdown", "getsockname", "getpeername",
	"getsockopt", "setsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
	// System V and POSIX IPC (the run has its own IPC namespace)
	"shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl",
	"msgget", "msgsnd", "msgrcv", "msgctl",
	"mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
	// system information
	"uname", "sysinfo", "getrandom", "getcpu",
)

// unsupported answer ENOSYS and are not violations: the program is told the
// kernel lacks them, and runtimes fall back (libaio users to threads, libc to
// openat).
//   - The AIO calls: every context counts against the host-wide
//     fs.aio-max-nr, which no user or namespace limit bounds, so one run
//     could take all of it (RATIONALE.md, "Host-wide budgets").
//   - openat2: its mode is in a struct the filter cannot read, so the
//     set-id rule below could not see it.
var unsupported = setOf(
	"io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
	"openat2",
)

// modeRule says where a call that creates a file or changes its mode takes
// the mode, and (for the open family) the flags that make it create one;
// flags is -1 when the call always uses its mode. A mode with S_ISUID or
// S_ISGID is denied: files a run creates in a host directory belong to a
// host user, who could later run a set-id program the sandbox planted
// (RATIONALE.md, "No set-id files").
type modeRule struct{ flags, mode int8 }

var modeRules = map[string]modeRule{
	"chmod": {-1, 1}, "fchmod": {-1, 1}, "fchmodat": {-1, 2}, "fchmodat2": {-1, 2},
	"creat": {-1, 1}, "mkdir": {-1, 1}, "mkdirat": {-1, 2}, "mknod": {-1, 1}, "mknodat": {-1, 2},
	"open": {1, 2}, "openat": {2, 3},
}

const (
	// setIDBits are S_ISUID and S_ISGID. A mode is a umode_t (16 bits)
	// in the kernel, so the low 32 bits of the argument hold all it sees.
	setIDBits = 0o4000 | 0o2000
	// createFlags are O_CREAT and __O_TMPFILE, the flags under which
	// open and openat use their mode (the same values on amd64 and
	// arm64).
	createFlags = 0o100 | 0o20000000
	// Installing a seccomp filter of the program's own:
	// seccomp(SECCOMP_SET_MODE_FILTER, ...) and
	// prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ...).
	seccompSetModeFilter = 1
	prSetSeccomp         = 22
	seccompModeFilter    = 2
)

// Argument rules. Every compared argument is an int or unsigned int in the
// kernel, so the rules compare the low 32 bits only: a caller cannot dodge a
// rule by setting high bits the kernel ignores (ioctl 0x100005412 is TIOCSTI).
const (
	// nsFlags are clone's namespace flags: CLONE_NEWNS, NEWCGROUP, NEWUTS,
	// NEWIPC, NEWUSER, NEWPID, NEWNET and NEWTIME. NEWTIME (0x80) shares
	// bits with the exit signal, whose valid values never reach 0x80.
	nsFlags = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x80
)

var (
	// socketFamilies: AF_UNIX, AF_INET, AF_INET6, AF_NETLINK. Other
	// families fail with EAFNOSUPPORT before the kernel can autoload a
	// protocol module for them.
	socketFamilies = []uint32{1, 2, 10, 16}
	// personalities as in Docker's profile: PER_LINUX, PER_LINUX32,
	// UNAME26, UNAME26|PER_LINUX32 and the 0xffffffff query.
	personalities = []uint32{0x0, 0x8, 0x20000, 0x20008, 0xffffffff}
	// deniedIoctls: TIOCSTI, TIOCLINUX, TIOCCONS, TIOCSETD, which type
	// into or redirect a terminal.
	deniedIoctls = []uint32{0x5412, 0x541c, 0x541d, 0x5423}
)

// ruleKind names a system call whose verdict depends on its arguments.
type ruleKind int

const (
	ruleNone ruleKind = iota
	ruleClone
	ruleClone3
	ruleSocket
	rulePersonality
	ruleIoctl
	ruleTraceMe
	ruleMode          // modeRules
	ruleSeccompFilter // seccomp(SECCOMP_SET_MODE_FILTER)
	rulePrctlSeccomp  // prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)
)

// rules maps system calls to their argument rules. socketpair shares
// socket's family rule: it creates sockets (and autoloads modules) too.
var rules = map[string]ruleKind{
	"clone":       ruleClone,
	"clone3":      ruleClone3,
	"socket":      ruleSocket,
	"socketpair":  ruleSocket,
	"personality": rulePersonality,
	"ioctl":       ruleIoctl,
	"seccomp":     ruleSeccompFilter,
	"prctl":       rulePrctlSeccomp,
}

// seccomp return values (linux/seccomp.h); kept here so the generator and
// its tests build on every GOOS.
const (
	retKillProcess = 0x80000000
	retErrno       = 0x00050000
	retUserNotif   = 0x7fc00000
	retAllow       = 0x7fff0000

	errnoEPERM        = 1
	errnoENOSYS       = 38
	errnoEAFNOSUPPORT = 97
)

// install is the return value for the program installing a filter of its
// own: reported to the supervisor when it listens, otherwise allowed.
func (o Options) install() uint32 {
	if o.Notify && o.OnViolation == Errno {
		return retUserNotif
	}
	return retAllow
}

// violation is the return value for a denied known call.
func (o Options) violation() uint32 {
	switch {
	case o.OnViolation == Kill:
		return retKillProcess
	case o.Notify:
		return retUserNotif
	}
	return retErrno | errnoEPERM
}

// Allowed returns the names of the system calls this ABI allows
// unconditionally, sorted; calls with argument rules are not included.
func (a *Arch) Allowed() []string {
	var out []string
	for name := range a.nrs {
		if allowed[name] {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}
