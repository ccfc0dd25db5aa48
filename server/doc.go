// Package server is the HTTP service of `sandbox serve`: POST /v1/runs runs
// a command or runtime handler in a fresh sandbox and answers the Result,
// whatever its status (server/openapi.json documents the API).
//
// What it protects against: a client that asks for more than the operator
// allows (limits are lowered only, never raised past the server's ceilings;
// host environment variables pass only within envAllowCeiling; the host
// network only when the operator allows it); host paths chosen by clients
// (the request types have no field for one; bodies are decoded strictly,
// so a key spelled in another case or given twice is refused instead of
// being matched loosely, and host-path context keys are refused by name);
// the host's disk (a run's /workspace is its sandbox's own tmpfs, bounded
// by the workspace size and charged to the run's memory; uploaded files are
// written there by the engine, inside the sandbox, and no host directory is
// made for a run); overload (bounded concurrency and queue, 429 past them;
// request bodies held in memory bounded in bytes); slow clients (header,
// body and idle timeouts; a body is read in full before the run takes a
// slot or a queue place, so a slow body holds only its own connection);
// unauthenticated use (a bearer token, compared in constant time, required
// to listen beyond loopback); leaks (every run is cancelled when its client
// goes away or the drain timeout passes); and information leaks (errors
// carry stable codes and messages of this package, never a Go error string
// or a host path).
//
// As an ordinary user the service runs rootless under the engine's rules:
// what the host cannot enforce is refused when asked for (at start for the
// configuration, 422 for a request's limits) unless bestEffort, and listed
// in the start log and every result's isolation.degraded otherwise.
//
// It is the only package of the module that imports Prometheus and
// OpenTelemetry. Linux only for runs (the engine's subprocess mode); the
// minimum kernel is the engine's (5.12, the mount API).
package server
