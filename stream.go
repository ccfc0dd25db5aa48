package sandbox

import (
	"context"
	"io"
)

// Stream receives a copy of a command's output as it is produced, besides
// the capture in the Result (which stops at maxOutput). The CLI uses it to
// pass output through live.
type Stream struct {
	Stdout io.Writer
	Stderr io.Writer
}

// RunStream is Run with live output: the program's stdout and stderr are
// also written to st as they arrive (up to maxOutput per stream). Writes to
// st happen on the run's reader goroutines; a slow writer slows the program.
func (r *Runner) RunStream(ctx context.Context, h Handler, input any, execCtx *ExecutionContext, st Stream) (*Result, error) {
	return r.run(ctx, h, input, execCtx, &st)
}
