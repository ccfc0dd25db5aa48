package initproc

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kb-labs/sandbox/internal/spec"
)

// beneath resolves a path strictly under the directory it starts from:
// no symlink, no magic link, no "..", no other mount.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// writeFiles writes the run's workspace files into /workspace, the
// sandbox's own tmpfs, from content: a sealed memfd holding their bytes one
// after the other. It runs after the root is finished (the host is out of
// reach by then) and before the program exists, so nothing races it.
// Every component is resolved beneath the workspace and created exclusively
// (O_EXCL, O_NOFOLLOW); directories are made 0755 as needed; everything is
// owned by uid:gid (the sandbox user) with exactly the permission bits
// asked. The supervisor validated the list; it is checked again here.
func writeFiles(files []spec.File, content, uid, gid int) error {
	if len(files) > spec.MaxFiles {
		return fmt.Errorf("%d files; at most %d", len(files), spec.MaxFiles)
	}
	var total int64
	for _, f := range files {
		if err := checkRel(f.Path); err != nil {
			return fmt.Errorf("%q: %w", f.Path, err)
		}
		if f.Size < 0 || f.Mode&^0o777 != 0 {
			return fmt.Errorf("%q: bad size or mode", f.Path)
		}
		total += f.Size
	}
	if err := checkContent(content, total); err != nil {
		return err
	}
	ws, err := unix.Openat2(unix.AT_FDCWD, "/workspace", &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return fmt.Errorf("open /workspace: %w", err)
	}
	defer unix.Close(ws)
	w := fileWriter{ws: ws, content: content, uid: uid, gid: gid, dir: -1, buf: make([]byte, 256<<10)}
	defer w.closeDir()
	var off int64
	for _, f := range files {
		if err := w.write(f, off); err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		off += f.Size
	}
	return nil
}

// checkContent checks that the content descriptor is sealed against any
// change and holds exactly the bytes the list describes.
func checkContent(fd int, total int64) error {
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		return fmt.Errorf("content: %w", err)
	}
	const want = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if seals&want != want {
		return errors.New("content: not sealed")
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("content: %w", err)
	}
	if st.Size != total {
		return fmt.Errorf("content: %d bytes, the files list %d", st.Size, total)
	}
	return nil
}

// checkRel accepts a clean relative path without "." or ".." components.
func checkRel(p string) error {
	if p == "" || len(p) > 4096 || strings.HasPrefix(p, "/") || strings.IndexByte(p, 0) >= 0 {
		return errors.New("not a relative path")
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." {
			return errors.New("not a clean path")
		}
	}
	return nil
}

type fileWriter struct {
	ws, content int
	uid, gid    int
	dir         int    // the last parent directory opened
	dirPath     string // its path under the workspace
	buf         []byte
}

func (w *fileWriter) closeDir() {
	if w.dir >= 0 {
		unix.Close(w.dir)
		w.dir = -1
	}
}

func (w *fileWriter) write(f spec.File, off int64) error {
	parent, name := "", f.Path
	if i := strings.LastIndexByte(f.Path, '/'); i >= 0 {
		parent, name = f.Path[:i], f.Path[i+1:]
	}
	dir, err := w.parent(parent)
	if err != nil {
		return err
	}
	fd, err := unix.Openat2(dir, name, &unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Mode:    0o600,
		Resolve: beneath,
	})
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	defer unix.Close(fd)
	for left := f.Size; left > 0; {
		n, err := unix.Pread(w.content, w.buf[:min(int64(len(w.buf)), left)], off)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return fmt.Errorf("read content: %v", errOr(err, "short"))
		}
		for b := w.buf[:n]; len(b) > 0; {
			m, err := unix.Write(fd, b)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return fmt.Errorf("write: %w", err)
			}
			b = b[m:]
		}
		off += int64(n)
		left -= int64(n)
	}
	// Owner first, then the exact mode (a chown may clear mode bits, and
	// the umask plays no part in an fchmod).
	if err := unix.Fchown(fd, w.uid, w.gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := unix.Fchmod(fd, f.Mode&0o777); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return nil
}

// parent returns a descriptor of the directory rel under the workspace,
// making the missing components (0755, the sandbox user's).
func (w *fileWriter) parent(rel string) (int, error) {
	if rel == "" {
		return w.ws, nil
	}
	if w.dir >= 0 && w.dirPath == rel {
		return w.dir, nil
	}
	w.closeDir()
	cur := w.ws
	for _, c := range strings.Split(rel, "/") {
		made := unix.Mkdirat(cur, c, 0o700) == nil
		next, err := unix.Openat2(cur, c, &unix.OpenHow{
			Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: beneath,
		})
		if cur != w.ws {
			unix.Close(cur)
		}
		if err != nil {
			return -1, fmt.Errorf("directory %s: %w", c, err)
		}
		cur = next
		if made {
			if err := unix.Fchown(cur, w.uid, w.gid); err != nil {
				unix.Close(cur)
				return -1, fmt.Errorf("chown directory %s: %w", c, err)
			}
			if err := unix.Fchmod(cur, 0o755); err != nil {
				unix.Close(cur)
				return -1, fmt.Errorf("chmod directory %s: %w", c, err)
			}
		}
	}
	w.dir, w.dirPath = cur, rel
	return cur, nil
}

func errOr(err error, s string) any {
	if err != nil {
		return err
	}
	return s
}
