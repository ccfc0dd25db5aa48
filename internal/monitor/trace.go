package monitor

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"
)

// ErrTraceparent is matched (errors.Is) by every error of ParseTraceparent.
var ErrTraceparent = errors.New("invalid traceparent")

// NewTraceID returns a random W3C trace id: 32 lowercase hex digits, not all
// zero.
func NewTraceID() string { return randomID(16) }

// NewSpanID returns a random W3C span (parent) id: 16 lowercase hex digits,
// not all zero.
func NewSpanID() string { return randomID(8) }

func randomID(n int) string {
	b := make([]byte, n)
	for {
		rand.Read(b) // never fails (crypto/rand since Go 1.24)
		for _, c := range b {
			if c != 0 {
				return hex.EncodeToString(b)
			}
		}
	}
}

// ValidTraceID reports whether s is a W3C trace id: 32 lowercase hex digits,
// not all zero.
func ValidTraceID(s string) bool { return validID(s, 32) }

// ValidSpanID reports whether s is a W3C span id: 16 lowercase hex digits,
// not all zero.
func ValidSpanID(s string) bool { return validID(s, 16) }

func validID(s string, n int) bool {
	return len(s) == n && lowerHex(s) && strings.Trim(s, "0") != ""
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ParseTraceparent parses a W3C traceparent header
// ("00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>"). Version 00 must be
// exactly 55 characters; a later version (01 to fe) may carry more fields
// after a '-', which are ignored, as the specification asks. Upper-case hex,
// all-zero ids and version ff are refused. sampled is bit 0 of the flags.
// Errors match ErrTraceparent.
func ParseTraceparent(h string) (traceID, spanID string, sampled bool, err error) {
	fail := func(why string) (string, string, bool, error) {
		return "", "", false, fmt.Errorf("%w: %s", ErrTraceparent, why)
	}
	if len(h) < 55 {
		return fail("shorter than 55 characters")
	}
	version := h[:2]
	switch {
	case !lowerHex(version):
		return fail("version is not two lowercase hex digits")
	case version == "ff":
		return fail("version ff is forbidden")
	case version == "00" && len(h) != 55:
		return fail("version 00 must be exactly 55 characters")
	case len(h) > 55 && h[55] != '-':
		return fail("fields after the flags must start with '-'")
	case h[2] != '-' || h[35] != '-' || h[52] != '-':
		return fail("fields must be separated by '-'")
	}
	traceID, spanID, flags := h[3:35], h[36:52], h[53:55]
	switch {
	case !lowerHex(traceID) || !lowerHex(spanID) || !lowerHex(flags):
		return fail("not lowercase hex")
	case !ValidTraceID(traceID):
		return fail("all-zero trace id")
	case !ValidSpanID(spanID):
		return fail("all-zero parent id")
	}
	b, _ := hex.DecodeString(flags)
	return traceID, spanID, b[0]&1 == 1, nil
}

// FormatTraceparent returns the version 00 traceparent header for the ids,
// which it does not check (see ValidTraceID and ValidSpanID).
func FormatTraceparent(traceID, spanID string, sampled bool) string {
	flags := "00"
	if sampled {
		flags = "01"
	}
	return "00-" + traceID + "-" + spanID + "-" + flags
}

// SpanData is a recorded span (docs/result.md, "traces"). End is zero while
// the span is open.
type SpanData struct {
	TraceID      string         `json:"traceId"`
	SpanID       string         `json:"spanId"`
	ParentSpanID string         `json:"parentSpanId"`
	Name         string         `json:"name"`
	Start        time.Time      `json:"startTime"`
	End          time.Time      `json:"endTime"`
	Attributes   map[string]any `json:"attributes"`
}

// Recorder records the spans of one run in one trace. It is safe for
// concurrent use. A nil *Recorder records nothing: Start returns a nil *Span,
// whose methods do nothing, so callers need not check whether tracing is on.
type Recorder struct {
	traceID string
	parent  string

	mu    sync.Mutex
	spans []SpanData
}

// NewRecorder returns a recorder continuing the caller's trace: spans started
// with Start are children of parentSpanID. An empty or invalid traceID starts
// a new trace (and drops parentSpanID); an invalid parentSpanID makes Start's
// spans roots.
func NewRecorder(traceID, parentSpanID string) *Recorder {
	if !ValidTraceID(traceID) {
		traceID, parentSpanID = NewTraceID(), ""
	}
	if !ValidSpanID(parentSpanID) {
		parentSpanID = ""
	}
	return &Recorder{traceID: traceID, parent: parentSpanID}
}

// TraceID returns the id of the recorder's trace.
func (r *Recorder) TraceID() string {
	if r == nil {
		return ""
	}
	return r.traceID
}

// Start starts a span that is a child of the recorder's parent span. attrs is
// copied.
func (r *Recorder) Start(name string, attrs map[string]any) *Span {
	if r == nil {
		return nil
	}
	return r.start(name, r.parent, attrs)
}

func (r *Recorder) start(name, parent string, attrs map[string]any) *Span {
	a := make(map[string]any, len(attrs))
	maps.Copy(a, attrs)
	s := &Span{rec: r, spanID: NewSpanID()}
	r.mu.Lock()
	defer r.mu.Unlock()
	s.idx = len(r.spans)
	r.spans = append(r.spans, SpanData{
		TraceID: r.traceID, SpanID: s.spanID, ParentSpanID: parent,
		Name: name, Start: time.Now(), Attributes: a,
	})
	return s
}

// Spans returns a copy of the spans started so far, in start order, open
// spans included (with a zero End).
func (r *Recorder) Spans() []SpanData {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]SpanData, len(r.spans))
	for i, s := range r.spans {
		s.Attributes = maps.Clone(s.Attributes)
		out[i] = s
	}
	return out
}

// Span is an open or ended span of a Recorder. Its methods are safe for
// concurrent use and do nothing on a nil *Span.
type Span struct {
	rec    *Recorder
	idx    int
	spanID string
}

// Child starts a span nested in s.
func (s *Span) Child(name string) *Span {
	if s == nil {
		return nil
	}
	return s.rec.start(name, s.spanID, nil)
}

// End records the end time; later calls keep the first.
func (s *Span) End() {
	if s == nil {
		return
	}
	now := time.Now()
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	if d := &s.rec.spans[s.idx]; d.End.IsZero() {
		d.End = now
	}
}

// SetAttr sets an attribute, also after End.
func (s *Span) SetAttr(k string, v any) {
	if s == nil {
		return
	}
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	s.rec.spans[s.idx].Attributes[k] = v
}

// Context returns the ids that identify s to a child process (as
// TRACEPARENT, see FormatTraceparent).
func (s *Span) Context() (traceID, spanID string) {
	if s == nil {
		return "", ""
	}
	return s.rec.traceID, s.spanID
}
