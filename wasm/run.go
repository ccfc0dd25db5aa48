package wasm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"
)

const (
	pageSize = 65536
	// maxPages is wazero's (and wasm32's) limit: 4 GiB.
	maxPages = 65536
	// maxModuleBytes bounds a module read from Spec.Path.
	maxModuleBytes = 512 << 20
)

// Mount makes the host directory HostPath visible to the guest at GuestPath.
// Path resolution never leaves HostPath: symbolic links are followed only
// while they stay inside it.
type Mount struct {
	HostPath  string // an absolute path to a directory
	GuestPath string // an absolute guest path; "/" is allowed
	ReadOnly  bool   // every write, create, rename, remove or chmod fails (EROFS)
	// OwnCreated gives what the guest creates (files, directories, links)
	// the owner and group of HostPath itself, as a process running as that
	// owner would create them: for a caller running as root, whose own ids
	// would otherwise own them. It needs the privilege to chown.
	OwnCreated bool
}

// Spec is one run of a module. Nothing of the host reaches the guest except
// what is named here.
type Spec struct {
	// The module: a file path or its bytes (exactly one).
	Path  string
	Bytes []byte
	// Args is the guest's argv; argv[0] is the module name by convention.
	Args []string
	// Env is the guest's whole environment, as NAME=VALUE entries.
	Env []string
	// Stdin is read by the guest (nil: end of file at once). A read that
	// blocks does not hold the run past its context.
	Stdin io.Reader
	// Stdout and Stderr receive the guest's output (nil: discarded). A write
	// error ends the run (Outcome.OutputErr): this is how an output limit is
	// enforced. They must not retain the slices they are given.
	Stdout, Stderr io.Writer
	// Mounts are the only host directories visible; none by default.
	Mounts []Mount
	// MemoryLimitBytes is a hard limit on the guest's linear memory, rounded
	// down to 64 KiB pages; less than one page is refused. 0 means wazero's
	// own limit, 4 GiB.
	MemoryLimitBytes int64
	// Timeout bounds the guest's run from its instantiation (compilation,
	// which a warm Engine never repeats, does not count); 0 means none. When
	// it passes the run is Interrupted, like when ctx ends.
	Timeout time.Duration
}

// Outcome is how a run ended. Exactly one of Exited, Trap != "",
// Interrupted and OutputErr != nil describes the end, except that a guest
// that exits after a refused memory growth has both Exited and
// MemoryLimitHit, and a run interrupted while failing a write can have both
// Interrupted and OutputErr.
type Outcome struct {
	// ExitCode is the guest's exit status when Exited: the argument of
	// proc_exit, or 0 when _start returned.
	ExitCode int
	Exited   bool
	// Trap is the trap message ("wasm error: unreachable", "wasm error: out of
	// bounds memory access", stack overflow...) when the guest trapped, with
	// the guest's stack in TrapStack.
	Trap      string
	TrapStack string
	// MemoryLimitHit: a memory growth was refused at MemoryLimitBytes (even if
	// the guest then exited on its own), or the module's initial memory
	// exceeds it (then the guest did not run at all).
	MemoryLimitHit bool
	// MemoryPeakBytes is the high-water mark of the guest's linear memory.
	MemoryPeakBytes int64
	// Interrupted: the run's context ended before the guest did. The caller
	// tells a timeout from a cancellation with ctx.Err().
	Interrupted bool
	// OutputErr is the error of Stdout or Stderr that ended the run.
	OutputErr error
	// CompileTime is the time spent getting the compiled module (about zero
	// when CacheHit); RunTime covers instantiation and execution.
	CompileTime, RunTime time.Duration
	// CacheHit: the Engine already held the module (compiled or being
	// compiled by another run), so this run compiled nothing.
	CacheHit bool
	// CPUUser and CPUSystem are the CPU time of the thread that ran the
	// guest (instantiation, execution and host calls), when HasCPU.
	CPUUser, CPUSystem time.Duration
	HasCPU             bool
}

// errOutput is the cause given to the run's context when a write failed.
var errOutput = errors.New("wasm: output write failed")

// Run runs the module's _start once with the Spec's arguments, environment,
// streams and mounts, until it returns, exits, traps, or ctx ends. It is safe
// for concurrent use. The error is nil for every outcome of the execution; it
// is ErrInvalidSpec or ErrInvalidModule (wrapped, naming the problem) for a
// run that could not start, and ErrClosed when the Engine is or gets closed.
func (e *Engine) Run(ctx context.Context, s Spec) (Outcome, error) {
	var out Outcome
	limitPages, err := s.memoryLimitPages()
	if err != nil {
		return out, err
	}
	if err := s.checkModule(); err != nil {
		return out, err
	}
	if !e.begin() {
		return out, ErrClosed
	}
	defer e.runs.Done()

	start := time.Now()
	var m *module
	var hit bool
	if s.Path != "" {
		m, hit, err = e.acquireFile(s.Path)
	} else {
		m, hit, err = e.acquire(s.Bytes)
	}
	out.CompileTime, out.CacheHit = time.Since(start), hit
	if err != nil {
		return out, err
	}
	defer e.release(m)

	if limitPages > 0 && m.minPages > limitPages {
		// Refused before instantiation: wazero would have to allocate it.
		out.MemoryLimitHit = true
		return out, nil
	}

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var timedOut func() bool = func() bool { return false }
	if s.Timeout > 0 {
		var stop context.CancelFunc
		base := runCtx
		runCtx, stop = context.WithTimeout(runCtx, s.Timeout)
		defer stop()
		timed := runCtx
		timedOut = func() bool { return base.Err() == nil && timed.Err() != nil }
	}
	stopOnClose := context.AfterFunc(e.ctx, func() { cancel(ErrClosed) })
	defer stopOnClose()

	var outputErr error
	onWriteError := func(err error) {
		if outputErr == nil {
			outputErr = err
		}
		cancel(errOutput)
	}
	// cut: a host call (a sleep, a stdin read) returned early because runCtx
	// ended; whatever the guest did next (often exit 1 on the read error) is
	// a consequence of the interruption, not its own outcome.
	var cut atomic.Bool
	cfg, closeMounts, err := e.moduleConfig(runCtx, &s, onWriteError, &cut)
	if err != nil {
		return out, err
	}
	defer closeMounts()

	mem := &limitAllocator{limit: limitPages * pageSize}
	// The guest runs on this goroutine, host calls included: pinned to its
	// thread, the thread's CPU time is the guest's.
	runtime.LockOSThread()
	cpu0, cpuOK := threadCPU()
	start = time.Now()
	callErr, err := e.instantiateAndStart(experimental.WithMemoryAllocator(runCtx, mem), m.compiled, cfg)
	out.RunTime = time.Since(start)
	if cpu1, ok := threadCPU(); ok && cpuOK {
		out.CPUUser, out.CPUSystem, out.HasCPU = cpu1.user-cpu0.user, cpu1.sys-cpu0.sys, true
	}
	runtime.UnlockOSThread()
	if err != nil {
		return out, err
	}
	out.MemoryLimitHit, out.MemoryPeakBytes = mem.hit, int64(mem.peak)
	out.OutputErr = outputErr

	stopOnClose()
	cause := context.Cause(runCtx)
	var exitErr *sys.ExitError
	// Closed by wazero because runCtx ended? (A guest could proc_exit with
	// these codes itself, hence runCtx.Err().)
	closedByCtx := errors.As(callErr, &exitErr) && runCtx.Err() != nil &&
		(exitErr.ExitCode() == sys.ExitCodeContextCanceled || exitErr.ExitCode() == sys.ExitCodeDeadlineExceeded)
	switch {
	case closedByCtx || cut.Load():
		// Interrupted unless runCtx ended only because a write failed.
		out.Interrupted = ctx.Err() != nil || errors.Is(cause, ErrClosed) || timedOut()
	case callErr == nil:
		out.Exited = true
	case exitErr != nil:
		out.Exited, out.ExitCode = true, int(exitErr.ExitCode())
	default:
		out.Trap, out.TrapStack = splitTrap(callErr.Error())
	}
	if errors.Is(cause, ErrClosed) {
		return out, ErrClosed
	}
	return out, nil
}

// instantiateAndStart instantiates the module without start functions and
// then calls _start, so that a failure to link (err) is told apart from the
// guest's own end (callErr).
func (e *Engine) instantiateAndStart(ctx context.Context, cm wazero.CompiledModule, cfg wazero.ModuleConfig) (callErr, err error) {
	mod, err := e.rt.InstantiateModule(ctx, cm, cfg)
	if err != nil {
		var exitErr *sys.ExitError
		if errors.As(err, &exitErr) || strings.Contains(err.Error(), "wasm error:") {
			return err, nil // the module's start section ran and ended
		}
		if e.ctx.Err() != nil {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	defer mod.Close(context.Background())
	_, callErr = mod.ExportedFunction("_start").Call(ctx)
	return callErr, nil
}

// splitTrap separates wazero's trap message from the wasm stack trace that
// follows it.
func splitTrap(msg string) (trap, stack string) {
	trap, stack, _ = strings.Cut(msg, "\nwasm stack trace:\n")
	// wazero prefixes "module[name] function[_start] failed: ".
	if i := strings.Index(trap, "wasm error: "); i >= 0 {
		trap = trap[i:]
	}
	return trap, stack
}

// moduleConfig builds the guest's view for one run. closeMounts releases the
// mounts' directory handles and must be called after the run.
func (e *Engine) moduleConfig(ctx context.Context, s *Spec, onWriteError func(error), cut *atomic.Bool) (cfg wazero.ModuleConfig, closeMounts func(), err error) {
	cfg = e.base.WithName("").WithStartFunctions()
	if e.cfg.Deterministic {
		cfg = withDeterministicClock(cfg)
	} else {
		cfg = cfg.WithNanosleep(sleepUntilDone(ctx, cut))
	}
	for _, a := range s.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, nil, fmt.Errorf("%w: argument %q contains NUL", ErrInvalidSpec, a)
		}
	}
	cfg = cfg.WithArgs(s.Args...)
	for _, kv := range s.Env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" || strings.IndexByte(kv, 0) >= 0 {
			return nil, nil, fmt.Errorf("%w: environment entry %q is not NAME=VALUE", ErrInvalidSpec, kv)
		}
		cfg = cfg.WithEnv(name, value)
	}
	if s.Stdin != nil {
		cfg = cfg.WithStdin(newStdin(ctx, s.Stdin, cut))
	}
	if s.Stdout != nil {
		cfg = cfg.WithStdout(&guardWriter{w: s.Stdout, onError: onWriteError})
	}
	if s.Stderr != nil {
		cfg = cfg.WithStderr(&guardWriter{w: s.Stderr, onError: onWriteError})
	}
	fsc, closeMounts, err := mountConfig(s.Mounts)
	if err != nil {
		return nil, nil, err
	}
	if fsc != nil {
		cfg = cfg.WithFSConfig(fsc)
	}
	return cfg, closeMounts, nil
}

// memoryLimitPages validates MemoryLimitBytes and returns it in pages (0: no
// limit of ours).
func (s *Spec) memoryLimitPages() (uint64, error) {
	switch b := s.MemoryLimitBytes; {
	case b == 0:
		return 0, nil
	case b < pageSize:
		return 0, fmt.Errorf("%w: memory limit %d bytes is below one 64 KiB page", ErrInvalidSpec, b)
	default:
		return min(uint64(b)/pageSize, maxPages), nil
	}
}

// checkModule checks that the Spec names exactly one module.
func (s *Spec) checkModule() error {
	switch {
	case s.Path != "" && s.Bytes != nil:
		return fmt.Errorf("%w: both Path and Bytes are set", ErrInvalidSpec)
	case s.Path == "" && s.Bytes == nil:
		return fmt.Errorf("%w: no module (Path or Bytes)", ErrInvalidSpec)
	}
	return nil
}

// validateMount checks a mount's paths; the directory itself is checked when
// it is opened.
func validateMount(m Mount) error {
	if !filepath.IsAbs(m.HostPath) {
		return fmt.Errorf("%w: mount host path %q is not absolute", ErrInvalidSpec, m.HostPath)
	}
	if !path.IsAbs(m.GuestPath) || path.Clean(m.GuestPath) != m.GuestPath {
		return fmt.Errorf("%w: mount guest path %q is not an absolute clean path", ErrInvalidSpec, m.GuestPath)
	}
	return nil
}
