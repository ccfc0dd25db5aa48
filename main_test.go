package sandbox_test

import (
	"os"
	"testing"

	"github.com/kb-labs/sandbox/internal/initproc"
)

func TestMain(m *testing.M) {
	initproc.MaybeRun()
	os.Exit(m.Run())
}
