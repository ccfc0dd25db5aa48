package seccomp

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// SetNoNewPrivs sets no_new_privs on the calling OS thread (the attribute is
// per thread; Install with FlagTSync extends it to every thread of the
// process). The caller has locked the thread with runtime.LockOSThread.
func SetNoNewPrivs() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("seccomp: prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	return nil
}

// Install loads prog as a seccomp filter on the calling OS thread, and with
// FlagTSync on every thread of the process, where it stays for the life of
// the threads and is inherited by every child. The caller has locked the
// thread (runtime.LockOSThread) and set no_new_privs (SetNoNewPrivs), or
// Install returns ErrNoNewPrivs.
//
// With FlagNewListener it returns the close-on-exec listener fd for
// NewListener; otherwise listener is -1. When FlagTSync is combined with
// FlagNewListener, Install adds SECCOMP_FILTER_FLAG_TSYNC_ESRCH (Linux 5.7),
// without which the kernel refuses the pair.
func Install(prog []bpf.RawInstruction, flags Flag) (listener int, err error) {
	if len(prog) == 0 || len(prog) > 0xffff {
		return -1, fmt.Errorf("seccomp: filter of %d instructions", len(prog))
	}
	nnp, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	if err != nil {
		return -1, fmt.Errorf("seccomp: prctl(PR_GET_NO_NEW_PRIVS): %w", err)
	}
	if nnp != 1 {
		return -1, ErrNoNewPrivs
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	kflags := uintptr(flags)
	if flags&FlagTSync != 0 && flags&FlagNewListener != 0 {
		kflags |= unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH
	}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, kflags, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(filter)
	if errno != 0 {
		if errno == unix.ESRCH {
			return -1, fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER): a thread could not be synchronised: %w", errno)
		}
		return -1, fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER): %w", errno)
	}
	if flags&FlagNewListener != 0 {
		return int(r), nil
	}
	if flags&FlagTSync != 0 && r != 0 {
		// Without TSYNC_ESRCH a failed synchronisation returns the
		// thread id that could not follow, and no filter was installed.
		return -1, fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER): thread %d could not be synchronised", r)
	}
	return -1, nil
}
