package seccomp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kb-labs/sandbox/internal/testenv"
	"golang.org/x/sys/unix"
)

func TestInstalledFilter(t *testing.T) {
	testenv.Require(t, "seccomp")
	res, _, err := child(t, "attempts", nil)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	want := map[string]string{
		"getpid":             "ok",
		"keyctl":             "EPERM",
		"io_uring_setup":     "EPERM",
		"clone3":             "ENOSYS",
		"socket_packet":      "EAFNOSUPPORT",
		"socket_inet":        "ok",
		"socket_unix":        "ok",
		"ioctl_tiocsti":      "EPERM",
		"ioctl_tiocsti_high": "EPERM",
		"ioctl_fionread":     "ok",
		"unshare_user":       "EPERM",
		"clone_newuser":      "EPERM",
		"personality_query":  "ok",
		"personality_rix":    "EPERM",
		"unknown":            "ENOSYS",
		"io_setup":           "ENOSYS",
		"fchmod_suid":        "EPERM",
		"fchmod_sgid_high":   "EPERM",
		"fchmod_plain":       "ok",
	}
	for name, w := range want {
		if got := res.Errnos[name]; got != w {
			t.Errorf("%s: got %q, want %q", name, got, w)
		}
	}
	// Control: without the filter every denied attempt answers otherwise,
	// so the answers above are the filter's.
	control, _, err := child(t, "attempts-unfiltered", nil)
	if err != nil {
		t.Fatalf("control child: %v", err)
	}
	for name, w := range want {
		if w == "ok" || name == "unknown" {
			continue
		}
		if got := control.Errnos[name]; got == w {
			t.Errorf("%s answers %q without the filter too: the attempt proves nothing", name, got)
		}
	}
}

// TestRuntimesRunUnderFilter runs real programs under the filter, forked by a
// Go process that holds it, as the init does.
func TestRuntimesRunUnderFilter(t *testing.T) {
	testenv.Require(t, "seccomp")
	cases := []struct {
		name    string
		feature string
		argv    []string
		want    string
	}{
		{"sh", "", []string{"/bin/sh", "-c", "echo ok; ls / >/dev/null && echo listed"}, "ok\nlisted\n"},
		{"python", "python", []string{"python3", "-c", `import threading,subprocess; print(subprocess.run(["true"]).returncode)`}, "0\n"},
		{"node", "node", []string{"node", "-e", "console.log(1)"}, "1\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.feature != "" {
				testenv.Require(t, c.feature)
			}
			argv, _ := json.Marshal(c.argv)
			res, _, err := child(t, "exec", []string{"SANDBOX_SECCOMP_TEST_ARGV=" + string(argv)})
			if err != nil {
				t.Fatalf("child: %v", err)
			}
			if res.Output != c.want {
				t.Errorf("output %q, want %q", res.Output, c.want)
			}
		})
	}
}

// TestNotifyCountsViolations: a child calling keyctl three times is seen by
// the supervisor as three keyctl violations, and each call failed EPERM.
// Then the child installs a filter of its own answering keyctl EINVAL: the
// supervisor sees the install (let through by the default verdict), and the
// kernel's precedence hides the next keyctl from it — what
// Call.Install exists to report.
func TestNotifyCountsViolations(t *testing.T) {
	testenv.Require(t, "seccomp")
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(sp[0]), "ours"), os.NewFile(uintptr(sp[1]), "theirs")
	defer ours.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	served := make(chan error, 1)
	var l *Listener
	var seen []string
	got := make(chan struct{})
	go func() {
		buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := unix.Recvmsg(sp[0], buf, oob, 0)
		if err != nil {
			served <- err
			close(got)
			return
		}
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil {
			served <- err
			close(got)
			return
		}
		l = NewListener(fds[0])
		close(got)
		served <- l.Serve(ctx, func(c Call) Verdict {
			seen = append(seen, fmt.Sprintf("%s:%v", c.Name, c.Install))
			return DefaultVerdict(c)
		})
	}()
	res, _, err := child(t, "notify", nil, theirs)
	theirs.Close()
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	<-got
	if l == nil {
		t.Fatalf("no listener received: %v", <-served)
	}
	defer l.Close()
	// The child has exited: the listener reports POLLHUP and Serve returns
	// nil by itself, well before ctx ends.
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the filtered process exited")
	}
	for i := range 3 {
		if e := res.Errnos["keyctl"+strconv.Itoa(i)]; e != "EPERM" {
			t.Errorf("keyctl #%d: %q, want EPERM", i, e)
		}
	}
	if res.Errnos["install"] != "ok" || res.Errnos["keyctl_own"] != "EINVAL" {
		t.Errorf("own filter: install %q, keyctl under it %q, want ok and EINVAL", res.Errnos["install"], res.Errnos["keyctl_own"])
	}
	if want := []string{"keyctl:false", "keyctl:false", "keyctl:false", "seccomp:true"}; !slices.Equal(seen, want) {
		t.Errorf("decide saw %v, want %v", seen, want)
	}
	if v := l.Violations(); !slices.Equal(v, []Violation{{Syscall: "keyctl", Count: 3}}) {
		t.Errorf("Violations() = %v, want keyctl x3", v)
	}
}

// TestServeStopsOnContext: with a live filtered task and nothing to read,
// Serve returns when ctx ends.
func TestServeStopsOnContext(t *testing.T) {
	testenv.Require(t, "seccomp")
	// A listener whose filter is held by a child that sleeps: there is a
	// user of the filter, so no POLLHUP.
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sp[0])
	theirs := os.NewFile(uintptr(sp[1]), "theirs")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=notify")
	cmd.ExtraFiles = []*os.File{theirs}
	// The notify child blocks in keyctl until answered; we never answer
	// before cancelling, so it stays a user of the filter.
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(sp[0], buf, oob, 0)
	if err != nil {
		t.Fatal(err)
	}
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(fds[0])
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- l.Serve(ctx, func(Call) Verdict { return Hold }) // leave it blocked
	}()
	if err := <-done; !errors.Is(err, ErrKill) || !strings.Contains(err.Error(), "keyctl") {
		t.Fatalf("Serve = %v, want ErrKill naming keyctl", err)
	}
	go func() { done <- l.Serve(ctx, nil) }()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Serve = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Serve took %v to notice the cancel", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve hangs after cancel")
	}
}

// TestKillOnViolation: with OnViolation Kill, a denied call kills the process
// with SIGSYS.
func TestKillOnViolation(t *testing.T) {
	testenv.Require(t, "seccomp")
	_, _, err := child(t, "kill", nil)
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child: %v, want death by SIGSYS", err)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
		t.Fatalf("child ended with %v, want SIGSYS", ws)
	}
}

func TestInstallNeedsNoNewPrivs(t *testing.T) {
	// Checked before anything is installed, so safe in the test process
	// (whose no_new_privs is not set).
	if v, _ := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); v == 1 {
		t.Skip("the test process already has no_new_privs")
	}
	prog, err := Build(AMD64, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Install(prog, FlagTSync); !errors.Is(err, ErrNoNewPrivs) {
		t.Fatalf("Install without no_new_privs = %v, want ErrNoNewPrivs", err)
	}
}

// BenchmarkSyscall measures a system call under the filter against the same
// loop without it, each in a fresh child (a filter cannot be removed).
// "getpid" takes the kernel's cached-allow path; "ioctl" reads an argument
// so the whole program runs.
func BenchmarkSyscall(b *testing.B) {
	testenv.Require(b, "seccomp")
	for _, call := range []string{"getpid", "ioctl"} {
		for _, mode := range []string{"baseline", "filtered"} {
			b.Run(call+"/"+mode, func(b *testing.B) {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), childEnv+"=bench-"+mode,
					"SANDBOX_SECCOMP_TEST_N="+strconv.Itoa(max(b.N, 1000)),
					"SANDBOX_SECCOMP_TEST_CALL="+call)
				out, err := cmd.Output()
				if err != nil {
					b.Fatal(err)
				}
				var res childResult
				if err := json.Unmarshal(out, &res); err != nil || res.Err != "" {
					b.Fatalf("child: %v %s", err, res.Err)
				}
				b.ReportMetric(res.Ns, "ns/op")
			})
		}
	}
}
