//go:build !linux

package procevents

import "errors"

// Run is the set of processes of one run.
type Run struct{}

// KilledBySIGXFSZ reports whether a process of the run died of SIGXFSZ.
func (r *Run) KilledBySIGXFSZ() bool { return false }

// Watcher is unavailable off Linux.
type Watcher struct{}

// Shared fails off Linux.
func Shared() (*Watcher, error) { return nil, errors.New("procevents: Linux only") }

func (w *Watcher) Track(pid int) *Run { return &Run{} }
func (w *Watcher) Done(r *Run)        {}
func (w *Watcher) Lost() int64        { return 0 }
