//go:build linux

package hostile

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kb-labs/sandbox"
	"github.com/kb-labs/sandbox/internal/testenv"
)

// TestWorkspaceFiles: files handed to a run (Handler.Files) are written by
// the engine inside the sandbox, into its own workspace tmpfs: with the
// content, mode and owner asked, never beyond /workspace, never with set-id
// bits, bounded in count and size, and never on the host's disk. Pooled
// (warm) sandboxes get them with the Exec step.
func TestWorkspaceFiles(t *testing.T) {
	for _, pooled := range []bool{false, true} {
		t.Run(fmt.Sprintf("pooled=%v", pooled), func(t *testing.T) { runCasesOn(t, filesCases(), pooled) })
	}
	t.Run("refused", testFilesRefused)
}

// runFiles runs h (with its Files) under c.cfg, from a warm sandbox when
// c.pooled, and returns the outcome; misuse errors are returned as is.
func (c *cctx) runFiles(h sandbox.Handler, input any) (*outcome, error) {
	c.t.Helper()
	runMu.Lock()
	defer runMu.Unlock()
	cfg := c.cfg
	if c.pooled {
		cfg.Pool.Size = 1
	}
	r, err := sandbox.New(cfg)
	if err != nil {
		c.t.Fatalf("New: %v", err)
	}
	defer r.Close()
	if c.pooled {
		deadline := time.Now().Add(10 * time.Second)
		for r.PoolDepth() < 1 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if r.PoolDepth() < 1 {
			c.t.Fatal("the warm pool never filled")
		}
	}
	ec := c.ec
	start := time.Now()
	res, err := r.Run(context.Background(), h, input, &ec)
	if err != nil {
		return nil, err
	}
	o := &outcome{res: res, kv: parseKV(res.Stdout), elapsed: time.Since(start)}
	c.t.Logf("%v: %s", h.Command, o)
	return o, nil
}

func filesCases() []hcase {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB: far past one set-up message
	sum := sha256.Sum256(big)
	return []hcase{
		{name: "files_content_mode_owner", fn: func(c *cctx) error {
			h := sandbox.Command("sh", "-c", `cd /workspace
for p in . bin bin/run.sh deep deep/a deep/a/b deep/a/b/c.txt data.bin secret; do echo "stat $p=$(stat -c '%a %u:%g %F' $p)"; done
echo "run=$(bin/run.sh)"; echo "c=$(cat deep/a/b/c.txt)"; echo "sum=$(sha256sum data.bin | cut -d' ' -f1)"
echo "fs=$(stat -f -c %T /workspace)"; echo "x" > new.txt && echo "writable=yes"`, c.mark)
			h.Files = []sandbox.WorkspaceFile{
				{Path: "bin/run.sh", Content: []byte("#!/bin/sh\necho ran\n"), Mode: 0o750},
				{Path: "deep/a/b/c.txt", Content: []byte("nested")},
				{Path: "data.bin", Content: big, Mode: 0o600},
				{Path: "secret", Content: nil, Mode: 0o400},
			}
			o, err := c.runFiles(h, nil)
			if err != nil {
				return err
			}
			want := map[string]string{
				"stat .":              "755 1000:1000 directory",
				"stat bin":            "755 1000:1000 directory",
				"stat bin/run.sh":     "750 1000:1000 regular file",
				"stat deep/a/b":       "755 1000:1000 directory",
				"stat deep/a/b/c.txt": "644 1000:1000 regular file",
				"stat data.bin":       "600 1000:1000 regular file",
				"stat secret":         "400 1000:1000 regular empty file",
				"run":                 "ran", "c": "nested", "sum": hex.EncodeToString(sum[:]),
				"fs": "tmpfs", "writable": "yes",
			}
			errs := []error{ok(o)}
			for k, v := range want {
				errs = append(errs, kvIn(o, k, v))
			}
			return all(errs...)
		}},
		{name: "files_plugin_root_python", fn: func(c *cctx) error {
			testenv.Require(c.t, "python")
			h := sandbox.File("python", "pkg/h.py", "")
			h.Files = []sandbox.WorkspaceFile{
				{Path: "pkg/h.py", Content: []byte("import os\nfrom pkg_helper import twice\n" +
					"def run(input, ctx):\n" +
					"    try:\n        open('/plugin/pkg/h.py', 'a').write('#')\n        w = 'ok'\n    except OSError as e:\n        w = e.strerror\n" +
					"    return {'v': twice(input['n']), 'pluginRoot': ctx['pluginRoot'], 'write': w}\n")},
				{Path: "pkg/pkg_helper.py", Content: []byte("def twice(n):\n    return 2 * n\n")},
			}
			o, err := c.runFiles(h, map[string]int{"n": 21})
			if err != nil {
				return err
			}
			d := string(o.res.Data)
			if !strings.Contains(d, `"v":42`) || !strings.Contains(d, `"pluginRoot":"/plugin"`) || strings.Contains(d, `"write":"ok"`) {
				return errors.Join(ok(o), fmt.Errorf("data %s: want the handler run from /plugin, read-only", d))
			}
			return ok(o)
		}},
		{name: "files_plugin_root_node", fn: func(c *cctx) error {
			testenv.Require(c.t, "node")
			h := sandbox.File("node", "index", "main")
			h.Files = []sandbox.WorkspaceFile{
				{Path: "dist/index.js", Content: []byte("const fs = require('fs');\n" +
					"exports.main = async (input, ctx) => { let w = 'ok'; try { fs.writeFileSync('/plugin/dist/x', 'x') } catch (e) { w = e.code }\n" +
					"  return {v: input.n + 1, w, ws: fs.readdirSync('/workspace/dist')}; };\n")},
			}
			o, err := c.runFiles(h, map[string]int{"n": 1})
			if err != nil {
				return err
			}
			if d := string(o.res.Data); !strings.Contains(d, `"v":2`) || !strings.Contains(d, `"w":"EROFS"`) {
				return errors.Join(ok(o), fmt.Errorf("data %s: want the handler run from /plugin, read-only", d))
			}
			return ok(o)
		}},
	}
}

// testFilesRefused: what must never reach a sandbox is refused by Run, as
// misuse, before anything starts.
func testFilesRefused(t *testing.T) {
	testenv.Require(t, "root", "userns")
	hostTmp := filepath.Join(os.TempDir(), "hostile-files-escape-"+randHex(4))
	cmd := func(files ...sandbox.WorkspaceFile) sandbox.Handler {
		h := sandbox.Command("true")
		h.Files = files
		return h
	}
	many := make([]sandbox.WorkspaceFile, sandbox.MaxWorkspaceFiles+1)
	for i := range many {
		many[i] = sandbox.WorkspaceFile{Path: fmt.Sprintf("f%d", i)}
	}
	tests := []struct {
		name string
		h    sandbox.Handler
		ec   sandbox.ExecutionContext
		want string
	}{
		{"dot-dot", cmd(sandbox.WorkspaceFile{Path: "../../../../" + strings.TrimPrefix(hostTmp, "/")}), sandbox.ExecutionContext{}, `".."`},
		{"inner dot-dot", cmd(sandbox.WorkspaceFile{Path: "a/../../x"}), sandbox.ExecutionContext{}, `".."`},
		{"absolute", cmd(sandbox.WorkspaceFile{Path: hostTmp}), sandbox.ExecutionContext{}, "absolute"},
		{"empty component", cmd(sandbox.WorkspaceFile{Path: "a//b"}), sandbox.ExecutionContext{}, "clean"},
		{"NUL", cmd(sandbox.WorkspaceFile{Path: "a\x00b"}), sandbox.ExecutionContext{}, "NUL"},
		{"setuid", cmd(sandbox.WorkspaceFile{Path: "suid", Mode: 0o755 | os.ModeSetuid}), sandbox.ExecutionContext{}, "permission bits"},
		{"setgid", cmd(sandbox.WorkspaceFile{Path: "sgid", Mode: 0o755 | os.ModeSetgid}), sandbox.ExecutionContext{}, "permission bits"},
		{"file and directory", cmd(sandbox.WorkspaceFile{Path: "a"}, sandbox.WorkspaceFile{Path: "a/b"}), sandbox.ExecutionContext{}, "also the directory"},
		{"twice", cmd(sandbox.WorkspaceFile{Path: "a"}, sandbox.WorkspaceFile{Path: "a"}), sandbox.ExecutionContext{}, "twice"},
		{"too many", cmd(many...), sandbox.ExecutionContext{}, "at most"},
		{"past the workspace", cmd(sandbox.WorkspaceFile{Path: "big", Content: make([]byte, 5<<20)}), sandbox.ExecutionContext{}, "workspaceSize"},
		{"host workdir", cmd(sandbox.WorkspaceFile{Path: "a"}), sandbox.ExecutionContext{Workdir: os.TempDir()}, "host workdir"},
	}
	r, err := sandbox.New(sandbox.Config{Permissions: sandbox.Permissions{Filesystem: sandbox.Filesystem{WorkspaceSize: 4 * sandbox.MiB}}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := r.Run(context.Background(), tc.h, nil, &tc.ec)
			if !errors.Is(err, sandbox.ErrInvalidHandler) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run: %v (result %v), want ErrInvalidHandler naming %q", err, res != nil, tc.want)
			}
			if _, err := os.Lstat(hostTmp); err == nil {
				os.RemoveAll(hostTmp)
				t.Errorf("HOST EFFECT: %s was written", hostTmp)
			}
		})
	}
	in, err := sandbox.New(sandbox.Config{Mode: sandbox.InProcess})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	h := sandbox.GoFunc(func(context.Context, any, *sandbox.HandlerContext) (any, error) { return nil, nil })
	h.Files = []sandbox.WorkspaceFile{{Path: "a"}}
	if _, err := in.Run(context.Background(), h, nil, nil); !errors.Is(err, sandbox.ErrUnsupportedHandler) {
		t.Errorf("in-process Run with Files: %v, want ErrUnsupportedHandler", err)
	}
}
