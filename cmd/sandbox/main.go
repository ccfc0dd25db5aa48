// Command sandbox runs untrusted code on Linux, isolated by the kernel.
package main

import (
	"os"

	"github.com/kb-labs/sandbox/internal/cli"
	"github.com/kb-labs/sandbox/internal/initproc"
)

func main() {
	// First: when this process is a sandbox's init, it never returns.
	initproc.MaybeRun()
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
