package cli

import "fmt"

// benchCmd is `sandbox bench` (TODO(#8)).
func benchCmd(env *Env, args []string) int {
	fmt.Fprintln(env.Stderr, "sandbox bench: not implemented yet (issue 8)")
	return exitUsage
}
