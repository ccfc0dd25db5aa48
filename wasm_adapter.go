package sandbox

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/kb-labs/sandbox/internal/mount"
	"github.com/kb-labs/sandbox/wasm"
)

// wasmRunner adapts the wasm package to the Runner: one engine (and its
// compilation cache) per Runner, created on the first WASM run.
type wasmRunner struct {
	once   sync.Once
	engine *wasm.Engine
	err    error
}

func (w *wasmRunner) get(cfg *Config) (*wasm.Engine, error) {
	w.once.Do(func() {
		w.engine, w.err = wasm.NewEngine(wasm.Config{CacheDir: cfg.WASM.CacheDir, Deterministic: cfg.WASM.Deterministic})
	})
	return w.engine, w.err
}

func (w *wasmRunner) close() error {
	if w.engine != nil {
		return w.engine.Close()
	}
	return nil
}

// runWASM runs a WASI module under the same policy and Result as the
// subprocess engine: only the configured mounts, the environment policy, the
// output caps, a hard memory limit and a wall timeout that stops even a
// tight loop.
func (s *inProcess) runWASM(ctx context.Context, rs *runState) {
	rs.result.Isolation = Isolation{Mode: InProcess, Runtime: "wasm", Network: NetworkNone}
	s.once.Do(func() { s.wasm = &wasmRunner{} })
	setup := rs.span("setup")
	engine, err := s.wasm.get(s.cfg)
	if err != nil {
		setup.End()
		rs.setupError(CodeSetupFailed, "WebAssembly runtime: "+err.Error())
		return
	}
	exec := s.cfg.Execution
	mounts, err := wasmMounts(s.cfg, rs.ec)
	if err != nil {
		setup.End()
		rs.setupError(CodeSetupFailed, err.Error())
		return
	}
	stdout := newCapture(rs, "stdout", "info", exec.MaxOutput)
	stderr := newCapture(rs, "stderr", "error", exec.MaxOutput)
	// Live copies stop at the run's end: the caller's context, or the wall
	// limit (plus a moment for the guest to be stopped).
	stopCtx, stopStream := context.WithCancel(ctx)
	defer stopStream()
	if exec.Timeout != Unlimited {
		var c2 context.CancelFunc
		stopCtx, c2 = context.WithTimeout(stopCtx, time.Duration(exec.Timeout)+time.Second)
		defer c2()
	}
	endStream := stream(rs.stream, stopCtx.Done(), stdout, stderr)
	defer endStream()
	spec := wasm.Spec{
		Path:   rs.handler.WASM,
		Bytes:  rs.handler.WASMBytes,
		Args:   rs.handler.Args,
		Env:    resolveEnv(s.cfg.Permissions.Env, nil),
		Stdin:  stdinReader(rs.input),
		Stdout: stdout,
		Stderr: stderr,
		Mounts: mounts,
	}
	if len(spec.Args) == 0 {
		spec.Args = []string{"module.wasm"}
	}
	if exec.Memory != Unlimited {
		spec.MemoryLimitBytes = int64(exec.Memory)
	}
	if exec.Timeout != Unlimited {
		// From the guest's start: compiling a module (once per Runner) is
		// the engine's cost, not the guest's.
		spec.Timeout = time.Duration(exec.Timeout)
	}
	setup.End()
	span := rs.span("execute")
	out, err := engine.Run(ctx, spec)
	span.End()
	rs.result.Stdout, rs.result.StdoutTruncated = stdout.bytes()
	rs.result.Stderr, rs.result.StderrTruncated = stderr.bytes()
	if err != nil {
		rs.setupError(CodeSetupFailed, err.Error())
		return
	}
	if out.MemoryPeakBytes > 0 {
		setMemPeak(&rs.result.Metrics, out.MemoryPeakBytes)
	}
	if out.HasCPU {
		setCPU(&rs.result.Metrics, 0, out.CPUUser, out.CPUSystem)
	}
	if out.Interrupted {
		if ctx.Err() != nil {
			rs.limit(StatusCancelled, "cancelled by the caller: "+context.Cause(ctx).Error())
		} else {
			rs.limit(StatusTimeout, fmt.Sprintf("stopped after the %s wall-clock limit", exec.Timeout))
		}
	}
	if out.MemoryLimitHit {
		rs.limit(StatusMemoryLimit, fmt.Sprintf("memory growth refused at the %s limit", exec.Memory))
	}
	switch {
	case out.Trap != "":
		rs.result.ExitCode = -1
		rs.outcome(StatusSignaled, CodeWASMTrap, out.Trap)
		rs.result.Error.Stack = out.TrapStack
	case out.Exited && out.ExitCode == 0:
		rs.result.ExitCode = 0
		rs.outcome(StatusOK, "", "")
	case out.Exited:
		rs.result.ExitCode = out.ExitCode
		rs.outcome(StatusNonzeroExit, CodeProcessExit, fmt.Sprintf("exited with code %d", out.ExitCode))
	default:
		rs.result.ExitCode = -1
		rs.outcome(StatusSignaled, CodeWASMTrap, "the module was stopped")
	}
}

// wasmMounts are the host directories of a WASM run, checked by the rules
// of subprocess runs (checkInProcessPaths): the module runs with the
// caller's own access, which as root would reach any directory and read any
// file there, so as root it gets exactly what the sandbox user would, and
// what it creates belongs to the directory's owner, as under an id-mapped
// mount.
func wasmMounts(cfg *Config, ec ExecutionContext) ([]wasm.Mount, error) {
	fs := cfg.Permissions.Filesystem
	o := mount.Options{Workdir: fs.Workdir, Outdir: fs.Outdir, AllowSockets: fs.AllowSockets}
	if ec.Workdir != "" {
		o.Workdir = ec.Workdir
	}
	if ec.Outdir != "" {
		o.Outdir = ec.Outdir
	}
	var mounts []wasm.Mount
	for _, m := range fs.ReadOnly {
		o.ReadOnly = append(o.ReadOnly, mount.Bind{Source: m.Source, Target: orDefault(m.Target, m.Source)})
		mounts = append(mounts, wasm.Mount{HostPath: m.Source, GuestPath: orDefault(m.Target, m.Source), ReadOnly: true})
	}
	for _, m := range fs.ReadWrite {
		o.ReadWrite = append(o.ReadWrite, mount.Bind{Source: m.Source, Target: orDefault(m.Target, m.Source)})
		mounts = append(mounts, wasm.Mount{HostPath: m.Source, GuestPath: orDefault(m.Target, m.Source)})
	}
	if o.Workdir != "" {
		mounts = append(mounts, wasm.Mount{HostPath: o.Workdir, GuestPath: mount.Workspace})
	}
	if o.Outdir != "" {
		mounts = append(mounts, wasm.Mount{HostPath: o.Outdir, GuestPath: mount.Out})
	}
	own, err := checkInProcessPaths(cfg, o)
	if err != nil {
		return nil, err
	}
	for i := range mounts {
		mounts[i].OwnCreated = own
	}
	return mounts, nil
}

func stdinReader(input any) io.Reader {
	switch v := input.(type) {
	case nil:
		return strings.NewReader("")
	case []byte:
		return strings.NewReader(string(v))
	case string:
		return strings.NewReader(v)
	case io.Reader:
		return v
	}
	return strings.NewReader(fmt.Sprint(input))
}
