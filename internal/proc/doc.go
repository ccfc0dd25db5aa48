// Package proc is the supervisor's side of a sandbox: it starts the sealed
// init (internal/initproc) in fresh namespaces, speaks the set-up protocol of
// internal/spec with it, places the program in its cgroup while it is stopped
// before its first instruction, and ends everything (the pid namespace's init
// through a pidfd, plus the cgroup) whatever happens.
//
// It protects the host against: the program outliving its run (the run ends
// with pid 2, then the whole pid namespace is killed), a supervisor that dies
// (PDEATHSIG on the init, and Sweep of the cgroups a dead owner left), a
// writable path to the host binary (the init runs from a sealed memfd copy).
//
// Minimum kernel: 5.3 (pidfd), 5.12 for the mount API used by internal/mount.
package proc
