package sandbox

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// fileMode is the mode a workspace file is created with.
func fileMode(m os.FileMode) os.FileMode {
	if m == 0 {
		return 0o644
	}
	return m & os.ModePerm
}

// filesContent returns a sealed memfd holding the files' contents one after
// the other, as spec.Exec.Files describes them: the content travels to the
// init as one descriptor, whatever its size, and the seals keep it exactly
// as checked here. The caller closes it once sent.
func filesContent(files []WorkspaceFile) (*os.File, error) {
	fd, err := unix.MemfdCreate("sandbox-files", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("workspace files: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "sandbox-files")
	for _, wf := range files {
		if _, err := f.Write(wf.Content); err != nil {
			f.Close()
			return nil, fmt.Errorf("workspace files: write %s: %w", wf.Path, err)
		}
	}
	seals := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("workspace files: seal: %w", err)
	}
	return f, nil
}
