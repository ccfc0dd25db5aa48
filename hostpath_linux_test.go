package sandbox_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kb-labs/sandbox"
	"github.com/kb-labs/sandbox/internal/testenv"
)

// privateDir is a directory as `mktemp -d` makes it (0700) under a 0700
// parent, owned by uid:gid: no id of the sandbox can reach it by itself.
func privateDir(t *testing.T, uid, gid int) string {
	t.Helper()
	parent := t.TempDir()
	d := filepath.Join(parent, "dir")
	for _, err := range []error{os.Chmod(parent, 0o700), os.Mkdir(d, 0o700), os.Chown(d, uid, gid)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// ownedFile writes a 0600 file owned by uid:gid.
func ownedFile(t *testing.T, path, content string, uid, gid int) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

func wantOwner(t *testing.T, path string, uid, gid int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("%s is owned by %d:%d on the host, want the directory's owner %d:%d", path, st.Uid, st.Gid, uid, gid)
	}
}

var owners = []struct {
	name     string
	uid, gid int
}{{"root", 0, 0}, {"uid4242", 4242, 4343}}

// TestHostPathsIDMapped: private directories work for every host-path
// option, read-only and read-write, and what the program creates belongs to
// each directory's owner on the host.
func TestHostPathsIDMapped(t *testing.T) {
	for _, o := range owners {
		t.Run(o.name, func(t *testing.T) {
			wd, out, ro, rw := privateDir(t, o.uid, o.gid), privateDir(t, o.uid, o.gid), privateDir(t, o.uid, o.gid), privateDir(t, o.uid, o.gid)
			ownedFile(t, filepath.Join(wd, "src.txt"), "source\n", o.uid, o.gid)
			ownedFile(t, filepath.Join(ro, "in.txt"), "input\n", o.uid, o.gid)
			r := newEngineRunner(t, sandbox.Config{Permissions: sandbox.Permissions{Filesystem: sandbox.Filesystem{
				Workdir: wd, Outdir: out,
				ReadOnly:  []sandbox.Mount{{Source: ro, Target: "/data"}},
				ReadWrite: []sandbox.Mount{{Source: rw, Target: "/rw"}}}}})
			res := sh(t, r, `set -e; cat /workspace/src.txt /data/in.txt; echo a > /workspace/a; mkdir /workspace/d; echo b > /out/b; echo c > /rw/c
if echo x > /data/x 2>/dev/null; then echo ro-writable; fi`)
			wantStatus(t, res, sandbox.StatusOK)
			if got := string(res.Stdout); got != "source\ninput\n" {
				t.Errorf("stdout %q", got)
			}
			for _, p := range []string{filepath.Join(wd, "a"), filepath.Join(wd, "d"), filepath.Join(out, "b"), filepath.Join(rw, "c")} {
				wantOwner(t, p, o.uid, o.gid)
			}
			if _, err := os.Lstat(filepath.Join(ro, "x")); err == nil {
				t.Error("a read-only directory was written")
			}
			// The run's own directories, given per run (library and CLI).
			wd2 := privateDir(t, o.uid, o.gid)
			res, err := r.Run(context.Background(), sandbox.Command("sh", "-c", "echo e > /workspace/e"), nil, &sandbox.ExecutionContext{Workdir: wd2})
			if err != nil {
				t.Fatal(err)
			}
			wantStatus(t, res, sandbox.StatusOK)
			wantOwner(t, filepath.Join(wd2, "e"), o.uid, o.gid)
		})
	}
}

// TestPluginRootIDMapped: a plugin root under a private parent is read.
func TestPluginRootIDMapped(t *testing.T) {
	testenv.Require(t, "root", "userns")
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not installed")
	}
	root := privateDir(t, 0, 0)
	if out, err := exec.Command("cp", "-r", testPlugin(t, "node")+"/.", root).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	exec.Command("chmod", "-R", "go-rwx", root).Run()
	r := handlerRunner(t, sandbox.Config{})
	res := runHandler(t, r, sandbox.File("node", "handler", ""), map[string]int{"a": 2, "b": 3}, &sandbox.ExecutionContext{PluginRoot: root})
	wantStatus(t, res, sandbox.StatusOK)
	if !strings.Contains(string(res.Data), `"sum":5`) {
		t.Errorf("data %s", res.Data)
	}
}

// TestHostPathsIDMapNone: with idmap: none the old rule holds: a tree must
// be reachable and readable (writable) by others, and the message says so.
func TestHostPathsIDMapNone(t *testing.T) {
	testenv.Require(t, "root", "userns")
	none := func(fs sandbox.Filesystem) sandbox.Config {
		fs.IDMap = sandbox.IDMapNone
		return sandbox.Config{Permissions: sandbox.Permissions{Filesystem: fs}}
	}
	private := privateDir(t, 0, 0)
	data := filepath.Join(private, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	var ce *sandbox.ConfigError
	_, err := sandbox.New(none(sandbox.Filesystem{ReadOnly: []sandbox.Mount{{Source: data, Target: "/data"}}}))
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "not searchable") || !strings.Contains(err.Error(), "chmod o+x") {
		t.Errorf("read-only source under a private directory: %v", err)
	}
	_, err = sandbox.New(none(sandbox.Filesystem{Workdir: private}))
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "chmod o+rx") {
		t.Errorf("private workdir: %v", err)
	}
	// Reachable (directly under /tmp), but not writable by others.
	private, err = os.MkdirTemp("", "sbx-rootowned")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(private)
	os.Chmod(private, 0o755)
	_, err = sandbox.New(none(sandbox.Filesystem{Workdir: private}))
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "chmod o+rwx "+private) {
		t.Errorf("root-owned workdir: %v", err)
	}
	// Where it is allowed, what a run creates is its own host id's.
	os.Chmod(private, 0o777)
	r := newEngineRunner(t, none(sandbox.Filesystem{Workdir: private}))
	wantStatus(t, sh(t, r, "echo data > /workspace/out.txt"), sandbox.StatusOK)
	st, err := os.Stat(filepath.Join(private, "out.txt"))
	if err != nil {
		t.Fatalf("file written in the workdir is missing on the host: %v", err)
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; !sandboxOwned(uid) {
		t.Errorf("file owned by host uid %d, want an unprivileged id of %s", uid, sandbox.DefaultHostIDRange)
	}
}

// TestUnreadableNamedBeforeRun: a file the sandbox user still cannot read
// (another owner's 0600 file) is named before the run, not met as EACCES.
func TestUnreadableNamedBeforeRun(t *testing.T) {
	testenv.Require(t, "root", "userns")
	wd := privateDir(t, 4242, 4242)
	secret := filepath.Join(wd, "secret.txt")
	ownedFile(t, secret, "x", 0, 0)
	_, err := sandbox.New(sandbox.Config{Permissions: sandbox.Permissions{Filesystem: sandbox.Filesystem{Workdir: wd}}})
	var ce *sandbox.ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), secret+" (owner 0:0, mode -rw-------)") || !strings.Contains(err.Error(), "chown 4242:4242") {
		t.Errorf("New: %v", err)
	}
	r := newEngineRunner(t, sandbox.Config{})
	res, err := r.Run(context.Background(), sandbox.Command("touch", "/workspace/ran"), nil, &sandbox.ExecutionContext{Workdir: wd})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != sandbox.StatusSetupError || !strings.Contains(res.Error.Message, secret) {
		t.Errorf("per-run workdir: %s %+v", res.Status, res.Error)
	}
	if _, err := os.Lstat(filepath.Join(wd, "ran")); err == nil {
		t.Error("the program ran")
	}
}

// TestWASMHostPaths: a WASM run follows the rules of subprocess runs: a
// private directory works, what the module creates belongs to the
// directory's owner, an unreadable file is named, idmap: none refuses.
func TestWASMHostPaths(t *testing.T) {
	testenv.Require(t, "root")
	wd := privateDir(t, 4242, 4343)
	mod := wasmModule(t, "files")
	cfg := func(fs sandbox.Filesystem) *sandbox.Runner {
		r, err := sandbox.New(sandbox.Config{Mode: sandbox.InProcess, Permissions: sandbox.Permissions{Filesystem: fs}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	ctx := context.Background()
	res, _ := cfg(sandbox.Filesystem{Workdir: wd}).Run(ctx, sandbox.WASM(mod, "files.wasm",
		"write", "/workspace/new.txt", "x", "mkdir", "/workspace/d", "symlink", "new.txt", "/workspace/l"), nil, nil)
	wantStatus(t, res, sandbox.StatusOK)
	if out := string(res.Stdout); strings.Contains(out, "err") {
		t.Errorf("stdout %q", out)
	}
	for _, name := range []string{"new.txt", "d", "l"} {
		wantOwner(t, filepath.Join(wd, name), 4242, 4343)
	}
	ownedFile(t, filepath.Join(wd, "secret.txt"), "x", 0, 0)
	res, _ = cfg(sandbox.Filesystem{Workdir: wd}).Run(ctx, sandbox.WASM(mod, "files.wasm", "read", "/workspace/secret.txt"), nil, nil)
	if res.Status != sandbox.StatusSetupError || !strings.Contains(res.Error.Message, "secret.txt") {
		t.Errorf("unreadable file: %s %+v %q", res.Status, res.Error, res.Stdout)
	}
	os.Remove(filepath.Join(wd, "secret.txt"))
	res, _ = cfg(sandbox.Filesystem{Workdir: wd, IDMap: sandbox.IDMapNone}).Run(ctx, sandbox.WASM(mod, "files.wasm", "write", "/workspace/n2", "x"), nil, nil)
	if res.Status != sandbox.StatusSetupError || !strings.Contains(res.Error.Message, "chmod o+") {
		t.Errorf("idmap none: %s %+v", res.Status, res.Error)
	}
	if _, err := os.Lstat(filepath.Join(wd, "n2")); err == nil {
		t.Error("idmap none: the module wrote the private directory")
	}
}
