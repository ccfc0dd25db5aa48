package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/kb-labs/sandbox"
)

// Stable error codes of the API (server/openapi.json).
const (
	CodeBadRequest        = "BAD_REQUEST"
	CodeUnauthorized      = "UNAUTHORIZED"
	CodeLimitAboveCeiling = "LIMIT_ABOVE_CEILING"
	CodeBodyTooLarge      = "BODY_TOO_LARGE"
	CodeOverloaded        = "OVERLOADED"
	CodeNotFound          = "NOT_FOUND"
	CodeInternal          = "INTERNAL"
)

// Error is an error the service answers with: an HTTP status, a stable code
// and a message written by this package (never a wrapped Go error string).
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// ErrOverloaded is returned when the concurrency and queue bounds are full.
var ErrOverloaded = &Error{http.StatusTooManyRequests, CodeOverloaded, "too many runs in flight and queued; retry later"}

// errShuttingDown is answered to queued runs when the server drains.
var errShuttingDown = &Error{http.StatusServiceUnavailable, CodeOverloaded, "the server is shutting down; retry on another instance"}

func badRequest(format string, args ...any) *Error {
	return &Error{http.StatusBadRequest, CodeBadRequest, fmt.Sprintf(format, args...)}
}

func aboveCeiling(format string, args ...any) *Error {
	return &Error{http.StatusUnprocessableEntity, CodeLimitAboveCeiling, fmt.Sprintf(format, args...)}
}

// errorBody is the JSON of every error answer.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// toAPIError is the one mapping from any error to what a client sees.
// Unknown errors become INTERNAL with a fixed message; the real error goes
// to the log only.
func toAPIError(err error) *Error {
	var e *Error
	var mbe *http.MaxBytesError
	var ce *sandbox.ConfigError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &e):
		return e
	case errors.As(err, &mbe):
		return &Error{http.StatusRequestEntityTooLarge, CodeBodyTooLarge, fmt.Sprintf("the request body is larger than %d bytes", mbe.Limit)}
	case errors.As(err, &se):
		return badRequest("malformed JSON body at byte %d", se.Offset)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "body"
		}
		return badRequest("%s: want a JSON %s, got %s", field, jsonKind(te.Type.Kind().String()), te.Value)
	case errors.As(err, &ce):
		// ConfigError fields name config paths and accepted forms, never host
		// paths (the server fills no host path from a request into a Config).
		return badRequest("%s: %s", ce.Field, ce.Want)
	case errors.Is(err, sandbox.ErrInvalidHandler), errors.Is(err, sandbox.ErrUnsupportedHandler):
		return badRequest("the handler or its context is invalid for this server")
	}
	return &Error{http.StatusInternalServerError, CodeInternal, "internal error; the server log has the details under this request id"}
}

func jsonKind(k string) string {
	switch {
	case strings.HasPrefix(k, "int"), strings.HasPrefix(k, "uint"), strings.HasPrefix(k, "float"):
		return "number"
	case k == "slice":
		return "array"
	case k == "map", k == "struct":
		return "object"
	case k == "bool":
		return "boolean"
	}
	return k
}

// writeError answers err through the one mapper, counts the rejection and
// logs the underlying error.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := toAPIError(err)
	s.metrics.rejected.WithLabelValues(strings.ToLower(e.Code)).Inc()
	lvl := slog.LevelInfo
	if e.Status >= 500 && e.Code == CodeInternal {
		lvl = slog.LevelError
	}
	s.log.Log(r.Context(), lvl, "request refused", "requestId", requestIDFrom(r.Context()),
		"code", e.Code, "status", e.Status, "err", err.Error())
	if e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sandbox"`)
	}
	var body errorBody
	body.Error.Code, body.Error.Message = e.Code, e.Message
	writeJSON(w, e.Status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"INTERNAL","message":"the answer could not be encoded"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)+1))
	w.WriteHeader(status)
	// Two writes rather than append: a Result can be megabytes, and
	// append would copy it once more.
	w.Write(b)
	w.Write([]byte{'\n'})
}
