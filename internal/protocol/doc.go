// Package protocol is the parent side of the handler protocol
// (docs/handler-protocol.md): newline-delimited JSON over a socketpair whose
// other end is the sandboxed child's fd 3 (SANDBOX_IPC_FD=3). Package
// bootstrap holds the Node.js and Python programs that speak the child side.
//
// # What it protects against
//
// The child is untrusted. Whatever it writes, the host neither crashes nor
// hangs nor leaks: a line is never buffered beyond MaxMessageBytes (a longer
// one is rejected as it passes the limit); file descriptors passed with
// SCM_RIGHTS are received close-on-exec and closed at once; every message is
// validated strictly; writes to the child go through a goroutine, so a child
// that never reads cannot block Start or Cancel; Finish waits at most
// DrainTimeout for a socket a descendant keeps open; CountBytes lets the
// engine bound what a flooding child costs. Minimum kernel: any Linux Go
// supports (AF_UNIX socketpair, SCM_RIGHTS, MSG_CMSG_CLOEXEC since 2.6.23).
//
// # Conversation
//
//	parent (Session)                         child (bootstrap, fd 3)
//	NewSession: reader + writer start
//	Start: wait for ready  <--------------- {"type":"ready"}
//	       (HandshakeTimeout)
//	       queue run      ---------------> {"type":"run","handler":..,"input":..,"context":..}
//	OnLog / OnProgress     <--------------- {"type":"log"|"progress",...}   any number
//	                       <--------------- {"type":"result","ok":..}      exactly one
//	Cancel (any time)      ---------------> {"type":"cancel"}
//	engine sees the process end -> Finish(ExitInfo) -> Outcome
//
// # Decisions
//
//   - Unknown fields are rejected (E_INVALID_MESSAGE), field names match
//     exactly: both ends ship in one binary, so an unknown field is a typo
//     or a bug, and ignoring it would lose data silently.
//   - Blank lines are skipped; a final line without its newline is invalid
//     (it may have been cut short).
//   - Ordering: ready may come only first; with RequireReady (file
//     handlers) nothing but ready may come before it and no result before
//     run; nothing may follow the result (a second result, a late log); a
//     child sending run or cancel is out of order.
//   - Commands (RequireReady false) may skip ready: run is sent at once.
//   - The first protocol failure is final: the session stops parsing but
//     keeps draining (and counting) bytes, and calls OnInvalid so the
//     engine can end the run.
//   - CountBytes sees every line except the accepted result, newlines,
//     blank lines and invalid bytes included, before the line is
//     dispatched; blank lines are counted as they are skipped (before each
//     read), so a flood of them ends the run like any output. The result is
//     bounded by MaxMessageBytes and is the run's data, not output.
//   - A log meta larger than MaxMetaBytes is not decoded: the engine gets
//     {"_truncated": <bytes>} instead, as its log would keep anyway.
//   - Bootstraps: a returned 0 is ok with data null (a number is an exit
//     status, not data); an uncaught exception or unhandled rejection sends
//     a HANDLER_CRASHED result and exits 1 — consistent with "a crash after
//     the result is HANDLER_CRASHED" — and a crash while the result is
//     being flushed still exits 1; Python's MemoryError is MEMORY_LIMIT.
//
// # Outcome -> Result status (for the engine)
//
// Finish gives an Outcome; the engine's precedence (cancelled, timeout,
// memory_limit, cpu_limit, output_limit, file_size_limit, violation) comes
// first, then:
//
//	Verdict              status          error.code
//	VerdictOK            ok              —  (data: Outcome.Data, nil = null)
//	VerdictHandlerError  handler_error   Outcome.Err.Code: the handler's own code,
//	                                     HANDLER_ERROR, HANDLER_EXIT_CODE,
//	                                     HANDLER_CRASHED, E_INVALID_MESSAGE,
//	                                     E_HANDSHAKE_TIMEOUT, E_NO_RESULT
//	VerdictSetupError    setup_error     HANDLER_NOT_FOUND          (sandbox run: 126)
//	VerdictMemoryLimit   memory_limit    MEMORY_LIMIT
//	VerdictExit          from the exit:  nonzero_exit PROCESS_EXIT / signaled
//	                                     PROCESS_SIGNALED, or why the sandbox
//	                                     ended it; for node, IsNodeHeapOOM ->
//	                                     memory_limit
//
// The verdict rules, in order: the first protocol failure (invalid
// message, handshake timeout) wins; else the first result stands when the
// process then exited 0 or was ended by the sandbox (ExitInfo.BySandbox),
// and is HANDLER_CRASHED when the process then exited non-zero or died of a
// signal the sandbox did not send; else exiting 0 is E_NO_RESULT with
// RequireReady and ok with data null without; else VerdictExit.
package protocol
