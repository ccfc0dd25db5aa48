//go:build !linux

package wasm

import "time"

type cpuTimes struct{ user, sys time.Duration }

// threadCPU: per-thread CPU time is read on Linux only.
func threadCPU() (cpuTimes, bool) { return cpuTimes{}, false }
