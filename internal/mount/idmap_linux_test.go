package mount

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The harness maps the sandbox user to host 101000 (runChild).
const harnessUser = 101000

// privateDir is a 0700 directory under a 0700 parent, owned by uid:gid:
// nothing of the sandbox's own ids can reach it.
func privateDir(t *testing.T, uid, gid int) string {
	t.Helper()
	parent := t.TempDir()
	d := filepath.Join(parent, "proj")
	if err := os.Chmod(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, uid, gid); err != nil {
		t.Fatal(err)
	}
	return d
}

func owned(t *testing.T, path string) (uint32, uint32) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

// runTrees applies p with the supervisor's side done here: the trees are
// opened by this (host root) process and handed to the child.
func runTrees(t *testing.T, p *Plan, shell string) *reply {
	t.Helper()
	trees, err := p.OpenTrees(harnessUser, harnessUser)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, f := range trees {
			f.Close()
		}
	}()
	return runChild(t, request{Plan: p, Shell: shell, Trees: len(trees), trees: trees})
}

func TestIDMapTrees(t *testing.T) {
	requireSandbox(t)
	for _, tc := range []struct {
		name     string
		uid, gid int
	}{{"root-owned", 0, 0}, {"owned-by-4242", 4242, 4343}} {
		t.Run(tc.name, func(t *testing.T) {
			wd, ro := privateDir(t, tc.uid, tc.gid), privateDir(t, tc.uid, tc.gid)
			secret := filepath.Join(wd, "own.txt")
			os.WriteFile(secret, []byte("owner-only\n"), 0o600)
			os.Chown(secret, tc.uid, tc.gid)
			os.Mkdir(filepath.Join(wd, ".git"), 0o700)
			os.Chown(filepath.Join(wd, ".git"), tc.uid, tc.gid)
			os.WriteFile(filepath.Join(ro, "data.txt"), []byte("ro-data\n"), 0o600)
			os.Chown(filepath.Join(ro, "data.txt"), tc.uid, tc.gid)
			p, err := NewPlan(Options{IDMap: true, Workdir: wd,
				ReadOnly: []Bind{{Source: ro, Target: "/data"}},
				// A mount point the init must create inside the tree.
				Tmpfs: []Tmpfs{{Target: "/workspace/cache", Size: 1 << 20}}})
			if err != nil {
				t.Fatal(err)
			}
			rep := runTrees(t, p, `cat /workspace/own.txt /data/data.txt && echo new > /workspace/created && mkdir /workspace/made &&
stat -c 'inside=%u:%g' /workspace/created /workspace/own.txt
for f in /workspace/.git/x /data/x; do if echo x > $f 2>/dev/null; then echo writable=$f; fi; done`)
			if rep.Err != "" {
				t.Fatal(rep.Err)
			}
			for _, want := range []string{"owner-only", "ro-data", "inside=1000:1000\ninside=1000:1000"} {
				if !strings.Contains(rep.Shell, want) {
					t.Errorf("inside: %q lacks %q", rep.Shell, want)
				}
			}
			if strings.Contains(rep.Shell, "writable=") || strings.Contains(rep.Shell, "error") {
				t.Errorf("inside: %q", rep.Shell)
			}
			for _, name := range []string{"created", "made", "cache"} {
				if u, g := owned(t, filepath.Join(wd, name)); int(u) != tc.uid || int(g) != tc.gid {
					t.Errorf("%s is %d:%d on the host, want the directory's owner %d:%d", name, u, g, tc.uid, tc.gid)
				}
			}
			for _, path := range []string{filepath.Join(wd, ".git", "x"), filepath.Join(ro, "x")} {
				if _, err := os.Lstat(path); err == nil {
					t.Errorf("%s was written through a read-only tree", path)
				}
			}
		})
	}
}

// A tree of 4242 holding another owner's file: seen as nobody inside, and
// readable only through its "other" bits.
func TestIDMapForeignFiles(t *testing.T) {
	requireSandbox(t)
	rw := privateDir(t, 4242, 4242)
	os.WriteFile(filepath.Join(rw, "roots.txt"), []byte("world-readable\n"), 0o644)
	p, err := NewPlan(Options{IDMap: true, ReadWrite: []Bind{{Source: rw, Target: "/data"}}})
	if err != nil {
		t.Fatal(err)
	}
	rep := runTrees(t, p, `cat /data/roots.txt; stat -c 'foreign=%u:%g' /data/roots.txt; if echo x >> /data/roots.txt 2>/dev/null; then echo foreign-writable; fi`)
	if rep.Err != "" {
		t.Fatal(rep.Err)
	}
	if !strings.Contains(rep.Shell, "world-readable") || !strings.Contains(rep.Shell, "foreign=65534:65534") || strings.Contains(rep.Shell, "foreign-writable") {
		t.Errorf("inside: %q", rep.Shell)
	}
}

func TestIDMapUnreadableNamed(t *testing.T) {
	testenvRoot(t)
	tree := privateDir(t, 4242, 4242)
	os.WriteFile(filepath.Join(tree, "a.txt"), nil, 0o644)
	os.Chown(filepath.Join(tree, "a.txt"), 4242, 4242)
	secret := filepath.Join(tree, "z-secret.txt")
	os.WriteFile(secret, []byte("x"), 0o600) // root's, in 4242's tree
	closed := filepath.Join(tree, "y-closed")
	os.Mkdir(closed, 0o700)
	os.WriteFile(filepath.Join(closed, "inner.txt"), nil, 0o600)

	_, err := NewPlan(Options{IDMap: true, ReadOnly: []Bind{{Source: tree, Target: "/data"}}})
	var ue *UnreadableError
	if !errors.Is(err, ErrUnreadable) || !errors.As(err, &ue) {
		t.Fatalf("err = %v, want ErrUnreadable", err)
	}
	if len(ue.Entries) != 2 || !strings.HasPrefix(ue.Entries[0], closed+" ") || !strings.HasPrefix(ue.Entries[1], secret+" ") || ue.Owner != "4242:4242" {
		t.Errorf("named %v as %s, want %s and %s (not what is inside the closed directory)", ue.Entries, ue.Owner, closed, secret)
	}
	if !strings.Contains(err.Error(), "ReadOnly[0].Source") || !strings.Contains(err.Error(), "mode -rw-------") {
		t.Errorf("err = %v", err)
	}
	// A writable tree's root must be writable by its owner.
	os.Chmod(tree, 0o500)
	_, err = NewPlan(Options{IDMap: true, PermScanLimit: 1, Workdir: tree})
	if !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), "not writable") {
		t.Errorf("read-only root as workdir: err = %v", err)
	}
	os.Chmod(tree, 0o700)
	// Past the cap nothing is checked: the kernel decides there.
	if _, err := NewPlan(Options{IDMap: true, PermScanLimit: 2, ReadOnly: []Bind{{Source: tree, Target: "/data"}}}); err != nil {
		t.Errorf("entries past PermScanLimit were checked: %v", err)
	}
	// Without IDMap the sandbox's own ids decide, as before: not this check.
	if _, err := NewPlan(Options{ReadOnly: []Bind{{Source: tree, Target: "/data"}}}); err != nil {
		t.Errorf("without IDMap: %v", err)
	}
}

// The init refuses a tree that lacks the flags its mount asks for, and a
// tree count that does not match the plan.
func TestIDMapTreeChecked(t *testing.T) {
	requireSandbox(t)
	src := privateDir(t, 0, 0)
	p, err := NewPlan(Options{IDMap: true, ReadOnly: []Bind{{Source: src, Target: "/data"}}})
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	bare := os.NewFile(uintptr(fd), "bare tree")
	defer bare.Close()
	rep := runChild(t, request{Plan: p, Trees: 1, trees: []*os.File{bare}})
	if !strings.HasPrefix(rep.Err, `setup step "bind /data"`) || !strings.Contains(rep.Err, "nosuid, nodev, read-only") {
		t.Errorf("tree without flags: err = %q", rep.Err)
	}
	rep = runChild(t, request{Plan: p})
	if !strings.Contains(rep.Err, "0 trees for more Tree mounts") {
		t.Errorf("no tree: err = %q", rep.Err)
	}
}

func testenvRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown test files")
	}
}
