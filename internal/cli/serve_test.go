package cli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeRunsSandboxServe: `sandbox serve ARGS` runs the sandbox-serve
// next to the executable with ARGS and passes its output and exit status on;
// without one anywhere, it says how to install it and exits 125.
func TestServeRunsSandboxServe(t *testing.T) {
	dir := t.TempDir()
	old := lookServeNextTo
	t.Cleanup(func() { lookServeNextTo = old })
	lookServeNextTo = func() (string, error) { return dir, nil }
	t.Setenv("PATH", t.TempDir())

	var out, errb bytes.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}
	if code := Main([]string{"serve", "--listen", "x"}, env.Stdin, env.Stdout, env.Stderr); code != exitUsage {
		t.Fatalf("without sandbox-serve: exit %d, want %d", code, exitUsage)
	}
	if !strings.Contains(errb.String(), "go install github.com/kb-labs/sandbox/cmd/sandbox-serve") {
		t.Errorf("without sandbox-serve, stderr does not say how to install it: %q", errb.String())
	}

	fake := filepath.Join(dir, serveBinary)
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho \"served $*\"\nexit 7\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := Main([]string{"serve", "--listen", "x"}, env.Stdin, env.Stdout, env.Stderr); code != 7 {
		t.Fatalf("exit %d, want sandbox-serve's 7 (stderr %q)", code, errb.String())
	}
	if got := out.String(); got != "served --listen x\n" {
		t.Errorf("sandbox-serve printed %q, want its arguments passed on", got)
	}
}

// TestCLIDoesNotLinkServer: cmd/sandbox links neither the server nor the
// libraries only it uses; their package initialisers would cost every CLI
// start (RATIONALE.md, "The CLI does not link the server").
func TestCLIDoesNotLinkServer(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	out, err := exec.Command(gobin, "list", "-deps", "../../cmd/sandbox").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/kb-labs/sandbox/server", "github.com/prometheus/", "go.opentelemetry.io/", "google.golang.org/grpc", "net/http"} {
			if pkg == banned || strings.HasPrefix(pkg, banned+"/") || (strings.HasSuffix(banned, "/") && strings.HasPrefix(pkg, banned)) {
				t.Errorf("cmd/sandbox links %s", pkg)
			}
		}
	}
}
