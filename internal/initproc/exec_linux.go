package initproc

import (
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kb-labs/sandbox/internal/spec"
)

// lookPath resolves argv[0] inside the new root with the run's PATH.
func lookPath(name string, env []string) (string, error) {
	if name == "" {
		return "", &spec.StepError{Step: "exec", Err: "empty command", Errno: int(unix.ENOENT)}
	}
	if containsSlash(name) {
		return name, nil
	}
	pathEnv := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range env {
		if len(kv) > 5 && kv[:5] == "PATH=" {
			pathEnv = kv[5:]
		}
	}
	var firstErr error
	for _, dir := range splitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			continue
		}
		if st.Mode&0o111 == 0 {
			if firstErr == nil {
				firstErr = &spec.StepError{Step: "exec", Err: p + ": permission denied", Errno: int(unix.EACCES)}
			}
			continue
		}
		return p, nil
	}
	if firstErr != nil {
		return "", firstErr
	}
	return "", &spec.StepError{Step: "exec", Err: name + ": command not found", Errno: int(unix.ENOENT)}
}

func containsSlash(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return true
		}
	}
	return false
}

func splitList(p string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == ':' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return out
}

func setrlimit(rl spec.Rlimit) error {
	lim := syscall.Rlimit{Cur: uint64(rl.Cur), Max: uint64(rl.Max)}
	if rl.Cur < 0 {
		lim.Cur = unix.RLIM_INFINITY
	}
	if rl.Max < 0 {
		lim.Max = unix.RLIM_INFINITY
	}
	// A user namespace cannot raise a hard limit past the host's: clamp.
	var cur syscall.Rlimit
	if err := syscall.Getrlimit(rl.Resource, &cur); err == nil {
		lim.Max = min(lim.Max, cur.Max)
		lim.Cur = min(lim.Cur, lim.Max)
	}
	// syscall.Setrlimit (not unix.) so Go forgets its saved RLIMIT_NOFILE and
	// the child gets this limit rather than the one Go started with.
	return syscall.Setrlimit(rl.Resource, &lim)
}

// dropBoundingSet empties the calling thread's capability bounding set and
// ambient set, and its inheritable set; the program's exec as uid 1000 then
// clears the permitted and effective sets.
func dropBoundingSet() error {
	last := lastCap()
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}

func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(string(trimNL(b))); err == nil {
			return n
		}
	}
	return 63
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
