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
	path string
	file *os.File // kept referenced: its finalizer would close the binary
	err  error
}

// binaryFDMin is the lowest descriptor the binary is kept on. A child started
// with exec.Cmd gets its descriptors 0..3+len(ExtraFiles) by dup2 (moving
// clashing ones just above them) before it execs /proc/self/fd/N, so N must
// stay clear of those; and below 64, the size of a new process's descriptor
// table, because growing the table of a process with several threads waits
// for an RCU grace period (measured: 7 ms, more than the rest of a cold
// start's set-up).
const binaryFDMin = 32

var pinned struct {
	once sync.Once
	path string
	st   unix.Stat_t
	file *os.File
	err  error
}

// binaryPath returns the path the init is executed from. Nothing in a sandbox
// may ever reach a writable path to the binary that the host runs next (the
// runc /proc/self/exe overwrite). Two ways satisfy that:
//
//   - the running executable itself, pinned by an open descriptor, when none
//     of the sandbox's host ids (ids) can write it: owned by another user,
//     and not writable by a group or others that could include them. The
//     kernel's permission check is then the protection, and the exec costs
//     nothing extra (the usual case as root: binaries are root's).
//   - otherwise a sealed, in-memory copy (memfd whose seals forbid writes),
//     made once per process: 9-12 ms for a 28 MB binary, which is why it is
//     not the default (rootless runs, where the program runs as the caller
//     who owns the binary, need it).
func binaryPath(ids []int) (string, error) {
	pinned.once.Do(func() { pinned.path, pinned.file, pinned.err = pinBinary(&pinned.st) })
	if pinned.err == nil && !writableBy(&pinned.st, ids) {
		return pinned.path, nil
	}
	sealed.once.Do(func() { sealed.path, sealed.err = sealBinary() })
	return sealed.path, sealed.err
}

// pinBinary opens this executable (the inode running now, not whatever its
// path names later) on a high descriptor.
func pinBinary(st *unix.Stat_t) (string, *os.File, error) {
	fd, err := unix.Open("/proc/self/exe", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("open own executable: %w", err)
	}
	high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, binaryFDMin)
	unix.Close(fd)
	if err != nil {
		return "", nil, fmt.Errorf("dup own executable: %w", err)
	}
	if err := unix.Fstat(high, st); err != nil {
		unix.Close(high)
		return "", nil, fmt.Errorf("stat own executable: %w", err)
	}
	f := os.NewFile(uintptr(high), "sandbox-binary")
	return fmt.Sprintf("/proc/self/fd/%d", high), f, nil
}

// writableBy reports whether a process with any of the host ids (used both
// as uid and gid: the sandbox maps the same numbers for both) could open the
// file for writing, or change its mode. Supplementary groups do not matter:
// the sandbox's ids have none on the host.
func writableBy(st *unix.Stat_t, ids []int) bool {
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o002 != 0 {
		return true
	}
	for _, id := range ids {
		if st.Uid == uint32(id) || (st.Gid == uint32(id) && st.Mode&0o020 != 0) {
			return true
		}
	}
	return false
}

// sealBinary makes the sealed in-memory copy.
func sealBinary() (string, error) {
	exe, err := os.Open("/proc/self/exe")
	if err != nil {
		return "", fmt.Errorf("open own executable: %w", err)
	}
	defer exe.Close()
	fd, err := unix.MemfdCreate("sandbox-init", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return "", fmt.Errorf("memfd_create: %w", err)
	}
	// Keep the descriptor clear of the child's (binaryFDMin).
	high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, binaryFDMin)
	unix.Close(fd)
	if err != nil {
		return "", fmt.Errorf("dup memfd: %w", err)
	}
	f := os.NewFile(uintptr(high), "sandbox-init")
	if err := copyInKernel(f, exe); err != nil {
		f.Close()
		return "", fmt.Errorf("copy own executable: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return "", fmt.Errorf("seal memfd: %w", err)
	}
	sealed.file = f // open for the life of the process: it is the binary
	return fmt.Sprintf("/proc/self/fd/%d", f.Fd()), nil
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
