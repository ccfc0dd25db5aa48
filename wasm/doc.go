// Package wasm runs WASI (wasip1) WebAssembly modules in-process on wazero.
// It is the only package of the project that imports wazero.
//
// What it protects against: an untrusted module sees exactly the arguments,
// environment variables, standard streams and directories the caller hands it
// (Spec), and nothing else of the host — no host environment, no files outside
// the mounts (symlinks cannot lead out of a mount), no sockets. Its linear
// memory has a hard limit, and a module that never yields (a tight loop) is
// still stopped when the context ends, without its cooperation. A trap, a
// memory limit or an exit of the guest is reported in an Outcome, never as a
// crash of the host.
//
// What it does not protect against: the module runs inside the caller's
// process, so it shares the host's CPU time (bound it with the context) and a
// bug in wazero would be a bug in the host. Go heap used by wazero for the
// module (compiled code, tables) is not counted in the memory limit; only the
// guest's linear memory is.
//
// Lifecycle: NewEngine once, Run any number of times from any goroutines,
// Close once. Modules are compiled once per Engine (keyed by their SHA-256),
// so on a warm Engine a run only instantiates.
//
// Minimum platform: any that wazero supports; linear memory is reserved with
// mmap on Linux (released at once when a run ends) and allocated on the Go
// heap elsewhere.
package wasm
