package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kb-labs/sandbox/internal/mount"
	"github.com/kb-labs/sandbox/internal/protocol/bootstrap"
)

// Where file handlers find their pieces inside the sandbox
// (docs/handler-protocol.md, "Bootstraps").
const (
	bootstrapDir = "/sandbox/bootstrap"
	pluginTarget = "/plugin"
)

// interpreters lists, per runtime, where the sandbox may find the
// interpreter. Only paths under the system directories the sandbox binds
// from the host qualify: a version manager's shim (~/.pyenv/shims/python3,
// ~/.nvm/...) is a script pointing at the caller's home, which the sandbox
// does not see, so PATH is deliberately not consulted.
var interpreters = map[string][]string{
	"node":   {"/usr/bin/node", "/usr/local/bin/node", "/usr/bin/nodejs"},
	"python": {"/usr/bin/python3", "/usr/local/bin/python3"},
}

// visibleRoots are the host directories bound into every sandbox read-only;
// an interpreter must resolve inside one of them to run there.
var visibleRoots = []string{"/usr", "/bin", "/sbin", "/lib", "/lib64"}

// interpreter returns the interpreter path for runtime as the sandbox sees
// it: the first candidate that exists on the host and whose symlinks stay
// inside the bound system directories. When none does, the first candidate
// is returned and the exec fails inside as COMMAND_NOT_FOUND, naming it.
func interpreter(runtime string) string {
	cands := interpreters[runtime]
	for _, c := range cands {
		real, err := filepath.EvalSymlinks(c)
		if err != nil {
			continue
		}
		if fi, err := os.Stat(real); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			continue
		}
		for _, root := range visibleRoots {
			if pathWithin(real, root) {
				return c
			}
		}
	}
	if len(cands) == 0 {
		return runtime
	}
	return cands[0]
}

func pathWithin(p, root string) bool { return p == root || strings.HasPrefix(p, root+"/") }

// nodeHeapMiB derives V8's old-space limit from the run's memory limit, so
// a handler that allocates without end meets V8's own limit (a clean
// "JavaScript heap out of memory", reported as memory_limit) before the
// cgroup's OOM killer: the rest of the limit is left for the young
// generation, code, buffers outside the heap and node's own ~40 MiB. 0
// means no flag (unlimited memory).
func nodeHeapMiB(mem Size) int64 {
	if mem == Unlimited || mem <= 0 {
		return 0
	}
	m := int64(mem / MiB)
	h := min(m*3/4, m-64)
	return max(h, 16)
}

// handlerArgv is the interpreter command line of a file handler.
func handlerArgv(runtime string, mem Size) []string {
	switch runtime {
	case "node":
		argv := []string{interpreter("node")}
		if h := nodeHeapMiB(mem); h > 0 {
			argv = append(argv, fmt.Sprintf("--max-old-space-size=%d", h))
		}
		return append(argv, bootstrapDir+"/"+bootstrap.NodeFile)
	case "python":
		return []string{interpreter("python"), bootstrapDir + "/" + bootstrap.PythonFile}
	}
	return nil
}

// runtimeMounts returns the binds a file handler needs: its plugin root,
// read-only at /plugin. Without a plugin root nothing is mounted there and
// the bootstrap answers HANDLER_NOT_FOUND, as it does for a plugin root that
// does not exist (noted in the run's log).
func runtimeMounts(rs *runState) ([]mount.Bind, error) {
	root, ok, err := pluginRoot(rs.ec)
	if err != nil || !ok {
		if root != "" && err == nil {
			rs.log(LogLine{Level: "warn", Source: "sandbox", Message: "plugin root " + root + " does not exist: nothing is mounted at " + pluginTarget})
		}
		return nil, err
	}
	return []mount.Bind{{Source: root, Target: pluginTarget}}, nil
}

// pluginRoot returns the run's plugin root as an absolute host path and
// whether it is mounted (it exists); a plugin root that exists but is not a
// directory is an error.
func pluginRoot(ec ExecutionContext) (string, bool, error) {
	root := ec.PluginRoot
	if root == "" {
		return "", false, nil
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return root, false, fmt.Errorf("plugin root %q: %w", root, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case os.IsNotExist(err):
		return abs, false, nil
	case err != nil:
		return abs, false, fmt.Errorf("plugin root: %w", err)
	case !fi.IsDir():
		return abs, false, fmt.Errorf("plugin root %s is not a directory", abs)
	}
	return abs, true, nil
}

// bootstrapFiles are the embedded bootstraps as files of the sandbox's root
// (phase 2 of the mount plan): no host directory is needed for them, nothing
// is left behind, and the sealed read-only root keeps the handler from
// changing them.
func bootstrapFiles() []mount.Mount {
	return []mount.Mount{
		{Kind: mount.KindFile, Target: bootstrapDir + "/" + bootstrap.NodeFile, Data: bootstrap.Node(), Mode: 0o444},
		{Kind: mount.KindFile, Target: bootstrapDir + "/" + bootstrap.PythonFile, Data: bootstrap.Python(), Mode: 0o444},
	}
}
