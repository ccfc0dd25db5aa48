package protocol

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain re-executes the test binary as a fake protocol child when
// PROTOCOL_FAKE_CHILD names one (see fakechild_linux_test.go).
func TestMain(m *testing.M) {
	if name := os.Getenv("PROTOCOL_FAKE_CHILD"); name != "" {
		runFakeChild(name)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// socketpair returns the parent's end as a *net.UnixConn and the child's as
// a file to hand over as fd 3.
func socketpair(t testing.TB) (*net.UnixConn, *os.File) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	pf := os.NewFile(uintptr(fds[0]), "protocol-parent")
	c, err := net.FileConn(pf)
	pf.Close()
	if err != nil {
		t.Fatal(err)
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "protocol-child")
}

type logLine struct{ level, message string }

// run is one child process speaking the protocol to a Session.
type run struct {
	t       testing.TB
	sess    *Session
	cmd     *exec.Cmd
	stderr  bytes.Buffer
	killed  bool
	mu      sync.Mutex
	logs    []logLine
	percent []float64
	logCh   chan logLine
}

// startRun starts argv with the socket as fd 3 and opens a Session with
// opts, recording logs and progress unless opts already has callbacks.
func startRun(t testing.TB, opts Options, env []string, argv ...string) *run {
	t.Helper()
	parent, child := socketpair(t)
	r := &run{t: t, logCh: make(chan logLine, 1024)}
	r.cmd = exec.Command(argv[0], argv[1:]...)
	r.cmd.ExtraFiles = []*os.File{child}
	r.cmd.Env = append(baseEnv(), env...)
	r.cmd.Stderr = &r.stderr
	if opts.OnLog == nil {
		opts.OnLog = func(level, message string, _ map[string]any) {
			r.mu.Lock()
			r.logs = append(r.logs, logLine{level, message})
			r.mu.Unlock()
			select {
			case r.logCh <- logLine{level, message}:
			default:
			}
		}
	}
	if opts.OnProgress == nil {
		opts.OnProgress = func(p float64, _ string) {
			r.mu.Lock()
			r.percent = append(r.percent, p)
			r.mu.Unlock()
		}
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	child.Close()
	r.sess = NewSession(parent, opts)
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			_ = r.cmd.Process.Kill()
			_ = r.cmd.Wait()
		}
		r.sess.Close()
	})
	return r
}

// kill ends the child as the sandbox would.
func (r *run) kill() {
	r.killed = true
	_ = r.cmd.Process.Kill()
}

// wait waits for the child (at most 20s, then kills it) and finishes the
// session.
func (r *run) wait() Outcome {
	r.t.Helper()
	done := make(chan struct{})
	go func() {
		_ = r.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		r.kill()
		<-done
		r.t.Errorf("child did not exit within 20s; stderr:\n%s", r.stderr.String())
	}
	ws := r.cmd.ProcessState.Sys().(syscall.WaitStatus)
	exit := ExitInfo{Code: ws.ExitStatus(), BySandbox: r.killed}
	if ws.Signaled() {
		exit.Code, exit.Signal = -1, ws.Signal()
	}
	return r.sess.Finish(exit)
}

func (r *run) start(run RunMessage) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return r.sess.Start(ctx, run)
}

func (r *run) seenLogs() []logLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]logLine(nil), r.logs...)
}

func (r *run) seenPercent() []float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]float64(nil), r.percent...)
}

// waitLog waits for a log line with the given message.
func (r *run) waitLog(message string) error {
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l := <-r.logCh:
			if l.message == message {
				return nil
			}
		case <-deadline:
			return errors.New("log line " + message + " never came")
		}
	}
}

// baseEnv is the small environment children get, as in the sandbox: the
// host's (NODE_EXTRA_CA_CERTS, say) would change what is measured.
func baseEnv() []string {
	return []string{"SANDBOX_IPC_FD=3", "PATH=" + os.Getenv("PATH"), "HOME=/nonexistent", "LANG=C.UTF-8"}
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
