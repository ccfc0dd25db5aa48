//go:build !linux

package seccomp

import (
	"context"

	"golang.org/x/net/bpf"
)

// SetNoNewPrivs returns ErrUnsupported outside Linux.
func SetNoNewPrivs() error { return ErrUnsupported }

// Install returns ErrUnsupported outside Linux.
func Install(prog []bpf.RawInstruction, flags Flag) (int, error) { return -1, ErrUnsupported }

// Serve returns ErrUnsupported outside Linux.
func (l *Listener) Serve(ctx context.Context, decide func(Call) Verdict) error {
	return ErrUnsupported
}

// Close does nothing outside Linux.
func (l *Listener) Close() error { return nil }
