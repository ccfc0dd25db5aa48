// Package monitor holds the monitoring shared by every execution strategy
// (docs/result.md, "logs" and "traces"): log lines and the byte-bounded ring
// buffer that keeps them, an io.Writer that cuts a child's output into lines,
// and spans that follow W3C trace context.
//
// It protects the host against a run's output: the memory kept per run is
// bounded (Ring charges every line its message, its meta and a fixed
// LineOverhead, so a flood of empty lines is bounded like any other; and
// MaxLineBytes per line however long a line the child writes without a
// newline), lines written by concurrent writers are never
// interleaved, and messages are always valid UTF-8 so that JSON consumers of
// the Result do not choke. It also refuses malformed trace context from
// callers (ParseTraceparent) rather than propagating it to children.
//
// It needs no kernel feature; it is pure Go and portable.
package monitor
