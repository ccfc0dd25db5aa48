package protocol

import (
	"errors"
	"fmt"
)

// Error codes of the Result (docs/result.md) this package produces (in
// Outcome.Err) or that the embedded bootstraps send in a failed result.
const (
	CodeHandlerError     = "HANDLER_ERROR"       // a thrown error without its own code
	CodeHandlerExitCode  = "HANDLER_EXIT_CODE"   // the handler returned a non-zero number
	CodeHandlerCrashed   = "HANDLER_CRASHED"     // uncaught exception, or a crash after the result
	CodeHandlerNotFound  = "HANDLER_NOT_FOUND"   // file or export missing (status setup_error)
	CodeMemoryLimit      = "MEMORY_LIMIT"        // the runtime's own allocator gave up (status memory_limit)
	CodeInvalidMessage   = "E_INVALID_MESSAGE"   // malformed, oversized or out-of-order message
	CodeHandshakeTimeout = "E_HANDSHAKE_TIMEOUT" // no ready within the handshake timeout
	CodeNoResult         = "E_NO_RESULT"         // a file handler exited 0 without a result
)

// Error is a protocol failure with a stable code. errors.Is matches on the
// code, so errors.Is(err, ErrInvalidMessage) holds for every invalid message.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return "protocol: " + e.Code + ": " + e.Message }

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code
}

// Sentinels for errors.Is.
var (
	ErrInvalidMessage   = &Error{Code: CodeInvalidMessage, Message: "invalid message"}
	ErrHandshakeTimeout = &Error{Code: CodeHandshakeTimeout, Message: "no ready message in time"}
	// ErrClosed: the connection ended (the child closed it, or reading
	// stopped) before the awaited message.
	ErrClosed = errors.New("protocol: connection closed")
	// ErrOutputLimit: CountBytes reported the output budget exhausted, so
	// the session stopped reading.
	ErrOutputLimit = errors.New("protocol: output budget exhausted")
)

func invalidf(format string, args ...any) *Error {
	return &Error{Code: CodeInvalidMessage, Message: fmt.Sprintf(format, args...)}
}
