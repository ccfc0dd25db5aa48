package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kb-labs/sandbox"
	"github.com/kb-labs/sandbox/internal/testenv"
)

// The rootless tests run `sandbox serve` (Main, in a copy of this test
// binary: TestServeChild) as an ordinary user, a uid with no passwd entry,
// and talk to it over loopback as a client would.
const serveChildEnv = "SANDBOX_TEST_SERVE_CHILD"

// TestServeChild is `sandbox serve` with the arguments after "--"; it does
// nothing unless started by userServe.
func TestServeChild(t *testing.T) {
	if os.Getenv(serveChildEnv) == "" {
		t.Skip("runs only as a child of the rootless serve tests")
	}
	os.Exit(Main(flag.Args(), os.Stdout, os.Stderr))
}

// userDir is a directory an ordinary user can reach (t.TempDir's parent is
// 0700), holding a copy of this test binary and a home owned by the user.
type userDir struct {
	id   int
	bin  string
	home string // HOME and TMPDIR of the server
	root string
}

func newUserDir(t *testing.T) *userDir {
	t.Helper()
	testenv.Require(t, "root", "rootless")
	id, err := testenv.UnusedID()
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.MkdirTemp("", "sbx-serve-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	u := &userDir{id: id, root: root, bin: filepath.Join(root, "sandbox.test"), home: filepath.Join(root, "home")}
	for _, err := range []error{
		os.Chmod(root, 0o755),
		testenv.CopyFile(os.Args[0], u.bin, 0o755),
		os.Mkdir(u.home, 0o700),
		os.Chown(u.home, id, id),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// file writes a file the user may read (mode) into the directory.
func (u *userDir) file(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(u.root, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// userServer is a `sandbox serve` process running as the user.
type userServer struct {
	cmd  *exec.Cmd
	url  string
	logs *syncBuffer
	done chan struct{} // closed when the process has been waited for
}

// serveAs starts `sandbox serve ARGS` as the user. It returns when the
// server listens, or with listening false when it exited first.
func (u *userDir) serveAs(t *testing.T, args ...string) (s *userServer, listening bool) {
	t.Helper()
	cmd := exec.Command(u.bin, append([]string{"-test.run=^TestServeChild$", "-test.count=1", "--"}, args...)...)
	cmd.Dir = u.home
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + u.home, "TMPDIR=" + u.home, serveChildEnv + "=1"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.id), Gid: uint32(u.id), Groups: []uint32{}},
		Pdeathsig: syscall.SIGKILL}
	s = &userServer{cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout = s.logs
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		// The JSON log's "listening" line names the bound address.
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			s.logs.Write([]byte(line + "\n"))
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "listening" {
				addr <- l.Addr
			}
		}
		cmd.Wait()
		close(s.done)
		close(addr)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // a no-op once waited for
		<-s.done
	})
	select {
	case a, ok := <-addr:
		if !ok {
			return s, false
		}
		s.url = "http://" + a
		return s, true
	case <-time.After(time.Minute):
		t.Fatalf("the server did not listen within a minute:\n%s", s.logs.String())
	}
	return s, false
}

// wait waits for the server to exit and returns its status.
func (s *userServer) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(time.Minute):
		t.Fatalf("the server did not exit:\n%s", s.logs.String())
	}
	return s.cmd.ProcessState.ExitCode()
}

// post sends a run request; out receives the JSON answer.
func (s *userServer) post(t *testing.T, body string, out any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", s.url+"/v1/runs", strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("answer %d is not JSON: %s", resp.StatusCode, b)
	}
	return resp.StatusCode
}

func hasDegraded(iso sandbox.Isolation, layer, reason string) bool {
	for _, d := range iso.Degraded {
		if d.Layer == layer && strings.Contains(d.Reason, reason) {
			return true
		}
	}
	return false
}

// TestServeRootless: `sandbox serve` as an ordinary user starts with the
// default configuration, says at start what it cannot enforce, answers runs
// (files in the workspace included) with the limitation in the Result, and
// leaves nothing behind after SIGTERM.
func TestServeRootless(t *testing.T) {
	u := newUserDir(t)
	s, ok := u.serveAs(t, "--listen", "127.0.0.1:0")
	if !ok {
		t.Fatalf("serve as uid %d exited %d before listening:\n%s", u.id, s.wait(t), s.logs.String())
	}
	var res sandbox.Result
	if code := s.post(t, `{"handler":{"command":["echo","hello"]}}`, &res); code != 200 || !res.OK || string(res.Stdout) != "hello\n" {
		t.Fatalf("echo hello: %d, ok %v (%s), stdout %q\n%s", code, res.OK, res.Status, res.Stdout, s.logs.String())
	}
	// The host has no cgroup delegated to this uid (the root tests' own
	// hierarchy is root's): the Result must say so.
	noCgroup := res.Isolation.Cgroup == ""
	if noCgroup && !hasDegraded(res.Isolation, "cgroup", "not enforced: memory 512MiB, pids 128") {
		t.Errorf("a run without a cgroup does not say so: isolation %+v", res.Isolation)
	}
	if !res.Isolation.Seccomp || res.Isolation.LandlockABI == 0 || !res.Isolation.NoNewPrivs {
		t.Errorf("isolation %+v; want seccomp, Landlock and no_new_privs as ordinary user", res.Isolation)
	}
	t.Run("workspace files", func(t *testing.T) {
		var res sandbox.Result
		code := s.post(t, `{"handler":{"command":["sh","-c","cat a/b.txt; id -u; stat -c %U /workspace/a/b.txt"]},"files":[{"path":"a/b.txt","content":"hi\n"}]}`, &res)
		if code != 200 || !res.OK || string(res.Stdout) != "hi\n1000\nsandbox\n" {
			t.Errorf("files: %d, ok %v (%s), stdout %q stderr %q", code, res.OK, res.Status, res.Stdout, res.Stderr)
		}
	})
	t.Run("explicit limit", func(t *testing.T) {
		var body struct {
			Error struct{ Code, Message string }
		}
		code := s.post(t, `{"handler":{"command":["true"]},"limits":{"memoryBytes":67108864}}`, &body)
		switch {
		case !noCgroup:
			if code != 200 {
				t.Errorf("memory limit with a cgroup: %d %+v", code, body)
			}
		case code != 422 || body.Error.Code != CodeLimitAboveCeiling ||
			!strings.Contains(body.Error.Message, "limits.memoryBytes") || strings.Contains(body.Error.Message, "/sys/"):
			t.Errorf("a memory limit the server cannot enforce: %d %+v; want 422 %s naming limits.memoryBytes, no host path", code, body, CodeLimitAboveCeiling)
		}
	})
	start := s.logs.String()
	if noCgroup && (!strings.Contains(start, `"rootless":true`) || !strings.Contains(start, `"uid":`+strconv.Itoa(u.id)) ||
		!strings.Contains(start, "not enforced: memory 512MiB")) {
		t.Errorf("the start log does not say the server is rootless (uid %d) and what it cannot enforce:\n%s", u.id, start)
	}

	s.cmd.Process.Signal(syscall.SIGTERM)
	if code := s.wait(t); code != 0 || !strings.Contains(s.logs.String(), `"msg":"shut down"`) {
		t.Errorf("after SIGTERM: exit %d:\n%s", code, s.logs.String())
	}
	if left := leftovers(t, u.home); len(left) != 0 {
		t.Errorf("the server's TMPDIR keeps %v after shutdown", left)
	}
	if !waitFor(10*time.Second, func() bool { return len(testenv.ProcessesOf(u.id)) == 0 }) {
		t.Errorf("processes of uid %d left after shutdown: %v", u.id, testenv.ProcessesOf(u.id))
	}
}

// TestServeRootlessStart: what the server checks at start works as an
// ordinary user, or is refused naming what is missing and the fix.
func TestServeRootlessStart(t *testing.T) {
	u := newUserDir(t)
	limit := u.file(t, "limit.yaml", "execution: {memory: 64MiB}\n", 0o644)
	ceiling := u.file(t, "ceiling.yaml", "server: {ceilings: {pids: 1000}}\n", 0o644)
	unreadable := u.file(t, "token", "secret\n", 0o600) // root's
	readable := u.file(t, "token-ok", "secret\n", 0o644)

	// Whether this user has a cgroup decides what an explicit limit does.
	probe, ok := u.serveAs(t, "--listen", "127.0.0.1:0")
	if !ok {
		t.Fatalf("serve exited %d:\n%s", probe.wait(t), probe.logs.String())
	}
	var res sandbox.Result
	probe.post(t, `{"handler":{"command":["true"]}}`, &res)
	probe.cmd.Process.Signal(syscall.SIGTERM)
	probe.wait(t)
	noCgroup := res.Isolation.Cgroup == ""

	t.Run("explicit memory limit refused", func(t *testing.T) {
		if !noCgroup {
			t.Skip("this user has a usable cgroup")
		}
		s, ok := u.serveAs(t, "--listen", "127.0.0.1:0", "--config", limit)
		if ok {
			t.Fatalf("serve with an explicit memory limit and no cgroup started:\n%s", s.logs.String())
		}
		code, log := s.wait(t), s.logs.String()
		for _, want := range []string{"execution.memory", "Delegate=yes", "bestEffort"} {
			if code != 125 || !strings.Contains(log, want) {
				t.Errorf("exit %d; want 125 and a message naming %q:\n%s", code, want, log)
			}
		}
	})
	t.Run("explicit ceiling refused", func(t *testing.T) {
		if !noCgroup {
			t.Skip("this user has a usable cgroup")
		}
		s, ok := u.serveAs(t, "--listen", "127.0.0.1:0", "--config", ceiling)
		if ok {
			t.Fatalf("serve with a pids ceiling and no cgroup started:\n%s", s.logs.String())
		}
		if code, log := s.wait(t), s.logs.String(); code != 125 || !strings.Contains(log, "server.ceilings") || !strings.Contains(log, "execution.pids") {
			t.Errorf("exit %d; want 125 naming server.ceilings and execution.pids:\n%s", code, log)
		}
	})
	t.Run("explicit memory limit under best effort", func(t *testing.T) {
		if !noCgroup {
			t.Skip("this user has a usable cgroup")
		}
		s, ok := u.serveAs(t, "--listen", "127.0.0.1:0", "--config", limit, "--best-effort")
		if !ok {
			t.Fatalf("serve --best-effort exited %d:\n%s", s.wait(t), s.logs.String())
		}
		defer func() { s.cmd.Process.Signal(syscall.SIGTERM); s.wait(t) }()
		var res sandbox.Result
		if code := s.post(t, `{"handler":{"command":["true"]},"limits":{"pids":16}}`, &res); code != 200 || !res.OK ||
			!hasDegraded(res.Isolation, "cgroup", "not enforced: memory 64MiB, pids 16") {
			t.Errorf("best effort run: %d ok %v, isolation %+v; want ok with the unenforced limits listed", code, res.OK, res.Isolation)
		}
		if !strings.Contains(s.logs.String(), "not enforced: memory 64MiB") {
			t.Errorf("the start log does not name the unenforced limit:\n%s", s.logs.String())
		}
	})
	t.Run("unreadable token file", func(t *testing.T) {
		s, ok := u.serveAs(t, "--listen", "127.0.0.1:0", "--token-file", unreadable)
		if ok {
			t.Fatalf("serve started with a token file it cannot read")
		}
		code, log := s.wait(t), s.logs.String()
		if code != 125 || !strings.Contains(log, "permission denied") || !strings.Contains(log, "uid "+strconv.Itoa(u.id)) {
			t.Errorf("exit %d; want 125 naming the permission and the uid:\n%s", code, log)
		}
	})
	t.Run("readable token file", func(t *testing.T) {
		s, ok := u.serveAs(t, "--listen", "127.0.0.1:0", "--token-file", readable)
		if !ok {
			t.Fatalf("serve with a readable token file exited %d:\n%s", s.wait(t), s.logs.String())
		}
		s.cmd.Process.Signal(syscall.SIGTERM)
		if code := s.wait(t); code != 0 {
			t.Errorf("exit %d:\n%s", code, s.logs.String())
		}
	})
	if left := leftovers(t, u.home); len(left) != 0 {
		t.Errorf("the server's TMPDIR keeps %v", left)
	}
}

// TestServeHelp: -h lists every flag with what it does, on stdout.
func TestServeHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, &stdout, &stderr, nil); code != 0 || stderr.Len() != 0 {
		t.Fatalf("serve -h: exit %d, stderr %q", code, stderr.String())
	}
	for _, want := range []string{"Usage: sandbox serve", "-listen", "-token-file", "-config", "-drain-timeout", "-best-effort", "isolation.degraded"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("serve -h lacks %q:\n%s", want, stdout.String())
		}
	}
}
