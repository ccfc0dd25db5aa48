package sandbox

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"syscall"

	"github.com/kb-labs/sandbox/internal/cgroup"
	"github.com/kb-labs/sandbox/internal/proc"
	"github.com/kb-labs/sandbox/internal/spec"
)

// warm is a sandbox prepared ahead of its run: namespaces made, root
// filesystem built (phase 1), and its cgroup created; on a hybrid host the
// init was born in the run's v2 leaf. It is used once.
type warm struct {
	box   *proc.Sandbox
	group cgroup.Group
}

func (w *warm) close() {
	w.box.Close()
	if w.group != nil {
		w.group.Close()
	}
}

// prepare builds a warm sandbox for prep: the expensive part of a run that
// does not depend on the command.
func (s *subprocess) prepare(prep spec.Prepare) (*warm, error) {
	w := &warm{}
	opts := proc.Options{HostIDBase: s.cfg.Security.HostIDBase, HostNetwork: s.cfg.Permissions.Network == NetworkHost, CgroupFD: -1}
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
			if fd, err := g.Dir(); err == nil {
				opts.CgroupFD = fd
			}
		}
	}
	box, err := proc.Start(prep, opts)
	moveIn := false
	var se *proc.SetupError
	if err != nil && opts.CgroupFD >= 0 && errors.As(err, &se) && se.Errno == syscall.EACCES {
		// clone3 into the leaf fails with EACCES once in 3,000-10,000
		// starts under load, for reasons not found yet (never without
		// CLONE_INTO_CGROUP, in 20,000). Start as before and move the
		// init in: the same result, one grace period slower.
		opts.CgroupFD = -1
		box, err = proc.Start(prep, opts)
		moveIn = true
	}
	if err != nil {
		if w.group != nil {
			w.group.Close()
		}
		return nil, err
	}
	w.box = box
	if moveIn {
		if err := w.group.EnterLeaf(box.Pid); err != nil {
			w.close()
			return nil, fmt.Errorf("move the init into the run's v2 leaf: %w", err)
		}
	}
	if err := box.WaitPrepared(); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

// pool keeps warm sandboxes ready (DESIGN.md section 7, pool.size): a run
// takes one if there is one and otherwise prepares its own; background
// workers (one per core) refill. Sandboxes are single-use, so no state
// passes between runs.
type pool struct {
	s     *subprocess
	ready chan *warm
	want  chan struct{}
	stop  chan struct{}
	wg    sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	building int   // sandboxes being prepared by the workers
	failed   error // the last refill error, for the metrics and doctor
}

func newPool(s *subprocess, size int) *pool {
	// One refill worker per core, at most one per slot: preparing a
	// sandbox is mostly the init's own start (CPU), and no global lock
	// serialises preparations any more (RATIONALE "Placing the program").
	workers := min(size, runtime.NumCPU())
	p := &pool{s: s, ready: make(chan *warm, size), want: make(chan struct{}, workers), stop: make(chan struct{})}
	prep, err := s.basePrepare()
	if err != nil {
		p.setFailed(err)
		return p
	}
	for range workers {
		p.wg.Add(1)
		go p.refill(size, prep)
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
// another worker for the next one.
func (p *pool) claim(size int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.ready)+p.building >= size {
		return false
	}
	p.building++
	p.kick()
	return true
}

func (p *pool) unclaim() {
	p.mu.Lock()
	p.building--
	p.mu.Unlock()
}

// refill is one worker keeping the pool full.
func (p *pool) refill(size int, prep spec.Prepare) {
	defer p.wg.Done()
	for {
		select {
		case <-p.stop:
			return
		case <-p.want:
		}
		for p.claim(size) {
			w, err := p.s.prepare(prep)
			if err != nil {
				p.unclaim()
				p.setFailed(err)
				break // runs fall back to cold starts; retried on the next get
			}
			select {
			case p.ready <- w:
				p.unclaim()
			case <-p.stop:
				p.unclaim()
				w.close()
				return
			}
		}
	}
}

func (p *pool) setFailed(err error) {
	p.mu.Lock()
	p.failed = err
	p.mu.Unlock()
}

// get returns a warm sandbox, or nil when none is ready. The refill waits
// for the run to call done: preparing a sandbox costs CPU a run in flight
// would otherwise compete for.
func (p *pool) get() *warm {
	select {
	case w := <-p.ready:
		return w
	default:
		p.kick()
		return nil
	}
}

// done tells the pool a run ended: time to refill.
func (p *pool) done() { p.kick() }

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
