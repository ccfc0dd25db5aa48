package mount

import (
	"errors"
	"fmt"
)

// Sentinel errors wrapped by OptionError, for errors.Is.
var (
	// ErrTarget: a mount target is not absolute and clean, or is /, /proc,
	// /dev (or under them), or is used twice.
	ErrTarget = errors.New("invalid mount target")
	// ErrSource: a mount source is /, /proc, /sys, /dev (or under them), or is
	// not of the expected kind.
	ErrSource = errors.New("refused mount source")
	// ErrSocket: a source tree holds a unix socket and AllowSockets is false.
	ErrSocket = errors.New("mount source holds a unix socket")
	// ErrScanLimit: a source tree has more entries than the socket scan
	// inspects; fail closed rather than mount an unchecked tree.
	ErrScanLimit = errors.New("mount source too large to check for unix sockets")
	// ErrUnreadable: an id-mapped source holds entries the sandbox user
	// could not read (UnreadableError names them).
	ErrUnreadable = errors.New("mount source holds entries the sandbox user cannot read")
	// ErrNoIDMap: a source is on a filesystem that cannot be id-mapped
	// (IDMapError names it).
	ErrNoIDMap = errors.New("filesystem cannot be id-mapped")
	// ErrUnsupported: the platform or kernel cannot apply a plan.
	ErrUnsupported = errors.New("mount: unsupported on this platform")
)

// OptionError reports an invalid Options field. Option names the field as a
// caller wrote it (for example "ReadOnly[1].Source").
type OptionError struct {
	Option string
	Value  string
	Err    error
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("mount option %s %q: %v", e.Option, e.Value, e.Err)
}

func (e *OptionError) Unwrap() error { return e.Err }

// StepError is a failure in the child while applying a plan; Step names the
// set-up step (for example "pivot_root" or "bind /usr").
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("setup step %q: %v", e.Step, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// HostDirError explains why a host directory cannot serve as a writable
// mount for the sandbox user, and what to do about it.
type HostDirError struct {
	Path string
	// Problem says what is wrong; Fix is a command or action that solves it
	// without making the directory world-writable.
	Problem, Fix string
}

func (e *HostDirError) Error() string {
	return fmt.Sprintf("host directory %s: %s (fix: %s)", e.Path, e.Problem, e.Fix)
}

// IDMapError reports a source whose filesystem (or a filesystem mounted
// inside it) refuses an id-mapped mount.
type IDMapError struct {
	Path string
	// FS describes the filesystems: "nfs4 at /srv/data", with the
	// submounts under Path when there are any.
	FS  string
	Err error
}

func (e *IDMapError) Error() string {
	return fmt.Sprintf("%s is on a filesystem that cannot be id-mapped (%s): %v", e.Path, e.FS, e.Err)
}

func (e *IDMapError) Unwrap() []error { return []error{ErrNoIDMap, e.Err} }
