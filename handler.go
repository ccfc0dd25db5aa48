package sandbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Handler is what a run executes. Exactly one kind is set; use the
// constructors Command, File, WASM and Func.
type Handler struct {
	// Command is an argv run in the sandbox. Protocol offers it the handler
	// protocol on fd 3 (docs/handler-protocol.md).
	Command  []string
	Protocol bool

	// Runtime ("node" or "python") with File and Export (default "run") is a
	// file handler spoken to through the handler protocol. File is resolved
	// under the plugin root.
	Runtime string
	File    string
	Export  string

	// WASM is the path of a WASI module (or WASMBytes its content), run
	// in-process with Args (argv[0] is the module name).
	WASM      string
	WASMBytes []byte
	Args      []string

	// Func is a Go function run in-process (trusted code).
	Func Func

	// Files are written into the run's /workspace, inside the sandbox,
	// before the program starts (subprocess mode; the workspace must be the
	// sandbox's own tmpfs, not a host workdir). For a file handler without
	// a plugin root in its ExecutionContext they are also its plugin root:
	// the workspace is mounted read-only at /plugin, so File names one of
	// them. Bounded by MaxWorkspaceFiles, MaxWorkspaceFileBytes and the
	// workspace size.
	Files []WorkspaceFile
}

// Func is an in-process Go handler. It must honour ctx: a function that
// ignores its context cannot be stopped (Go has no way to kill a goroutine).
type Func func(ctx context.Context, input any, h *HandlerContext) (any, error)

// Command returns a command handler.
func Command(argv ...string) Handler { return Handler{Command: argv} }

// File returns a file handler for runtime "node" or "python"; an empty
// export means "run".
func File(runtime, file, export string) Handler {
	return Handler{Runtime: runtime, File: file, Export: export}
}

// WASM returns a WASI module handler.
func WASM(path string, args ...string) Handler { return Handler{WASM: path, Args: args} }

// GoFunc returns a Go function handler (in-process mode only).
func GoFunc(f Func) Handler { return Handler{Func: f} }

// Kind names a handler kind.
type Kind string

const (
	KindCommand Kind = "command"
	KindFile    Kind = "file"
	KindWASM    Kind = "wasm"
	KindFunc    Kind = "func"
)

// ErrInvalidHandler is returned by Run for a handler that is malformed.
var ErrInvalidHandler = errors.New("sandbox: invalid handler")

// ErrUnsupportedHandler is returned by Run for a handler kind the Runner's
// mode cannot run.
var ErrUnsupportedHandler = errors.New("sandbox: handler kind not supported by this mode")

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("sandbox: runner closed")

// Kind reports the handler's kind, or an error wrapping ErrInvalidHandler.
func (h Handler) Kind() (Kind, error) {
	var kinds []Kind
	if len(h.Command) > 0 {
		kinds = append(kinds, KindCommand)
	}
	if h.Runtime != "" || h.File != "" {
		kinds = append(kinds, KindFile)
	}
	if h.WASM != "" || len(h.WASMBytes) > 0 {
		kinds = append(kinds, KindWASM)
	}
	if h.Func != nil {
		kinds = append(kinds, KindFunc)
	}
	switch len(kinds) {
	case 0:
		return "", fmt.Errorf("%w: none of Command, Runtime/File, WASM or Func is set", ErrInvalidHandler)
	case 1:
	default:
		return "", fmt.Errorf("%w: several kinds set (%v); set exactly one", ErrInvalidHandler, kinds)
	}
	k := kinds[0]
	switch k {
	case KindCommand:
		if h.Command[0] == "" {
			return "", fmt.Errorf("%w: empty command name", ErrInvalidHandler)
		}
	case KindFile:
		if h.Runtime != "node" && h.Runtime != "python" {
			return "", fmt.Errorf("%w: runtime %q: want \"node\" or \"python\"", ErrInvalidHandler, h.Runtime)
		}
		if h.File == "" {
			return "", fmt.Errorf("%w: file handler without a file", ErrInvalidHandler)
		}
		if strings.HasPrefix(h.File, "/") || strings.Contains("/"+h.File+"/", "/../") {
			return "", fmt.Errorf("%w: file %q: want a path relative to the plugin root, without '..' components", ErrInvalidHandler, h.File)
		}
	}
	if h.Protocol && k != KindCommand {
		return "", fmt.Errorf("%w: Protocol applies to commands only", ErrInvalidHandler)
	}
	if err := checkFiles(h.Files); err != nil {
		return "", err
	}
	return k, nil
}

func (h Handler) export() string {
	if h.Export == "" {
		return "run"
	}
	return h.Export
}

// HandlerContext is what an in-process Go handler gets besides its input.
type HandlerContext struct {
	// Context is the run's execution context (requestId filled in).
	Context ExecutionContext
	run     *runState
}

// Log adds a line to the run's log (source "handler") and streams it to the
// observers. Levels: debug, info, warn, error.
func (h *HandlerContext) Log(level, message string, meta map[string]any) {
	h.run.log(LogLine{Level: normLevel(level), Source: "handler", Message: message, Meta: meta})
}

// Progress reports progress (0..100) to the observers.
func (h *HandlerContext) Progress(percent float64, message string) {
	h.run.progress(percent, message)
}

func normLevel(l string) string {
	switch l {
	case "debug", "info", "warn", "error":
		return l
	}
	return "info"
}

// CodedError is an error carrying a stable code; a handler that returns one
// keeps its code in Result.Error.Code.
type CodedError interface {
	error
	Code() string
}

// HandlerError is a simple CodedError.
type HandlerError struct {
	ErrCode string
	Message string
}

// NewError returns an error with a code, for Go handlers.
func NewError(code, message string) *HandlerError { return &HandlerError{code, message} }

func (e *HandlerError) Error() string { return e.Message }
func (e *HandlerError) Code() string  { return e.ErrCode }
