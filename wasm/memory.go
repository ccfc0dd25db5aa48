package wasm

import "github.com/tetratelabs/wazero/experimental"

// limitAllocator enforces Spec.MemoryLimitBytes and measures the guest's
// linear memory, one per run.
//
// Why an allocator hook (experimental.MemoryAllocator) rather than wazero's
// RuntimeConfig.WithMemoryLimitPages: the runtime-wide limit is fixed when the
// Runtime is created, while the limit here is per run, and a memory.grow the
// runtime refuses is invisible to the host (there is no hook on the
// instruction; checking "size == limit" after the fact misses every refused
// growth that would have overshot the limit, which is most of them). wazero
// calls Reallocate for every growth, so returning nil there refuses it
// (memory.grow yields -1 to the guest) and lets us record it, at no cost on
// the hot path. The same call gives the exact high-water mark.
//
// A module whose initial memory already exceeds the limit never gets here:
// Run refuses it before instantiation (wazero cannot take a refusal of the
// initial allocation).
type limitAllocator struct {
	limit uint64 // bytes; 0 = none of ours (wazero's 4 GiB stays)
	hit   bool   // a growth was refused at the limit
	peak  uint64 // largest size granted, bytes
}

var _ experimental.MemoryAllocator = (*limitAllocator)(nil)

// Allocate implements experimental.MemoryAllocator. max is the most wazero
// will ever ask for (the module's maximum or wazero's limit).
func (a *limitAllocator) Allocate(_, max uint64) experimental.LinearMemory {
	if a.limit > 0 && max > a.limit {
		max = a.limit
	}
	return newLinearMemory(a, max)
}

// grant decides whether a memory may grow to size bytes. Memory belongs to a
// single-threaded guest (shared memories are not enabled): no locking.
func (a *limitAllocator) grant(size uint64) bool {
	if a.limit > 0 && size > a.limit {
		a.hit = true
		return false
	}
	a.peak = max(a.peak, size)
	return true
}

// heapMemory is linear memory on the Go heap: the fallback where mmap is not
// available. It grows by doubling (bounded by max) to keep copies amortised.
type heapMemory struct {
	a   *limitAllocator
	max uint64
	buf []byte
}

func (m *heapMemory) Reallocate(size uint64) []byte {
	if !m.a.grant(size) || size > m.max {
		return nil
	}
	if size <= uint64(cap(m.buf)) {
		// Bytes past len were never handed out, so they are still zero.
		m.buf = m.buf[:size]
		return m.buf
	}
	newCap := min(max(size, 2*uint64(cap(m.buf))), m.max)
	buf := make([]byte, size, newCap)
	copy(buf, m.buf)
	m.buf = buf
	return buf
}

func (m *heapMemory) Free() { m.buf = nil }
