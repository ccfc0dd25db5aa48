package mount

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// How mounts are made (a candidate for RATIONALE.md, "mount plan"):
//
//   - binds: open the host source with openat2 (RESOLVE_NO_SYMLINKS under the
//     host root fd), clone it with open_tree(OPEN_TREE_CLONE|AT_RECURSIVE),
//     set read-only/nosuid/nodev/noexec recursively with mount_setattr while
//     the clone is still detached (never visible writable, submounts
//     included, and no need to restate the source's locked flags as an
//     MS_REMOUNT would), then move_mount it onto a target fd;
//   - tmpfs and proc: one mount(2) onto /proc/self/fd/N, where N is the
//     target opened with RESOLVE_IN_ROOT: the magic link lands on exactly
//     that dentry, and it is one syscall instead of the six of
//     fsopen/fsconfig/fsmount/move_mount.
//
// Phases. Prepare (phase 1) builds the base on a new tmpfs root, pivots into
// it and keeps the old root attached at /.oldroot (mode 0) plus an O_PATH fd
// to it, the only ways back to the host. Finish (phase 2) opens the per-run
// sources under that fd, mounts them, detaches the old root, removes
// /.oldroot and, last of all, makes the root read-only. Holding the old root
// between the phases is safe because no sandboxed code runs before Finish
// returns. Tree mounts are the exception to opening sources here: an
// id-mapped mount can only be made by host root, so the supervisor clones
// those and passes the detached trees (idmap_linux.go); everything else is
// cloned here, inside the user namespace, where the kernel locks the flags
// of what the namespace inherited.

const (
	oldRoot = "/.oldroot"
	// stage is where the new root is attached before pivot_root; it only
	// has to be an existing directory of the host (hidden in our namespace).
	stage = "tmp"

	inRoot     = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS
	hostSource = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS
)

// Root is a sandbox root between phase 1 and phase 2. It is owned by the one
// goroutine doing set-up; it is not safe for concurrent use.
type Root struct {
	host   int // O_PATH fd of the host's root, kept until Finish
	root   int // O_PATH fd of the new root
	baseID string
	nullFd int // the first /proc file mask, cloned for the others
	done   bool
}

// Apply runs both phases: Prepare then Finish. It must run in the child, as
// root of a new user namespace, in a new mount namespace, as pid 1 of a new
// pid namespace. Errors are *StepError.
func Apply(p *Plan) error {
	r, err := Prepare(p)
	if err != nil {
		return err
	}
	return r.Finish(p, nil)
}

// Prepare is phase 1: it makes every mount private, builds p.Base on a new
// tmpfs root and pivots into it. The old root stays attached (unreachable
// by path for anything but set-up) until Finish.
func Prepare(p *Plan) (*Root, error) {
	r := &Root{host: -1, root: -1, nullFd: -1, baseID: p.BaseID}
	if err := r.prepare(p); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Root) prepare(p *Plan) error {
	// Nothing we do may propagate back to the host (on a shared / the copy
	// in a user namespace is a slave already; private also stops receiving).
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return step("make-private", err)
	}
	var err error
	if r.host, err = unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		return step("open-host-root", err)
	}
	st, err := openat2(r.host, stage, unix.O_PATH|unix.O_DIRECTORY, hostSource)
	if err != nil {
		return step("stage", pathErr("open", "/"+stage, err))
	}
	err = mountAt("tmpfs", st, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC,
		fmt.Sprintf("size=%d,nr_inodes=%d,mode=0755", rootSize, rootInodes))
	unix.Close(st)
	if err != nil {
		return step("root", err)
	}
	// Reopen: the fd must name the new tmpfs, not the directory under it.
	if r.root, err = openat2(r.host, stage, unix.O_PATH|unix.O_DIRECTORY, hostSource); err != nil {
		return step("root", err)
	}
	for i := range p.Base {
		if err := r.apply(&p.Base[i]); err != nil {
			return err
		}
	}
	if err := unix.Mkdirat(r.root, oldRoot[1:], 0); err != nil {
		return step("pivot_root", pathErr("mkdir", oldRoot, err))
	}
	if err := unix.Fchdir(r.root); err != nil {
		return step("pivot_root", err)
	}
	if err := unix.PivotRoot(".", oldRoot[1:]); err != nil {
		return step("pivot_root", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return step("pivot_root", err)
	}
	return nil
}

// Finish is phase 2: it clones p.Run's host sources, detaches the old root,
// mounts p.Run and makes the root read-only, in that order (read-only last,
// so the mount points above can still be created; targets only once the
// host is out of reach). trees are the detached mounts of p.Run's Tree
// mounts, in order (Plan.OpenTrees, on the supervisor's side); Finish does
// not close them. p must have been built for the same base as the plan
// given to Prepare (same BaseID). Finish releases r's fds whatever the
// outcome; it may be called once.
func (r *Root) Finish(p *Plan, trees []int) error {
	defer r.Close()
	if r.done {
		return step("finish", errors.New("root already finished"))
	}
	r.done = true
	if p.BaseID != r.baseID {
		return step("plan", fmt.Errorf("run plan is for base %s, sandbox prepared with %s", p.BaseID, r.baseID))
	}
	// Host sources are cloned (detached, flags set) while the old root is
	// still reachable, and only then is the old root detached: no target is
	// resolved or created while a path inside the new root could lead back
	// to the host. A symlink a previous run left in a shared workdir
	// (/workspace/data -> /.oldroot/tmp) would otherwise make the mount
	// point land in the host's /tmp.
	clones := make([]int, len(p.Run))
	for i := range clones {
		clones[i] = -1
	}
	defer func() {
		for _, fd := range clones {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}()
	mounts := make([]int, len(p.Run)) // what each bind moves into place
	next := 0
	for i := range p.Run {
		m := &p.Run[i]
		switch {
		case m.Kind != KindBind:
		case m.Tree:
			if next == len(trees) {
				return step("bind "+m.Target, fmt.Errorf("%d trees for more Tree mounts", len(trees)))
			}
			if err := checkTree(trees[next], m); err != nil {
				return step("bind "+m.Target, err)
			}
			mounts[i] = trees[next]
			next++
		default:
			fd, err := r.cloneSource(m)
			if err != nil {
				return step(string(m.Kind)+" "+m.Target, err)
			}
			clones[i], mounts[i] = fd, fd
		}
	}
	if next != len(trees) {
		return step("plan", fmt.Errorf("%d trees for %d Tree mounts", len(trees), next))
	}
	unix.Close(r.host)
	r.host = -1
	if err := unix.Unmount(oldRoot, unix.MNT_DETACH); err != nil {
		return step("detach-oldroot", err)
	}
	if err := unix.Unlinkat(r.root, oldRoot[1:], unix.AT_REMOVEDIR); err != nil {
		return step("detach-oldroot", err)
	}
	for i := range p.Run {
		m := &p.Run[i]
		var err error
		if m.Kind == KindBind {
			err = r.moveTo(mounts[i], m.Target, m.Dir)
		} else {
			err = r.apply(m)
		}
		if err != nil {
			return step(string(m.Kind)+" "+m.Target, err)
		}
	}
	if err := unix.MountSetattr(r.root, "", unix.AT_EMPTY_PATH,
		&unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
		return step("remount-root-ro", err)
	}
	return nil
}

// Close releases the fds of an unfinished root (after a failed Prepare, or
// when a warm sandbox is discarded). The old root stays attached: the child
// is expected to exit.
func (r *Root) Close() error {
	for _, fd := range []*int{&r.host, &r.root, &r.nullFd} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
	return nil
}

func (r *Root) apply(m *Mount) error {
	var err error
	switch m.Kind {
	case KindBind:
		err = r.bind(m)
	case KindTmpfs:
		err = r.tmpfs(m)
	case KindProc:
		err = r.proc(m)
	case KindMask:
		err = r.mask(m)
	case KindReadOnly:
		err = r.readOnly(m)
	case KindSymlink:
		err = r.symlink(m)
	case KindFile:
		err = r.file(m)
	case KindRebind:
		err = r.rebind(m)
	default:
		err = fmt.Errorf("unknown kind %q", m.Kind)
	}
	if err != nil {
		return step(string(m.Kind)+" "+m.Target, err)
	}
	return nil
}

func attrs(m *Mount) uint64 {
	a := uint64(unix.MOUNT_ATTR_NOSUID)
	if !m.Dev {
		a |= unix.MOUNT_ATTR_NODEV
	}
	if m.ReadOnly {
		a |= unix.MOUNT_ATTR_RDONLY
	}
	if m.NoExec {
		a |= unix.MOUNT_ATTR_NOEXEC
	}
	return a
}

func (r *Root) bind(m *Mount) error {
	clone, err := r.cloneSource(m)
	if err != nil {
		return err
	}
	defer unix.Close(clone)
	return r.moveTo(clone, m.Target, m.Dir)
}

// cloneSource opens m's host source under the host root and returns a
// detached recursive clone of it with m's flags already set (never visible
// writable, submounts included).
func (r *Root) cloneSource(m *Mount) (int, error) {
	if r.host < 0 {
		return -1, pathErr("open source", m.Source, errors.New("the host root is no longer reachable"))
	}
	flags := unix.O_PATH
	if m.Dir {
		flags |= unix.O_DIRECTORY
	}
	src, err := openat2(r.host, m.Source, flags, hostSource)
	if err != nil {
		return -1, pathErr("open source", m.Source, err)
	}
	clone, err := unix.OpenTree(src, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	unix.Close(src)
	if err != nil {
		return -1, pathErr("open_tree", m.Source, err)
	}
	if err := unix.MountSetattr(clone, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE,
		&unix.MountAttr{Attr_set: attrs(m)}); err != nil {
		unix.Close(clone)
		return -1, pathErr("mount_setattr", m.Source, err)
	}
	return clone, nil
}

// rebind binds a directory of the new root itself at m.Target (the
// workspace, read-only, as a plugin root). The source is resolved in the
// new root without following any symlink: it never names a host path.
func (r *Root) rebind(m *Mount) error {
	src, err := openat2(r.root, m.Source, unix.O_PATH|unix.O_DIRECTORY, unix.RESOLVE_IN_ROOT|unix.RESOLVE_NO_SYMLINKS|unix.RESOLVE_NO_MAGICLINKS)
	if err != nil {
		return pathErr("open source", m.Source, err)
	}
	clone, err := unix.OpenTree(src, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	unix.Close(src)
	if err != nil {
		return pathErr("open_tree", m.Source, err)
	}
	defer unix.Close(clone)
	if err := unix.MountSetattr(clone, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE,
		&unix.MountAttr{Attr_set: attrs(m)}); err != nil {
		return pathErr("mount_setattr", m.Source, err)
	}
	return r.moveTo(clone, m.Target, true)
}

func (r *Root) moveTo(mnt int, target string, dir bool) error {
	t, err := r.target(target, dir)
	if err != nil {
		return err
	}
	defer unix.Close(t)
	if err := unix.MoveMount(mnt, "", t, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return pathErr("move_mount", target, err)
	}
	return nil
}

func (r *Root) tmpfs(m *Mount) error {
	t, err := r.target(m.Target, true)
	if err != nil {
		return err
	}
	defer unix.Close(t)
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	if m.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	if m.NoExec {
		flags |= unix.MS_NOEXEC
	}
	data := fmt.Sprintf("size=%d,nr_inodes=%d,mode=%04o,uid=%d,gid=%d", m.Size, m.Inodes, m.Mode, m.UID, m.GID)
	return mountAt("tmpfs", t, "tmpfs", flags, data)
}

func (r *Root) proc(m *Mount) error {
	t, err := r.target(m.Target, true)
	if err != nil {
		return err
	}
	defer unix.Close(t)
	return mountAt("proc", t, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
}

// mask hides a /proc entry. The first file mask is a read-only clone of the
// host's /dev/null; the others clone that attached mount (one open_tree and
// one move_mount each).
func (r *Root) mask(m *Mount) error {
	t, err := openat2(r.root, m.Target, unix.O_PATH, inRoot)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return pathErr("open", m.Target, err)
	}
	defer unix.Close(t)
	var st unix.Stat_t
	if err := unix.Fstat(t, &st); err != nil {
		return pathErr("stat", m.Target, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return mountAt("tmpfs", t, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC,
			"size=4096,nr_inodes=2,mode=0555")
	}
	var clone int
	if r.nullFd < 0 {
		from, how := r.host, uint64(hostSource)
		if from < 0 { // phase 2: the sandbox's /dev/null is a bind of the host's
			from, how = r.root, inRoot
		}
		null, err := openat2(from, "/dev/null", unix.O_PATH, how)
		if err != nil {
			return pathErr("open", "/dev/null", err)
		}
		clone, err = unix.OpenTree(null, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
		unix.Close(null)
		if err != nil {
			return pathErr("open_tree", "/dev/null", err)
		}
		if err := unix.MountSetattr(clone, "", unix.AT_EMPTY_PATH, &unix.MountAttr{
			Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NOEXEC}); err != nil {
			unix.Close(clone)
			return pathErr("mount_setattr", "/dev/null", err)
		}
	} else if clone, err = unix.OpenTree(r.nullFd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH); err != nil {
		return pathErr("open_tree", "/dev/null", err)
	}
	if err := unix.MoveMount(clone, "", t, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		unix.Close(clone)
		return pathErr("move_mount", m.Target, err)
	}
	// After move_mount the fd names the attached mount: keep it as the
	// template for the next file mask.
	if r.nullFd < 0 {
		r.nullFd = clone
	} else {
		unix.Close(clone)
	}
	return nil
}

func (r *Root) readOnly(m *Mount) error {
	t, err := openat2(r.root, m.Target, unix.O_PATH|unix.O_DIRECTORY, inRoot)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return pathErr("open", m.Target, err)
	}
	defer unix.Close(t)
	clone, err := unix.OpenTree(t, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return pathErr("open_tree", m.Target, err)
	}
	defer unix.Close(clone)
	if err := unix.MountSetattr(clone, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{
		Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC}); err != nil {
		return pathErr("mount_setattr", m.Target, err)
	}
	if err := unix.MoveMount(clone, "", t, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return pathErr("move_mount", m.Target, err)
	}
	return nil
}

func (r *Root) symlink(m *Mount) error {
	dir, name, err := r.parent(m.Target)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	if err := unix.Symlinkat(m.Link, dir, name); err != nil {
		return pathErr("symlink", m.Target, err)
	}
	return nil
}

func (r *Root) file(m *Mount) error {
	dir, name, err := r.parent(m.Target)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	fd, err := unix.Openat(dir, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, m.Mode)
	if err != nil {
		return pathErr("create", m.Target, err)
	}
	defer unix.Close(fd)
	for b := m.Data; len(b) > 0; {
		n, err := unix.Write(fd, b)
		if err != nil {
			return pathErr("write", m.Target, err)
		}
		b = b[n:]
	}
	return nil
}

// target opens (creating it when missing) a mount point under the new root.
// Resolution is RESOLVE_IN_ROOT: a symlink met on the way, including one in
// a bound host directory, is followed as if the new root were /, so a mount
// can land in an unexpected place of the sandbox but never outside it.
func (r *Root) target(path string, dir bool) (int, error) {
	flags := unix.O_PATH
	if dir {
		flags |= unix.O_DIRECTORY
	}
	fd, err := openat2(r.root, path, flags, inRoot)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		if err != nil {
			err = pathErr("open", path, err)
		}
		return fd, err
	}
	parent, name, err := r.parent(path)
	if err != nil {
		return -1, err
	}
	defer unix.Close(parent)
	create := func() error {
		if dir {
			return unix.Mkdirat(parent, name, 0o755)
		}
		f, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o444)
		if err == nil {
			unix.Close(f)
		}
		return err
	}
	if err = create(); errors.Is(err, unix.EOVERFLOW) {
		err = withSandboxFSIDs(create) // in an id-mapped tree (idmap_linux.go)
	}
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, pathErr("create", path, err)
	}
	fd, err = openat2(r.root, path, flags, inRoot)
	if err != nil {
		return -1, pathErr("open", path, err)
	}
	return fd, nil
}

// parent returns an O_PATH fd of path's directory (created as needed, each
// component resolved in the root) and the last component.
func (r *Root) parent(path string) (int, string, error) {
	i := len(path) - 1
	for i > 0 && path[i] != '/' {
		i--
	}
	dir, name := path[:i], path[i+1:]
	if dir == "" {
		fd, err := unix.Dup(r.root)
		return fd, name, err
	}
	fd, err := r.target(dir, true)
	return fd, name, err
}

func openat2(dirfd int, path string, flags int, resolve uint64) (int, error) {
	for {
		fd, err := unix.Openat2(dirfd, path, &unix.OpenHow{
			Flags:   uint64(flags | unix.O_CLOEXEC),
			Resolve: resolve,
		})
		if err == unix.EINTR || err == unix.EAGAIN {
			// EAGAIN: a rename raced the resolution; retrying is what
			// openat2(2) asks for.
			continue
		}
		return fd, err
	}
}

// mountAt mounts onto the dentry fd names, through its magic link.
func mountAt(source string, fd int, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(source, "/proc/self/fd/"+strconv.Itoa(fd), fstype, flags, data); err != nil {
		return &os.PathError{Op: "mount " + fstype, Path: source, Err: err}
	}
	return nil
}

func pathErr(op, path string, err error) error {
	return &os.PathError{Op: op, Path: path, Err: err}
}

func step(name string, err error) error {
	var se *StepError
	if errors.As(err, &se) {
		return err
	}
	return &StepError{Step: name, Err: err}
}
