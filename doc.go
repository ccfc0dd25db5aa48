// Package sandbox runs untrusted code on Linux with every protection enforced
// by the kernel, and trusted Go functions in-process with timeouts and
// cancellation.
//
// A Runner is created once from a Config by New, which validates it (every
// bad value is a *ConfigError naming the key and the accepted form) and
// checks that the host can enforce it: a protection the host lacks is an
// error unless Config.BestEffort, and then it is listed in every Result's
// Isolation.Degraded. A Runner is safe for concurrent use; Close releases it.
//
// Modes:
//   - Subprocess (the default) runs commands and Node.js or Python file
//     handlers in a fresh process tree: user, pid, mount, network, IPC, UTS
//     and cgroup namespaces; a minimal read-only root; cgroup limits (v1 or
//     v2); rlimits; no capabilities and no_new_privs; a seccomp allow-list;
//     Landlock. The program is pid 2 and runs as uid 1000.
//   - InProcess runs Go functions (trusted code: no isolation) and WASI
//     modules (untrusted code, isolated by the WebAssembly runtime).
//
// Run returns an error only for misuse (an invalid handler, a kind the mode
// cannot run, a closed Runner). Every outcome of a run is a Result with one
// Status; Result.Err gives an error for a non-ok result that works with
// errors.Is (a timeout is also context.DeadlineExceeded).
//
// Programs that run subprocess sandboxes must call InitMain first in main
// (and in TestMain): the sandbox's init is a re-executed copy of the running
// binary. RATIONALE.md explains the design decisions.
package sandbox
