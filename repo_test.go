package sandbox_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/kb-labs/sandbox/internal/testenv"
)

// selfContained are the ways a file can point at documents outside the
// repository: the design notes its authors keep elsewhere and the directory
// beside the checkout they live in. The reference a user reads is docs/ and
// the reasons are RATIONALE.md. The patterns are written so that this file
// does not match them itself.
var selfContained = []*regexp.Regexp{
	regexp.MustCompile(`DESIG[N]\.md`),
	regexp.MustCompile(`\bDESIG[N]\b`), // the notes named by their section numbers
	regexp.MustCompile(`\.\./shared\b`),
}

// TestRepositorySelfContained fails when a tracked file points at a document
// that is not in the repository.
func TestRepositorySelfContained(t *testing.T) {
	testenv.Require(t, "git")
	out, err := exec.Command("git", "ls-files", "-z").Output()
	if err != nil {
		// Not a checkout (a module downloaded without .git, for example).
		if testenv.Strict() && testenv.Required("git") {
			t.Fatalf("git ls-files: %v", err)
		}
		t.Skipf("git ls-files: %v (not a git checkout?)", err)
	}
	files := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(files) < 10 {
		t.Fatalf("git ls-files listed %d files; want the whole repository", len(files))
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted in the work tree, not yet committed
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for i, line := range bytes.Split(b, []byte("\n")) {
			for _, re := range selfContained {
				if re.Match(line) {
					t.Errorf("%s:%d points outside the repository (%s); link docs/ or RATIONALE.md instead: %s",
						name, i+1, re, bytes.TrimSpace(line))
					break
				}
			}
		}
	}
}
