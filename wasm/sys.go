package wasm

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	wsys "github.com/tetratelabs/wazero/sys"
)

// deterministicEpoch is the wall clock's first reading in Deterministic mode.
var deterministicEpoch = time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)

// deterministicSeed seeds the guest's random bytes in Deterministic mode.
var deterministicSeed = [32]byte([]byte("kb-labs/sandbox wasm determinism"))

// baseModuleConfig is the part of every run's configuration that does not
// depend on the run: clocks and randomness (the sleep and, in Deterministic
// mode, the clocks are per run: see withDeterministicClock).
func baseModuleConfig(deterministic bool) wazero.ModuleConfig {
	cfg := wazero.NewModuleConfig()
	if deterministic {
		return cfg
	}
	return cfg.WithSysWalltime().WithSysNanotime().
		WithOsyield(runtime.Gosched).
		WithRandSource(crand.Reader)
}

// withDeterministicClock gives one run its own virtual clock and seeded
// random source, as documented on Config.Deterministic.
func withDeterministicClock(cfg wazero.ModuleConfig) wazero.ModuleConfig {
	c := &virtualClock{}
	return cfg.
		WithWalltime(c.walltime, wsys.ClockResolution(time.Microsecond)).
		WithNanotime(c.nanotime, wsys.ClockResolution(1)).
		WithNanosleep(c.sleep).
		WithRandSource(rand.NewChaCha8(deterministicSeed))
}

// virtualClock is a clock that moves only when read (1 ms per reading, so a
// guest polling the clock still makes progress) or slept on.
type virtualClock struct{ ns atomic.Int64 }

func (c *virtualClock) read() int64 {
	return c.ns.Add(int64(time.Millisecond)) - int64(time.Millisecond)
}

func (c *virtualClock) walltime() (sec int64, nsec int32) {
	t := deterministicEpoch.Add(time.Duration(c.read()))
	return t.Unix(), int32(t.Nanosecond())
}

func (c *virtualClock) nanotime() int64 { return c.read() }

func (c *virtualClock) sleep(ns int64) {
	if ns > 0 {
		c.ns.Add(ns)
	}
}

// sleepUntilDone is a real sleep that ends early when ctx ends: a guest
// sleeping in poll_oneoff is inside a host function, where wazero's
// close-on-context-done cannot reach it.
// cut is set when the sleep was cut short.
func sleepUntilDone(ctx context.Context, cut *atomic.Bool) wsys.Nanosleep {
	return func(ns int64) {
		if ns <= 0 {
			return
		}
		t := time.NewTimer(time.Duration(ns))
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			cut.Store(true)
		}
	}
}

// guardWriter passes writes through until the first error, which it reports
// (to end the run) and then returns for every later write without calling
// the writer again. The guest is single-threaded: no locking is needed.
type guardWriter struct {
	w       io.Writer
	err     error
	onError func(error)
}

func (g *guardWriter) Write(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.w.Write(p)
	if err != nil {
		g.err = err
		g.onError(err)
	}
	return n, err
}

// newStdin returns r itself when reading it cannot block (an in-memory
// reader), and otherwise a reader whose Read returns when ctx ends, even if
// the read underneath is still blocked; it then sets cut.
func newStdin(ctx context.Context, r io.Reader, cut *atomic.Bool) io.Reader {
	switch r.(type) {
	case *bytes.Reader, *strings.Reader, *bytes.Buffer:
		return r
	}
	return &ctxReader{ctx: ctx, r: r, cut: cut}
}

type readResult struct {
	b   []byte
	err error
}

// ctxReader reads in a goroutine into its own buffer — never into the slice
// it is given, which is guest memory that is freed when the run ends while
// the read may still be blocked. A read abandoned because ctx ended finishes
// in the background and its bytes are dropped.
type ctxReader struct {
	ctx     context.Context
	r       io.Reader
	cut     *atomic.Bool
	pending chan readResult // a read in flight, nil when none
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		c.cut.Store(true)
		return 0, err
	}
	if c.pending == nil {
		ch := make(chan readResult, 1)
		buf := make([]byte, min(len(p), 64<<10))
		go func() {
			n, err := c.r.Read(buf)
			ch <- readResult{buf[:n], err}
		}()
		c.pending = ch
	}
	select {
	case res := <-c.pending:
		c.pending = nil
		// A read started for an earlier, larger p may hold more than this
		// p: keep the rest for the next Read.
		n := copy(p, res.b)
		if n < len(res.b) {
			rest := res.b[n:]
			ch := make(chan readResult, 1)
			ch <- readResult{rest, res.err}
			c.pending = ch
			return n, nil
		}
		return n, res.err
	case <-c.ctx.Done():
		c.cut.Store(true)
		return 0, c.ctx.Err()
	}
}
