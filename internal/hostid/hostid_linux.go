package hostid

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Lease holds a pair until Release.
type Lease struct {
	Pair
	once sync.Once
	a    *allocator
}

// Release gives the pair back. Call it only when no process holds its ids
// any more (the sandbox's init was reaped). It is safe to call twice.
func (l *Lease) Release() {
	if l == nil {
		return
	}
	l.once.Do(func() { l.a.release(l.Pair.Root) })
}

// LockDir is the root-only directory of the lock file; a variable for tests.
var LockDir = "/run/sandbox"

type allocator struct {
	mu     sync.Mutex
	file   *os.File
	held   map[int]bool // first ids of the pairs this process holds
	cursor map[Range]int
}

var shared = struct {
	sync.Mutex
	a *allocator
}{}

// Acquire leases a free pair of r. It fails when every pair is in use (by
// this process or any other) or when the lock file cannot be opened safely.
func Acquire(r Range) (*Lease, error) {
	a, err := open()
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	n := r.Pairs()
	start := a.cursor[r]
	for i := range n {
		k := (start + i) % n
		root := r.First + 2*k
		if a.held[root] {
			continue
		}
		err := lock(a.file, root, unix.F_WRLCK)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			continue // another process holds it
		}
		if err != nil {
			return nil, fmt.Errorf("lock host ids %d and %d in %s: %w", root, root+1, a.file.Name(), err)
		}
		a.held[root] = true
		// The next search starts after this pair: ids just given back
		// are the last to be handed out again.
		a.cursor[r] = (k + 1) % n
		return &Lease{Pair: Pair{root, root + 1}, a: a}, nil
	}
	return nil, fmt.Errorf("all %d host id pairs of security.hostIdRange %s are in use by sandboxes in flight; widen the range", n, r)
}

func (a *allocator) release(root int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	// Unlocking cannot fail on a description we hold open; if it did, the
	// pair stays locked (never shared), which is the safe way to be wrong.
	if lock(a.file, root, unix.F_UNLCK) == nil {
		delete(a.held, root)
	}
}

// lock sets or clears the lock on the two bytes at offset root: one byte per
// id, so ranges of different configurations that overlap still exclude each
// other id by id.
func lock(f *os.File, root int, typ int16) error {
	fl := unix.Flock_t{Type: typ, Whence: 0, Start: int64(root), Len: 2}
	for {
		err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &fl)
		if err != unix.EINTR {
			return err
		}
	}
}

// open opens the process's lock file once. The directory must be root's and
// private: whoever can write the lock file could hold every pair, and
// whoever could replace it could make two processes hand out the same pair.
func open() (*allocator, error) {
	shared.Lock()
	defer shared.Unlock()
	if shared.a != nil {
		return shared.a, nil
	}
	if err := os.MkdirAll(LockDir, 0o700); err != nil {
		return nil, fmt.Errorf("create the host id lock directory: %w (it must be a root-only directory; /run must exist and be writable by root)", err)
	}
	fi, err := os.Lstat(LockDir)
	if err != nil {
		return nil, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("host id lock directory %s must be a directory owned by root and writable by root only (it is %v, owner %d); remove it and let the sandbox recreate it", LockDir, fi.Mode(), st.Uid)
	}
	path := filepath.Join(LockDir, "hostids.lock")
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the host id lock file %s: %w", path, err)
	}
	shared.a = &allocator{file: os.NewFile(uintptr(fd), path), held: map[int]bool{}, cursor: map[Range]int{}}
	return shared.a, nil
}
