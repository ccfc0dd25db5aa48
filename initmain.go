package sandbox

import "github.com/kb-labs/sandbox/internal/initproc"

// InitMain turns this process into a sandbox's init, and never returns, when
// the engine started it as one; otherwise it returns at once. Call it first
// in main, and in TestMain of tests that run sandboxes, before anything else
// (never from an init function): the engine runs each sandbox's init from a
// sealed copy of the running binary, recognised by its set-up channel.
//
//	func main() {
//		sandbox.InitMain()
//		...
//	}
func InitMain() { initproc.MaybeRun() }
