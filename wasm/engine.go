package wasm

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Errors returned by Run (wrapped with details; test them with errors.Is).
// Every execution outcome — exit, trap, memory limit, interruption — is an
// Outcome, never one of these.
var (
	// ErrClosed: the Engine was closed before or during the run.
	ErrClosed = errors.New("wasm: engine closed")
	// ErrInvalidSpec: the Spec is unusable (no module or two, a bad mount,
	// environment entry, argument or memory limit).
	ErrInvalidSpec = errors.New("wasm: invalid spec")
	// ErrInvalidModule: the module does not decode, validate or link, or is
	// not a WASI command (no exported _start).
	ErrInvalidModule = errors.New("wasm: invalid module")
)

// maxCachedModules bounds the compiled modules an Engine keeps in memory; the
// least recently used one that no run is using is closed past it (it stays
// in the on-disk cache when Config.CacheDir is set).
const maxCachedModules = 64

// Config configures an Engine. The zero value is usable: an in-memory cache
// only, real clocks and randomness.
type Config struct {
	// CacheDir, when set, also keeps compiled modules on disk there, so a new
	// process does not compile them again. "" keeps them in memory only.
	CacheDir string
	// Deterministic gives every run the same clocks and random bytes:
	//   - wall clock: starts at 2022-01-01T00:00:00Z (deterministicEpoch);
	//   - monotonic clock: starts at 0;
	//     both read from one counter that advances 1 ms at every reading of
	//     either clock, and by the requested duration at every sleep (sleeps
	//     return at once: time is virtual);
	//   - random bytes (random_get): a ChaCha8 stream from a fixed seed,
	//     restarted for every run.
	// The output of a module that depends only on these is then the same on
	// every run. Off (default): time.Now, the host's monotonic clock, real
	// sleeps (ended early when the run's context ends) and crypto/rand.
	Deterministic bool
}

// Engine compiles and runs WASI modules. It is safe for concurrent use; Close
// releases everything it holds.
type Engine struct {
	cfg    Config
	rt     wazero.Runtime
	cache  wazero.CompilationCache // nil without CacheDir
	base   wazero.ModuleConfig     // the per-run config's static part
	ctx    context.Context         // ends when Close starts: stops runs in flight
	cancel context.CancelFunc
	runs   sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	tick    uint64
	modules map[[sha256.Size]byte]*module
	paths   map[string]pathKey // module files already hashed
}

// pathKey remembers the hash of a module file, valid while the file is the
// same one (device and inode) with the same size and modification time. A
// file rewritten in place within one mtime tick at the same size would be
// missed: whoever can do that controls the module anyway.
type pathKey struct {
	info os.FileInfo
	key  [sha256.Size]byte
}

// maxCachedPaths bounds Engine.paths (it is simply emptied past it).
const maxCachedPaths = 1024

// module is one compiled module, shared by the runs that use it.
type module struct {
	ready    chan struct{} // closed once compiled (or failed)
	compiled wazero.CompiledModule
	err      error
	minPages uint64 // initial size of its own memory, in pages
	refs     int    // runs using it; guarded by Engine.mu
	lastUse  uint64 // Engine.tick at the last acquire; guarded by Engine.mu
}

// NewEngine creates an Engine. It fails only when CacheDir cannot be used.
func NewEngine(cfg Config) (*Engine, error) {
	ctx := context.Background()
	// CloseOnContextDone makes compiled code check, at function entries and
	// loop headers, whether the module was closed because the run's context
	// ended: a tight loop stops without the guest's cooperation.
	rc := wazero.NewRuntimeConfig().WithCloseOnContextDone(true)
	e := &Engine{cfg: cfg, modules: map[[sha256.Size]byte]*module{}, paths: map[string]pathKey{}}
	if cfg.CacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm: compilation cache %q: %w", cfg.CacheDir, err)
		}
		e.cache = cache
		rc = rc.WithCompilationCache(cache)
	}
	// Without CacheDir no wazero cache at all: e.modules is the in-memory
	// cache, and unlike wazero's in-memory cache it is bounded.
	e.rt = wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, e.rt); err != nil {
		e.closeRuntime()
		return nil, fmt.Errorf("wasm: instantiating WASI: %w", err)
	}
	e.base = baseModuleConfig(cfg.Deterministic)
	e.ctx, e.cancel = context.WithCancel(context.Background())
	return e, nil
}

// Close stops the runs in flight (they return ErrClosed), waits for them,
// and releases the compiled modules, the runtime and the cache. Later Runs
// return ErrClosed. Close is idempotent.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.cancel()
	e.runs.Wait()

	ctx := context.Background()
	e.mu.Lock()
	for key, m := range e.modules {
		if m.compiled != nil {
			_ = m.compiled.Close(ctx)
		}
		delete(e.modules, key)
	}
	e.mu.Unlock()
	return e.closeRuntime()
}

func (e *Engine) closeRuntime() error {
	ctx := context.Background()
	err := e.rt.Close(ctx)
	if e.cache != nil {
		err = errors.Join(err, e.cache.Close(ctx))
	}
	return err
}

// begin registers a run, or reports that the Engine is closed.
func (e *Engine) begin() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.runs.Add(1)
	return true
}

// acquire returns the compiled module for bin, compiling it when this Engine
// has not seen it (once, however many runs ask at the same time). hit reports
// that it was already there (compiled, or being compiled by another run).
// The caller must release it.
func (e *Engine) acquire(bin []byte) (m *module, hit bool, err error) {
	key := sha256.Sum256(bin)
	e.mu.Lock()
	m, hit = e.lookup(key)
	if !hit {
		m = &module{ready: make(chan struct{}), refs: 1, lastUse: e.tick}
		e.modules[key] = m
	}
	e.mu.Unlock()

	if hit {
		<-m.ready
	} else {
		m.compiled, m.minPages, m.err = e.compile(bin)
		if m.err != nil {
			// Forget a failure, so a later run reports it afresh rather than
			// an invalid module pinning a cache slot.
			e.mu.Lock()
			if e.modules[key] == m {
				delete(e.modules, key)
			}
			e.mu.Unlock()
		}
		close(m.ready)
	}
	if m.err != nil {
		e.release(m)
		return nil, hit, m.err
	}
	return m, hit, nil
}

// lookup takes a hold on the module with this key if the Engine has it.
// e.mu must be held.
func (e *Engine) lookup(key [sha256.Size]byte) (*module, bool) {
	e.tick++
	m, ok := e.modules[key]
	if ok {
		m.refs++
		m.lastUse = e.tick
	}
	return m, ok
}

// acquireFile is acquire for a module file: when the file is unchanged since
// it was last hashed and its module is still compiled, neither reading nor
// hashing it again (the hot path of a warm Engine).
func (e *Engine) acquireFile(name string) (m *module, hit bool, err error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	e.mu.Lock()
	if pk, ok := e.paths[name]; ok && os.SameFile(pk.info, info) && pk.info.Size() == info.Size() && pk.info.ModTime().Equal(info.ModTime()) {
		if m, ok := e.lookup(pk.key); ok {
			e.mu.Unlock()
			<-m.ready
			if m.err != nil {
				e.release(m)
				return nil, true, m.err
			}
			return m, true, nil
		}
	}
	e.mu.Unlock()

	if info.Size() > maxModuleBytes {
		return nil, false, fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalidModule, name, maxModuleBytes)
	}
	bin := make([]byte, info.Size())
	if _, err := io.ReadFull(f, bin); err != nil {
		return nil, false, fmt.Errorf("%w: reading %s: %v", ErrInvalidModule, name, err)
	}
	m, hit, err = e.acquire(bin)
	if err == nil {
		e.mu.Lock()
		if len(e.paths) >= maxCachedPaths {
			clear(e.paths)
		}
		e.paths[name] = pathKey{info: info, key: sha256.Sum256(bin)}
		e.mu.Unlock()
	}
	return m, hit, err
}

func (e *Engine) compile(bin []byte) (wazero.CompiledModule, uint64, error) {
	minPages, err := memoryMinPages(bin)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	cm, err := e.rt.CompileModule(e.ctx, bin)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	start, ok := cm.ExportedFunctions()["_start"]
	if !ok || len(start.ParamTypes()) != 0 || len(start.ResultTypes()) != 0 {
		_ = cm.Close(e.ctx)
		return nil, 0, fmt.Errorf("%w: not a WASI command: no exported _start function of type () -> ()", ErrInvalidModule)
	}
	return cm, minPages, nil
}

// release drops a run's hold on m and trims the cache to its bound.
func (e *Engine) release(m *module) {
	var evict []api.Closer
	e.mu.Lock()
	m.refs--
	for len(e.modules) > maxCachedModules {
		var oldKey [sha256.Size]byte
		var old *module
		for k, c := range e.modules {
			if c.refs == 0 && c.compiled != nil && (old == nil || c.lastUse < old.lastUse) {
				oldKey, old = k, c
			}
		}
		if old == nil {
			break // all in use: over the bound until they are released
		}
		delete(e.modules, oldKey)
		evict = append(evict, old.compiled)
	}
	e.mu.Unlock()
	for _, c := range evict {
		_ = c.Close(context.Background())
	}
}
