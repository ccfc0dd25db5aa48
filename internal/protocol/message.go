package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"

	"github.com/kb-labs/sandbox/internal/monitor"
)

// MaxMetaBytes is the largest log meta (as sent) that is decoded. A larger
// one is checked to be a JSON object and replaced by
// {"_truncated": <its size>} without being decoded: decoded into Go maps, a
// meta takes several times its size in memory, and the run's log keeps no
// meta larger than this anyway (monitor.Fit).
const MaxMetaBytes = monitor.MaxLineBytes

// Message types, exactly as on the wire (docs/handler-protocol.md).
const (
	TypeReady    = "ready"    // child -> parent
	TypeRun      = "run"      // parent -> child
	TypeLog      = "log"      // child -> parent
	TypeProgress = "progress" // child -> parent
	TypeResult   = "result"   // child -> parent
	TypeCancel   = "cancel"   // parent -> child
)

// Log levels a log message may carry; any other level is E_INVALID_MESSAGE.
const (
	LevelDebug = "debug"
	LevelInfo  = "info"
	LevelWarn  = "warn"
	LevelError = "error"
)

// Message is one protocol message. The concrete types are ReadyMessage,
// RunMessage, LogMessage, ProgressMessage, ResultMessage and CancelMessage.
type Message interface {
	// Type is the wire "type" field.
	Type() string
}

// ReadyMessage: the child is listening and will read the run message.
type ReadyMessage struct{}

// HandlerRef names what the bootstrap loads.
type HandlerRef struct {
	File   string `json:"file"`
	Export string `json:"export,omitempty"`
	// Root overrides the plugin root the bootstrap resolves File under
	// (default: $SANDBOX_PLUGIN_ROOT, else /plugin). Only the embedded
	// bootstraps read it; the engine does not set it.
	Root string `json:"root,omitempty"`
}

// RunMessage asks the child to run its handler once.
type RunMessage struct {
	Handler HandlerRef      `json:"handler"`
	Input   json.RawMessage `json:"input"`   // nil is sent as null
	Context json.RawMessage `json:"context"` // an object (or null), paths as seen inside
	// MaxMessageBytes tells the child the per-line limit so a bootstrap can
	// truncate a log or refuse an oversized result itself instead of being
	// cut off with E_INVALID_MESSAGE. Session.Start fills it in.
	MaxMessageBytes int `json:"maxMessageBytes,omitempty"`
}

// LogMessage is one log line from the handler.
type LogMessage struct {
	Level   string         `json:"level"`
	Message string         `json:"message"`
	Meta    map[string]any `json:"meta,omitempty"`
}

// ProgressMessage reports progress, Percent in 0..100.
type ProgressMessage struct {
	Percent float64 `json:"percent"`
	Message string  `json:"message,omitempty"`
}

// ErrorInfo is the error of a failed result, and of an Outcome.
type ErrorInfo struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Stack   string `json:"stack"`
}

// ResultMessage is the handler's answer. OK with Data, or !OK with Error.
type ResultMessage struct {
	OK    bool            `json:"ok"`
	Data  json.RawMessage `json:"data,omitempty"`
	Error *ErrorInfo      `json:"error,omitempty"`
	// ExitCode (1..255) goes with a HANDLER_EXIT_CODE error: the handler
	// returned that number, and the process then exits with it, as the
	// command-line tool it stands for would. Without it, a non-zero exit
	// after the result is a crash.
	ExitCode int `json:"exitCode,omitempty"`
}

// CancelMessage asks the child to stop (the handler's abort signal fires).
type CancelMessage struct{}

func (ReadyMessage) Type() string    { return TypeReady }
func (RunMessage) Type() string      { return TypeRun }
func (LogMessage) Type() string      { return TypeLog }
func (ProgressMessage) Type() string { return TypeProgress }
func (ResultMessage) Type() string   { return TypeResult }
func (CancelMessage) Type() string   { return TypeCancel }

// Encode returns m as one wire line: compact JSON with its "type" field,
// terminated by '\n'. encoding/json escapes U+2028/U+2029 and never emits a
// raw newline, so the line cannot be split by its content.
func Encode(m Message) ([]byte, error) {
	var v any
	switch m := m.(type) {
	case ReadyMessage, *ReadyMessage:
		v = struct {
			T string `json:"type"`
		}{TypeReady}
	case CancelMessage, *CancelMessage:
		v = struct {
			T string `json:"type"`
		}{TypeCancel}
	case RunMessage:
		v = wireRun(m)
	case *RunMessage:
		v = wireRun(*m)
	case LogMessage:
		v = wireLog{TypeLog, m}
	case *LogMessage:
		v = wireLog{TypeLog, *m}
	case ProgressMessage:
		v = wireProgress{TypeProgress, m}
	case *ProgressMessage:
		v = wireProgress{TypeProgress, *m}
	case ResultMessage:
		v = wireResult{TypeResult, m}
	case *ResultMessage:
		v = wireResult{TypeResult, *m}
	default:
		return nil, fmt.Errorf("protocol: cannot encode %T", m)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("protocol: encode: %w", err)
	}
	return append(b, '\n'), nil
}

type wireLog struct {
	T string `json:"type"`
	LogMessage
}

type wireProgress struct {
	T string `json:"type"`
	ProgressMessage
}

type wireResult struct {
	T string `json:"type"`
	ResultMessage
}

type wireRunMsg struct {
	T string `json:"type"`
	RunMessage
}

func wireRun(m RunMessage) wireRunMsg {
	if len(m.Input) == 0 {
		m.Input = json.RawMessage("null")
	}
	if len(m.Context) == 0 {
		m.Context = json.RawMessage("{}")
	}
	return wireRunMsg{TypeRun, m}
}

// Parse decodes and validates one line (without its '\n'). Validation is
// strict: the value must be an object with a known string "type"; field
// names match exactly (no case folding); fields unknown for the type, wrong
// JSON types, a level outside debug|info|warn|error, a percent outside
// 0..100, a result with ok:false and no error (or ok:true with an error)
// are all rejected. Every rejection is an *Error with code
// E_INVALID_MESSAGE. Unknown fields are rejected rather than ignored
// because both ends ship in the same binary: a field the parent does not
// know is a bug or a typo ("mesage"), and ignoring it would lose data
// silently.
func Parse(line []byte) (Message, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil || obj == nil {
		return nil, invalidf("not a JSON object")
	}
	rawType, ok := obj["type"]
	if !ok {
		return nil, invalidf(`missing "type"`)
	}
	var typ string
	if err := json.Unmarshal(rawType, &typ); err != nil {
		return nil, invalidf(`"type" is not a string`)
	}
	f := fields{obj: obj, typ: typ}
	switch typ {
	case TypeReady:
		return ReadyMessage{}, f.only()
	case TypeCancel:
		return CancelMessage{}, f.only()
	case TypeLog:
		var m LogMessage
		f.str("level", &m.Level, true)
		f.str("message", &m.Message, true)
		f.meta(&m.Meta)
		if err := f.only("level", "message", "meta"); err != nil {
			return nil, err
		}
		switch m.Level {
		case LevelDebug, LevelInfo, LevelWarn, LevelError:
		default:
			return nil, invalidf("log level %q is not debug|info|warn|error", clip(m.Level))
		}
		return m, nil
	case TypeProgress:
		var m ProgressMessage
		f.number("percent", &m.Percent)
		f.str("message", &m.Message, false)
		if err := f.only("percent", "message"); err != nil {
			return nil, err
		}
		if math.IsNaN(m.Percent) || m.Percent < 0 || m.Percent > 100 {
			return nil, invalidf("progress percent %v is outside 0..100", m.Percent)
		}
		return m, nil
	case TypeResult:
		return parseResult(f)
	case TypeRun:
		var m RunMessage
		f.decode("handler", &m.Handler, true)
		m.Input = f.raw("input")
		m.Context = f.raw("context")
		f.int("maxMessageBytes", &m.MaxMessageBytes)
		if err := f.only("handler", "input", "context", "maxMessageBytes"); err != nil {
			return nil, err
		}
		if m.Context != nil && m.Context[0] != '{' {
			return nil, invalidf(`run "context" is not an object`)
		}
		return m, nil
	default:
		return nil, invalidf("unknown message type %q", clip(typ))
	}
}

func parseResult(f fields) (Message, error) {
	var m ResultMessage
	var ok *bool
	f.decode("ok", &ok, true)
	m.Data = f.raw("data")
	if raw := f.raw("error"); raw != nil {
		var e map[string]json.RawMessage
		if err := json.Unmarshal(raw, &e); err != nil || e == nil {
			f.fail(`result "error" is not an object`)
		} else {
			ef := fields{obj: e, typ: "result error"}
			m.Error = &ErrorInfo{}
			ef.str("code", &m.Error.Code, false)
			ef.str("message", &m.Error.Message, false)
			ef.str("stack", &m.Error.Stack, false)
			if err := ef.only("code", "message", "stack"); err != nil {
				f.fail("%s", err.(*Error).Message)
			}
		}
	}
	f.int("exitCode", &m.ExitCode)
	if err := f.only("ok", "data", "error", "exitCode"); err != nil {
		return nil, err
	}
	if ok == nil {
		return nil, invalidf(`result "ok" is not a boolean`)
	}
	m.OK = *ok
	switch {
	case m.OK && m.Error != nil:
		return nil, invalidf("result with ok:true carries an error")
	case !m.OK && m.Error == nil:
		return nil, invalidf("result with ok:false carries no error")
	case !m.OK && m.Data != nil:
		return nil, invalidf("result with ok:false carries data")
	case m.ExitCode != 0 && (m.OK || m.Error.Code != CodeHandlerExitCode || m.ExitCode < 1 || m.ExitCode > 255):
		return nil, invalidf("result exitCode is for a %s error, 1 to 255", CodeHandlerExitCode)
	}
	return m, nil
}

// fields checks one decoded object; the first failure sticks.
type fields struct {
	obj map[string]json.RawMessage
	typ string
	err *Error
}

func (f *fields) fail(format string, args ...any) {
	if f.err == nil {
		f.err = invalidf(format, args...)
	}
}

// raw returns the field, or nil when absent or JSON null.
func (f *fields) raw(name string) json.RawMessage {
	v, ok := f.obj[name]
	if !ok || bytes.Equal(v, []byte("null")) {
		return nil
	}
	return v
}

func (f *fields) str(name string, dst *string, required bool) {
	v := f.raw(name)
	if v == nil {
		if required {
			f.fail("%s: missing string %q", f.typ, name)
		}
		return
	}
	if v[0] != '"' || json.Unmarshal(v, dst) != nil {
		f.fail("%s: %q is not a string", f.typ, name)
	}
}

func (f *fields) number(name string, dst *float64) {
	v := f.raw(name)
	if v == nil || json.Unmarshal(v, dst) != nil {
		f.fail("%s: %q is not a number", f.typ, name)
	}
}

func (f *fields) int(name string, dst *int) {
	if v := f.raw(name); v != nil && json.Unmarshal(v, dst) != nil {
		f.fail("%s: %q is not an integer", f.typ, name)
	}
}

func (f *fields) object(name string, dst *map[string]any) {
	v := f.raw(name)
	if v == nil {
		return
	}
	if v[0] != '{' || json.Unmarshal(v, dst) != nil {
		f.fail("%s: %q is not an object", f.typ, name)
	}
}

// meta is object for a log meta, which is decoded only up to MaxMetaBytes.
func (f *fields) meta(dst *map[string]any) {
	v := f.raw("meta")
	if len(v) <= MaxMetaBytes {
		f.object("meta", dst)
		return
	}
	// The line as a whole is valid JSON (it was split into fields), so
	// only the kind of the value is left to check.
	if v[0] != '{' {
		f.fail("%s: %q is not an object", f.typ, "meta")
		return
	}
	*dst = map[string]any{monitor.MetaTruncatedKey: len(v)}
}

// decode unmarshals with encoding/json's own rules (used for the parent's
// own run message and for "ok", where a *bool rejects every non-boolean).
func (f *fields) decode(name string, dst any, required bool) {
	v, ok := f.obj[name]
	if !ok {
		if required {
			f.fail("%s: missing %q", f.typ, name)
		}
		return
	}
	if json.Unmarshal(v, dst) != nil {
		f.fail("%s: %q has the wrong type", f.typ, name)
	}
}

// only reports the first failure, or a field outside allowed.
func (f *fields) only(allowed ...string) error {
	if f.err != nil {
		return f.err
	}
next:
	for k := range f.obj {
		if k == "type" && f.typ != "result error" {
			continue
		}
		for _, a := range allowed {
			if k == a {
				continue next
			}
		}
		return invalidf("%s: unknown field %q", f.typ, clip(k))
	}
	return nil
}

// clip keeps quoted child-controlled text short in error messages.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
