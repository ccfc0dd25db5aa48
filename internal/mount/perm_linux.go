package mount

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// owner is who the sandbox user is on an id-mapped tree: the host owner and
// group of the tree's root, and nothing else (no supplementary groups, no
// capabilities). Entries of other owners appear as nobody inside and only
// their group (when it is the tree's) or "other" bits count.
type owner struct {
	uid, gid uint32
	writable bool // the root must also be writable (a read-write mount)
}

func (o *owner) String() string { return fmt.Sprintf("%d:%d", o.uid, o.gid) }

// treeOwner reads the owner of the tree rooted at path.
func treeOwner(path string, writable bool) (*owner, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	return &owner{uid: st.Uid, gid: st.Gid, writable: writable}, nil
}

// denied describes path when the sandbox user could not read it (a file) or
// list and enter it (a directory), or write the root of a writable tree;
// "" when it can, or when only the kernel can tell (an ACL). Symlinks,
// devices and fifos are not judged: a link is checked where it leads, if
// that is in a tree, and device nodes are unusable on a nodev mount anyway.
func (o *owner) denied(path string, d fs.DirEntry, root bool) (string, error) {
	if !d.IsDir() && !d.Type().IsRegular() {
		return "", nil
	}
	fi, err := d.Info()
	if err != nil {
		return "", err
	}
	st := fi.Sys().(*syscall.Stat_t)
	want := uint32(4)
	if d.IsDir() {
		want |= 1
	}
	if root && o.writable {
		want |= 2
	}
	var bits uint32
	switch {
	case st.Uid == o.uid:
		bits = st.Mode >> 6
	case st.Gid == o.gid:
		bits = st.Mode >> 3
	default:
		bits = st.Mode
	}
	if bits&want == want {
		return "", nil
	}
	// An access ACL may grant what the mode bits do not.
	if n, err := unix.Lgetxattr(path, "system.posix_acl_access", nil); err == nil && n > 0 {
		return "", nil
	}
	what := ""
	if bits&4 == 4 && bits&want&1 == want&1 {
		what = ", not writable: chmod u+w"
	}
	return fmt.Sprintf("%s (owner %d:%d, mode %v%s)", path, st.Uid, st.Gid, fi.Mode().Perm(), what), nil
}
