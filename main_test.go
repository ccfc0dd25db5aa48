package sandbox_test

import (
	"os"
	"testing"

	"github.com/kb-labs/sandbox/internal/cli"
	"github.com/kb-labs/sandbox/internal/initproc"
)

func TestMain(m *testing.M) {
	initproc.MaybeRun()
	// Tests that kill a supervisor run this binary as the CLI.
	if os.Getenv("SANDBOX_TEST_AS_CLI") == "1" {
		os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
