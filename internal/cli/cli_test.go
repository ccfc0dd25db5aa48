package cli_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/kb-labs/sandbox/internal/cli"
	"github.com/kb-labs/sandbox/internal/initproc"
	"github.com/kb-labs/sandbox/internal/testenv"
)

// TestMain makes the test binary the `sandbox` command of the scripts: the
// sandbox engine re-executes it as the init of each sandbox, so the init
// dispatch comes first, as in cmd/sandbox.
func TestMain(m *testing.M) {
	initproc.MaybeRun()
	// testscript.Main is the non-deprecated form of RunMain: the command
	// exits with cli.Main's status.
	testscript.Main(m, map[string]func(){
		"sandbox": func() { os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs testdata/script/*.txtar (docs/cli.md through real
// invocations of the binary).
//
// Conditions: [root] is true when this host can run sandboxes (root and user
// namespaces). In strict CI mode (SANDBOX_TEST_STRICT=1 with root listed in
// SANDBOX_TEST_REQUIRE) a host without them fails the script instead of
// skipping it.
//
// Commands: `exits N PROG [ARG...]` runs PROG and asserts its exit status is
// N (stdout and stderr are kept for the next stdout/stderr checks);
// `oneline stdout|stderr` asserts that the last output is exactly one line.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "../../testdata/script",
		RequireExplicitExec: true,
		Condition:           condition,
		// $PLUGINS is the repository's test plugins: a directory the
		// sandbox's unprivileged ids can reach ($WORK is private to root).
		Setup: func(env *testscript.Env) error {
			abs, err := filepath.Abs("../../testdata/plugins")
			env.Setenv("PLUGINS", abs)
			return err
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":   exits,
			"oneline": oneline,
		},
	})
}

func condition(cond string) (bool, error) {
	switch cond {
	case "root":
		return features("root", "userns")
	}
	return false, fmt.Errorf("unknown condition %q", cond)
}

// features is true when the host has every feature; a missing one that
// strict mode requires is an error, which fails the script (testenv.Require
// for scripts).
func features(names ...string) (bool, error) {
	for _, f := range names {
		if err := testenv.Check(f); err != nil {
			if testenv.Strict() && testenv.Required(f) {
				return false, fmt.Errorf("required feature %q unavailable (SANDBOX_TEST_STRICT=1): %v", f, err)
			}
			return false, nil
		}
	}
	return true, nil
}

func TestConditionStrictMode(t *testing.T) {
	testenv.Register("cli-test-absent", func() error { return errors.New("not on this host") })
	testenv.Register("cli-test-present", func() error { return nil })
	t.Setenv("SANDBOX_TEST_STRICT", "")
	t.Setenv("SANDBOX_TEST_REQUIRE", "cli-test-absent")
	if ok, err := features("cli-test-present", "cli-test-absent"); ok || err != nil {
		t.Errorf("lenient mode: %v, %v; want false (skip), no error", ok, err)
	}
	t.Setenv("SANDBOX_TEST_STRICT", "1")
	if ok, err := features("cli-test-present", "cli-test-absent"); ok || err == nil {
		t.Errorf("strict mode, required: %v, %v; want an error (fail)", ok, err)
	}
	t.Setenv("SANDBOX_TEST_REQUIRE", "userns")
	if ok, err := features("cli-test-absent"); ok || err != nil {
		t.Errorf("strict mode, not required: %v, %v; want false, no error", ok, err)
	}
	if ok, err := features("cli-test-present"); !ok || err != nil {
		t.Errorf("present: %v, %v", ok, err)
	}
	if _, err := condition("martian"); err == nil {
		t.Error("unknown condition accepted")
	}
}

func exits(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("usage: exits N PROG [ARG...] (no '!')")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: exits N PROG [ARG...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad status %q", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}

func oneline(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 || (args[0] != "stdout" && args[0] != "stderr") {
		ts.Fatalf("usage: oneline stdout|stderr")
	}
	out := ts.ReadFile(args[0])
	if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
		ts.Fatalf("%s is not exactly one line: %q", args[0], out)
	}
}
