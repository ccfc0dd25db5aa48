package sandbox_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kb-labs/sandbox/internal/testenv"
)

// A program that uses the library without calling InitMain gets a set-up
// error that names the fix.
func TestMissingInitMainIsExplained(t *testing.T) {
	testenv.Require(t, "userns")
	bin := filepath.Join(t.TempDir(), "noinit")
	build := exec.Command("go", "build", "-o", bin, "./testdata/noinit")
	build.Env = append(build.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, _ := exec.Command(bin).CombinedOutput()
	if !strings.Contains(string(out), "setup_error") || !strings.Contains(string(out), "sandbox.InitMain()") {
		t.Fatalf("output %q does not name the missing sandbox.InitMain()", out)
	}
}
