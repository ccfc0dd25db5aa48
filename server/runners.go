package server

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/kb-labs/sandbox"
)

// runnerCache keeps one Runner per distinct per-run configuration (limits,
// network, environment): a Runner's Config is fixed at New, so runs with
// other limits need their own. sandbox.New costs about 0.1ms here, so the
// cache mostly saves garbage; it is bounded, the least recently used entry
// is evicted and closed once its last run ends.
type runnerCache struct {
	max int

	mu      sync.Mutex
	entries map[string]*runnerEntry
	tick    uint64
	closed  bool
}

type runnerEntry struct {
	key     string
	r       *sandbox.Runner
	refs    int
	used    uint64
	evicted bool
}

func newRunnerCache(max int) *runnerCache {
	return &runnerCache{max: max, entries: map[string]*runnerEntry{}}
}

// acquire returns a Runner for cfg and a release func to call after the run.
// created reports whether sandbox.New was called.
func (c *runnerCache) acquire(cfg sandbox.Config) (r *sandbox.Runner, release func(), created bool, err error) {
	kb, err := json.Marshal(struct {
		E   sandbox.Execution
		P   sandbox.Permissions
		Sec sandbox.Security
		Mon sandbox.Monitoring
	}{cfg.Execution, cfg.Permissions, cfg.Security, cfg.Monitoring})
	if err != nil {
		return nil, nil, false, err
	}
	key := string(kb)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, false, sandbox.ErrClosed
	}
	c.tick++
	e := c.entries[key]
	if e == nil {
		nr, err := sandbox.New(cfg)
		if err != nil {
			return nil, nil, false, err
		}
		created = true
		e = &runnerEntry{key: key, r: nr}
		c.entries[key] = e
		c.evictLocked()
	}
	e.refs++
	e.used = c.tick
	return e.r, func() { c.release(e) }, created, nil
}

func (c *runnerCache) evictLocked() {
	for len(c.entries) > c.max {
		var old *runnerEntry
		for _, e := range c.entries {
			if old == nil || e.used < old.used {
				old = e
			}
		}
		delete(c.entries, old.key)
		old.evicted = true
		if old.refs == 0 {
			go old.r.Close()
		}
	}
}

func (c *runnerCache) release(e *runnerEntry) {
	c.mu.Lock()
	e.refs--
	closeIt := e.evicted && e.refs == 0
	c.mu.Unlock()
	if closeIt {
		e.r.Close()
	}
}

// close closes every Runner (each Close waits for its runs in flight).
func (c *runnerCache) close() {
	c.mu.Lock()
	c.closed = true
	var list []*runnerEntry
	for k, e := range c.entries {
		delete(c.entries, k)
		e.evicted = true
		list = append(list, e)
	}
	c.mu.Unlock()
	for _, e := range list {
		e.r.Close()
	}
}

func (c *runnerCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// gate bounds the runs in flight (slots) and those waiting for a slot
// (queue). Past both, enter fails at once with ErrOverloaded: a client is
// better served by a quick 429 than by a request that hangs.
type gate struct {
	slots    chan struct{}
	maxQueue int64

	mu       sync.Mutex
	waiting_ int64
	onQueue  func(depth int64)
}

func newGate(concurrency, queue int, onQueue func(int64)) *gate {
	return &gate{slots: make(chan struct{}, concurrency), maxQueue: int64(queue), onQueue: onQueue}
}

// enter takes a slot, waiting in the queue when all are busy. stop ends the
// wait (server shutdown); ctx is the client's.
func (g *gate) enter(ctx context.Context, stop <-chan struct{}) (func(), error) {
	select {
	case g.slots <- struct{}{}:
		return g.leave, nil
	default:
	}
	g.mu.Lock()
	if g.waiting_ >= g.maxQueue {
		g.mu.Unlock()
		return nil, ErrOverloaded
	}
	g.waiting_++
	g.onQueue(g.waiting_)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.waiting_--
		g.onQueue(g.waiting_)
		g.mu.Unlock()
	}()
	select {
	case g.slots <- struct{}{}:
		return g.leave, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-stop:
		return nil, errShuttingDown
	}
}

func (g *gate) leave() { <-g.slots }

func (g *gate) inFlight() int { return len(g.slots) }

func (g *gate) waiting() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting_
}

// poolDepth is the number of warm sandboxes ready over the cached Runners.
func (c *runnerCache) poolDepth() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.entries {
		n += e.r.PoolDepth()
	}
	return n
}

// budget is a count of bytes that may be held at once (request bodies in
// memory). take fails at once rather than waiting: a client is better
// served by a quick 429 than by a request that hangs.
type budget struct {
	mu   sync.Mutex
	left int64
}

func (b *budget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > b.left {
		return false
	}
	b.left -= n
	return true
}

func (b *budget) put(n int64) {
	b.mu.Lock()
	b.left += n
	b.mu.Unlock()
}
