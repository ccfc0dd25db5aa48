package sandbox

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"
)

// Status is the single verdict of a run (docs/result.md, "Statuses").
type Status string

const (
	StatusOK            Status = "ok"
	StatusNonzeroExit   Status = "nonzero_exit"
	StatusSignaled      Status = "signaled"
	StatusTimeout       Status = "timeout"
	StatusCPULimit      Status = "cpu_limit"
	StatusMemoryLimit   Status = "memory_limit"
	StatusOutputLimit   Status = "output_limit"
	StatusFileSizeLimit Status = "file_size_limit"
	StatusViolation     Status = "violation"
	StatusHandlerError  Status = "handler_error"
	StatusCancelled     Status = "cancelled"
	StatusSetupError    Status = "setup_error"
)

// Error codes carried in Result.Error.Code.
const (
	CodeProcessExit         = "PROCESS_EXIT"
	CodeProcessSignaled     = "PROCESS_SIGNALED"
	CodeWASMTrap            = "WASM_TRAP"
	CodeTimeout             = "TIMEOUT"
	CodeCPULimit            = "CPU_LIMIT"
	CodeMemoryLimit         = "MEMORY_LIMIT"
	CodeOutputLimit         = "OUTPUT_LIMIT"
	CodeFileSizeLimit       = "FILE_SIZE_LIMIT"
	CodeSeccompViolation    = "SECCOMP_VIOLATION"
	CodeHandlerError        = "HANDLER_ERROR"
	CodeHandlerExitCode     = "HANDLER_EXIT_CODE"
	CodeHandlerCrashed      = "HANDLER_CRASHED"
	CodeInvalidMessage      = "E_INVALID_MESSAGE"
	CodeHandshakeTimeout    = "E_HANDSHAKE_TIMEOUT"
	CodeNoResult            = "E_NO_RESULT"
	CodeCancelled           = "CANCELLED"
	CodeSetupFailed         = "SETUP_FAILED"
	CodeHandlerNotFound     = "HANDLER_NOT_FOUND"
	CodeCommandNotExec      = "COMMAND_NOT_EXECUTABLE"
	CodeCommandNotFound     = "COMMAND_NOT_FOUND"
	CodeInvalidHandlerInput = "E_INVALID_INPUT"
)

// precedence orders the limit verdicts: when several apply, the first wins,
// then the program's own outcome.
var precedence = []Status{StatusCancelled, StatusTimeout, StatusMemoryLimit, StatusCPULimit,
	StatusOutputLimit, StatusFileSizeLimit, StatusViolation}

// Decide returns the verdict among the limit statuses that fired, or own when
// none did.
func decide(fired map[Status]bool, own Status) Status {
	for _, s := range precedence {
		if fired[s] {
			return s
		}
	}
	return own
}

// ExitStatus is the exit status `sandbox run` uses for a result.
func (r *Result) ExitStatus() int {
	switch r.Status {
	case StatusOK:
		return 0
	case StatusNonzeroExit:
		if r.ExitCode > 0 && r.ExitCode < 256 {
			return r.ExitCode
		}
		return 1
	case StatusSignaled:
		if n := signalNumber(r.Signal); n > 0 {
			return 128 + n
		}
		return 128
	case StatusTimeout, StatusCPULimit, StatusMemoryLimit, StatusOutputLimit, StatusFileSizeLimit, StatusViolation:
		return 124
	case StatusHandlerError:
		// A handler that returned an exit code exits with it, as the
		// command-line tool it stands for would.
		if r.Error != nil && r.Error.Code == CodeHandlerExitCode && r.ExitCode > 0 && r.ExitCode < 256 {
			return r.ExitCode
		}
		return 1
	case StatusCancelled:
		return 130
	case StatusSetupError:
		if r.Error != nil {
			switch r.Error.Code {
			case CodeHandlerNotFound, CodeCommandNotExec:
				return 126
			case CodeCommandNotFound:
				return 127
			}
		}
		return 125
	}
	return 1
}

// ErrorInfo is the error of a non-ok result.
type ErrorInfo struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Stack   string `json:"stack"`
}

// Metrics of one run. A metric that could not be measured is nil (absent in
// JSON), never 0.
type Metrics struct {
	TimeMs       *float64 `json:"timeMs,omitempty"`
	CPUMs        *float64 `json:"cpuMs,omitempty"`
	UserMs       *float64 `json:"userMs,omitempty"`
	SysMs        *float64 `json:"sysMs,omitempty"`
	MemMb        *float64 `json:"memMb,omitempty"`
	MemPeakBytes *int64   `json:"memPeakBytes,omitempty"`
	PidsPeak     *int64   `json:"pidsPeak,omitempty"`
	PidsLimitHit *bool    `json:"pidsLimitHit,omitempty"`
}

func ms(d time.Duration) *float64 {
	v := float64(d.Microseconds()) / 1000
	return &v
}

// setCPU sets cpuMs, userMs and sysMs from one clock: total is the precise
// CPU time (the cgroup's usage, or user+sys where that is all there is), and
// user and sys are only its split. cgroup v1 samples user and sys at timer
// ticks while its usage is exact, so they disagree (1.1 ms of usage with 0 +
// 4 ms of ticks); the split is scaled to the total the way the kernel's own
// cputime_adjust does for /proc/PID/stat, all of it user when no tick
// landed. userMs + sysMs is then cpuMs, in every mode.
func setCPU(m *Metrics, total, user, sys time.Duration) {
	if total <= 0 {
		total = user + sys
	}
	if user+sys > 0 {
		user = time.Duration(float64(total) * float64(user) / float64(user+sys))
	} else {
		user = total
	}
	// Rounded to microseconds first, so that the two parts add up to the
	// total as printed.
	t, u := total.Microseconds(), user.Microseconds()
	m.CPUMs = ms(time.Duration(t) * time.Microsecond)
	m.UserMs = ms(time.Duration(u) * time.Microsecond)
	m.SysMs = ms(time.Duration(t-u) * time.Microsecond)
}

func setMemPeak(m *Metrics, bytes int64) {
	m.MemPeakBytes = &bytes
	mb := float64(bytes) / float64(MiB)
	mb = float64(int64(mb*100+0.5)) / 100
	m.MemMb = &mb
}

// Violation counts attempts of one denied system call.
type Violation struct {
	Syscall string `json:"syscall"`
	Count   int    `json:"count"`
}

// LogLine is one line of a run's log.
type LogLine struct {
	Time    time.Time      `json:"time"`
	Level   string         `json:"level"`
	Source  string         `json:"source"` // stdout, stderr, handler, sandbox
	Message string         `json:"message"`
	Meta    map[string]any `json:"meta"`
}

// Span is one phase of a run (W3C trace context ids).
type Span struct {
	TraceID      string         `json:"traceId"`
	SpanID       string         `json:"spanId"`
	ParentSpanID string         `json:"parentSpanId"`
	Name         string         `json:"name"`
	StartTime    time.Time      `json:"startTime"`
	EndTime      time.Time      `json:"endTime"`
	Attributes   map[string]any `json:"attributes"`
}

// Degradation is a protection the host could not enforce, listed instead of
// being weakened silently.
type Degradation struct {
	Layer  string `json:"layer"`
	Reason string `json:"reason"`
}

// Isolation reports what protected the run.
type Isolation struct {
	Mode        Mode          `json:"mode"`
	Runtime     string        `json:"runtime,omitempty"` // inprocess: "go" or "wasm"
	Namespaces  []string      `json:"namespaces"`
	Cgroup      string        `json:"cgroup"` // "v1", "v2" or "" when none
	Seccomp     bool          `json:"seccomp"`
	LandlockABI int           `json:"landlockAbi"`
	NoNewPrivs  bool          `json:"noNewPrivs"`
	Network     Network       `json:"network"`
	Degraded    []Degradation `json:"degraded"`
}

// Result is the outcome of one run. A Result is never reused.
type Result struct {
	RequestID       string
	OK              bool
	Status          Status
	ExitCode        int    // the program's own exit code; -1 when it did not exit by itself
	Signal          string // "SIGKILL", or "" when none
	Data            json.RawMessage
	Error           *ErrorInfo
	Stdout, Stderr  []byte
	StdoutTruncated bool
	StderrTruncated bool
	Metrics         Metrics
	Violations      []Violation
	// ViolationsIncomplete is true when Violations may lack denied calls:
	// the program installed a seccomp filter of its own, which the kernel
	// lets answer a call before the sandbox hears of it (the call is still
	// refused). Only under onViolation errno; under kill, installing one
	// ends the run as StatusViolation.
	ViolationsIncomplete bool
	Logs                 []LogLine
	Traces               []Span
	Isolation            Isolation
}

type resultJSON struct {
	RequestID       string          `json:"requestId"`
	OK              bool            `json:"ok"`
	Status          Status          `json:"status"`
	ExitCode        int             `json:"exitCode"`
	Signal          string          `json:"signal"`
	Data            json.RawMessage `json:"data"`
	Error           *ErrorInfo      `json:"error"`
	Stdout          string          `json:"stdout"`
	Stderr          string          `json:"stderr"`
	StdoutEncoding  string          `json:"stdoutEncoding,omitempty"`
	StderrEncoding  string          `json:"stderrEncoding,omitempty"`
	StdoutTruncated bool            `json:"stdoutTruncated"`
	StderrTruncated bool            `json:"stderrTruncated"`
	Metrics         Metrics         `json:"metrics"`
	Violations      []Violation     `json:"violations"`
	// Present only when true, like the encodings: a result without it
	// reads as before.
	ViolationsIncomplete bool      `json:"violationsIncomplete,omitempty"`
	Logs                 []LogLine `json:"logs"`
	Traces               []Span    `json:"traces"`
	Isolation            Isolation `json:"isolation"`
}

// MarshalJSON encodes the Result as docs/result.md describes: output that is
// not valid UTF-8 is carried as base64 with an encoding field; absent data
// and error are null; empty lists are [].
func (r *Result) MarshalJSON() ([]byte, error) {
	j := resultJSON{
		RequestID: r.RequestID, OK: r.OK, Status: r.Status, ExitCode: r.ExitCode, Signal: r.Signal,
		Data: r.Data, Error: r.Error, StdoutTruncated: r.StdoutTruncated, StderrTruncated: r.StderrTruncated,
		Metrics: r.Metrics, Violations: r.Violations, ViolationsIncomplete: r.ViolationsIncomplete, Logs: r.Logs,
		Traces: r.Traces, Isolation: r.Isolation,
	}
	j.Stdout, j.StdoutEncoding = encodeOutput(r.Stdout)
	j.Stderr, j.StderrEncoding = encodeOutput(r.Stderr)
	if len(j.Data) == 0 {
		j.Data = json.RawMessage("null")
	}
	if j.Violations == nil {
		j.Violations = []Violation{}
	}
	if j.Logs == nil {
		j.Logs = []LogLine{}
	}
	if j.Traces == nil {
		j.Traces = []Span{}
	}
	if j.Isolation.Namespaces == nil {
		j.Isolation.Namespaces = []string{}
	}
	if j.Isolation.Degraded == nil {
		j.Isolation.Degraded = []Degradation{}
	}
	for i := range j.Logs {
		if j.Logs[i].Meta == nil {
			j.Logs[i].Meta = map[string]any{}
		}
	}
	for i := range j.Traces {
		if j.Traces[i].Attributes == nil {
			j.Traces[i].Attributes = map[string]any{}
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON produces (clients of the HTTP API).
func (r *Result) UnmarshalJSON(b []byte) error {
	var j resultJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	out, err := decodeOutput(j.Stdout, j.StdoutEncoding)
	if err != nil {
		return fmt.Errorf("stdout: %w", err)
	}
	errOut, err := decodeOutput(j.Stderr, j.StderrEncoding)
	if err != nil {
		return fmt.Errorf("stderr: %w", err)
	}
	data := j.Data
	if string(data) == "null" {
		data = nil
	}
	*r = Result{
		RequestID: j.RequestID, OK: j.OK, Status: j.Status, ExitCode: j.ExitCode, Signal: j.Signal,
		Data: data, Error: j.Error, Stdout: out, Stderr: errOut, StdoutTruncated: j.StdoutTruncated,
		StderrTruncated: j.StderrTruncated, Metrics: j.Metrics, Violations: j.Violations,
		ViolationsIncomplete: j.ViolationsIncomplete, Logs: j.Logs, Traces: j.Traces, Isolation: j.Isolation,
	}
	return nil
}

func encodeOutput(b []byte) (string, string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

func decodeOutput(s, enc string) ([]byte, error) {
	switch enc {
	case "":
		return []byte(s), nil
	case "base64":
		return base64.StdEncoding.DecodeString(s)
	}
	return nil, fmt.Errorf("unknown encoding %q", enc)
}

// Sentinel errors matched by errors.Is on Result.Err. A timeout also matches
// context.DeadlineExceeded and a cancellation context.Canceled.
var (
	ErrTimeout       = errors.New("sandbox: wall-clock limit")
	ErrCPULimit      = errors.New("sandbox: CPU-time limit")
	ErrMemoryLimit   = errors.New("sandbox: memory limit")
	ErrOutputLimit   = errors.New("sandbox: output limit")
	ErrFileSizeLimit = errors.New("sandbox: file size limit")
	ErrViolation     = errors.New("sandbox: denied system call")
	ErrCancelled     = errors.New("sandbox: cancelled")
	ErrSetup         = errors.New("sandbox: set-up failed")
	ErrHandler       = errors.New("sandbox: handler failed")
	ErrExit          = errors.New("sandbox: program failed")
)

var statusErr = map[Status]error{
	StatusTimeout: ErrTimeout, StatusCPULimit: ErrCPULimit, StatusMemoryLimit: ErrMemoryLimit,
	StatusOutputLimit: ErrOutputLimit, StatusFileSizeLimit: ErrFileSizeLimit, StatusViolation: ErrViolation,
	StatusCancelled: ErrCancelled, StatusSetupError: ErrSetup, StatusHandlerError: ErrHandler,
	StatusNonzeroExit: ErrExit, StatusSignaled: ErrExit,
}

// RunError is the error of a non-ok Result.
type RunError struct {
	Status  Status
	Code    string
	Message string
}

func (e *RunError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("sandbox: %s (%s)", e.Status, e.Code)
	}
	return fmt.Sprintf("sandbox: %s (%s): %s", e.Status, e.Code, e.Message)
}

// Is matches the status sentinels and, for timeout and cancellation, the
// context errors.
func (e *RunError) Is(target error) bool {
	switch {
	case target == statusErr[e.Status]:
		return true
	case e.Status == StatusTimeout && target == context.DeadlineExceeded:
		return true
	case e.Status == StatusCancelled && target == context.Canceled:
		return true
	}
	return false
}

// Err returns nil for an ok result, else a *RunError.
func (r *Result) Err() error {
	if r == nil || r.OK {
		return nil
	}
	e := &RunError{Status: r.Status}
	if r.Error != nil {
		e.Code, e.Message = r.Error.Code, r.Error.Message
	}
	return e
}

// clone returns a copy of r that shares nothing mutable with it, for
// observers that may still read it after Run returned it to the caller.
func (r *Result) clone() *Result {
	c := *r
	if r.Error != nil {
		e := *r.Error
		c.Error = &e
	}
	c.Data = slices.Clone(r.Data)
	c.Stdout, c.Stderr = slices.Clone(r.Stdout), slices.Clone(r.Stderr)
	c.Violations = slices.Clone(r.Violations)
	c.Logs = slices.Clone(r.Logs)
	c.Traces = slices.Clone(r.Traces)
	c.Isolation.Namespaces = slices.Clone(r.Isolation.Namespaces)
	c.Isolation.Degraded = slices.Clone(r.Isolation.Degraded)
	return &c
}
