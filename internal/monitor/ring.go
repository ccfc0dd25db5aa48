package monitor

import (
	"sync"
	"unicode/utf8"
)

// DefaultRingBytes is the ring size used when NewRing is given no positive
// size; it is the default logBufferSize.
const DefaultRingBytes = 1 << 20

// Ring keeps the most recent lines of a run within a byte budget. Each line
// is charged its Cost: its message and meta as JSON plus LineOverhead, so
// that an empty line is not free (RATIONALE.md, "What a log line costs").
// The budget therefore bounds both what the ring holds in memory and the size
// of the logs in a Result, and the number of lines held: at most
// maxBytes/LineOverhead + 1. It is safe for concurrent use.
type Ring struct {
	mu      sync.Mutex
	max     int
	lineMax int
	lines   []held // lines[head:] are held, oldest first
	head    int
	bytes   int
	dropped int
}

type held struct {
	Line
	cost int
}

// NewRing returns a ring holding lines that cost at most maxBytes in total
// (DefaultRingBytes when maxBytes <= 0). A message longer than
// min(maxBytes, MaxLineBytes) is cut to that size with a marker, and a meta
// larger than that as JSON is replaced by a marker (see Fit); the newest
// line is always kept, so a ring smaller than one line's cost may hold one
// line over its budget.
func NewRing(maxBytes int) *Ring {
	if maxBytes <= 0 {
		maxBytes = DefaultRingBytes
	}
	return &Ring{max: maxBytes, lineMax: min(maxBytes, MaxLineBytes)}
}

// Add fits l to the per-line caps (see Fit), appends it, and evicts the
// oldest lines until the ring fits its budget. It returns the line as kept
// and its cost, so that a caller passing the line on (to observers) passes
// on the same bounded line. Meta is kept by reference: do not modify it
// after Add.
func (r *Ring) Add(l Line) (Line, int) {
	l, cost := Fit(l, r.lineMax)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, held{l, cost})
	r.bytes += cost
	for r.bytes > r.max && len(r.lines)-r.head > 1 {
		r.bytes -= r.lines[r.head].cost
		r.lines[r.head] = held{} // release the message now, not at compaction
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
	return l, cost
}

// Lines returns a copy of the held lines, oldest first.
func (r *Ring) Lines() []Line {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Line, len(r.lines)-r.head)
	for i, h := range r.lines[r.head:] {
		out[i] = h.Line
	}
	return out
}

// Dropped returns how many lines have been evicted.
func (r *Ring) Dropped() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}

// Bytes returns the cost of the held lines (see Cost).
func (r *Ring) Bytes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bytes
}

// Fit returns l with its message valid UTF-8 of at most lineMax bytes (cut
// with a marker) and its meta replaced by {"_truncated": N} when its JSON
// form (N bytes) is larger than lineMax or cannot be encoded (N is then 0),
// together with the line's Cost. lineMax <= 0 means MaxLineBytes.
func Fit(l Line, lineMax int) (Line, int) {
	if lineMax <= 0 {
		lineMax = MaxLineBytes
	}
	if len(l.Message) > lineMax || !utf8.ValidString(l.Message) {
		l.Message = fit([]byte(l.Message), lineMax, 0)
	}
	meta := 0
	if l.Meta != nil {
		n, ok := jsonSize(l.Meta)
		if !ok || n > lineMax {
			if !ok {
				n = 0
			}
			l.Meta = map[string]any{MetaTruncatedKey: n}
			n, _ = jsonSize(l.Meta)
		}
		meta = n
	}
	return l, LineOverhead + jsonStringLen(l.Message) + meta
}
