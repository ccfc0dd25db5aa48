// Package initproc is the sandbox's init: the re-executed, sealed copy of the
// binary that the supervisor starts inside fresh user, pid, mount, network,
// IPC, UTS and cgroup namespaces. It builds the root filesystem, then starts
// the program (pid 2) with every protection in place, reaps zombies, forwards
// signals, and reports how the program ended.
//
// The program is pid 2 of its own pid namespace, whose pid 1 is a minimal
// reaper forked (without exec) from the init's forking thread; see
// reaper_linux.go.
//
// It is dispatched explicitly by MaybeRun at the top of main (and TestMain),
// never from init(): a process is the init only when argv[0] is spec.Argv0 AND
// fd 3 is a SOCK_SEQPACKET socket (the set-up channel). The protocol is
// documented in internal/spec.
//
// Protections applied here: the init is non-dumpable and holds no host fd but
// the channel; rlimits; oom_score_adj; no_new_privs, Landlock, an empty
// capability bounding set, and the seccomp filter are applied on one locked
// OS thread from which the program is forked (it inherits them); the program
// runs as uid/gid 1000 with no supplementary groups in a new session. It is
// started with PTRACE_TRACEME so that it stops before its first instruction
// while the supervisor moves it into the run's cgroups; the tracing thread
// then exits, which detaches the program (see RATIONALE.md, "Placing the
// program in its cgroup").
//
// Minimum kernel: 5.12 (mount_setattr), Landlock and seccomp optional per
// configuration.
package initproc
