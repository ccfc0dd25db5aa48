// Command sandbox-serve is the HTTP service, what `sandbox serve` runs
// (docs/cli.md). It is a binary of its own so that the CLI does not link the
// HTTP stack, Prometheus and OpenTelemetry: their package initialisers cost
// every `sandbox run` and `sandbox version` several milliseconds.
package main

import (
	"os"

	"github.com/kb-labs/sandbox"
	"github.com/kb-labs/sandbox/server"
)

func main() {
	// First: when this process is a sandbox's init, it never returns.
	sandbox.InitMain()
	os.Exit(server.Main(os.Args[1:], os.Stdout, os.Stderr))
}
