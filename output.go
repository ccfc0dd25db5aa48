package sandbox

import (
	"errors"
	"io"
	"sync"
	"time"

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

// streamer copies a stream's chunks to the caller's writer (RunStream) on
// its own goroutine. A slow writer slows the program down (the reader waits
// for room), but once the run is being ended (stop closed) chunks are
// dropped instead, so a blocked writer can never hold a run past its limits.
type streamer struct {
	ch   chan []byte
	stop <-chan struct{}
	done chan struct{}
}

func newStreamer(w io.Writer, stop <-chan struct{}) *streamer {
	s := &streamer{ch: make(chan []byte, 64), stop: stop, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for b := range s.ch {
			w.Write(b)
		}
	}()
	return s
}

func (s *streamer) write(p []byte) {
	b := append([]byte(nil), p...)
	select { // room: always queued, even once the run is over
	case s.ch <- b:
		return
	default:
	}
	select { // full: wait for the writer, unless the run is over
	case s.ch <- b:
	case <-s.stop:
	}
}

// close lets the writer drain what is queued, waiting at most wait: the
// caller's writer may be blocked for good.
func (s *streamer) close(wait time.Duration) {
	close(s.ch)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
	}
}

// streamDrain bounds how long the end of a run waits for a Stream writer.
const streamDrain = 2 * time.Second

// stream attaches live copies of both captures to st, if any; the returned
// function ends them.
func stream(st *Stream, stop <-chan struct{}, out, errOut *capture) func() {
	if st == nil {
		return func() {}
	}
	var ss []*streamer
	for _, p := range []struct {
		w io.Writer
		c *capture
	}{{st.Stdout, out}, {st.Stderr, errOut}} {
		if p.w == nil {
			continue
		}
		s := newStreamer(p.w, stop)
		p.c.passthru = s.write
		ss = append(ss, s)
	}
	return func() {
		for _, s := range ss {
			s.close(streamDrain)
		}
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
