package seccomp

import "errors"

// Flag modifies Install (the SECCOMP_FILTER_FLAG_* values).
type Flag uint

const (
	// FlagTSync installs the filter on every thread of the process, not
	// only the caller (SECCOMP_FILTER_FLAG_TSYNC).
	FlagTSync Flag = 1 << 0
	// FlagNewListener returns a user-notification fd
	// (SECCOMP_FILTER_FLAG_NEW_LISTENER, Linux 5.0).
	FlagNewListener Flag = 1 << 3
)

// ErrNoNewPrivs is returned by Install when the calling thread has not set
// no_new_privs: a filter must not be installed by a thread that could still
// gain privileges through a set-uid exec.
var ErrNoNewPrivs = errors.New("seccomp: no_new_privs is not set on the calling thread (call SetNoNewPrivs first)")

// ErrUnsupported is returned by Install, SetNoNewPrivs and Serve outside
// Linux.
var ErrUnsupported = errors.New("seccomp: only supported on Linux")
