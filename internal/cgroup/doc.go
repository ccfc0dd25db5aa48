// Package cgroup puts each run in its own control group and reads its
// accounting back, on cgroup v2 and on cgroup v1 behind one small interface.
//
// It protects the host against a run that exhausts memory (swap included),
// processes or CPU, and against a run that escapes the end of its life by
// forking, double-forking or ignoring signals: every process of a run is in
// the run's cgroup from its first instruction, and Kill/Close end every one of
// them. Accounting comes from the run's own cgroup, never from the parent.
//
// Layout: every run lives under a parent cgroup named "sandbox" in each
// hierarchy (sandbox/<run> on v2; <ctrl>/sandbox/<run> on v1). The parent is
// created when missing and never removed; it may carry a host-wide budget
// (Manager.SetBudget). Run names carry an owner prefix chosen by the caller so
// that a later start can Sweep what a dead supervisor left behind.
//
// Backends (picked once by Detect, see RATIONALE.md "why cgroup v1 is still
// supported"):
//
//   - v2: memory, pids and cpu delegated to sandbox/. The engine moves its
//     program in while it is stopped before its first instruction
//     (Group.AddProcess).
//   - v1: memory, pids, cpu and cpuacct hierarchies (cpu,cpuacct may be
//     co-mounted), plus freezer when mounted. The forking thread of the
//     engine's init moves itself in through Group.OpenTasks and forks the
//     program, which inherits the cgroups; the thread then ends.
//   - hybrid: v1 as above plus, where a cgroup2 hierarchy is mounted (usually
//     /sys/fs/cgroup/unified), a controller-less v2 leaf per run, used for
//     cgroup.kill and CLONE_INTO_CGROUP. It is a best-effort extra and never
//     carries a limit.
//
// Minimum kernel: 4.5 for v2 (5.7 for CLONE_INTO_CGROUP, 5.14 for cgroup.kill,
// 5.19 for memory.peak; each is probed and reported by Manager.Features), 4.13
// for the v1 oom_kill counter. pidfd_open (5.3) is used when present so that a
// recycled pid is never signalled.
package cgroup
