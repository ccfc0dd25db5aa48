package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// serveBinary is the program `sandbox serve` becomes (cmd/sandbox-serve).
const serveBinary = "sandbox-serve"

// serveCmd hands `sandbox serve` to the sandbox-serve binary: the one next to
// this executable (a `go install` or a release puts both in one directory),
// else the first on $PATH. Linking the server into this binary would make
// every CLI start pay its package initialisers (RATIONALE.md, "The CLI does
// not link the server").
func serveCmd(env *Env, args []string) int {
	path, err := findServe()
	if err != nil {
		fmt.Fprintf(env.Stderr, "sandbox serve: %v\n", err)
		return exitUsage
	}
	if env.Stdout == os.Stdout && env.Stderr == os.Stderr && env.Stdin == os.Stdin {
		// Become the server: its pid, signals and exit status are this
		// command's, with nothing in between.
		err := syscall.Exec(path, append([]string{path}, args...), os.Environ())
		fmt.Fprintf(env.Stderr, "sandbox serve: %s: %v\n", path, err)
		return 1
	}
	// Embedded (tests): the caller's streams are not this process's, so
	// run the server as a child and pass its status on.
	cmd := exec.Command(path, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = env.Stdin, env.Stdout, env.Stderr
	if err := cmd.Run(); err != nil {
		if ee, ok := errors.AsType[*exec.ExitError](err); ok && ee.ExitCode() >= 0 {
			return ee.ExitCode()
		}
		fmt.Fprintf(env.Stderr, "sandbox serve: %s: %v\n", path, err)
		return 1
	}
	return 0
}

// lookServeNextTo is the directory searched first; tests set it.
var lookServeNextTo = func() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	if r, err := filepath.EvalSymlinks(self); err == nil {
		self = r
	}
	return filepath.Dir(self), nil
}

func findServe() (string, error) {
	if dir, err := lookServeNextTo(); err == nil {
		p := filepath.Join(dir, serveBinary)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath(serveBinary); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("the HTTP service is the %s binary, found neither next to this one nor on $PATH; "+
		"install it with: go install github.com/kb-labs/sandbox/cmd/%s@latest (or go build ./cmd/%s)",
		serveBinary, serveBinary, serveBinary)
}
