package mount

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Id-mapped trees (RATIONALE.md, "Host paths are id-mapped and checked on the host side"). Making a
// mount id-mapped needs CAP_SYS_ADMIN in the user namespace that owns the
// source's filesystem — the initial one for a disk — so the supervisor, as
// host root, clones each host source itself and hands the detached clone to
// the init, which only moves it into the new root (Root.Finish). The
// clone's flags are set while it is detached; they are not locked the way a
// user namespace locks the mounts it inherits, which is safe because
// nothing in the sandbox but its own init ever holds CAP_SYS_ADMIN there
// (the program has no capabilities, and seccomp denies the mount API).

// OpenTrees is the host side of p's Tree mounts, run as host root: for each
// one, in the order of p.Run, it opens the source (without following a
// symlink: NewPlan canonicalised it), clones it with its submounts, and sets
// nosuid, nodev, read-only when asked, and an id mapping under which the
// source's host owner and group are hostUID and hostGID, the sandbox user's
// host ids: the program acts as the owner there, and what it creates
// belongs to the owner on the host. The supervisor's own access is what
// counts, so the parents' permissions do not matter. The caller owns the
// files and closes them. A filesystem that refuses the mapping is an
// *IDMapError (errors.Is ErrNoIDMap).
func (p *Plan) OpenTrees(hostUID, hostGID int) (trees []*os.File, err error) {
	maps := map[[2]uint32]int{}
	defer func() {
		for _, fd := range maps {
			unix.Close(fd)
		}
		if err != nil {
			for _, f := range trees {
				f.Close()
			}
			trees = nil
		}
	}()
	for i := range p.Run {
		m := &p.Run[i]
		if !m.Tree {
			continue
		}
		fd, err := openTree(m, hostUID, hostGID, maps)
		if err != nil {
			return trees, err
		}
		trees = append(trees, os.NewFile(uintptr(fd), "tree "+m.Target))
	}
	return trees, nil
}

func openTree(m *Mount, hostUID, hostGID int, maps map[[2]uint32]int) (int, error) {
	flags := unix.O_PATH
	if m.Dir {
		flags |= unix.O_DIRECTORY
	}
	src, err := openat2(unix.AT_FDCWD, m.Source, flags, unix.RESOLVE_NO_SYMLINKS|unix.RESOLVE_NO_MAGICLINKS)
	if err != nil {
		return -1, pathErr("open source", m.Source, err)
	}
	defer unix.Close(src)
	// The owner of what is cloned, not of what a path named a moment ago.
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		return -1, pathErr("stat", m.Source, err)
	}
	key := [2]uint32{st.Uid, st.Gid}
	ns, ok := maps[key]
	if !ok {
		if ns, err = userNS(int(st.Uid), int(st.Gid), hostUID, hostGID); err != nil {
			return -1, pathErr("id map", m.Source, err)
		}
		maps[key] = ns
	}
	clone, err := unix.OpenTree(src, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return -1, pathErr("open_tree", m.Source, err)
	}
	err = unix.MountSetattr(clone, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE,
		&unix.MountAttr{Attr_set: attrs(m) | unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(ns)})
	if err != nil {
		unix.Close(clone)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EOPNOTSUPP) {
			return -1, &IDMapError{Path: m.Source, FS: describeFS(src, m.Source), Err: err}
		}
		return -1, pathErr("mount_setattr", m.Source, err)
	}
	return clone, nil
}

// userNS returns a user namespace that maps uid to hostUID and gid to
// hostGID, one id each: an id-mapped mount takes its mapping from a user
// namespace, and only a process can create one (unshare is refused to a
// threaded process). The process is this binary, traced from birth, so it
// stops at its exec before its first instruction; it is killed once its
// namespace is open, and PDEATHSIG covers a supervisor that dies meanwhile.
// The thread stays locked throughout: it is the tracer, and the death signal
// follows it.
func userNS(uid, gid, hostUID, hostGID int) (int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := &exec.Cmd{
		Path: "/proc/self/exe",
		Args: []string{"sandbox-idmap"},
		Env:  []string{},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: uid, HostID: hostUID, Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: gid, HostID: hostGID, Size: 1}},
			Ptrace:      true,
			Pdeathsig:   syscall.SIGKILL,
		},
	}
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("create a user namespace for the mapping: %w", err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	fd, err := unix.Open("/proc/"+strconv.Itoa(cmd.Process.Pid)+"/ns/user", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open the mapping's user namespace: %w", err)
	}
	return fd, nil
}

// describeFS names the filesystem src is on and those mounted under path,
// from mountinfo: "nfs4 at /srv; submounts: fuse.sshfs at /srv/x".
func describeFS(src int, path string) string {
	var stx unix.Statx_t
	if err := unix.Statx(src, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &stx); err != nil {
		return "unknown filesystem"
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "unknown filesystem"
	}
	defer f.Close()
	top := "unknown filesystem"
	var subs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, v := range fields {
			if v == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		at := unescapeMountinfo(fields[4])
		what := fields[sep+1] + " at " + at
		switch {
		case fields[0] == strconv.FormatUint(stx.Mnt_id, 10):
			top = what
		case within(at, path) && at != path && len(subs) < 8:
			subs = append(subs, what)
		}
	}
	if len(subs) > 0 {
		top += "; submounts: " + strings.Join(subs, ", ")
	}
	return top
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// checkTree verifies, in the init, that a tree from the supervisor carries
// the flags its mount asks for before it is moved into the root.
func checkTree(fd int, m *Mount) error {
	var sf unix.Statfs_t
	if err := unix.Fstatfs(fd, &sf); err != nil {
		return pathErr("statfs", m.Target, err)
	}
	want := int64(unix.ST_NOSUID)
	if !m.Dev {
		want |= unix.ST_NODEV
	}
	if m.ReadOnly {
		want |= unix.ST_RDONLY
	}
	if sf.Flags&want != want {
		return pathErr("tree", m.Target, fmt.Errorf("flags %#x, want %#x (nosuid, nodev, read-only as planned)", sf.Flags, want))
	}
	return nil
}

// withSandboxFSIDs runs f with the filesystem ids of the sandbox user: the
// init, the namespace's root, has no id on an id-mapped tree (creating
// there fails with EOVERFLOW), so a mount point it must create in one is
// created as the sandbox user, and belongs to the tree's owner on the host.
func withSandboxFSIDs(f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	uid, err := unix.SetfsuidRetUid(SandboxUID)
	if err != nil {
		return err
	}
	defer unix.Setfsuid(uid)
	gid, err := unix.SetfsgidRetGid(SandboxGID)
	if err != nil {
		return err
	}
	defer unix.Setfsgid(gid)
	return f()
}
