//go:build !linux

package wasm

import "github.com/tetratelabs/wazero/experimental"

func newLinearMemory(a *limitAllocator, max uint64) experimental.LinearMemory {
	return &heapMemory{a: a, max: max}
}
