package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/kb-labs/sandbox/internal/mount"
	"github.com/kb-labs/sandbox/internal/proc"
	"github.com/kb-labs/sandbox/internal/spec"
)

// Host paths (RATIONALE.md, "Host paths are id-mapped and checked on the host side"). As root, by
// default, the supervisor opens every per-run host source itself and mounts
// it id-mapped, so that the source's host owner and group are the sandbox
// user: parents' permissions do not matter, the tree is as readable and
// writable as it is for its owner, and what the program creates belongs to
// the owner (mount.Plan.OpenTrees). mount.NewPlan names, before any run,
// what the sandbox user could still not read there.
//
// With permissions.filesystem.idmap: none (and rootless, where the user
// namespace maps the caller's own id anyway) the sandbox's init opens every
// mount source as the namespace's root, an unprivileged host id, and every
// sandbox in flight has its own pair of them (security.hostIdRange): no id
// a user could chown a directory to is the sandbox's for more than one run.
// So a source must be reachable and readable, and a writable one writable,
// by ids that own nothing: the "other" bits decide. checkSources checks
// that on the host side so the error names the path and the fix, instead of
// a set-up step failing with EACCES.

// idmapped reports whether host paths are id-mapped trees for cfg.
func idmapped(cfg *Config) bool {
	return !proc.Rootless() && cfg.Permissions.Filesystem.IDMap != IDMapNone
}

// probeUser is the host id the trees opened by checkHostPaths map to: they
// are closed unattached, so any id other than the owners' would do.
const probeUser = 65534

// checkHostPaths verifies, as root, the host paths of a plan before any run
// (New): under idmap, that every tree can be opened and id-mapped; under
// idmap: none, the old rule.
func checkHostPaths(p *mount.Plan, o mount.Options) error {
	if !o.IDMap {
		return checkSources(o)
	}
	trees, err := openTrees(p, probeUser)
	closeFiles(trees)
	return err
}

// openTrees opens the id-mapped trees of p for a sandbox whose user is
// hostUser on the host; none without Tree mounts (rootless, idmap: none).
func openTrees(p *mount.Plan, hostUser int) ([]*os.File, error) {
	n := 0
	for _, m := range p.Run {
		if m.Tree {
			n++
		}
	}
	if n == 0 {
		return nil, nil
	}
	if n > spec.MaxTrees {
		return nil, fmt.Errorf("%d host mounts; at most %d per run (or set permissions.filesystem.idmap: none)", n, spec.MaxTrees)
	}
	trees, err := p.OpenTrees(hostUser, hostUser)
	if err != nil {
		return nil, explainTree(err)
	}
	return trees, nil
}

// checkInProcessPaths applies the host-path rules of subprocess runs to an
// in-process (WASM) run's mounts o, and reports whether what the module
// creates must be given the directories' owners. Rootless, the module has
// the caller's own access, as a rootless sandbox has.
func checkInProcessPaths(cfg *Config, o mount.Options) (own bool, err error) {
	if proc.Rootless() || len(o.ReadOnly)+len(o.ReadWrite) == 0 && o.Workdir == "" && o.Outdir == "" {
		return false, nil
	}
	o.IDMap = idmapped(cfg)
	if _, err := mount.NewPlan(o); err != nil {
		return false, planError(err, cfg.Permissions.Filesystem)
	}
	if !o.IDMap {
		return true, checkSources(o)
	}
	return true, nil
}

// explainTree adds both fixes to a filesystem that refuses id-mapped mounts.
func explainTree(err error) error {
	var ie *mount.IDMapError
	if !errors.As(err, &ie) {
		return fmt.Errorf("host path: %w", err)
	}
	return fmt.Errorf("host path %s is on a filesystem that cannot be id-mapped (%s; %v); either set permissions.filesystem.idmap: none (CLI --idmap none) and make it reachable and readable by others (chmod o+rx, o+rwx when written, o+x on every parent), or keep it on a filesystem that supports id-mapped mounts (ext4, xfs, btrfs, tmpfs)",
		ie.Path, ie.FS, ie.Err)
}

// checkReadable reports whether a sandbox can reach and read path.
func checkReadable(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return err
	}
	want := os.FileMode(0o4)
	if fi.IsDir() {
		want |= 0o1
	}
	if fi.Mode().Perm()&want != want {
		return fmt.Errorf("%s is not readable by the sandbox (each run has its own host ids, so only the \"other\" bits count; owner %d:%d, mode %v); make it readable (chmod o+r%s) or use another path",
			abs, owner(fi).Uid, owner(fi).Gid, fi.Mode().Perm(), map[bool]string{true: "x", false: ""}[fi.IsDir()])
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o1 == 0 {
			return fmt.Errorf("%s cannot be reached by the sandbox: %s is not searchable (owner %d:%d, mode %v); chmod o+x %s, or keep the files elsewhere",
				abs, dir, owner(fi).Uid, owner(fi).Gid, fi.Mode().Perm(), dir)
		}
		if dir == "/" {
			return nil
		}
	}
}

// checkWritable adds, for read-write mounts, that the sandbox user can write.
func checkWritable(path string) error {
	if err := checkReadable(path); err != nil {
		return err
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		// A single file: the sandbox user needs to write it.
		if fi.Mode().Perm()&0o2 == 0 {
			return fmt.Errorf("%s is not writable by the sandbox (each run has its own host ids, so only the \"other\" bits count; owner %d:%d, mode %v); chmod o+w %s",
				path, owner(fi).Uid, owner(fi).Gid, fi.Mode().Perm(), path)
		}
		return nil
	}
	return mount.PrepareHostDir(path, -1, -1)
}

func owner(fi os.FileInfo) *syscall.Stat_t { return fi.Sys().(*syscall.Stat_t) }

// checkSources verifies every host path a run would mount.
func checkSources(o mount.Options) error {
	for _, m := range o.ReadOnly {
		if err := checkReadable(m.Source); err != nil {
			return err
		}
	}
	for _, m := range o.Special {
		if err := checkReadable(m.Source); err != nil {
			return err
		}
	}
	for _, dir := range append([]string{o.Workdir, o.Outdir}, bindSources(o.ReadWrite)...) {
		if dir == "" {
			continue
		}
		if err := checkWritable(dir); err != nil {
			return err
		}
	}
	return nil
}

func bindSources(bs []mount.Bind) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Source)
	}
	return out
}
