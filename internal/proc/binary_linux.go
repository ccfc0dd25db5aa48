package proc

import (
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

var sealed struct {
	once sync.Once
	file *os.File // kept referenced: its finalizer would close the binary
	err  error
}

var pinned struct {
	once sync.Once
	file *os.File
	err  error
}

// binaryFile returns the file the init is executed from; Start hands it to
// the init as descriptor spec.BinaryFD and executes /proc/self/fd/4, which
// names that very inode whatever happens to paths meanwhile. Nothing in a
// sandbox may ever reach a writable path to the binary that the host runs
// next (the runc /proc/self/exe overwrite). Two files satisfy that:
//
//   - the running executable itself, opened once, when none of the
//     sandbox's host ids (ids) can write it and they can execute it
//     (inPlace). The kernel's permission check is then the protection, and
//     the exec costs nothing extra (the usual case as root: binaries are
//     root's).
//   - otherwise a sealed, in-memory copy (memfd whose seals forbid writes),
//     made once per process: 7-8 ms for a 28 MB binary, which is why it is
//     not the default (rootless runs, where the program runs as the caller
//     who owns the binary, need it).
//
// The file is looked at again on every call (one fstat): a long-running
// server sees a chmod or chown of its binary.
func binaryFile(ids []int) (*os.File, error) {
	pinned.once.Do(func() { pinned.file, pinned.err = pinBinary() })
	if pinned.err == nil {
		var st unix.Stat_t
		fd := int(pinned.file.Fd())
		if unix.Fstat(fd, &st) == nil && inPlace(&st, ids, hasACL(fd)) {
			return pinned.file, nil
		}
	}
	sealed.once.Do(func() { sealed.file, sealed.err = sealBinary() })
	return sealed.file, sealed.err
}

// inPlace reports whether the file st describes may be executed in place by a
// sandbox whose processes hold the host ids ids (as uid and gid; rootless,
// also the caller's supplementary groups): a regular file that none of them
// can write or re-mode, and that they can execute. Any group or world write
// bit counts as writable, whoever the group is (the caller's supplementary
// groups reach inside a rootless sandbox), and so does an access ACL, whose
// entries the mode bits do not show.
func inPlace(st *unix.Stat_t, ids []int, acl bool) bool {
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o022 != 0 || acl {
		return false
	}
	exec := st.Mode&0o001 != 0
	for _, id := range ids {
		switch {
		case st.Uid == uint32(id):
			return false // the owner can chmod it
		case st.Gid == uint32(id):
			exec = st.Mode&0o010 != 0
		}
	}
	return exec
}

// hasACL reports whether the file has a POSIX access ACL.
func hasACL(fd int) bool {
	n, err := unix.Fgetxattr(fd, "system.posix_acl_access", nil)
	return err == nil && n > 0
}

// pinBinary opens this executable: the inode running now, not whatever its
// path names later.
func pinBinary() (*os.File, error) {
	fd, err := unix.Open("/proc/self/exe", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open own executable: %w", err)
	}
	return os.NewFile(uintptr(fd), "sandbox-binary"), nil
}

// sealBinary makes the sealed in-memory copy.
func sealBinary() (*os.File, error) {
	exe, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("open own executable: %w", err)
	}
	defer exe.Close()
	fd, err := unix.MemfdCreate("sandbox-init", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "sandbox-init")
	if err := copyInKernel(f, exe); err != nil {
		f.Close()
		return nil, fmt.Errorf("copy own executable: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal memfd: %w", err)
	}
	return f, nil // open for the life of the process: it is the binary
}

// copyInKernel copies src into dst with sendfile: no user-space buffer, and
// the destination sized once up front.
func copyInKernel(dst, src *os.File) error {
	st, err := src.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if err := unix.Ftruncate(int(dst.Fd()), size); err != nil {
		return err
	}
	var off int64
	for off < size {
		n, err := unix.Sendfile(int(dst.Fd()), int(src.Fd()), &off, int(min(size-off, 1<<30)))
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			// Fall back to a plain copy from where sendfile stopped.
			if _, err := src.Seek(off, io.SeekStart); err != nil {
				return err
			}
			if _, err := dst.Seek(off, io.SeekStart); err != nil {
				return err
			}
			_, err = io.Copy(dst, src)
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
	}
	return nil
}
