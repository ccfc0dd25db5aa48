package seccomp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel's struct seccomp_notif and seccomp_notif_resp
// (linux/seccomp.h); x/sys provides the ioctl numbers but not the types.
type notifData struct {
	Nr   int32
	Arch uint32
	IP   uint64
	Args [6]uint64
}

type notif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Data  notifData
}

type notifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

var _ = [1]struct{}{}[unsafe.Sizeof(notif{})-0x50]     // SECCOMP_IOCTL_NOTIF_RECV's size
var _ = [1]struct{}{}[unsafe.Sizeof(notifResp{})-0x18] // SECCOMP_IOCTL_NOTIF_SEND's size

// Serve answers notifications until every filtered task is gone (it returns
// nil), ctx ends (ctx.Err()), decide returns Hold (an error wrapping ErrKill,
// naming the call) or the fd fails. decide, which may be nil (then
// DefaultVerdict), answers each Call; a call answered Deny or Hold is counted
// in Violations. Serve never blocks past the end of ctx or of the last
// filtered task.
func (l *Listener) Serve(ctx context.Context, decide func(Call) Verdict) error {
	if decide == nil {
		decide = DefaultVerdict
	}
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return errors.New("seccomp: Serve on a closed Listener")
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	// A pipe that becomes readable when ctx ends wakes the poll below.
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return fmt.Errorf("seccomp: wake pipe: %w", err)
	}
	var wakeMu sync.Mutex
	wakeOpen := true
	stop := context.AfterFunc(ctx, func() {
		wakeMu.Lock()
		defer wakeMu.Unlock()
		if wakeOpen {
			_, _ = unix.Write(p[1], []byte{0})
		}
	})
	defer func() {
		stop()
		wakeMu.Lock()
		wakeOpen = false
		unix.Close(p[0])
		unix.Close(p[1])
		wakeMu.Unlock()
	}()

	for {
		fds := []unix.PollFd{
			{Fd: int32(l.fd), Events: unix.POLLIN},
			{Fd: int32(p[0]), Events: unix.POLLIN},
		}
		if _, err := unix.Poll(fds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			return fmt.Errorf("seccomp: poll on listener: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		ev := fds[0].Revents
		switch {
		case ev&unix.POLLIN != 0:
			if err := l.handle(decide); err != nil {
				return err
			}
		case ev&unix.POLLNVAL != 0:
			return errors.New("seccomp: listener fd is not open")
		case ev&(unix.POLLHUP|unix.POLLERR) != 0:
			return nil // no task uses the filter any more (Linux 5.10+)
		}
	}
}

// handle receives one notification and answers it.
func (l *Listener) handle(decide func(Call) Verdict) error {
	var n notif // RECV insists on a zeroed struct
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(l.fd), unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&n)))
		switch errno {
		case 0:
		case unix.EINTR:
			n = notif{}
			continue
		case unix.ENOENT:
			return nil // the task died between poll and receive
		default:
			return fmt.Errorf("seccomp: SECCOMP_IOCTL_NOTIF_RECV: %w", errno)
		}
		break
	}
	c := Call{Nr: int(n.Data.Nr), Name: syscallName(n.Data.Arch, int(n.Data.Nr))}
	// Only the install rules notify seccomp and prctl (filter.go).
	c.Install = c.Name == "seccomp" || c.Name == "prctl"
	// A denied call is counted before decide acts on it (it may end the
	// run); an install only when decide refuses it.
	if !c.Install {
		l.record(c.Name)
	}
	v := decide(c)
	switch {
	case v == Continue && !c.Install:
		v = Deny // Continue is never a verdict on a denied call
	case v != Continue && c.Install:
		l.record(c.Name)
	}
	if v == Hold {
		return fmt.Errorf("%w: %s", ErrKill, c.Name)
	}
	resp := notifResp{ID: n.ID, Error: -int32(unix.EPERM)}
	if v == Continue {
		resp = notifResp{ID: n.ID, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
	}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(l.fd), unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(&resp)))
	if errno != 0 && errno != unix.ENOENT { // ENOENT: the task is gone
		return fmt.Errorf("seccomp: SECCOMP_IOCTL_NOTIF_SEND: %w", errno)
	}
	return nil
}

// Close closes the listener fd. A call still waiting for an answer then
// fails with ENOSYS; kill the run first when that matters. Close is
// idempotent; Violations still works after it.
func (l *Listener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return unix.Close(l.fd)
}
