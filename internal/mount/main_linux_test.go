package mount

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The integration tests re-execute the test binary. Dispatch is explicit, at
// the top of TestMain, on argv markers only this file writes.
const (
	childMarker = "-mount.test.child=namespace-root" // pid 1 of the new namespaces: applies the plan
	innerMarker = "-mount.test.child=sandbox-user"   // uid 1000 inside: runs the checks
	exeTarget   = "/sandbox/test.bin"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case childMarker:
			os.Exit(childMain())
		case innerMarker:
			os.Exit(innerMain())
		}
	}
	code := m.Run()
	if exeDir != "" {
		os.RemoveAll(exeDir)
	}
	os.Exit(code)
}

// request travels to the child on fd 3.
type request struct {
	Plan       *Plan
	FinishPlan *Plan    // phase 2 plan when it differs from Plan (a warm pool's late message)
	RootChecks []string // run as namespace root after Apply
	Checks     []string // run as uid 1000 (the test binary, bound at exeTarget)
	Shell      string   // run as uid 1000 with /bin/sh -c
	Arg        string   // passed to the checks (a host path, a name)
	Trees      int      // detached trees on fds 4.. for the Tree mounts (Plan.OpenTrees)

	trees []*os.File
}

type reply struct {
	Err            string
	Phase1, Phase2 time.Duration
	Results        map[string]string // check name -> "ok" or what failed
	Shell          string
}

var (
	exeOnce sync.Once
	exeDir  string
	exePath string
	exeErr  error
)

// testBinary returns a copy of the test binary in a directory the
// unprivileged namespace ids can traverse (go's build dirs are 0700 root).
func testBinary(t *testing.T) string {
	t.Helper()
	exeOnce.Do(func() {
		self, err := os.Executable()
		if err != nil {
			exeErr = err
			return
		}
		if exeDir, exeErr = os.MkdirTemp("", "mounttest-"); exeErr != nil {
			return
		}
		if exeErr = os.Chmod(exeDir, 0o755); exeErr != nil {
			return
		}
		b, err := os.ReadFile(self)
		if err != nil {
			exeErr = err
			return
		}
		exePath = filepath.Join(exeDir, "mount.test")
		exeErr = os.WriteFile(exePath, b, 0o755)
	})
	if exeErr != nil {
		t.Fatal(exeErr)
	}
	return exePath
}

// withTestBinary adds the read-only bind of the test binary the checks run from.
func withTestBinary(t *testing.T, o Options) Options {
	o.Special = append(o.Special, Bind{Source: testBinary(t), Target: exeTarget})
	return o
}

// runChild applies req.Plan in new user, mount, pid, net, ipc, uts and
// cgroup namespaces (0 -> 100000, 1000 -> 101000) and returns what the
// child saw. It also checks that no mount is left on the host.
func runChild(t *testing.T, req request) *reply {
	t.Helper()
	before := mountinfo(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, _ := json.Marshal(req)
	go func() { w.Write(b); w.Close() }()
	cmd := exec.Command(testBinary(t), childMarker)
	cmd.ExtraFiles = append([]*os.File{r}, req.trees...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNET |
			syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWCGROUP,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 1}, {ContainerID: 1000, HostID: 101000, Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 1}, {ContainerID: 1000, HostID: 101000, Size: 1}},
		GidMappingsEnableSetgroups: true,
		Credential:                 &syscall.Credential{Uid: 0, Gid: 0},
		Pdeathsig:                  syscall.SIGKILL,
	}
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v\nstderr: %s\nstdout: %s", err, stderr.String(), stdout.String())
	}
	var rep reply
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("child reply %q: %v\nstderr: %s", stdout.String(), err, stderr.String())
	}
	if after := mountinfo(t); !equalSets(before, after) {
		t.Errorf("host mounts changed:\nbefore %v\nafter  %v", before, after)
	}
	return &rep
}

func mountinfo(t *testing.T) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	sort.Strings(lines)
	return lines
}

func equalSets(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

// childMain is pid 1 of the new namespaces, uid 0 of the new user namespace.
func childMain() int {
	runtime.LockOSThread()
	var req request
	rep := reply{Results: map[string]string{}}
	defer func() { json.NewEncoder(os.Stdout).Encode(&rep) }()
	if err := json.NewDecoder(os.NewFile(3, "request")).Decode(&req); err != nil {
		rep.Err = "decode: " + err.Error()
		return 0
	}
	inherited = openFds()
	start := time.Now()
	root, err := Prepare(req.Plan)
	rep.Phase1 = time.Since(start)
	if err != nil {
		rep.Err = err.Error()
		return 0
	}
	start = time.Now()
	if req.FinishPlan == nil {
		req.FinishPlan = req.Plan
	}
	var trees []int
	for i := range req.Trees {
		trees = append(trees, 4+i)
	}
	err = root.Finish(req.FinishPlan, trees)
	rep.Phase2 = time.Since(start)
	if err != nil {
		rep.Err = err.Error()
		return 0
	}
	for _, name := range req.RootChecks {
		rep.Results["root:"+name] = result(runCheck(name, req.Arg))
	}
	if len(req.Checks) > 0 {
		arg, _ := json.Marshal(req)
		out, err := asSandboxUser(exeTarget, innerMarker, string(arg))
		var res map[string]string
		if jerr := json.Unmarshal(out, &res); jerr != nil {
			rep.Err = fmt.Sprintf("inner: %v (%v) %s", err, jerr, out)
			return 0
		}
		for k, v := range res {
			rep.Results[k] = v
		}
	}
	if req.Shell != "" {
		out, err := asSandboxUser("/bin/sh", "-c", req.Shell)
		rep.Shell = string(out)
		if err != nil {
			rep.Shell += "error: " + err.Error()
		}
	}
	return 0
}

// asSandboxUser runs argv as 1000:1000 with no supplementary groups, in
// /workspace, and returns its combined output.
func asSandboxUser(argv ...string) ([]byte, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = Workspace
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/workspace", "TMPDIR=/tmp"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: SandboxUID, Gid: SandboxGID}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

func innerMain() int {
	var req request
	if len(os.Args) < 3 || json.Unmarshal([]byte(os.Args[2]), &req) != nil {
		fmt.Println(`{"inner":"bad arguments"}`)
		return 2
	}
	res := map[string]string{}
	for _, name := range req.Checks {
		res[name] = result(runCheck(name, req.Arg))
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// inherited holds the fds open before Prepare: the test runner's and the Go
// runtime's (which keeps the cgroup CPU quota files open), not set-up's.
var inherited map[string]bool

func openFds() map[string]bool {
	fds := map[string]bool{}
	dir, err := os.Open("/proc/self/fd")
	if err != nil {
		return fds
	}
	defer dir.Close()
	names, _ := dir.Readdirnames(-1)
	for _, n := range names {
		fds[n] = n != fmt.Sprint(dir.Fd())
	}
	return fds
}

func result(err error) string {
	if err != nil {
		return err.Error()
	}
	return "ok"
}

func runCheck(name, arg string) error {
	f, ok := checks[name]
	if !ok {
		return fmt.Errorf("no check %q", name)
	}
	return f(arg)
}
