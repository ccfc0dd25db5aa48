package sandbox

import (
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// A host that cannot prepare sandboxes (out of pids, user namespaces
// refused) must not make the pool retry in a loop: one attempt per worker,
// then one more per get or done.
//
// The pool runs in a synctest bubble: synctest.Wait returns once every
// worker is blocked for good, so "nobody asking" is a fact, not a guess
// after a sleep.
func TestPoolPausesAfterFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		p := startPool(4, 2, func() (*warm, error) {
			calls.Add(1)
			return nil, errors.New("no")
		})
		defer p.close()
		synctest.Wait()
		// Two workers may both claim before the first failure pauses the pool.
		if n := calls.Load(); n < 1 || n > 2 {
			t.Fatalf("%d preparations right after start, want 1 or 2 (one per worker at most)", n)
		}
		before := calls.Load()
		if w := p.get(); w != nil {
			t.Fatal("got a warm sandbox from a pool that cannot prepare")
		}
		synctest.Wait()
		if n := calls.Load() - before; n < 1 || n > 2 {
			t.Fatalf("%d preparations after a get, want 1 or 2", n)
		}
		before = calls.Load()
		time.Sleep(time.Hour) // fake time: every timer the pool might hold fires
		synctest.Wait()
		if n := calls.Load() - before; n != 0 {
			t.Fatalf("%d preparations with nobody asking, want 0", n)
		}
	})
}

// The workers fill the pool to its size, and no further.
func TestPoolFillsToSize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		p := startPool(5, 2, func() (*warm, error) {
			calls.Add(1)
			time.Sleep(5 * time.Millisecond) // fake time: preparations overlap
			return &warm{}, nil
		})
		defer func() {
			// warm{} has no box: drain by hand instead of p.close's w.close.
			p.mu.Lock()
			p.closed = true
			p.mu.Unlock()
			close(p.stop)
			p.wg.Wait()
		}()
		settle := func() { time.Sleep(time.Second); synctest.Wait() } // fake time: every preparation ends
		settle()
		if d, n := p.depth(), calls.Load(); d != 5 || n != 5 {
			t.Fatalf("depth %d after %d preparations, want 5 and 5", d, n)
		}
		if w := p.get(); w == nil {
			t.Fatal("get from a full pool returned nothing")
		}
		settle()
		if d, n := p.depth(), calls.Load(); d != 4 || n != 5 {
			t.Fatalf("before done: depth %d after %d preparations, want 4 and 5 (no refill while a run is in flight)", d, n)
		}
		p.done()
		settle()
		if d, n := p.depth(), calls.Load(); d != 5 || n != 6 {
			t.Fatalf("after one get: depth %d after %d preparations, want 5 and 6", d, n)
		}
	})
}
