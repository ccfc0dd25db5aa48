package sandbox

import "github.com/kb-labs/sandbox/internal/proc"

// pool keeps prepared sandboxes ready (TODO(#8): warm pool).
type pool struct{}

func newPool(s *subprocess, size int) *pool { return &pool{} }

// get returns a prepared sandbox, or nil when none is ready.
func (p *pool) get() *proc.Sandbox { return nil }

func (p *pool) close() {}
