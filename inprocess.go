package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"
)

// inProcess runs Go functions (trusted: no isolation) and WebAssembly modules
// (untrusted: isolated by the WASM runtime) in the caller's process.
type inProcess struct {
	cfg  *Config
	once sync.Once
	wasm *wasmRunner // created by the first WASM run
}

func newInProcess(cfg *Config) (*inProcess, error) {
	return &inProcess{cfg: cfg}, nil
}

func (s *inProcess) supports(k Kind, h Handler) error {
	if len(h.Files) > 0 {
		return fmt.Errorf("%w: Files need subprocess mode (a workspace of the sandbox's own)", ErrUnsupportedHandler)
	}
	switch k {
	case KindFunc, KindWASM:
		return nil
	}
	return fmt.Errorf("%w: %s handlers need subprocess mode", ErrUnsupportedHandler, k)
}

func (s *inProcess) run(ctx context.Context, rs *runState) {
	switch rs.kind {
	case KindFunc:
		s.runFunc(ctx, rs)
	case KindWASM:
		s.runWASM(ctx, rs)
	}
}

func (s *inProcess) close() error {
	if s.wasm != nil {
		return s.wasm.close()
	}
	return nil
}

type funcReturn struct {
	data     any
	err      error
	panicked any
	stack    []byte
}

// runFunc calls a Go handler with a context that ends at the timeout or when
// the caller cancels; a function that ignores its context is abandoned after
// the grace period (it keeps its goroutine: Go cannot kill one).
func (s *inProcess) runFunc(ctx context.Context, rs *runState) {
	rs.result.Isolation = Isolation{Mode: InProcess, Runtime: "go", Network: NetworkHost} // the function is this process: its network is the host's
	exec := s.cfg.Execution
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if exec.Timeout != Unlimited {
		var c2 context.CancelFunc
		runCtx, c2 = context.WithTimeout(runCtx, time.Duration(exec.Timeout))
		defer c2()
	}
	hctx := &HandlerContext{Context: rs.ec, run: rs}
	span := rs.span("execute")
	done := make(chan funcReturn, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- funcReturn{panicked: p, stack: debug.Stack()}
			}
		}()
		data, err := rs.handler.Func(runCtx, rs.input, hctx)
		done <- funcReturn{data: data, err: err}
	}()

	var ret funcReturn
	select {
	case ret = <-done:
	case <-runCtx.Done():
		s.contextEnded(ctx, rs, exec)
		grace := time.NewTimer(time.Duration(exec.Grace))
		defer grace.Stop()
		select {
		case ret = <-done:
		case <-grace.C:
			rs.log(LogLine{Level: "warn", Source: "sandbox", Message: "the Go handler ignored its context and was abandoned after the grace period"})
			rs.outcome(StatusHandlerError, CodeHandlerError, "handler did not return")
			span.End()
			return
		}
	}
	span.End()
	s.funcOutcome(rs, ret)
}

func (s *inProcess) contextEnded(ctx context.Context, rs *runState, exec Execution) {
	if ctx.Err() != nil {
		rs.limit(StatusCancelled, "cancelled by the caller: "+context.Cause(ctx).Error())
		return
	}
	rs.limit(StatusTimeout, fmt.Sprintf("stopped after the %s wall-clock limit", exec.Timeout))
}

func (s *inProcess) funcOutcome(rs *runState, ret funcReturn) {
	switch {
	case ret.panicked != nil:
		rs.outcome(StatusHandlerError, CodeHandlerCrashed, fmt.Sprint("panic: ", ret.panicked))
		rs.result.Error.Stack = string(ret.stack)
	case ret.err != nil:
		code := CodeHandlerError
		var ce CodedError
		if errors.As(ret.err, &ce) && ce.Code() != "" {
			code = ce.Code()
		}
		if errors.Is(ret.err, context.DeadlineExceeded) && rs.limitFired(StatusTimeout) {
			code = CodeTimeout
		}
		rs.outcome(StatusHandlerError, code, ret.err.Error())
	default:
		if ret.data != nil {
			b, err := json.Marshal(ret.data)
			if err != nil {
				rs.outcome(StatusHandlerError, CodeHandlerError, "handler result cannot be encoded as JSON: "+err.Error())
				return
			}
			rs.result.Data = b
		}
		rs.result.ExitCode = 0
		rs.outcome(StatusOK, "", "")
	}
}
