package mount

import (
	"encoding/json"
	"errors"
	"github.com/kb-labs/sandbox/internal/testenv"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestNewPlanRefusesTargets(t *testing.T) {
	src := t.TempDir()
	for _, target := range []string{"", "rel/dir", "/a/../b", "/a/", "/", "/proc", "/proc/sys", "/dev", "/dev/shm", "/.oldroot", "/.oldroot/x"} {
		t.Run(target, func(t *testing.T) {
			for _, o := range []Options{
				{ReadOnly: []Bind{{Source: src, Target: target}}},
				{ReadWrite: []Bind{{Source: src, Target: target}}},
				{Special: []Bind{{Source: src, Target: target}}},
				{Tmpfs: []Tmpfs{{Target: target}}},
			} {
				_, err := NewPlan(o)
				var oe *OptionError
				if !errors.Is(err, ErrTarget) || !errors.As(err, &oe) || !strings.HasSuffix(oe.Option, "].Target") {
					t.Errorf("NewPlan(%+v) = %v, want an OptionError naming the target", o, err)
				}
			}
		})
	}
}

func TestNewPlanRefusesDuplicateTargets(t *testing.T) {
	src := t.TempDir()
	_, err := NewPlan(Options{ReadOnly: []Bind{{src, "/data"}}, Tmpfs: []Tmpfs{{Target: "/data"}}})
	if !errors.Is(err, ErrTarget) || !strings.Contains(err.Error(), "Tmpfs[0].Target") {
		t.Fatalf("err = %v, want duplicate target named Tmpfs[0].Target", err)
	}
	_, err = NewPlan(Options{Workdir: src, ReadWrite: []Bind{{src, Workspace}}})
	if !errors.Is(err, ErrTarget) {
		t.Fatalf("err = %v, want duplicate /workspace refused", err)
	}
}

func TestNewPlanRefusesSources(t *testing.T) {
	dir := t.TempDir()
	toProc := filepath.Join(dir, "toproc")
	if err := os.Symlink("/proc/self/root", toProc); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		o    Options
		want error
	}{
		{"proc", Options{ReadOnly: []Bind{{"/proc", "/x"}}}, ErrSource},
		{"proc-self", Options{ReadOnly: []Bind{{"/proc/self", "/x"}}}, ErrSource},
		{"sys", Options{ReadOnly: []Bind{{"/sys", "/x"}}}, ErrSource},
		{"sys-cgroup", Options{ReadWrite: []Bind{{"/sys/fs/cgroup", "/x"}}}, ErrSource},
		{"dev", Options{ReadOnly: []Bind{{"/dev", "/x"}}}, ErrSource},
		{"dev-shm", Options{ReadWrite: []Bind{{"/dev/shm", "/x"}}}, ErrSource},
		{"root", Options{ReadOnly: []Bind{{"/", "/x"}}}, ErrSource},
		{"unclean-proc", Options{ReadOnly: []Bind{{"/tmp/../proc", "/x"}}}, ErrSource},
		{"symlink-to-proc", Options{ReadOnly: []Bind{{toProc, "/x"}}}, ErrSource},
		{"relative", Options{ReadOnly: []Bind{{"tmp", "/x"}}}, ErrSource},
		{"missing", Options{ReadOnly: []Bind{{filepath.Join(dir, "nope"), "/x"}}}, fs.ErrNotExist},
		{"special-proc", Options{Special: []Bind{{"/proc/1", "/x"}}}, ErrSource},
		{"workdir-proc", Options{Workdir: "/proc"}, ErrSource},
		{"workdir-file", Options{Workdir: file}, ErrSource},
		{"outdir-missing", Options{Outdir: filepath.Join(dir, "nope")}, fs.ErrNotExist},
		{"dev-null", Options{ReadWrite: []Bind{{"/dev/null", "/x"}}}, ErrSource},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewPlan(tt.o)
			var oe *OptionError
			if !errors.Is(err, tt.want) || !errors.As(err, &oe) || oe.Option == "" {
				t.Fatalf("err = %v, want %v in an OptionError", err, tt.want)
			}
		})
	}
}

func TestNewPlanRefusesBadSizes(t *testing.T) {
	for _, o := range []Options{{TmpSize: 10}, {WorkspaceSize: -1}, {ShmSize: 2 << 40}, {Tmpfs: []Tmpfs{{Target: "/x", Size: 1}}}, {Network: "wifi"}} {
		if _, err := NewPlan(o); err == nil {
			t.Errorf("NewPlan(%+v) accepted", o)
		}
	}
}

// listen creates a real unix socket at path.
func listen(t *testing.T, path string) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
}

func TestNewPlanSockets(t *testing.T) {
	dir := t.TempDir()
	deep := filepath.Join(dir, "a", "b")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(deep, "daemon.sock")
	listen(t, sock)
	// A symlink to the socket's tree elsewhere must not be followed.
	clean := t.TempDir()
	if err := os.Symlink(dir, filepath.Join(clean, "link")); err != nil {
		t.Fatal(err)
	}

	for _, o := range []Options{
		{ReadOnly: []Bind{{dir, "/data"}}},
		{ReadWrite: []Bind{{dir, "/data"}}},
		{Workdir: dir},
		{Outdir: dir},
		{ReadOnly: []Bind{{sock, "/run/x.sock"}}},
	} {
		_, err := NewPlan(o)
		if !errors.Is(err, ErrSocket) || !strings.Contains(err.Error(), sock) {
			t.Errorf("NewPlan(%+v) = %v, want ErrSocket naming %s", o, err, sock)
		}
		o.AllowSockets = true
		if p, err := NewPlan(o); err != nil || len(p.Run) == 0 {
			t.Errorf("with AllowSockets: NewPlan(%+v) = %v", o, err)
		}
	}
	if _, err := NewPlan(Options{Special: []Bind{{dir, "/plugin"}}}); err != nil {
		t.Errorf("Special binds are not scanned, got %v", err)
	}
	if _, err := NewPlan(Options{ReadOnly: []Bind{{clean, "/data"}}}); err != nil {
		t.Errorf("symlinked tree was followed: %v", err)
	}

	big := t.TempDir()
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(big, strings.Repeat("f", i+1)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewPlan(Options{ReadOnly: []Bind{{big, "/data"}}, ScanLimit: 10}); !errors.Is(err, ErrScanLimit) {
		t.Errorf("err = %v, want ErrScanLimit", err)
	}
	if _, err := NewPlan(Options{ReadOnly: []Bind{{big, "/data"}}, ScanLimit: 100}); err != nil {
		t.Errorf("under the limit: %v", err)
	}
}

func TestSystemDirMergedUsr(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "usr/lib", "sbin", "opt/lib64"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, to := range map[string]string{"bin": "usr/bin", "lib": "/usr/lib", "lib64": filepath.Join(root, "opt/lib64"), "lib32": "missing"} {
		if err := os.Symlink(to, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		dir  string
		want Mount
		ok   bool
	}{
		{"/usr", Mount{Kind: KindBind, Source: root + "/usr", Target: "/usr", Dir: true, ReadOnly: true}, true},
		{"/bin", Mount{Kind: KindSymlink, Target: "/bin", Link: "usr/bin"}, true},
		{"/lib", Mount{Kind: KindSymlink, Target: "/lib", Link: "/usr/lib"}, true},
		{"/sbin", Mount{Kind: KindBind, Source: root + "/sbin", Target: "/sbin", Dir: true, ReadOnly: true}, true},
		{"/lib64", Mount{Kind: KindBind, Source: root + "/opt/lib64", Target: "/lib64", Dir: true, ReadOnly: true}, true},
		{"/lib32", Mount{}, false},
		{"/libx32", Mount{}, false},
	}
	for _, tt := range tests {
		got, ok, err := systemDir(root, tt.dir)
		if err != nil || ok != tt.ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("systemDir(%s) = %+v, %v, %v; want %+v, %v", tt.dir, got, ok, err, tt.want, tt.ok)
		}
	}
}

func find(ms []Mount, target string) *Mount {
	for i := range ms {
		if ms[i].Target == target {
			return &ms[i]
		}
	}
	return nil
}

func TestNewPlanShape(t *testing.T) {
	wd := t.TempDir()
	if err := os.Mkdir(filepath.Join(wd, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	p, err := NewPlan(Options{Workdir: wd, Tmpfs: []Tmpfs{{Target: "/data/cache/x"}, {Target: "/data", Size: 1 << 20}},
		ReadOnly: []Bind{{src, "/data/cache"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range append(append([]Mount{}, p.Base...), p.Run...) {
		if m.Kind == KindTmpfs && (m.Size == 0 || m.Inodes == 0 || m.Mode == 0) {
			t.Errorf("tmpfs %s without size/inodes/mode: %+v", m.Target, m)
		}
		if m.Kind == KindTmpfs && !m.ReadOnly && m.Target != "/dev" && (m.UID != SandboxUID || m.GID != SandboxGID) {
			t.Errorf("writable tmpfs %s not owned by the sandbox user", m.Target)
		}
	}
	if m := find(p.Base, "/dev/shm"); m == nil || !m.NoExec {
		t.Errorf("/dev/shm = %+v, want noexec tmpfs", m)
	}
	if m := find(p.Base, "/etc/resolv.conf"); m != nil {
		t.Errorf("resolv.conf without network: %+v", m)
	}
	if m := find(p.Run, Workspace+"/.git"); m == nil || !m.ReadOnly || m.Source != filepath.Join(wd, ".git") {
		t.Errorf(".git = %+v, want read-only bind", m)
	}
	// Parents before children, whatever the option order.
	var order []string
	for _, m := range p.Run {
		order = append(order, m.Target)
	}
	if want := []string{Workspace, "/data", Workspace + "/.git", "/data/cache", "/data/cache/x"}; !reflect.DeepEqual(order, want) {
		t.Errorf("run order = %v, want %v", order, want)
	}

	// Per-run options never change the base: a warm sandbox fits any run.
	q, err := NewPlan(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.BaseID != q.BaseID || p.BaseID == "" {
		t.Errorf("BaseID differs across runs: %s vs %s", p.BaseID, q.BaseID)
	}
	r, _ := NewPlan(Options{TmpSize: 1 << 20})
	if r.BaseID == q.BaseID {
		t.Errorf("BaseID ignores TmpSize")
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back Plan
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(&back, p) {
		t.Errorf("JSON round trip changed the plan (%v)", err)
	}
}

func TestNewPlanResolvConf(t *testing.T) {
	real, err := filepath.EvalSymlinks("/etc/resolv.conf")
	if err != nil {
		t.Skip("host has no /etc/resolv.conf")
	}
	for _, n := range []Network{"", NetworkNone, NetworkLoopback, NetworkHost} {
		p, err := NewPlan(Options{Network: n})
		if err != nil {
			t.Fatal(err)
		}
		m := find(p.Base, "/etc/resolv.conf")
		if (m != nil) != (n == NetworkHost) || (m != nil && (m.Source != real || !m.ReadOnly)) {
			t.Errorf("network %q: resolv.conf = %+v", n, m)
		}
	}
}

func TestPrepareHostDir(t *testing.T) {
	testenv.Require(t, "root") // to chown
	parent := visibleDir(t)
	dir := filepath.Join(parent, "wd")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var he *HostDirError
	if err := PrepareHostDir(dir, 101000, 101000); !errors.As(err, &he) || !strings.Contains(he.Fix, "chown 101000:101000") {
		t.Fatalf("root-owned dir: err = %v, want a HostDirError suggesting chown", err)
	}
	if err := os.Chown(dir, 101000, 101000); err != nil {
		t.Fatal(err)
	}
	if err := PrepareHostDir(dir, 101000, 101000); err != nil {
		t.Fatalf("owned dir: %v", err)
	}
	link := filepath.Join(parent, "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if err := PrepareHostDir(link, 101000, 101000); !errors.As(err, &he) {
		t.Fatalf("symlink: err = %v", err)
	}
	if err := os.Chmod(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := PrepareHostDir(dir, 101000, 101000); !errors.As(err, &he) || !strings.Contains(he.Problem, parent) {
		t.Fatalf("unsearchable ancestor: err = %v", err)
	}
}
