// Command sandbox runs untrusted code on Linux, isolated by the kernel.
package main

import (
	"io"
	"os"

	"github.com/kb-labs/sandbox"
	"github.com/kb-labs/sandbox/internal/cli"
	"github.com/kb-labs/sandbox/server"
)

func main() {
	// First: when this process is a sandbox's init, it never returns.
	sandbox.InitMain()
	cli.Register("serve", "serve the HTTP API (POST /v1/runs)", func(_ io.Reader, stdout, stderr io.Writer, args []string) int {
		return server.Main(args, stdout, stderr)
	})
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
