package initproc

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kb-labs/sandbox/internal/spec"
)

// defaultSignals gives the termination signals their default disposition,
// behind the Go runtime's back (it installs a handler for every signal at
// start-up). For the init of a pid namespace the kernel then drops them when
// they come from outside (only SIGKILL and SIGSTOP are forced): a SIGTERM to
// every process of a service's cgroup (a service manager stopping it) or a
// stray kill leaves the init and its run alone, and the supervisor decides.
// With the runtime's handler, such a signal ended the init (and the run as a
// set-up error). Not ignored: SIG_IGN would survive the program's execve;
// SIG_DFL is what execve gives it anyway. Not signal.Notify either: the
// runtime enables each caught signal with a round trip to a thread of its
// own, 2 ms for these.
func defaultSignals() error {
	type sigaction struct {
		handler  uintptr
		flags    uint64
		restorer uintptr
		mask     uint64
	}
	var dfl sigaction // SIG_DFL is 0
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTTIN, syscall.SIGTTOU} {
		if _, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&dfl)), 0, 8, 0, 0); errno != 0 {
			return errno
		}
	}
	return nil
}

// supervise is pid 1's life after the program started: it forwards signals to every process of
// the run, reaps orphans, and when the program (pid 2) ends reports its
// status and kills whatever it left behind.
func (s *initState) supervise() int {
	go s.readCommands()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil { // ECHILD: cannot happen while the program lives
			s.reply(spec.Reply{Step: "exited", Status: 0, Err: "init lost its program: " + err.Error()})
			return 0
		}
		if pid != s.prog || ws.Stopped() || ws.Continued() {
			continue // an orphan reaped, or a stop reported to us
		}
		// The run ends with its program: nothing may outlive it.
		unix.Kill(-1, unix.SIGKILL)
		r := spec.Reply{Step: "exited", Status: int(ws)}
		var ru unix.Rusage
		if unix.Getrusage(unix.RUSAGE_CHILDREN, &ru) == nil {
			r.UserUsec, r.SysUsec = ru.Utime.Nano()/1000, ru.Stime.Nano()/1000
		}
		s.reply(r)
		for {
			if _, err := unix.Wait4(-1, nil, unix.WALL, nil); err == unix.ECHILD {
				return 0
			}
		}
	}
}

// readCommands applies the supervisor's messages after the start.
func (s *initState) readCommands() {
	for {
		m, fds, err := s.conn.Recv(0)
		closeAll(fds)
		if err != nil {
			// The supervisor is gone: end the run (PDEATHSIG does too).
			unix.Kill(-1, unix.SIGKILL)
			unix.Exit(137)
		}
		switch m.Kind {
		case spec.KindSignal:
			if m.Signal > 0 && m.Signal < 65 {
				unix.Kill(-1, unix.Signal(m.Signal))
			}
		}
	}
}
