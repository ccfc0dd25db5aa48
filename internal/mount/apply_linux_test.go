package mount

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kb-labs/sandbox/internal/testenv"
	"golang.org/x/sys/unix"
)

const (
	testTmpSize       = 2 << 20
	testWorkspaceSize = 3 << 20
)

func init() {
	testenv.Register("mount-api", Check)
}

// checks run inside the sandbox, after Apply; each returns nil when the
// effect is what the sandbox promises.
var checks = map[string]func(arg string) error{
	"uid": func(string) error {
		g, _ := unix.Getgroups()
		if os.Getuid() != SandboxUID || os.Getgid() != SandboxGID || len(g) != 0 {
			return fmt.Errorf("uid %d gid %d groups %v", os.Getuid(), os.Getgid(), g)
		}
		return nil
	},
	"root-ro": func(string) error { return wantErrno(os.WriteFile("/newfile", nil, 0o644), unix.EROFS) },
	"usr-ro": func(string) error {
		if err := wantErrno(os.WriteFile("/usr/newfile", nil, 0o644), unix.EROFS); err != nil {
			return err
		}
		return wantFlags("/usr", unix.ST_RDONLY|unix.ST_NOSUID|unix.ST_NODEV)
	},
	// As namespace root: permissions would not stop it, only read-only can.
	"etc-ro": func(string) error {
		return wantErrno(os.WriteFile("/etc/passwd", []byte("x"), 0o644), unix.EROFS)
	},
	"tmp-limit":       func(string) error { return fillTo("/tmp", testTmpSize) },
	"workspace-limit": func(string) error { return fillTo(Workspace, testWorkspaceSize) },
	"proc-masked": func(string) error {
		masked := 0
		for _, e := range procMasked {
			p := "/proc/" + e
			fi, err := os.Stat(p)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			if fi.IsDir() {
				if ents, err := os.ReadDir(p); err != nil || len(ents) != 0 {
					return fmt.Errorf("%s not an empty directory: %v %d", p, err, len(ents))
				}
				if err := wantFlags(p, unix.ST_RDONLY); err != nil {
					return err
				}
			} else if st := fi.Sys().(*syscall.Stat_t); fi.Mode()&os.ModeCharDevice == 0 || st.Rdev != unix.Mkdev(1, 3) {
				return fmt.Errorf("%s is not /dev/null: %v", p, fi.Mode())
			}
			masked++
		}
		// kallsyms is world-readable and non-empty on every kernel with it.
		if b, err := os.ReadFile("/proc/kallsyms"); err == nil && len(b) != 0 {
			return fmt.Errorf("/proc/kallsyms readable: %d bytes", len(b))
		}
		if masked < 5 {
			return fmt.Errorf("only %d entries masked", masked)
		}
		return nil
	},
	"proc-sys-ro": func(string) error {
		for _, d := range procReadOnly {
			if _, err := os.Stat("/proc/" + d); err == nil {
				if err := wantFlags("/proc/"+d, unix.ST_RDONLY|unix.ST_NOSUID|unix.ST_NODEV); err != nil {
					return err
				}
			}
		}
		return nil
	},
	// As namespace root, which owns the uts namespace and could otherwise
	// write its hostname here.
	"proc-sys-write": func(string) error {
		return wantErrno(os.WriteFile("/proc/sys/kernel/hostname", []byte("x"), 0), unix.EROFS)
	},
	"proc-pidns": func(string) error {
		ents, _ := os.ReadDir("/proc")
		var pids []string
		for _, e := range ents {
			if e.Name()[0] >= '0' && e.Name()[0] <= '9' {
				pids = append(pids, e.Name())
			}
		}
		if !slices.Contains(pids, "1") || len(pids) > 4 {
			return fmt.Errorf("/proc shows pids %v, want this pid namespace only", pids)
		}
		return nil
	},
	"no-sys":     func(string) error { return wantErrno(statErr("/sys"), unix.ENOENT) },
	"no-oldroot": func(string) error { return wantErrno(statErr(oldRoot), unix.ENOENT) },
	"dev": func(string) error {
		ents, err := os.ReadDir("/dev")
		if err != nil {
			return err
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		want := []string{"fd", "full", "null", "random", "shm", "stderr", "stdin", "stdout", "urandom", "zero"}
		if !slices.Equal(names, want) {
			return fmt.Errorf("/dev = %v, want %v", names, want)
		}
		if err := os.WriteFile("/dev/null", []byte("x"), 0); err != nil {
			return err
		}
		if b, err := os.ReadFile("/dev/null"); err != nil || len(b) != 0 {
			return fmt.Errorf("/dev/null read %d, %v", len(b), err)
		}
		buf := make([]byte, 64)
		if err := readFull("/dev/zero", buf); err != nil || !bytes.Equal(buf, make([]byte, 64)) {
			return fmt.Errorf("/dev/zero: %v %x", err, buf)
		}
		if err := readFull("/dev/urandom", buf); err != nil || bytes.Equal(buf, make([]byte, 64)) {
			return fmt.Errorf("/dev/urandom: %v %x", err, buf)
		}
		if err := wantErrno(os.WriteFile("/dev/full", []byte("x"), 0), unix.ENOSPC); err != nil {
			return fmt.Errorf("/dev/full: %v", err)
		}
		if err := os.WriteFile("/dev/shm/x", []byte("x"), 0o644); err != nil {
			return err
		}
		// /dev itself is nodev: the device binds carry their own flags.
		if err := wantFlags("/dev", unix.ST_NOSUID|unix.ST_NODEV|unix.ST_NOEXEC); err != nil {
			return err
		}
		return wantFlags("/dev/shm", unix.ST_NOSUID|unix.ST_NODEV|unix.ST_NOEXEC)
	},
	"passwd": func(string) error {
		b, err := os.ReadFile("/etc/passwd")
		if err != nil || !strings.Contains(string(b), "sandbox:x:1000:1000:sandbox:/workspace:") {
			return fmt.Errorf("/etc/passwd: %v %q", err, b)
		}
		return nil
	},
	// Set-up leaves no fd on a file, directory or mount (the host root above
	// all; a detached one reads as "").
	"fds": func(string) error {
		dir, err := os.Open("/proc/self/fd")
		if err != nil {
			return err
		}
		defer dir.Close()
		fds, err := dir.Readdirnames(-1)
		if err != nil {
			return err
		}
		for _, fd := range fds {
			if inherited[fd] || fd == fmt.Sprint(dir.Fd()) {
				continue
			}
			l, err := os.Readlink("/proc/self/fd/" + fd)
			if err != nil || !(strings.HasPrefix(l, "pipe:") || strings.HasPrefix(l, "socket:") ||
				strings.HasPrefix(l, "anon_inode:")) {
				return fmt.Errorf("fd %s open on %q (%v)", fd, l, err)
			}
		}
		return nil
	},
	"marker-invisible": func(arg string) error { return wantErrno(statErr(arg), unix.ENOENT) },
	"cwd": func(string) error {
		if err := VerifyCwd(Workspace); err != nil {
			return err
		}
		if wd, _ := os.Getwd(); wd != Workspace {
			return fmt.Errorf("cwd %q", wd)
		}
		return nil
	},
	"workdir-write": func(string) error {
		if err := os.WriteFile(Workspace+"/created.txt", []byte("from inside"), 0o644); err != nil {
			return err
		}
		return wantErrno(os.WriteFile(Workspace+"/.git/config", []byte("x"), 0o644), unix.EROFS)
	},
	// The nested tmpfs must have landed in the sandbox's own /tmp.
	"escape": func(arg string) error {
		var st, tmp unix.Statfs_t
		if err := unix.Statfs("/tmp/"+arg, &st); err != nil {
			return err
		}
		if err := unix.Statfs("/tmp", &tmp); err != nil {
			return err
		}
		if st.Type != unix.TMPFS_MAGIC || st.Fsid == tmp.Fsid {
			return fmt.Errorf("/tmp/%s is not its own tmpfs", arg)
		}
		return nil
	},
}

func statErr(p string) error { _, err := os.Stat(p); return err }

func wantErrno(err error, want unix.Errno) error {
	if !errors.Is(err, want) {
		return fmt.Errorf("got %v, want %v", err, want)
	}
	return nil
}

func wantFlags(path string, flags int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return err
	}
	if st.Flags&flags != flags {
		return fmt.Errorf("%s: mount flags %#x, want %#x set", path, st.Flags, flags)
	}
	return nil
}

func readFull(path string, buf []byte) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Read(buf)
	return err
}

// fillTo writes into dir until the tmpfs is full: it must stop with ENOSPC
// at its size, and files must belong to the sandbox user.
func fillTo(dir string, size int64) error {
	f, err := os.Create(filepath.Join(dir, "fill"))
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil || st.Uid != SandboxUID {
		return fmt.Errorf("file owner %d, %v", st.Uid, err)
	}
	chunk := make([]byte, 256<<10)
	var n int64
	for n <= 2*size {
		w, err := f.Write(chunk)
		n += int64(w)
		if err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				return err
			}
			if n > size || n < size/2 {
				return fmt.Errorf("ENOSPC after %d bytes, size %d", n, size)
			}
			return nil
		}
	}
	return fmt.Errorf("wrote %d bytes into a %d-byte tmpfs", n, size)
}

func requireSandbox(t *testing.T) {
	testenv.Require(t, "root", "userns", "mount-api")
}

// visibleDir makes a temp dir the unprivileged namespace ids can traverse.
func visibleDir(t *testing.T) string {
	d := t.TempDir()
	for p := d; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func TestApplyIsolation(t *testing.T) {
	requireSandbox(t)
	marker, err := os.CreateTemp("", "mount-marker-")
	if err != nil {
		t.Fatal(err)
	}
	marker.Close()
	defer os.Remove(marker.Name())
	p, err := NewPlan(withTestBinary(t, Options{TmpSize: testTmpSize, WorkspaceSize: testWorkspaceSize}))
	if err != nil {
		t.Fatal(err)
	}
	rep := runChild(t, request{
		Plan:       p,
		Arg:        marker.Name(),
		RootChecks: []string{"root-ro", "etc-ro", "proc-sys-write", "no-oldroot", "fds"},
		Checks: []string{"uid", "root-ro", "usr-ro", "tmp-limit", "workspace-limit", "proc-masked", "proc-sys-ro",
			"proc-pidns", "no-sys", "no-oldroot", "dev", "passwd", "marker-invisible", "cwd"},
		Shell: "echo hi > /tmp/sh.txt && cat /tmp/sh.txt && id -u && if touch /usr/x 2>/dev/null; then echo usr-writable; fi",
	})
	if rep.Err != "" {
		t.Fatal(rep.Err)
	}
	assertResults(t, rep, 19)
	if rep.Shell != "hi\n1000\n" {
		t.Errorf("sh as uid 1000 printed %q", rep.Shell)
	}
	t.Logf("phase 1 %v, phase 2 %v", rep.Phase1, rep.Phase2)
}

func assertResults(t *testing.T, rep *reply, n int) {
	t.Helper()
	if len(rep.Results) != n {
		t.Errorf("%d results, want %d: %v", len(rep.Results), n, rep.Results)
	}
	keys := make([]string, 0, len(rep.Results))
	for k := range rep.Results {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if rep.Results[k] != "ok" {
			t.Errorf("check %s: %s", k, rep.Results[k])
		}
	}
}

func TestApplyWorkdir(t *testing.T) {
	requireSandbox(t)
	wd := visibleDir(t)
	if err := os.Mkdir(filepath.Join(wd, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(wd, 101000, 101000); err != nil {
		t.Fatal(err)
	}
	if err := PrepareHostDir(wd, 101000, 101000); err != nil {
		t.Fatal(err)
	}
	// As a warm pool would: phase 1 from the configuration alone, phase 2
	// from the run's plan, which shares its base.
	warm, err := NewPlan(Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(withTestBinary(t, Options{Workdir: wd}))
	if err != nil {
		t.Fatal(err)
	}
	rep := runChild(t, request{Plan: warm, FinishPlan: p, Checks: []string{"workdir-write", "cwd"}})
	if rep.Err != "" {
		t.Fatal(rep.Err)
	}
	assertResults(t, rep, 2)
	fi, err := os.Lstat(filepath.Join(wd, "created.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 101000 || st.Gid != 101000 {
		t.Errorf("file written inside is owned by %d:%d on the host, want 101000:101000", st.Uid, st.Gid)
	}
	if _, err := os.Stat(filepath.Join(wd, ".git", "config")); err == nil {
		t.Errorf(".git was writable")
	}
}

// A symlink inside a --rw source pointing at a host path must not carry a
// later nested mount out of the new root.
func TestApplySymlinkCannotEscape(t *testing.T) {
	requireSandbox(t)
	rw := visibleDir(t)
	if err := os.Symlink("/tmp", filepath.Join(rw, "link")); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("mount-escape-%d", time.Now().UnixNano())
	p, err := NewPlan(withTestBinary(t, Options{
		ReadWrite: []Bind{{Source: rw, Target: "/data"}},
		Tmpfs:     []Tmpfs{{Target: "/data/link/" + name, Size: 1 << 20}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	rep := runChild(t, request{Plan: p, Arg: name, Checks: []string{"escape"}})
	if rep.Err != "" {
		t.Fatal(rep.Err)
	}
	assertResults(t, rep, 1)
	if _, err := os.Lstat(filepath.Join("/tmp", name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("host /tmp/%s exists: the mount escaped (%v)", name, err)
	}
	if ents, _ := os.ReadDir(rw); len(ents) != 1 {
		t.Errorf("host source changed: %d entries", len(ents))
	}
}

func TestApplyStepErrors(t *testing.T) {
	requireSandbox(t)
	src := visibleDir(t)
	p, err := NewPlan(Options{ReadOnly: []Bind{{Source: src, Target: "/usr/lib/not-there-" + filepath.Base(src)}}})
	if err != nil {
		t.Fatal(err)
	}
	rep := runChild(t, request{Plan: p})
	want := fmt.Sprintf(`setup step "bind /usr/lib/not-there-%s": create`, filepath.Base(src))
	if !strings.HasPrefix(rep.Err, want) || !strings.Contains(rep.Err, "read-only file system") {
		t.Errorf("err = %q, want %s...: read-only file system", rep.Err, want)
	}
	// A run plan for another base is refused before any mount.
	q, _ := NewPlan(Options{TmpSize: 1 << 20})
	rep = runChild(t, request{Plan: q, FinishPlan: p})
	if !strings.HasPrefix(rep.Err, `setup step "plan"`) {
		t.Errorf("mismatched base: err = %q", rep.Err)
	}
}

// TestApplyTiming measures both phases over a few runs with a realistic
// plan: the base, a workdir, two user binds, a tmpfs and a special bind.
func TestApplyTiming(t *testing.T) {
	requireSandbox(t)
	wd, ro, rw := visibleDir(t), visibleDir(t), visibleDir(t)
	if err := os.Mkdir(filepath.Join(wd, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(withTestBinary(t, Options{Workdir: wd, Outdir: rw,
		ReadOnly: []Bind{{ro, "/data"}}, Tmpfs: []Tmpfs{{Target: "/cache"}}}))
	if err != nil {
		t.Fatal(err)
	}
	const runs = 9
	var p1, p2 []time.Duration
	for range runs {
		rep := runChild(t, request{Plan: p})
		if rep.Err != "" {
			t.Fatal(rep.Err)
		}
		p1, p2 = append(p1, rep.Phase1), append(p2, rep.Phase2)
	}
	slices.Sort(p1)
	slices.Sort(p2)
	t.Logf("%d runs, %d base + %d run mounts: phase 1 p50 %v max %v; phase 2 p50 %v max %v",
		runs, len(p.Base), len(p.Run), p1[runs/2], p1[runs-1], p2[runs/2], p2[runs-1])
	if p1[runs/2] > 50*time.Millisecond || p2[runs/2] > 50*time.Millisecond {
		t.Errorf("set-up too slow: phase 1 p50 %v, phase 2 p50 %v", p1[runs/2], p2[runs/2])
	}
}
