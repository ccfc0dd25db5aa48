package sandbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kb-labs/sandbox"
	"github.com/kb-labs/sandbox/internal/testenv"
)

// The rootless tests run this test binary again as an ordinary user (a uid
// with no passwd entry, so nothing on the host is changed): the child is
// TestRootlessChild, which does the sandboxed runs and writes what it saw to
// a JSON report; the parent, still root, checks the report and the effects
// on the host.
const (
	rootlessReportEnv  = "SANDBOX_TEST_ROOTLESS_REPORT"
	rootlessWorkdirEnv = "SANDBOX_TEST_ROOTLESS_WORKDIR"
)

// rootlessReport is what the child saw.
type rootlessReport struct {
	Euid         int
	DefaultErr   string
	Status       sandbox.Status
	Stdout       string
	Stderr       string
	ErrMsg       string
	Cgroup       string
	Degraded     []sandbox.Degradation
	ExplicitErr  string
	Unenforced   []string // UnenforceableError.Fields of ExplicitErr
	BestEffortOK bool     // an explicit limit under bestEffort runs, degraded
	BestEffort   []sandbox.Degradation
	Loopback     string // status of a run with the loopback network
}

// TestRootlessChild is the ordinary user's half of TestRootless; it does
// nothing unless started by it.
func TestRootlessChild(t *testing.T) {
	out := os.Getenv(rootlessReportEnv)
	if out == "" {
		t.Skip("runs only as TestRootless's child")
	}
	rep := rootlessReport{Euid: os.Geteuid()}
	defer func() {
		b, _ := json.Marshal(rep)
		if err := os.WriteFile(out, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}()
	cfg := sandbox.Config{Permissions: sandbox.Permissions{Filesystem: sandbox.Filesystem{Workdir: os.Getenv(rootlessWorkdirEnv)}}}
	r, err := sandbox.New(cfg)
	if err != nil {
		rep.DefaultErr = err.Error()
	} else {
		res, err := r.Run(context.Background(), sandbox.Command("sh", "-c",
			`id -u; id -G; cat /proc/sys/user/max_user_namespaces; grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status; echo data > /workspace/out.txt`), nil, nil)
		if err != nil {
			rep.DefaultErr = err.Error()
		} else {
			rep.Status, rep.Stdout, rep.Stderr = res.Status, string(res.Stdout), string(res.Stderr)
			rep.Cgroup, rep.Degraded = res.Isolation.Cgroup, res.Isolation.Degraded
			if res.Error != nil {
				rep.ErrMsg = res.Error.Message
			}
		}
		r.Close()
	}
	if r, err := sandbox.New(sandbox.Config{Execution: sandbox.Execution{Memory: 64 * sandbox.MiB}}); err != nil {
		rep.ExplicitErr = err.Error()
		var ue *sandbox.UnenforceableError
		if errors.As(err, &ue) && ue.Layer == "cgroup" {
			rep.Unenforced = ue.Fields
		}
	} else {
		r.Close()
	}
	if r, err := sandbox.New(sandbox.Config{BestEffort: true, Execution: sandbox.Execution{Memory: 64 * sandbox.MiB}}); err == nil {
		res, err := r.Run(context.Background(), sandbox.Command("true"), nil, nil)
		rep.BestEffortOK = err == nil && res.OK
		if res != nil {
			rep.BestEffort = res.Isolation.Degraded
		}
		r.Close()
	}
	// A warm sandbox (pool) with the loopback network: the init needs
	// CAP_NET_ADMIN only here.
	if r, err := sandbox.New(sandbox.Config{Pool: sandbox.PoolConfig{Size: 1}, Permissions: sandbox.Permissions{Network: sandbox.NetworkLoopback}}); err != nil {
		rep.Loopback = err.Error()
	} else {
		res, err := r.Run(context.Background(), sandbox.Command("true"), nil, nil)
		if err != nil {
			rep.Loopback = err.Error()
		} else {
			rep.Loopback = string(res.Status)
			if res.Error != nil {
				rep.Loopback += ": " + res.Error.Message
			}
		}
		r.Close()
	}
}

func TestRootless(t *testing.T) {
	testenv.Require(t, "root", "rootless")
	id, err := testenv.UnusedID()
	if err != nil {
		t.Fatal(err)
	}
	rep, work := runRootlessChild(t, id, nil)
	if rep.Euid != id {
		t.Fatalf("child ran as uid %d, want %d", rep.Euid, id)
	}
	t.Run("default config runs, cgroup degraded", func(t *testing.T) {
		if rep.DefaultErr != "" || rep.Status != sandbox.StatusOK {
			t.Fatalf("default run: err %q, status %s (%s), stdout %q, stderr %q", rep.DefaultErr, rep.Status, rep.ErrMsg, rep.Stdout, rep.Stderr)
		}
		if rep.Cgroup != "" || !hasLayer(rep.Degraded, "cgroup", "no memory, pids or CPU limit") {
			t.Errorf("cgroup %q, degraded %+v; want no cgroup and a cgroup degradation saying the limits are off", rep.Cgroup, rep.Degraded)
		}
		if hasLayer(rep.Degraded, "identity", "") {
			t.Errorf("identity degraded for a user without supplementary groups: %+v", rep.Degraded)
		}
		lines := strings.Split(strings.TrimSpace(rep.Stdout), "\n")
		if len(lines) < 3 || lines[0] != "1000" || lines[1] != "1000" || lines[2] != "0" {
			t.Errorf("uid, groups, max_user_namespaces = %q; want 1000, 1000, 0", lines)
		}
		for _, want := range []string{"CapInh:\t0000000000000000", "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000",
			"CapBnd:\t0000000000000000", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
			if !strings.Contains(rep.Stdout, want) {
				t.Errorf("/proc/self/status lacks %q:\n%s", want, rep.Stdout)
			}
		}
	})
	t.Run("workdir file owned by the user", func(t *testing.T) {
		st, err := os.Lstat(filepath.Join(work, "out.txt"))
		if err != nil {
			t.Fatalf("file written in the workdir is missing on the host: %v", err)
		}
		if uid, gid := st.Sys().(*syscall.Stat_t).Uid, st.Sys().(*syscall.Stat_t).Gid; int(uid) != id || int(gid) != id {
			t.Errorf("file owned by %d:%d on the host, want the user %d:%d", uid, gid, id, id)
		}
	})
	t.Run("explicit memory limit fails closed", func(t *testing.T) {
		for _, want := range []string{"execution.memory", "delegat", "Delegate=yes", "chown"} {
			if !strings.Contains(rep.ExplicitErr, want) {
				t.Errorf("New with an explicit memory limit: %q; want a refusal mentioning %q", rep.ExplicitErr, want)
			}
		}
		if !slices.Equal(rep.Unenforced, []string{"execution.memory"}) {
			t.Errorf("refusal's UnenforceableError fields %q (cgroup layer); want [execution.memory]", rep.Unenforced)
		}
	})
	t.Run("loopback network, warm pool", func(t *testing.T) {
		if rep.Loopback != string(sandbox.StatusOK) {
			t.Errorf("run with the loopback network: %s", rep.Loopback)
		}
	})
	t.Run("explicit limit under best effort degrades", func(t *testing.T) {
		if !rep.BestEffortOK || !hasLayer(rep.BestEffort, "cgroup", "not enforced: memory 64MiB") {
			t.Errorf("best effort run ok=%v degraded %+v; want a run with a cgroup degradation naming the 64MiB limit", rep.BestEffortOK, rep.BestEffort)
		}
	})
	t.Run("supplementary groups reported", func(t *testing.T) {
		// setgroups is denied to an unprivileged user namespace: a caller's
		// extra group stays with the program, and that must be said.
		rep, _ := runRootlessChild(t, id, []uint32{uint32(id) + 1})
		if rep.Status != sandbox.StatusOK || !hasLayer(rep.Degraded, "identity", strconv.Itoa(id+1)) {
			t.Fatalf("status %s (%s), degraded %+v; want ok with an identity degradation naming gid %d", rep.Status, rep.ErrMsg, rep.Degraded, id+1)
		}
		if lines := strings.Split(rep.Stdout, "\n"); len(lines) < 2 || lines[1] != "1000 65534" {
			t.Errorf("id -G = %q; want 1000 65534 (the host group, unmapped)", lines)
		}
	})
}

// runRootlessChild runs TestRootlessChild as uid:gid id with the
// supplementary groups given, and returns its report and the workdir it
// used (owned by id).
func runRootlessChild(t *testing.T, id int, groups []uint32) (rootlessReport, string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// A 0755 directory the ordinary user can traverse (t.TempDir's parent
	// is 0700), holding a copy of this test binary, its workdir and its
	// report directory.
	dir, err := os.MkdirTemp("", "sbx-rootless")
	must(err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(os.Chmod(dir, 0o755))
	bin := filepath.Join(dir, "sandbox.test")
	must(testenv.CopyFile(os.Args[0], bin, 0o755))
	work, out := filepath.Join(dir, "work"), filepath.Join(dir, "out")
	for _, d := range []string{work, out} {
		must(os.Mkdir(d, 0o755))
		must(os.Chown(d, id, id))
	}
	report := filepath.Join(out, "report.json")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run=^TestRootlessChild$", "-test.count=1", "-test.v")
	cmd.Dir = out
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + out, "TMPDIR=" + out,
		rootlessReportEnv + "=" + report, rootlessWorkdirEnv + "=" + work}
	if groups == nil {
		groups = []uint32{}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(id), Gid: uint32(id), Groups: groups},
		Pdeathsig: syscall.SIGKILL}
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		t.Fatalf("child as uid %d: %v\n%s", id, err, log.String())
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("no report from the child: %v\n%s", err, log.String())
	}
	var rep rootlessReport
	must(json.Unmarshal(b, &rep))
	t.Logf("child report: %s", b)
	return rep, work
}

func hasLayer(ds []sandbox.Degradation, layer, reason string) bool {
	for _, d := range ds {
		if d.Layer == layer && strings.Contains(d.Reason, reason) {
			return true
		}
	}
	return false
}
