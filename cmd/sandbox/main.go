// Command sandbox runs untrusted code on Linux, isolated by the kernel.
// `sandbox serve` runs the sandbox-serve binary (cmd/sandbox-serve), so that
// this one does not link the HTTP service.
package main

import (
	"os"

	"github.com/kb-labs/sandbox"
	"github.com/kb-labs/sandbox/internal/cli"
)

func main() {
	// First: when this process is a sandbox's init, it never returns.
	sandbox.InitMain()
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
