// Package seccomp generates, installs and serves the system call filter of a
// sandboxed program (docs/security.md, "What enforces what").
//
// It protects the kernel from the program: the filter is an allow-list (a
// deny-list fails open on every new system call) of what sh, coreutils,
// Python, Node.js and Go binaries need, after Docker's default profile, less
// the privileged kernel surface: ptrace and process_vm_*, io_uring and AIO, bpf,
// perf_event_open, userfaultfd, keyrings, the mount family (old and new API),
// unshare/setns and namespace flags to clone, kexec and modules, reboot, swap,
// acct, quotactl, file handles, syslog, clock setting, port I/O, modify_ldt,
// NUMA policy and protection keys. Argument rules compare the low 32 bits of
// int arguments, as the kernel does:
//
//   - clone without namespace flags; clone3 answers ENOSYS (its flags are in
//     memory the filter cannot read; libc falls back to clone);
//   - socket and socketpair for AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK
//     (others EAFNOSUPPORT, so no protocol module is autoloaded);
//   - personality for Docker's harmless values;
//   - ioctl without TIOCSTI, TIOCLINUX, TIOCCONS and TIOCSETD;
//   - no set-uid or set-gid mode: chmod, fchmod, fchmodat, fchmodat2,
//     creat, mkdir(at), mknod(at), and open/openat with O_CREAT or
//     O_TMPFILE, so a run cannot plant a set-id file in a host directory;
//   - seccomp(SECCOMP_SET_MODE_FILTER) and prctl(PR_SET_SECCOMP) are
//     reported (Call.Install): a filter of the program's own can answer
//     calls before the sandbox's notification.
//
// The AIO calls and openat2 answer ENOSYS, not counted: AIO contexts are a
// host-wide budget no namespace bounds, and openat2's mode is in memory the
// filter cannot read (libc falls back to openat).
//
// A known denied call fails with EPERM, is reported to the supervisor through
// user notification (Options.Notify, served by Listener) or kills the process
// (Options.OnViolation = Kill). A number above the newest known one, or a hole
// in the table, answers ENOSYS and is not a violation, nor is clone3 or an
// unsupported socket family. A foreign ABI (i386's int 0x80 on x86_64, arm32
// on arm64) or x32 kills the process: the allow-list describes one table only.
//
// The filter is generated on golang.org/x/net/bpf for amd64 and arm64 (Build);
// ztables.go holds both system call tables (go generate). Install needs
// no_new_privs (SetNoNewPrivs) and a locked OS thread.
//
// Minimum kernel: 5.10 (SECCOMP_RET_KILL_PROCESS 4.14, user notification 5.0,
// TSYNC with a listener 5.7, POLLHUP on the listener once every filtered task
// is gone 5.10; the kernel caches constant allows from 5.11).
package seccomp
