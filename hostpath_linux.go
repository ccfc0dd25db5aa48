package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/kb-labs/sandbox/internal/mount"
)

// The sandbox's init opens every mount source as the namespace's root, which
// is an unprivileged host id (security.hostIdBase): a source under a private
// directory (/root is 0700) cannot be reached, and a writable mount must be
// writable by the sandbox user (hostIdBase+1000). These checks run on the
// host side so the error names the path and the fix, instead of a set-up
// step failing with EACCES.

// checkReadable reports whether uid:gid can reach and read path.
func checkReadable(path string, uid, gid int) error {
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
	if !permits(fi, uid, gid, want) {
		return fmt.Errorf("%s is not readable by the sandbox's host id %d (owner %d:%d, mode %v); make it readable (chmod o+r%s) or use another path",
			abs, uid, owner(fi).Uid, owner(fi).Gid, fi.Mode().Perm(), map[bool]string{true: "x", false: ""}[fi.IsDir()])
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if !permits(fi, uid, gid, 0o1) {
			return fmt.Errorf("%s cannot be reached by the sandbox's host id %d: %s is not searchable (owner %d:%d, mode %v); chmod o+x %s, or keep the files elsewhere",
				abs, uid, dir, owner(fi).Uid, owner(fi).Gid, fi.Mode().Perm(), dir)
		}
		if dir == "/" {
			return nil
		}
	}
}

// checkWritable adds, for read-write mounts, that the sandbox user can write.
func checkWritable(path string, base int) error {
	if err := checkReadable(path, base, base); err != nil {
		return err
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		// A single file: the sandbox user needs to write it.
		if !modeAllows(fi, base+1000, base+1000, 0o2) {
			return fmt.Errorf("%s is not writable by the sandbox user (host id %d; owner %d:%d, mode %v); chown %d:%d %s",
				path, base+1000, owner(fi).Uid, owner(fi).Gid, fi.Mode().Perm(), base+1000, base+1000, path)
		}
		return nil
	}
	return mount.PrepareHostDir(path, base+1000, base+1000)
}

func owner(fi os.FileInfo) *syscall.Stat_t { return fi.Sys().(*syscall.Stat_t) }

// permits checks access for the sandbox's root, uid:gid (the ids base): a
// file whose owner and group are both mapped into the sandbox (base and
// base+1000) is open to it whatever its mode (it holds CAP_DAC_OVERRIDE in
// its user namespace); otherwise the mode bits decide.
func permits(fi os.FileInfo, uid, gid int, bits os.FileMode) bool {
	st := owner(fi)
	mapped := func(id, base int) bool { return id == base || id == base+1000 }
	if mapped(int(st.Uid), uid) && mapped(int(st.Gid), gid) {
		return true
	}
	return modeAllows(fi, uid, gid, bits)
}

// modeAllows checks the mode bits alone (no capabilities: the sandbox
// user). ACLs are not read: a denial here is advice, the kernel decides.
func modeAllows(fi os.FileInfo, uid, gid int, bits os.FileMode) bool {
	st := owner(fi)
	m := fi.Mode().Perm()
	switch {
	case int(st.Uid) == uid:
		return (m>>6)&bits == bits
	case int(st.Gid) == gid:
		return (m>>3)&bits == bits
	}
	return m&bits == bits
}

// checkSources verifies every host path a run would mount.
func checkSources(o mount.Options, base int) error {
	for _, m := range o.ReadOnly {
		if err := checkReadable(m.Source, base, base); err != nil {
			return err
		}
	}
	for _, m := range o.Special {
		if err := checkReadable(m.Source, base, base); err != nil {
			return err
		}
	}
	for _, dir := range append([]string{o.Workdir, o.Outdir}, bindSources(o.ReadWrite)...) {
		if dir == "" {
			continue
		}
		if err := checkWritable(dir, base); err != nil {
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
