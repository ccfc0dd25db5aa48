package sandbox

import (
	"context"
)

// wasmRunner adapts the wasm package (TODO(#6)).
type wasmRunner struct{}

func (w *wasmRunner) close() error { return nil }

func (s *inProcess) runWASM(ctx context.Context, rs *runState) {
	rs.setupError(CodeSetupFailed, "WebAssembly modules are not supported yet")
}
