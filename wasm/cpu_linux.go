package wasm

import (
	"time"

	"golang.org/x/sys/unix"
)

type cpuTimes struct{ user, sys time.Duration }

// threadCPU is the calling thread's CPU time (the goroutine must be locked
// to it).
func threadCPU() (cpuTimes, bool) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return cpuTimes{}, false
	}
	return cpuTimes{time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())}, true
}
