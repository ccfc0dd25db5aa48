package seccomp

import (
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Violation counts the attempts of one denied system call.
type Violation struct {
	Syscall string
	Count   int
}

// Call is one notification from the filter.
type Call struct {
	Nr   int
	Name string // the kernel's name; "syscall_N" for a number it does not know
	// Install marks the program installing a seccomp filter of its own
	// (seccomp(SECCOMP_SET_MODE_FILTER) or prctl(PR_SET_SECCOMP)), which
	// is not a denied call. Among stacked filters the kernel ranks ERRNO,
	// TRAP and KILL above USER_NOTIF, so once installed, such a filter
	// can answer denied calls before they are ever notified.
	Install bool
}

// Verdict is the supervisor's answer to a Call.
type Verdict int

const (
	// Deny fails the call with EPERM and counts it as a violation.
	Deny Verdict = iota
	// Continue lets the call run as if the filter had allowed it
	// (SECCOMP_USER_NOTIF_FLAG_CONTINUE) and does not count it. Only for
	// Install: the kernel runs the call with the arguments it reads
	// then, so Continue must never stand for a security decision.
	Continue
	// Hold counts the call and leaves it unanswered: it never completes,
	// and Serve returns ErrKill for the caller to kill the run.
	Hold
)

// DefaultVerdict is the answer without a decision function: Continue for an
// Install, Deny otherwise.
func DefaultVerdict(c Call) Verdict {
	if c.Install {
		return Continue
	}
	return Deny
}

// ErrKill is returned (wrapped, naming the call) by Listener.Serve when the
// decision function asked for the run to be killed. The offending call is left
// unanswered, so it never completes; the caller kills the run.
var ErrKill = errors.New("seccomp: violation asks for a kill")

// Listener serves a seccomp user-notification fd (from Install with
// FlagNewListener) in the supervisor: every notification is a denied call of
// the sandboxed program, counted by name and answered EPERM, or the program
// installing a filter of its own (Call.Install). Serve runs in one
// goroutine; Violations is safe to call concurrently with it and after it.
type Listener struct {
	fd int

	mu     sync.Mutex
	counts map[string]int
	closed bool
}

// NewListener takes ownership of the listener fd; Close releases it.
func NewListener(fd int) *Listener {
	return &Listener{fd: fd, counts: map[string]int{}}
}

// Violations returns the denied calls seen so far, most frequent first (ties
// by name).
func (l *Listener) Violations() []Violation {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Violation, 0, len(l.counts))
	for name, n := range l.counts {
		out = append(out, Violation{Syscall: name, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Syscall < out[j].Syscall
	})
	return out
}

func (l *Listener) record(name string) {
	l.mu.Lock()
	l.counts[name]++
	l.mu.Unlock()
}

// syscallName names nr in the ABI identified by its AUDIT_ARCH value.
func syscallName(audit uint32, nr int) string {
	for _, a := range []*Arch{AMD64, ARM64} {
		if a.audit == audit {
			if n := a.Name(nr); n != "" {
				return n
			}
		}
	}
	return fmt.Sprintf("syscall_%d", nr)
}
