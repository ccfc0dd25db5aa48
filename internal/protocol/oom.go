package protocol

import (
	"bytes"
	"syscall"
)

// IsNodeHeapOOM reports whether a node process died of V8's own heap limit
// (--max-old-space-size, which the engine sets from the memory limit), so
// the run is memory_limit rather than signaled. V8 prints "FATAL ERROR: ...
// JavaScript heap out of memory" to stderr and calls abort(): the process
// ends by SIGABRT (code 134 when a shell reports it). Both the message and
// the abort are required, so neither a handler that merely prints the text
// nor an unrelated abort is taken for an OOM. stderrTail should be the last
// few KiB of the run's stderr.
func IsNodeHeapOOM(stderrTail []byte, exit ExitInfo) bool {
	aborted := exit.Signal == syscall.SIGABRT || (exit.Signal == 0 && exit.Code == 128+int(syscall.SIGABRT))
	return aborted && bytes.Contains(stderrTail, []byte("JavaScript heap out of memory"))
}
