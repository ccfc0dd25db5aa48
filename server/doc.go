// Package server is the HTTP service of `sandbox serve` (DESIGN.md section
// 8): POST /v1/runs runs a command or runtime handler in a fresh sandbox and
// answers the Result, whatever its status.
//
// What it protects against: a client that asks for more than the operator
// allows (limits are lowered only, never raised past the server's ceilings;
// host environment variables pass only within envAllowCeiling; the host
// network only when the operator allows it), host paths chosen by clients
// (context host-path fields are refused; uploaded files are confined to a
// fresh per-run directory, written without following symlinks), overload
// (bounded concurrency and queue, 429 past them), unauthenticated use (a
// bearer token, compared in constant time, required to listen beyond
// loopback), slow clients (read, header and idle timeouts), leaks (every
// per-run directory is removed and every run cancelled when its client goes
// away or the drain timeout passes), and information leaks (errors carry
// stable codes and messages of this package, never a Go error string or a
// host path).
//
// It is the only package of the module that imports Prometheus and
// OpenTelemetry. Linux only for runs (the engine's subprocess mode); the
// minimum kernel is the engine's (5.12, the mount API).
package server
