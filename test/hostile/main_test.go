//go:build linux

package hostile

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kb-labs/sandbox"
	"github.com/kb-labs/sandbox/internal/initproc"
	"github.com/kb-labs/sandbox/internal/testenv"
)

// secretEnv is set in the test process; no run may see it.
const secretEnvName = "HOSTILE_SECRET_ENV"

var secretEnvValue = "hostile-env-" + randHex(8)

func TestMain(m *testing.M) {
	initproc.MaybeRun()
	os.Setenv(secretEnvName, secretEnvValue)
	// Two cores: four runs at once keep the battery short without starving
	// the timing cases. An explicit -test.parallel wins.
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", "4")
	}
	code := m.Run()
	host.teardown()
	os.Exit(code)
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// hostState is what the battery sets up on the host once per test process:
// the built hostile programs, a sentinel process, a secret file, a leaked fd
// and the hashes of the binaries a run must not change.
type hostState struct {
	once sync.Once
	err  error

	binDir     string // holds probe; mounted read-only at /hostile
	secretDir  string // 0755, outside every mount
	secretFile string // 0644, holds secretValue
	secretVal  string
	leakedFD   int // the secret file, opened without O_CLOEXEC

	sentinel     *exec.Cmd
	sentinelMark string
	sentinelDead atomic.Bool

	hashes map[string]string // path -> sha256 before any run
}

var host hostState

// hashedFiles are the host binaries no run may change: the test binary
// (the sandbox re-executes it), the probe, and the shell.
func (h *hostState) hashedFiles() []string {
	exe, _ := os.Executable()
	sh, _ := filepath.EvalSymlinks("/bin/sh")
	return []string{exe, filepath.Join(h.binDir, "probe"), sh, "/usr/bin/python3"}
}

func (h *hostState) setup() error {
	h.once.Do(func() { h.err = h.doSetup() })
	return h.err
}

func (h *hostState) doSetup() error {
	var err error
	// The directory and its ancestors must be searchable by the sandbox's
	// host ids: a 0755 directory directly under /tmp.
	if h.binDir, err = os.MkdirTemp("/tmp", "hostile-bin-"); err != nil {
		return err
	}
	if err := os.Chmod(h.binDir, 0o755); err != nil {
		return err
	}
	build := exec.Command("go", "build", "-o", filepath.Join(h.binDir, "probe"), "./testdata/probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	if err != nil {
		return fmt.Errorf("build probe: %v\n%s", err, out)
	}
	if h.secretDir, err = os.MkdirTemp("/tmp", "hostile-secret-"); err != nil {
		return err
	}
	// World-readable on purpose: only the mount namespace keeps it out.
	os.Chmod(h.secretDir, 0o755)
	h.secretVal = "hostile-file-secret-" + randHex(8)
	h.secretFile = filepath.Join(h.secretDir, "secret.txt")
	if err := os.WriteFile(h.secretFile, []byte(h.secretVal+"\n"), 0o644); err != nil {
		return err
	}
	// Leaked on purpose: no O_CLOEXEC. The engine must close it anyway.
	if h.leakedFD, err = syscall.Open(h.secretFile, syscall.O_RDONLY, 0); err != nil {
		return err
	}
	h.sentinelMark = "hostile-mark-sentinel-" + randHex(6)
	h.sentinel = exec.Command("sh", "-c", "sleep 600", h.sentinelMark)
	if err := h.sentinel.Start(); err != nil {
		return err
	}
	go func() { h.sentinel.Wait(); h.sentinelDead.Store(true) }()
	h.hashes = map[string]string{}
	for _, f := range h.hashedFiles() {
		if h.hashes[f], err = hashFile(f); err != nil {
			return err
		}
	}
	return nil
}

func (h *hostState) teardown() {
	if h.sentinel != nil && h.sentinel.Process != nil {
		h.sentinel.Process.Kill()
	}
	for _, d := range []string{h.binDir, h.secretDir} {
		if d != "" {
			os.RemoveAll(d)
		}
	}
}

func hashFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// intact checks the host after a run: the sentinel alive, the binaries
// unchanged, and no process carrying mark.
func (h *hostState) intact(mark string) error {
	var errs []error
	if err := noProcess(mark); err != nil {
		errs = append(errs, err)
	}
	if h.sentinelDead.Load() || syscall.Kill(h.sentinel.Process.Pid, 0) != nil {
		errs = append(errs, fmt.Errorf("HOST EFFECT: the sentinel host process %d died", h.sentinel.Process.Pid))
	}
	for f, want := range h.hashes {
		if got, err := hashFile(f); err != nil || got != want {
			errs = append(errs, fmt.Errorf("HOST EFFECT: host binary %s changed (%v)", f, err))
		}
	}
	return errors.Join(errs...)
}

// processesWith lists host pids whose command line contains mark.
func processesWith(mark string) []string {
	var pids []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(b, []byte(mark)) {
			pids = append(pids, e.Name()+":"+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return pids
}

// noProcess fails when a process carrying mark is still on the host. Run has
// returned, so everything the run started must be gone; a kill in flight is
// given 200ms (the exiting process's cmdline empties as it becomes a zombie).
func noProcess(mark string) error {
	deadline := time.Now().Add(200 * time.Millisecond)
	for {
		left := processesWith(mark)
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("HOST EFFECT: processes left on the host after the run: %v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hcase is one hostile case. fn runs the attack and returns what went
// wrong (nil when the sandbox held). seccompOnly marks the cases that the
// seccomp filter alone stops: TestSeccompOff runs them without it and
// requires fn to fail.
type hcase struct {
	name        string
	seccompOnly bool
	fn          func(c *cctx) error
}

// cctx is one case's run context.
type cctx struct {
	t       *testing.T
	seccomp bool
	mark    string
	cfg     sandbox.Config
	ec      sandbox.ExecutionContext
	noMark  bool // do not append the mark to argv
	pooled  bool // run from a warm pool sandbox
}

// outcome is a finished run: the result, the key=value lines of stdout, and
// the wall time of Run.
type outcome struct {
	res     *sandbox.Result
	kv      map[string]string
	elapsed time.Duration
}

func (o *outcome) String() string {
	r := o.res
	return fmt.Sprintf("status=%s exit=%d signal=%q err=%+v violations=%v elapsed=%v\nstdout:\n%s\nstderr:\n%s",
		r.Status, r.ExitCode, r.Signal, r.Error, r.Violations, o.elapsed.Round(time.Millisecond),
		clip(r.Stdout), clip(r.Stderr))
}

func clip(b []byte) string {
	if len(b) > 2048 {
		return string(b[:2048]) + fmt.Sprintf("... (%d bytes)", len(b))
	}
	return string(b)
}

// runCases runs the cases as parallel subtests with the filter on or off,
// checking the host after each.
func runCases(t *testing.T, cases []hcase) { runCasesOn(t, cases, false) }

// runCasesOn runs the cases; pooled runs each from a warm sandbox (the
// pool's path: prepared ahead, forking thread pre-placed in the cgroups).
func runCasesOn(t *testing.T, cases []hcase, pooled bool) {
	t.Helper()
	for _, hc := range cases {
		t.Run(hc.name, func(t *testing.T) {
			t.Parallel()
			c := newCtx(t, true)
			c.pooled = pooled
			err := hc.fn(c)
			if herr := host.intact(c.mark); herr != nil {
				err = errors.Join(err, herr)
			}
			if err != nil {
				t.Errorf("BREACH or regression: %v", err)
			}
		})
	}
}

func newCtx(t *testing.T, seccomp bool) *cctx {
	t.Helper()
	testenv.Require(t, "root", "userns")
	if runtime.GOOS != "linux" {
		t.Skip("linux only")
	}
	if err := host.setup(); err != nil {
		t.Fatalf("battery set-up: %v", err)
	}
	c := &cctx{t: t, seccomp: seccomp, mark: "hostile-mark-" + randHex(8)}
	c.cfg = sandbox.Config{
		Execution: sandbox.Execution{Timeout: sandbox.Duration(20 * time.Second), Grace: sandbox.Duration(time.Second)},
		Permissions: sandbox.Permissions{Filesystem: sandbox.Filesystem{
			ReadOnly: []sandbox.Mount{{Source: host.binDir, Target: "/hostile"}},
		}},
		Security: sandbox.Security{Seccomp: sandbox.Bool(seccomp)},
	}
	return c
}

var runMu sync.Mutex

// run runs argv ("probe" means the hostile probe) under c.cfg.
func (c *cctx) run(argv ...string) *outcome {
	c.t.Helper()
	if argv[0] == "probe" {
		argv = append([]string{"/hostile/probe"}, argv[1:]...)
	}
	if !c.noMark {
		argv = append(argv, c.mark)
	}
	// Runs are serialised: two Runners of one process name their cgroups
	// alike (see TestRunnersInParallel), so concurrent runs of different
	// Runners collide. Host checks and the rest of a case stay parallel.
	runMu.Lock()
	cfg := c.cfg
	if c.pooled {
		cfg.Pool.Size = 1
	}
	r, err := sandbox.New(cfg)
	if err != nil {
		runMu.Unlock()
		c.t.Fatalf("New: %v", err)
	}
	if c.pooled {
		deadline := time.Now().Add(10 * time.Second)
		for r.PoolDepth() < 1 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if r.PoolDepth() < 1 {
			runMu.Unlock()
			c.t.Fatal("the warm pool never filled")
		}
	}
	ec := c.ec
	start := time.Now()
	res, err := r.Run(context.Background(), sandbox.Command(argv...), nil, &ec)
	r.Close()
	runMu.Unlock()
	if err != nil {
		c.t.Fatalf("Run: %v", err)
	}
	o := &outcome{res: res, kv: parseKV(res.Stdout), elapsed: time.Since(start)}
	c.t.Logf("%v: %s", argv, o)
	if c.seccomp != res.Isolation.Seccomp {
		c.t.Errorf("isolation.seccomp = %v, want %v", res.Isolation.Seccomp, c.seccomp)
	}
	return o
}

func parseKV(b []byte) map[string]string {
	kv := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

// The owner of every workdir a case makes: neither root nor a sandbox id,
// so a file of the run is told apart from both on the host.
const workdirUID, workdirGID = 4242, 4343

// workdir makes a private host directory for /workspace (0700, owned by
// workdirUID:workdirGID: as root it is id-mapped, its owner is the sandbox
// user) and returns its path.
func (c *cctx) workdir() string {
	c.t.Helper()
	d, err := os.MkdirTemp("/tmp", "hostile-work-")
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chown(d, workdirUID, workdirGID); err != nil {
		c.t.Fatal(err)
	}
	c.ec.Workdir = d
	return d
}

// Assertions. Each returns nil or an error describing the failure.

func status(o *outcome, want ...sandbox.Status) error {
	if slices.Contains(want, o.res.Status) {
		return nil
	}
	return fmt.Errorf("status %s (%+v), want one of %v", o.res.Status, o.res.Error, want)
}

// kvIn checks that key was printed with one of the values.
func kvIn(o *outcome, key string, want ...string) error {
	v, ok := o.kv[key]
	if !ok {
		return fmt.Errorf("%s: not reported (the probe did not get that far)", key)
	}
	if slices.Contains(want, v) {
		return nil
	}
	return fmt.Errorf("%s=%s, want one of %v", key, v, want)
}

// violated checks that the run reported a denied call of syscall.
func violated(o *outcome, syscall string) error {
	for _, v := range o.res.Violations {
		if v.Syscall == syscall && v.Count > 0 {
			return nil
		}
	}
	return fmt.Errorf("violations %v lack %s", o.res.Violations, syscall)
}

func notContains(o *outcome, secret string) error {
	if bytes.Contains(o.res.Stdout, []byte(secret)) || bytes.Contains(o.res.Stderr, []byte(secret)) {
		return fmt.Errorf("HOST EFFECT: the output carries the host secret %q", secret)
	}
	return nil
}

func ok(o *outcome) error { return status(o, sandbox.StatusOK) }

func all(errs ...error) error { return errors.Join(errs...) }

// TestPooledPath runs the kernel-surface, secrets, escape, symlink and
// host-details cases again from warm pool sandboxes: a sandbox prepared
// ahead of its command must hold exactly as a cold one does.
func TestPooledPath(t *testing.T) {
	t.Run("kernel", func(t *testing.T) { runCasesOn(t, kernelCases(), true) })
	t.Run("secrets", func(t *testing.T) { runCasesOn(t, secretCases(), true) })
	t.Run("escape", func(t *testing.T) { runCasesOn(t, escapeCases(), true) })
	t.Run("symlink", func(t *testing.T) { runCasesOn(t, symlinkCases(), true) })
	t.Run("hostdetails", func(t *testing.T) { runCasesOn(t, hostDetailCases(), true) })
}
