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

// binaryPath returns the path of a sealed, in-memory copy of this
// executable. The init runs from it, so nothing in a sandbox can ever reach a
// writable path to the host binary (/proc/1/exe names the memfd, whose seals
// forbid writes). The copy is made once per process.
func binaryPath() (string, error) {
	sealed.once.Do(func() { sealed.path, sealed.err = sealBinary() })
	return sealed.path, sealed.err
}

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
	// Keep the descriptor high: a child dup2s its ExtraFiles onto 3, 4, ...
	// before exec, which must not replace the file being executed.
	high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 1000)
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
