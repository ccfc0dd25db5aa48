package monitor

import (
	"bytes"
	"io"
	"sync"
	"time"
)

var _ io.Writer = (*LineWriter)(nil)

// LineWriter turns a byte stream (a child's stdout or stderr) into Lines.
//
// A line ends at '\n'; a trailing '\r' is dropped; a line split across Write
// calls stays one line. A line longer than MaxLineBytes keeps its head and a
// marker counting the bytes dropped, and is emitted when it ends (newline or
// Flush) so that the count is exact; memory per writer stays within
// MaxLineBytes. Invalid UTF-8 bytes become U+FFFD.
//
// It is safe for concurrent use. emit is called with the writer's lock held,
// so lines arrive in order; it must not call back into the writer.
type LineWriter struct {
	mu     sync.Mutex
	source string
	level  string
	emit   func(Line)
	max    int

	buf    []byte // head of the current line, at most max bytes
	over   int64  // bytes of the current line beyond buf
	lastCR bool   // the last byte of the current line was '\r'
}

// NewLineWriter returns a writer emitting lines with the given source and
// level. A nil emit discards lines.
func NewLineWriter(source, level string, emit func(Line)) *LineWriter {
	if emit == nil {
		emit = func(Line) {}
	}
	return &LineWriter{source: source, level: level, emit: emit, max: MaxLineBytes}
}

// Write emits every line p completes and buffers the rest. It never fails.
func (w *LineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.add(p)
			break
		}
		w.add(p[:i])
		w.end()
		p = p[i+1:]
	}
	return n, nil
}

// Flush emits the pending partial line, if any.
func (w *LineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.end()
	}
}

func (w *LineWriter) add(b []byte) {
	if len(b) == 0 {
		return
	}
	w.lastCR = b[len(b)-1] == '\r'
	room := min(w.max-len(w.buf), len(b))
	w.buf = append(w.buf, b[:room]...)
	w.over += int64(len(b) - room)
}

func (w *LineWriter) end() {
	content, over := w.buf, w.over
	if w.lastCR {
		if over > 0 {
			over-- // the '\r' is among the bytes beyond buf
		} else {
			content = content[:len(content)-1]
		}
	}
	w.emit(Line{Time: time.Now(), Level: w.level, Source: w.source, Message: fit(content, w.max, over)})
	w.buf, w.over, w.lastCR = w.buf[:0], 0, false
}
