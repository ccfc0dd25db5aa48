package wasm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tetratelabs/wazero"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	wsys "github.com/tetratelabs/wazero/sys"
)

// Why not wazero's FSConfig.WithDirMount / WithReadOnlyDirMount: their
// directory file system joins the guest's path to the host directory and lets
// the kernel follow symbolic links, so a guest that creates "l -> ../../etc"
// in a writable mount, or finds such a link in any mount, reads and writes
// the whole host (wazero issue #2321). rootFS resolves every path through an
// os.Root, which follows symbolic links only while they stay inside the
// directory.

// mountConfig opens the mounts' directories. closeAll releases them; call it
// after the run. A Spec without mounts gets no file system at all.
func mountConfig(mounts []Mount) (cfg wazero.FSConfig, closeAll func(), err error) {
	var roots []*os.Root
	closeAll = func() {
		for _, r := range roots {
			_ = r.Close()
		}
	}
	if len(mounts) == 0 {
		return nil, closeAll, nil
	}
	seen := map[string]bool{}
	fsc := wazero.NewFSConfig().(sysfs.FSConfig)
	var out wazero.FSConfig
	for _, m := range mounts {
		if err := validateMount(m); err != nil {
			closeAll()
			return nil, nil, err
		}
		if seen[m.GuestPath] {
			closeAll()
			return nil, nil, fmt.Errorf("%w: two mounts at guest path %q", ErrInvalidSpec, m.GuestPath)
		}
		seen[m.GuestPath] = true
		root, err := os.OpenRoot(m.HostPath)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("%w: mount %s: %v", ErrInvalidSpec, m.HostPath, err)
		}
		roots = append(roots, root)
		rfs := &rootFS{root: root, readOnly: m.ReadOnly, uid: -1, gid: -1}
		if m.OwnCreated {
			// The directory as opened: its owner, not the path's later one.
			st, err := root.Stat(".")
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("%w: mount %s: %v", ErrInvalidSpec, m.HostPath, err)
			}
			rfs.uid, rfs.gid = ownerOf(st)
		}
		out = fsc.WithSysFSMount(rfs, m.GuestPath)
		fsc = out.(sysfs.FSConfig)
	}
	return out, closeAll, nil
}

// rootFS is an experimentalsys.FS confined to an os.Root. Paths from wazero
// are relative to the mount, already cleaned and free of "..".
type rootFS struct {
	experimentalsys.UnimplementedFS
	root     *os.Root
	readOnly bool
	// uid and gid own what the guest creates (Mount.OwnCreated); -1 leaves
	// the caller's own ids.
	uid, gid int
}

// own gives a new entry the mount's owner. A failure undoes nothing: the
// entry stays, owned by the caller, and the guest learns of it.
func (r *rootFS) own(name string) experimentalsys.Errno {
	if r.uid < 0 {
		return 0
	}
	return errno(r.root.Lchown(name, r.uid, r.gid))
}

func rel(p string) string {
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		return "."
	}
	return p
}

const writeFlags = experimentalsys.O_WRONLY | experimentalsys.O_RDWR | experimentalsys.O_CREAT |
	experimentalsys.O_TRUNC | experimentalsys.O_APPEND

func (r *rootFS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	if r.readOnly && flag&writeFlags != 0 {
		return nil, experimentalsys.EROFS
	}
	name := rel(p)
	if flag&experimentalsys.O_NOFOLLOW != 0 {
		if st, err := r.root.Lstat(name); err == nil && st.Mode()&fs.ModeSymlink != 0 {
			return nil, experimentalsys.ELOOP
		}
	}
	f, created, err := r.open(name, osFlags(flag), perm)
	if err != nil {
		return nil, errno(err)
	}
	if created && r.uid >= 0 {
		if err := f.Chown(r.uid, r.gid); err != nil {
			_ = f.Close()
			return nil, errno(err)
		}
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, errno(err)
	}
	if flag&experimentalsys.O_DIRECTORY != 0 && !st.IsDir() {
		_ = f.Close()
		return nil, experimentalsys.ENOTDIR
	}
	return newRootFile(r.root, f, name, flag)
}

// open opens name and reports whether it created the file. Knowing that
// takes an exclusive create first when the mount owns what it creates; a
// file that appears or goes in between is retried. Creating through a
// dangling symlink then fails as it would with O_EXCL (EEXIST).
func (r *rootFS) open(name string, flags int, perm fs.FileMode) (*os.File, bool, error) {
	if r.uid < 0 || flags&os.O_CREATE == 0 {
		f, err := r.root.OpenFile(name, flags, perm)
		return f, false, err
	}
	if flags&os.O_EXCL != 0 {
		f, err := r.root.OpenFile(name, flags, perm)
		return f, err == nil, err
	}
	for range 8 {
		f, err := r.root.OpenFile(name, flags|os.O_EXCL, perm)
		if err == nil {
			return f, true, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, false, err
		}
		f, err = r.root.OpenFile(name, flags&^os.O_CREATE, perm)
		if !errors.Is(err, fs.ErrNotExist) {
			return f, false, err
		}
		if st, lerr := r.root.Lstat(name); lerr == nil && st.Mode()&fs.ModeSymlink != 0 {
			return nil, false, err // a dangling link: never created through
		}
	}
	return nil, false, syscall.EAGAIN
}

func osFlags(flag experimentalsys.Oflag) int {
	var f int
	switch {
	case flag&experimentalsys.O_RDWR != 0:
		f = os.O_RDWR
	case flag&experimentalsys.O_WRONLY != 0:
		f = os.O_WRONLY
	default:
		f = os.O_RDONLY
	}
	for _, m := range []struct {
		w experimentalsys.Oflag
		o int
	}{
		{experimentalsys.O_APPEND, os.O_APPEND},
		{experimentalsys.O_CREAT, os.O_CREATE},
		{experimentalsys.O_EXCL, os.O_EXCL},
		{experimentalsys.O_TRUNC, os.O_TRUNC},
		{experimentalsys.O_SYNC | experimentalsys.O_DSYNC | experimentalsys.O_RSYNC, os.O_SYNC},
	} {
		if flag&m.w != 0 {
			f |= m.o
		}
	}
	return f
}

func (r *rootFS) Lstat(p string) (wsys.Stat_t, experimentalsys.Errno) {
	st, err := r.root.Lstat(rel(p))
	if err != nil {
		return wsys.Stat_t{}, errno(err)
	}
	return wsys.NewStat_t(st), 0
}

func (r *rootFS) Stat(p string) (wsys.Stat_t, experimentalsys.Errno) {
	st, err := r.root.Stat(rel(p))
	if err != nil {
		return wsys.Stat_t{}, errno(err)
	}
	return wsys.NewStat_t(st), 0
}

func (r *rootFS) Readlink(p string) (string, experimentalsys.Errno) {
	dst, err := r.root.Readlink(rel(p))
	return dst, errno(err)
}

func (r *rootFS) Mkdir(p string, perm fs.FileMode) experimentalsys.Errno {
	if r.readOnly {
		return experimentalsys.EROFS
	}
	if err := r.root.Mkdir(rel(p), perm); err != nil {
		return errno(err)
	}
	return r.own(rel(p))
}

func (r *rootFS) Chmod(p string, perm fs.FileMode) experimentalsys.Errno {
	if r.readOnly {
		return experimentalsys.EROFS
	}
	return errno(r.root.Chmod(rel(p), perm))
}

func (r *rootFS) Rename(from, to string) experimentalsys.Errno {
	if r.readOnly {
		return experimentalsys.EROFS
	}
	return errno(r.root.Rename(rel(from), rel(to)))
}

func (r *rootFS) Rmdir(p string) experimentalsys.Errno {
	if r.readOnly {
		return experimentalsys.EROFS
	}
	if st, err := r.root.Lstat(rel(p)); err != nil {
		return errno(err)
	} else if !st.IsDir() {
		return experimentalsys.ENOTDIR
	}
	return errno(r.root.Remove(rel(p)))
}

func (r *rootFS) Unlink(p string) experimentalsys.Errno {
	if r.readOnly {
		return experimentalsys.EROFS
	}
	if st, err := r.root.Lstat(rel(p)); err != nil {
		return errno(err)
	} else if st.IsDir() {
		return experimentalsys.EISDIR
	}
	return errno(r.root.Remove(rel(p)))
}

func (r *rootFS) Link(oldPath, newPath string) experimentalsys.Errno {
	if r.readOnly {
		return experimentalsys.EROFS
	}
	return errno(r.root.Link(rel(oldPath), rel(newPath)))
}

// Symlink creates only links that point downwards: a relative target with no
// ".." component. Our own resolution is confined whatever the target, but
// host programs that later walk the directory are not; a link that never
// climbs cannot lead them out, whatever directory it ends up in (a lexical
// check of "a/../b" would not hold once "a" is itself a link).
func (r *rootFS) Symlink(target, link string) experimentalsys.Errno {
	if r.readOnly {
		return experimentalsys.EROFS
	}
	if target == "" || path.IsAbs(target) || slices.Contains(strings.Split(target, "/"), "..") {
		return experimentalsys.EPERM
	}
	if err := r.root.Symlink(target, rel(link)); err != nil {
		return errno(err)
	}
	return r.own(rel(link))
}

func (r *rootFS) Utimens(p string, atim, mtim int64) experimentalsys.Errno {
	if r.readOnly {
		return experimentalsys.EROFS
	}
	name := rel(p)
	if atim == experimentalsys.UTIME_OMIT || mtim == experimentalsys.UTIME_OMIT {
		st, err := r.root.Stat(name)
		if err != nil {
			return errno(err)
		}
		cur := wsys.NewStat_t(st)
		if atim == experimentalsys.UTIME_OMIT {
			atim = cur.Atim
		}
		if mtim == experimentalsys.UTIME_OMIT {
			mtim = cur.Mtim
		}
	}
	return errno(r.root.Chtimes(name, time.Unix(0, atim), time.Unix(0, mtim)))
}

// errno converts an error of os to the guest's errno. An error that is not
// the kernel's (os.Root's "path escapes from parent") becomes EACCES.
func errno(err error) experimentalsys.Errno {
	if err == nil {
		return 0
	}
	e := experimentalsys.UnwrapOSError(err)
	var se syscall.Errno
	if e == experimentalsys.EIO && !errors.As(err, &se) {
		return experimentalsys.EACCES
	}
	return e
}

// rootFile is the file wazero's own fs.FS adapter (sysfs.AdaptFS) makes of an
// *os.File opened through the os.Root — the adapter does reads, seeks,
// directory listings and writes — plus what it leaves unimplemented.
type rootFile struct {
	experimentalsys.File
	f *os.File
}

// newRootFile wraps f, already opened as name with flag.
func newRootFile(root *os.Root, f *os.File, name string, flag experimentalsys.Oflag) (experimentalsys.File, experimentalsys.Errno) {
	af, e := (&sysfs.AdaptFS{FS: &handOver{root: root, first: f}}).OpenFile(name, flag, 0)
	if e != 0 {
		_ = f.Close()
		return nil, e
	}
	return &rootFile{File: af, f: f}, 0
}

func (f *rootFile) Truncate(size int64) experimentalsys.Errno { return errno(f.f.Truncate(size)) }
func (f *rootFile) Sync() experimentalsys.Errno               { return errno(f.f.Sync()) }
func (f *rootFile) Datasync() experimentalsys.Errno           { return errno(f.f.Sync()) }

// handOver is the fs.FS through which the adapter opens a file: the first Open
// hands over the file already opened; later ones (the adapter reopens a
// directory to rewind it) go through the os.Root, read-only.
type handOver struct {
	root  *os.Root
	first *os.File
}

func (h *handOver) Open(name string) (fs.File, error) {
	if f := h.first; f != nil {
		h.first = nil
		return f, nil
	}
	return h.root.Open(name)
}
