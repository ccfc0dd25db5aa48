// Package hostile is the hostile-program battery (docs/security.md):
// real programs (testdata/probe, sh, python3, util-linux) run through the
// library's subprocess engine, each case asserting both the verdict of the
// run and its effect on the host — the file not written, the process not
// left behind, the connection not accepted, the host process alive, the
// host binaries unchanged.
//
// It protects against regressions that reopen the kernel surface the
// sandbox closes (namespaces, mount plan, cgroups, rlimits, capabilities,
// no_new_privs, Landlock, the seccomp allow-list). Cases that depend on
// seccomp alone are also run with the filter turned off, where they must be
// seen to fail: the battery proves it can detect a breach.
//
// Needs root, user namespaces and cgroups (Linux 6.7+ for Landlock ABI 4+;
// amd64 for the x32 and int $0x80 cases). The package holds tests only.
package hostile
