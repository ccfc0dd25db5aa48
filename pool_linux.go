package sandbox

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/kb-labs/sandbox/internal/cgroup"
	"github.com/kb-labs/sandbox/internal/hostid"
	"github.com/kb-labs/sandbox/internal/proc"
	"github.com/kb-labs/sandbox/internal/spec"
)

// warm is a sandbox prepared ahead of its run: namespaces made, root
// filesystem built (phase 1), and its cgroup created; on a hybrid host the
// init was born in the run's v2 leaf. It is used once.
type warm struct {
	box   *proc.Sandbox
	group cgroup.Group
	// prepared: the init has answered Prepare. A cold run does not wait
	// for it: Exec follows Prepare at once and reads both answers (one
	// round trip instead of two).
	prepared bool
}

func (w *warm) close() {
	w.box.Close()
	if w.group != nil {
		w.group.Close()
	}
}

// prepare builds a warm sandbox for prep: the expensive part of a run that
// does not depend on the command.
// wait is for the pool, whose sandboxes must be ready before a run takes
// them; a cold run passes false and pipelines Exec behind Prepare.
func (s *subprocess) prepare(prep spec.Prepare, wait bool) (*warm, error) {
	w := &warm{}
	opts := proc.Options{HostNetwork: s.cfg.Permissions.Network == NetworkHost, CgroupFD: -1}
	moveIn := false
	if s.cg != nil {
		g, err := s.cg.Create(s.prefix+fmt.Sprint(runSeq.Add(1)), cgroupLimits(s.cfg.Execution))
		if err != nil {
			return nil, fmt.Errorf("create the run's cgroup: %w", err)
		}
		w.group = g
		// On a hybrid host the init is born in the run's v2 leaf
		// (CLONE_INTO_CGROUP: no migration, no grace period), so the
		// program is too and cgroup.kill covers the whole run.
		if s.cg.Features().Leaf {
			fd, err := g.Dir()
			opts.CgroupFD, moveIn = fd, err != nil // without the fd: moved in after the start
		}
	}
	if !proc.Rootless() {
		// The sandbox's own host ids, held until its init is reaped:
		// proc.Start calls Reaped then (or at once if it fails).
		lease, err := hostid.Acquire(s.ids)
		if err != nil {
			if w.group != nil {
				w.group.Close()
			}
			return nil, err
		}
		opts.HostRoot, opts.HostUser, opts.Reaped = lease.Root, lease.User, lease.Release
	}
	box, err := proc.Start(prep, opts)
	if err != nil {
		if w.group != nil {
			w.group.Close()
		}
		return nil, err
	}
	w.box = box
	if moveIn {
		// Best effort, like the leaf itself: without it the run loses only
		// cgroup.kill (the v1 freezer kill still covers it).
		_ = w.group.EnterLeaf(box.Pid)
	}
	if !wait {
		return w, nil
	}
	if err := box.WaitPrepared(); err != nil {
		w.close()
		return nil, err
	}
	w.prepared = true
	return w, nil
}

// pool keeps warm sandboxes ready (config pool.size, docs/cli.md): a run
// takes one if there is one and otherwise prepares its own; background
// workers (one per core) refill. Sandboxes are single-use, so no state
// passes between runs.
type pool struct {
	prepare func() (*warm, error)
	size    int
	ready   chan *warm
	want    chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	building int  // sandboxes being prepared by the workers
	paused   bool // a preparation failed: wait for the next get or done
}

func newPool(s *subprocess, size int) *pool {
	prep, err := s.basePrepare()
	if err != nil {
		// No warm sandboxes: every run starts cold, and reports the error
		// if it recurs there.
		return &pool{size: size, ready: make(chan *warm, size), stop: make(chan struct{})}
	}
	// One refill worker per core, at most one per slot: preparing a
	// sandbox is mostly the init's own start (CPU), and no global lock
	// serialises preparations any more (RATIONALE "Placing the program").
	return startPool(size, min(size, runtime.NumCPU()), func() (*warm, error) { return s.prepare(prep, true) })
}

func startPool(size, workers int, prepare func() (*warm, error)) *pool {
	p := &pool{prepare: prepare, size: size, ready: make(chan *warm, size), want: make(chan struct{}, workers), stop: make(chan struct{})}
	for range workers {
		p.wg.Add(1)
		go p.refill()
	}
	p.kick()
	return p
}

func (p *pool) kick() {
	select {
	case p.want <- struct{}{}:
	default:
	}
}

// claim reserves one missing slot for the caller to prepare, and wakes
// another worker when a slot is still missing after it.
func (p *pool) claim() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.paused || len(p.ready)+p.building >= p.size {
		return false
	}
	p.building++
	if len(p.ready)+p.building < p.size {
		p.kick()
	}
	return true
}

func (p *pool) unclaim(failed bool) {
	p.mu.Lock()
	p.building--
	if failed {
		// A host that cannot prepare now (out of pids, user namespaces
		// refused) is not retried in a loop: the next get or done does.
		p.paused = true
	}
	p.mu.Unlock()
}

// refill is one worker keeping the pool full.
func (p *pool) refill() {
	defer p.wg.Done()
	for {
		select {
		case <-p.stop:
			return
		case <-p.want:
		}
		for p.claim() {
			w, err := p.prepare()
			if err != nil {
				p.unclaim(true)
				break // runs fall back to cold starts meanwhile
			}
			select {
			case p.ready <- w:
				p.unclaim(false)
			case <-p.stop:
				p.unclaim(false)
				w.close()
				return
			}
		}
	}
}

// resume lifts a pause after a failed preparation and wakes a worker.
func (p *pool) resume() {
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
	p.kick()
}

// get returns a warm sandbox, or nil when none is ready. The refill waits
// for the run to call done: preparing a sandbox costs CPU a run in flight
// would otherwise compete for.
func (p *pool) get() *warm {
	select {
	case w := <-p.ready:
		return w
	default:
		p.resume()
		return nil
	}
}

// done tells the pool a run ended: time to refill.
func (p *pool) done() { p.resume() }

// size is the number of warm sandboxes ready now.
func (p *pool) depth() int { return len(p.ready) }

func (p *pool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	close(p.stop)
	p.wg.Wait()
	for {
		select {
		case w := <-p.ready:
			w.close()
		default:
			return
		}
	}
}
