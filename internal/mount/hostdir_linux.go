package mount

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// PrepareHostDir checks that a host directory can be a writable mount
// (--workdir, --outdir, --rw) for a sandbox whose user maps to
// hostUID:hostGID, and explains what to change when it cannot. It changes
// nothing: it never chowns the caller's data and never makes it
// world-writable.
//
// Requirements, which the caller (the engine or the person running it)
// must meet:
//   - the directory is a real directory, not a symlink;
//   - it is writable by hostUID (owner with u+w) or hostGID (group with
//     g+w), for example after `chown hostUID:hostGID dir`, or with an ACL
//     `setfacl -m u:hostUID:rwx dir` (default ACLs for new files too);
//   - every ancestor is searchable by the sandbox's ids (o+x, or owned by
//     hostUID/hostGID), because the child opens the source from inside its
//     user namespace, where it is not host root.
//
// Files the sandbox creates there are owned by hostUID:hostGID on the host,
// never by root. hostUID and hostGID -1 stand for ids that own nothing (a
// root-started sandbox's per-run ids): then only the "other" bits count.
// The error is a *HostDirError.
func PrepareHostDir(path string, hostUID, hostGID int) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		real, _ := filepath.EvalSymlinks(path)
		return &HostDirError{path, "is a symlink", "pass the real path " + real}
	}
	if !fi.IsDir() {
		return &HostDirError{path, "not a directory", "pass a directory"}
	}
	st := fi.Sys().(*syscall.Stat_t)
	m := fi.Mode().Perm()
	switch {
	case int(st.Uid) == hostUID && m&0o300 == 0o300,
		int(st.Gid) == hostGID && m&0o030 == 0o030,
		m&0o003 == 0o003 && fi.Mode()&os.ModeSticky == 0:
	case hostUID < 0:
		return &HostDirError{path,
			fmt.Sprintf("not writable by the sandbox (each run has its own host ids, so only the \"other\" bits count; owner %d:%d, mode %v)", st.Uid, st.Gid, m),
			fmt.Sprintf("chmod o+rwx %s, or setfacl -m o::rwx -m d:o::rwx %s", path, path)}
	default:
		return &HostDirError{path,
			fmt.Sprintf("not writable by the sandbox user (host id %d:%d; owner %d:%d, mode %v)", hostUID, hostGID, st.Uid, st.Gid, m),
			fmt.Sprintf("chown %d:%d %s, or setfacl -m u:%d:rwx -m d:u:%d:rwx %s", hostUID, hostGID, path, hostUID, hostUID, path)}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		m := fi.Mode().Perm()
		if m&0o001 == 0 && !(int(st.Uid) == hostUID && m&0o100 != 0) && !(int(st.Gid) == hostGID && m&0o010 != 0) {
			return &HostDirError{path,
				fmt.Sprintf("ancestor %s is not searchable by the sandbox (owner %d:%d, mode %v)", dir, st.Uid, st.Gid, m),
				"chmod o+x " + dir + ", or keep the directory elsewhere"}
		}
		if dir == "/" {
			return nil
		}
	}
}
