// Package mount builds the sandbox's root filesystem.
//
// The parent side turns the configuration into a Plan (NewPlan: every check
// that can fail because of the caller happens there and names the option).
// The Plan is plain JSON so the set-up message can carry it to the
// re-executed child, which applies it inside its fresh user and mount
// namespaces (Apply, or Prepare + Finish for a warm pool).
//
// What it protects against:
//   - the host filesystem: the sandbox sees a fresh tmpfs root holding only
//     read-only, nosuid, nodev binds of the system directories, a synthetic
//     /etc, a new /proc with its sensitive entries masked, a tty-less /dev
//     and bounded tmpfs scratch space; the old root is detached and the root
//     is read-only after set-up;
//   - symlink games: host sources are opened with RESOLVE_NO_SYMLINKS (they
//     were canonicalised by NewPlan, so a symlink that appears later is a
//     race and an error), and targets are resolved with RESOLVE_IN_ROOT
//     under the new root, so a symlink inside a bound directory can never
//     redirect a nested mount onto the host; every mount is made through
//     file descriptors, never through a path resolved twice;
//   - writable read-only mounts: read-only binds are cloned with open_tree
//     and made read-only recursively with mount_setattr while still
//     detached, so they are never visible writable, submounts included;
//   - unix sockets: a user mount whose tree holds a socket is refused unless
//     allowed (read-only does not stop connect());
//   - host ownership: writable tmpfs mounts belong to the sandbox user
//     inside, an unprivileged id outside; nothing is chmod'ed on the host.
//     With Options.IDMap the per-run host sources are Tree mounts: cloned
//     and id-mapped by the supervisor (Plan.OpenTrees, as host root) so that
//     each source's owner is the sandbox user and nothing else of the host
//     is mapped, then moved in by the init; NewPlan names what the sandbox
//     user could not read there.
//
// It does not: set up the namespaces, drop privileges, or enforce disk
// quotas beyond tmpfs size and inode limits (a writable host bind is bounded
// only by the host filesystem).
//
// Minimum kernel: 5.12 (openat2 5.6, open_tree/move_mount 5.2,
// mount_setattr 5.12). Check reports whether the running kernel has them;
// there is deliberately no fallback to bind + MS_REMOUNT, which cannot make
// a tree read-only recursively and would weaken read-only binds silently.
// The comment at the top of apply_linux.go explains how mounts are made and
// how the two phases split the work.
package mount
