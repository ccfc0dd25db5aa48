package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"syscall"
)

// ExitInfo is how the child process ended, as the engine observed it.
type ExitInfo struct {
	// Code is the exit code, or -1 when the process did not exit by itself.
	Code int
	// Signal is the signal that ended the process, 0 when it exited.
	Signal syscall.Signal
	// BySandbox is true when the sandbox ended the process (timeout,
	// cancellation, a limit, a protocol failure, or the tear-down after the
	// result): its signal is then not the handler's crash.
	BySandbox bool
}

// Verdict is the protocol's judgement of a run. The values that are also
// run statuses (docs/result.md) carry the status's name.
type Verdict string

const (
	// VerdictOK: the handler succeeded; Outcome.Data holds its data.
	VerdictOK Verdict = "ok"
	// VerdictHandlerError: status handler_error with Outcome.Err.Code.
	VerdictHandlerError Verdict = "handler_error"
	// VerdictSetupError: the bootstrap could not find the file or export
	// (HANDLER_NOT_FOUND); status setup_error, exit 126 from `sandbox run`.
	VerdictSetupError Verdict = "setup_error"
	// VerdictMemoryLimit: the runtime's own allocator failed (MEMORY_LIMIT
	// from the Python bootstrap's MemoryError); status memory_limit.
	VerdictMemoryLimit Verdict = "memory_limit"
	// VerdictExit: the protocol has no verdict; the status comes from how
	// the process ended (nonzero_exit, signaled, or the reason the sandbox
	// ended it).
	VerdictExit Verdict = "exit"
)

// Outcome combines the messages a Session saw with how the process ended.
type Outcome struct {
	Verdict Verdict
	// Data is the result's data for VerdictOK; nil means JSON null.
	Data json.RawMessage
	// Err is set for VerdictHandlerError, VerdictSetupError and
	// VerdictMemoryLimit.
	Err *ErrorInfo

	Ready     bool // a ready message arrived
	HasResult bool // a (first) result arrived
	// Invalid is the reason for E_INVALID_MESSAGE, "" when every message
	// was valid.
	Invalid string
	// OutputExhausted: CountBytes returned false and reading stopped.
	OutputExhausted bool
	// ClosedFDs is how many descriptors the child passed (all were closed).
	ClosedFDs int
}

// judge applies the verdict rules (docs/handler-protocol.md, "Verdicts").
// The first protocol failure (invalid message or handshake timeout) wins over
// everything the session saw after it; otherwise the first result stands
// when the process then exited 0 or was ended by the sandbox, and becomes
// HANDLER_CRASHED when the process crashed after it.
func judge(st *state, requireResult bool, exit ExitInfo) Outcome {
	o := Outcome{
		Ready:           st.ready,
		HasResult:       st.result != nil,
		OutputExhausted: st.exhausted,
		Invalid:         st.invalid,
		ClosedFDs:       st.fds,
	}
	if st.failure != nil {
		o.Verdict, o.Err = VerdictHandlerError, st.failure
		return o
	}
	exited0 := exit.Signal == 0 && exit.Code == 0
	if r := st.result; r != nil {
		// A handler that returned an exit code exits with it.
		promised := r.ExitCode > 0 && exit.Signal == 0 && exit.Code == r.ExitCode
		if !exited0 && !exit.BySandbox && !promised {
			o.Verdict = VerdictHandlerError
			o.Err = &ErrorInfo{Code: CodeHandlerCrashed, Message: "handler crashed after its result: " + describeExit(exit)}
			if r.Error != nil {
				o.Err.Message += " (its result was " + r.Error.Code + ": " + r.Error.Message + ")"
				o.Err.Stack = r.Error.Stack
			}
			return o
		}
		if r.OK {
			o.Verdict = VerdictOK
			if !bytes.Equal(r.Data, []byte("null")) {
				o.Data = r.Data
			}
			return o
		}
		e := *r.Error
		if e.Code == "" {
			e.Code = CodeHandlerError
		}
		o.Err = &e
		switch e.Code {
		case CodeHandlerNotFound:
			o.Verdict = VerdictSetupError
		case CodeMemoryLimit:
			o.Verdict = VerdictMemoryLimit
		default:
			o.Verdict = VerdictHandlerError
		}
		return o
	}
	switch {
	case exited0 && !exit.BySandbox && requireResult:
		o.Verdict = VerdictHandlerError
		o.Err = &ErrorInfo{Code: CodeNoResult, Message: "handler exited 0 without sending a result"}
	case exited0 && !exit.BySandbox:
		o.Verdict = VerdictOK // a protocol command without a result: data null
	default:
		o.Verdict = VerdictExit
	}
	return o
}

func describeExit(e ExitInfo) string {
	if e.Signal != 0 {
		return fmt.Sprintf("killed by signal %s", e.Signal)
	}
	return fmt.Sprintf("exit code %d", e.Code)
}
