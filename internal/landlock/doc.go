// Package landlock applies the sandbox's Landlock domain, the second wall
// behind the mount namespace (RATIONALE.md, "Landlock rules come from the
// mount plan").
//
// It protects the host's files from a program that escapes or sidesteps the
// mount plan: only the paths the plan mounted are reachable, read-only where
// they were mounted read-only, and writable only where they were mounted
// writable. At ABI 6 it also scopes signals and abstract unix sockets to the
// sandbox, so the program cannot signal or connect to anything outside it.
//
// Apply restricts the calling OS thread only: the init prepares a locked
// thread, restricts it, and forks the program from it, which inherits the
// domain. That keeps working where all-threads system calls are unavailable
// (cgo, the race detector). It uses the raw system calls of
// github.com/landlock-lsm/go-landlock/landlock/syscall.
//
// Every access right the running ABI knows is handled (REFER from ABI 2,
// TRUNCATE from 3, IOCTL_DEV from 5, RESOLVE_UNIX from 9); what an older
// kernel cannot enforce is reported in Result.Dropped, never left out
// silently. A requested scope the kernel lacks is an error unless the caller
// accepts best effort.
//
// Minimum kernel: 5.13 (ABI 1); scoping needs 6.12 (ABI 6).
package landlock
