package monitor

import (
	"sync"
	"unicode/utf8"
)

// DefaultRingBytes is the ring size used when NewRing is given no positive
// size; it is the default logBufferSize.
const DefaultRingBytes = 1 << 20

// Ring keeps the most recent lines of a run within a byte budget counted over
// their messages (Meta is not counted; its size is bounded where it is
// decoded). It is safe for concurrent use.
type Ring struct {
	mu      sync.Mutex
	max     int
	lineMax int
	lines   []Line // lines[head:] are held, oldest first
	head    int
	bytes   int
	dropped int
}

// NewRing returns a ring holding at most maxBytes of messages
// (DefaultRingBytes when maxBytes <= 0). A message longer than
// min(maxBytes, MaxLineBytes) is cut to that size with a marker; the newest
// line is always kept, so a ring smaller than the marker (about 40 bytes) may
// hold one line longer than maxBytes.
func NewRing(maxBytes int) *Ring {
	if maxBytes <= 0 {
		maxBytes = DefaultRingBytes
	}
	return &Ring{max: maxBytes, lineMax: min(maxBytes, MaxLineBytes)}
}

// Add appends l, cutting its message to the per-line cap and replacing
// invalid UTF-8, then evicts the oldest lines until the ring fits its budget.
// Meta is kept by reference: do not modify it after Add.
func (r *Ring) Add(l Line) {
	if len(l.Message) > r.lineMax || !utf8.ValidString(l.Message) {
		l.Message = fit([]byte(l.Message), r.lineMax, 0)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, l)
	r.bytes += len(l.Message)
	for r.bytes > r.max && len(r.lines)-r.head > 1 {
		r.bytes -= len(r.lines[r.head].Message)
		r.lines[r.head] = Line{} // release the message now, not at compaction
		r.head++
		r.dropped++
	}
	// Compact once the evicted prefix dominates, so memory stays proportional
	// to what is held and Add stays amortised O(1).
	if r.head > 64 && r.head > len(r.lines)/2 {
		n := copy(r.lines, r.lines[r.head:])
		clear(r.lines[n:])
		r.lines = r.lines[:n]
		r.head = 0
	}
}

// Lines returns a copy of the held lines, oldest first.
func (r *Ring) Lines() []Line {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Line, len(r.lines)-r.head)
	copy(out, r.lines[r.head:])
	return out
}

// Dropped returns how many lines have been evicted.
func (r *Ring) Dropped() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}

// Bytes returns the message bytes held.
func (r *Ring) Bytes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bytes
}
