package landlock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/kb-labs/sandbox/internal/testenv"
	"golang.org/x/sys/unix"
)

// childEnv selects a child scenario: the test binary re-executes itself with
// it set, and TestMain runs the scenario instead of the tests.
const (
	childEnv = "SANDBOX_LANDLOCK_TEST_CHILD"
	argsEnv  = "SANDBOX_LANDLOCK_TEST_ARGS"
)

func TestMain(m *testing.M) {
	if s := os.Getenv(childEnv); s != "" {
		os.Exit(runChild(s))
	}
	testenv.Register("landlock", func() error {
		if v := ProbeABI(); v < 1 {
			return errors.New("landlock unavailable (ABI 0)")
		}
		return nil
	})
	os.Exit(m.Run())
}

// childArgs is what the parent passes to a child.
type childArgs struct {
	Rules      Rules
	BestEffort bool
	Write      []string // files to create
	Read       []string // files to read
	Exec       []string // programs to run
	Shell      []string // sh -c commands to run
	SignalPid  int      // process to signal (0, and SIGTERM when Sigterm)
	Sigterm    bool
	Abstract   string // abstract unix socket name to connect to
}

type childResult struct {
	Result  Result
	Answers map[string]string // attempt -> "ok" or errno name
	Err     string
}

func runChild(string) int {
	var res childResult
	defer func() { _ = json.NewEncoder(os.Stdout).Encode(res) }()
	var a childArgs
	if err := json.Unmarshal([]byte(os.Getenv(argsEnv)), &a); err != nil {
		res.Err = err.Error()
		return 0
	}
	// The init's sequence: a locked thread with no_new_privs, restricted.
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		res.Err = err.Error()
		return 0
	}
	r, err := Apply(a.Rules, a.BestEffort)
	if err != nil {
		res.Err = err.Error()
		return 0
	}
	res.Result = r
	res.Answers = map[string]string{}
	answer := func(key string, err error) {
		res.Answers[key] = "ok"
		var errno syscall.Errno
		if errors.As(err, &errno) {
			res.Answers[key] = unix.ErrnoName(errno)
		} else if err != nil {
			res.Answers[key] = err.Error()
		}
	}
	for _, p := range a.Write {
		answer("write "+p, os.WriteFile(p, []byte("written"), 0o644))
	}
	for _, p := range a.Read {
		_, err := os.ReadFile(p)
		answer("read "+p, err)
	}
	run := func(key string, argv []string) {
		// ForkExec from this locked thread, as the init starts the program.
		pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{})
		if err == nil {
			var ws syscall.WaitStatus
			_, err = syscall.Wait4(pid, &ws, 0, nil)
			if err == nil && ws.ExitStatus() != 0 {
				err = fmt.Errorf("exit %d", ws.ExitStatus())
			}
		}
		answer(key, err)
	}
	for _, p := range a.Exec {
		run("exec "+p, []string{p})
	}
	for _, c := range a.Shell {
		run("sh "+c, []string{"/bin/sh", "-c", c})
	}
	if a.SignalPid != 0 {
		answer("signal0", unix.Kill(a.SignalPid, 0))
		if a.Sigterm {
			answer("sigterm", unix.Kill(a.SignalPid, unix.SIGTERM))
		}
		answer("signal self", unix.Tgkill(unix.Getpid(), unix.Gettid(), 0))
	}
	if a.Abstract != "" {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			err = unix.Connect(fd, &unix.SockaddrUnix{Name: "@" + a.Abstract})
			unix.Close(fd)
		}
		answer("connect abstract", err)
	}
	return 0
}

func child(t *testing.T, a childArgs) childResult {
	t.Helper()
	b, _ := json.Marshal(a)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", argsEnv+"="+string(b))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v (stderr %q)", err, stderr.String())
	}
	var res childResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("child output %q: %v", out, err)
	}
	if res.Err != "" {
		t.Fatalf("child: %s", res.Err)
	}
	return res
}

func TestFilesystemRules(t *testing.T) {
	testenv.Require(t, "landlock")
	allowed, other, ro := t.TempDir(), t.TempDir(), t.TempDir()
	in, out := filepath.Join(allowed, "in"), filepath.Join(other, "out")
	// /etc/hostname is readable without Landlock, so its refusal is the
	// domain's.
	if _, err := os.ReadFile("/etc/hostname"); err != nil {
		t.Skipf("control read of /etc/hostname fails without Landlock: %v", err)
	}
	// A program in a read-only directory: readable, not executable.
	trueBin, err := os.ReadFile("/usr/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	roTrue := filepath.Join(ro, "true")
	if err := os.WriteFile(roTrue, trueBin, 0o755); err != nil {
		t.Fatal(err)
	}
	// The system directories, as the mount plan binds them (the dynamic
	// loader needs execute too).
	sys := []string{"/usr"}
	for _, d := range []string{"/bin", "/lib", "/lib64"} {
		if _, err := os.Stat(d); err == nil {
			sys = append(sys, d)
		}
	}
	res := child(t, childArgs{
		Rules: Rules{ReadExec: sys, ReadWrite: []string{allowed}, ReadOnly: []string{ro}},
		Write: []string{in, out, filepath.Join(ro, "new")},
		Read:  []string{"/etc/hostname", "/usr/bin/env", roTrue},
		Exec:  []string{"/usr/bin/true", roTrue},
		// The program inherits the domain.
		Shell: []string{"echo x > " + in + "2", "echo x > " + out + "2"},
	})
	if res.Result.ABI != min(ProbeABI(), MaxABI) {
		t.Errorf("applied ABI %d, kernel has %d", res.Result.ABI, ProbeABI())
	}
	want := map[string]string{
		"write " + in:                       "ok",
		"write " + out:                      "EACCES",
		"write " + filepath.Join(ro, "new"): "EACCES",
		"read /etc/hostname":                "EACCES",
		"read /usr/bin/env":                 "ok",
		"read " + roTrue:                    "ok",
		"exec /usr/bin/true":                "ok",
		"exec " + roTrue:                    "EACCES",
	}
	for k, w := range want {
		if got := res.Answers[k]; got != w {
			t.Errorf("%s: %q, want %q", k, got, w)
		}
	}
	if got := res.Answers["sh echo x > "+out+"2"]; got == "ok" {
		t.Error("the shell wrote outside the domain")
	}
	// The effect on the host.
	if b, err := os.ReadFile(in); err != nil || string(b) != "written" {
		t.Errorf("allowed file: %q, %v", b, err)
	}
	for _, p := range []string{out, out + "2", filepath.Join(ro, "new")} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s outside the writable paths exists (%v)", p, err)
		}
	}
	if _, err := os.Stat(in + "2"); err != nil {
		t.Errorf("the program could not write where allowed: %v", err)
	}
}

func TestScopes(t *testing.T) {
	testenv.Require(t, "landlock")
	if ProbeABI() < scopeABI {
		t.Skipf("kernel Landlock ABI %d has no scopes (needs %d)", ProbeABI(), scopeABI)
	}
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sleeper.Process.Kill()
		sleeper.Wait()
	}()
	name := "sandbox-landlock-test-" + strconv.Itoa(os.Getpid())
	ln, err := net.Listen("unix", "@"+name)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	for _, scoped := range []bool{false, true} {
		t.Run(fmt.Sprintf("scoped=%v", scoped), func(t *testing.T) {
			a := childArgs{
				Rules:     Rules{ReadOnly: []string{"/"}, ScopeSignals: scoped, ScopeAbstractUnix: scoped},
				SignalPid: sleeper.Process.Pid,
				Sigterm:   scoped, // the control must not kill the sleeper
				Abstract:  name,
			}
			res := child(t, a)
			if scoped {
				for k, w := range map[string]string{"signal0": "EPERM", "sigterm": "EPERM", "signal self": "ok", "connect abstract": "EPERM"} {
					if got := res.Answers[k]; got != w {
						t.Errorf("%s: %q, want %q", k, got, w)
					}
				}
				return
			}
			for k, w := range map[string]string{"signal0": "ok", "connect abstract": "ok"} {
				if got := res.Answers[k]; got != w {
					t.Errorf("control without scopes: %s: %q, want %q", k, got, w)
				}
			}
		})
	}
	// The sleeper outside the domain is alive: SIGTERM never reached it.
	time.Sleep(50 * time.Millisecond)
	if err := sleeper.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("sleeper gone: %v", err)
	}
}

func TestApplyErrors(t *testing.T) {
	testenv.Require(t, "landlock")
	// Checked before the thread is restricted, so safe in the test process.
	if _, err := Apply(Rules{ReadOnly: []string{"/nonexistent-sandbox-path"}}, false); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing path: %v, want ENOENT", err)
	}
	if _, err := Apply(Rules{ReadOnly: []string{"relative"}}, true); err == nil {
		t.Error("relative path accepted")
	}
}
