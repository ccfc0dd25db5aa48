// Package cli is the `sandbox` command line (docs/cli.md): commands
// as data, each a function from arguments to an exit status. main stays thin:
// it dispatches the sandbox init first, then calls Main.
package cli

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

// Env is what a command sees of the outside world.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getwd resolves relative paths in flags.
	Getwd func() (string, error)
}

type command struct {
	name    string
	summary string
	run     func(env *Env, args []string) int
}

// Commands that other packages add. A registered "serve" replaces the
// built-in one, which runs the sandbox-serve binary (serve.go), for a program
// that links the server in.
var extra []command

// Register adds a command, for packages that provide one (server).
func Register(name, summary string, run func(stdin io.Reader, stdout, stderr io.Writer, args []string) int) {
	extra = append(extra, command{name: name, summary: summary, run: func(env *Env, args []string) int {
		return run(env.Stdin, env.Stdout, env.Stderr, args)
	}})
}

func commands() []command {
	cmds := []command{
		{"run", "run a command, a handler or a WASI module in a sandbox", runCmd},
		{"doctor", "what this host can enforce, and how to fix what it cannot", doctorCmd},
		{"bench", "measure plain exec, cold, CLI, bubblewrap and pooled sandbox start", benchCmd},
		{"version", "print the version", versionCmd},
	}
	// Registered commands come first, so they win over a built-in name.
	cmds = append(extra, cmds...)
	return append(cmds, command{"serve", "serve the HTTP API (POST /v1/runs); runs " + serveBinary, serveCmd})
}

// Exit statuses of usage errors (docs/cli.md: bad flags exit 125).
const exitUsage = 125

// Main runs the CLI with args (without the program name) and returns the
// exit status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	env := &Env{Stdin: stdin, Stdout: stdout, Stderr: stderr, Getwd: os.Getwd}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		return versionCmd(env, nil)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(env, args[1:])
		}
	}
	fmt.Fprintf(stderr, "sandbox: unknown command %q; run 'sandbox help' for the list\n", args[0])
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "sandbox runs untrusted code on Linux, isolated by the kernel.")
	fmt.Fprintln(w, "\nUsage:\n  sandbox <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'sandbox <command> -h' for a command's flags.")
}

// Version is set at build time with -ldflags "-X .../internal/cli.Version=v1.2.3";
// otherwise the module version or the VCS revision is used.
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v
		}
		rev, dirty := "", ""
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && len(s.Value) >= 12:
				rev = s.Value[:12]
			case s.Key == "vcs.modified" && s.Value == "true":
				dirty = "+dirty"
			}
		}
		if rev != "" {
			return "devel-" + rev + dirty
		}
	}
	return "devel"
}

func versionCmd(env *Env, args []string) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintln(env.Stdout, "Usage: sandbox version (also: sandbox --version)\n\nPrints the version of this build and the Go release it was built with.")
		return 0
	}
	if len(args) > 0 {
		fmt.Fprintf(env.Stderr, "sandbox version: unexpected argument %q\n", args[0])
		return exitUsage
	}
	bi, _ := debug.ReadBuildInfo()
	goVersion := ""
	if bi != nil {
		goVersion = bi.GoVersion
	}
	v, note := version(), ""
	if v == "devel" {
		// go run stamps no revision: say how to get one.
		note = "; no revision stamped: build with go build or go install"
	}
	fmt.Fprintf(env.Stdout, "sandbox %s (%s%s)\n", v, strings.TrimSpace(goVersion), note)
	return 0
}
