package wasm

import (
	"math"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// mmapMemory reserves the largest size the memory may reach as inaccessible
// address space, and makes pages accessible as the guest grows into them.
// Growing never copies, and Free returns the memory to the kernel at once
// instead of leaving it to the Go garbage collector — so a thousand runs
// that each touched 500 MiB do not inflate the host's heap.
type mmapMemory struct {
	a         *limitAllocator
	buf       []byte // the whole reservation
	committed uint64 // bytes made readable and writable
}

func newLinearMemory(a *limitAllocator, max uint64) experimental.LinearMemory {
	if max == 0 || max > math.MaxInt {
		return &heapMemory{a: a, max: max}
	}
	// MAP_NORESERVE with PROT_NONE costs address space only, not memory or
	// overcommit accounting.
	buf, err := unix.Mmap(-1, 0, int(max), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return &heapMemory{a: a, max: max}
	}
	return &mmapMemory{a: a, buf: buf}
}

func (m *mmapMemory) Reallocate(size uint64) []byte {
	if !m.a.grant(size) || size > uint64(len(m.buf)) {
		return nil
	}
	if size > m.committed {
		// Fresh anonymous pages read as zero, as WebAssembly requires.
		if err := unix.Mprotect(m.buf[m.committed:size], unix.PROT_READ|unix.PROT_WRITE); err != nil {
			return nil
		}
		m.committed = size
	}
	return m.buf[:size:size]
}

// Free is called by wazero once the module is closed and the guest no
// longer runs (a close from another goroutine defers it to the guest's own).
func (m *mmapMemory) Free() {
	if m.buf != nil {
		_ = unix.Munmap(m.buf)
		m.buf = nil
	}
}
