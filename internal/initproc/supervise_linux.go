package initproc

import (
	"golang.org/x/sys/unix"

	"github.com/kb-labs/sandbox/internal/spec"
)

// supervise is pid 1's life after the program started: it releases the
// program when the supervisor says so, forwards signals to every process of
// the run, reaps orphans, and when the program (pid 2) ends reports its
// status and kills whatever it left behind.
func (s *initState) supervise(release chan struct{}) int {
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
		s.reply(spec.Reply{Step: "exited", Status: int(ws)})
		for {
			if _, err := unix.Wait4(-1, nil, unix.WALL, nil); err == unix.ECHILD {
				return 0
			}
		}
	}
}

// readCommands applies the supervisor's messages after the start.
func (s *initState) readCommands() {
	released := false
	for {
		m, fds, err := s.conn.Recv(0)
		closeAll(fds)
		if err != nil {
			// The supervisor is gone: end the run (PDEATHSIG does too).
			unix.Kill(-1, unix.SIGKILL)
			unix.Exit(137)
		}
		switch m.Kind {
		case spec.KindGo:
			if !released {
				released = true
				close(s.goCh)
			}
		case spec.KindSignal:
			if m.Signal > 0 && m.Signal < 65 {
				unix.Kill(-1, unix.Signal(m.Signal))
			}
		}
	}
}
