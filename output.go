package sandbox

import (
	"errors"
	"io"
	"sync"

	"github.com/kb-labs/sandbox/internal/monitor"
)

// errOutputLimit is what a capture's Write returns once its stream passed
// maxOutput; producers stop on it.
var errOutputLimit = errors.New("output limit reached")

// capture keeps the prefix of one output stream up to a limit, turns the
// stream into log lines, and reports when the limit is passed.
type capture struct {
	mu        sync.Mutex
	buf       []byte
	max       int64 // < 0: unlimited
	total     int64
	truncated bool
	lines     *monitor.LineWriter
	onLimit   func() // called once when the limit is passed
	passthru  func([]byte)
}

func newCapture(rs *runState, source, level string, max Size) *capture {
	c := &capture{max: int64(max), lines: monitor.NewLineWriter(source, level, rs.lineSink)}
	c.onLimit = func() {
		rs.limit(StatusOutputLimit, source+" passed the "+max.String()+" output limit")
	}
	return c
}

// Write never fails before the limit; at the limit it keeps the prefix, marks
// the stream truncated, fires onLimit once, and returns errOutputLimit.
func (c *capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.truncated {
		return 0, errOutputLimit
	}
	n := len(p)
	keep := p
	over := false
	if c.max >= 0 && c.total+int64(n) > c.max {
		keep = p[:c.max-c.total]
		over = true
	}
	c.total += int64(len(keep))
	c.buf = append(c.buf, keep...)
	c.lines.Write(keep)
	if c.passthru != nil {
		c.passthru(keep)
	}
	if over {
		c.truncated = true
		c.onLimit()
		return len(keep), errOutputLimit
	}
	return n, nil
}

func (c *capture) bytes() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines.Flush()
	return c.buf, c.truncated
}

// passthru adapts a Stream writer to a capture's live copy.
func passthru(w io.Writer) func([]byte) {
	if w == nil {
		return nil
	}
	return func(p []byte) { w.Write(p) }
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
