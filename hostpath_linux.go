package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/kb-labs/sandbox/internal/mount"
)

// The sandbox's init opens every mount source as the namespace's root, an
// unprivileged host id, and every sandbox in flight has its own pair of
// them (security.hostIdRange): no id a user could chown a directory to is
// the sandbox's for more than one run. So a source must be reachable and
// readable, and a writable one writable, by ids that own nothing: the
// "other" bits decide. These checks run on the host side so the error
// names the path and the fix, instead of a set-up step failing with EACCES.

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
