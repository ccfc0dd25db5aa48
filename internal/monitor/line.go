package monitor

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Line is one log line of a run (docs/result.md, "logs").
type Line struct {
	Time    time.Time      `json:"time"`
	Level   string         `json:"level"`
	Source  string         `json:"source"` // stdout, stderr, handler or sandbox
	Message string         `json:"message"`
	Meta    map[string]any `json:"meta"`
}

// MaxLineBytes caps the message of one line. A longer line keeps its head and
// ends with a marker such as " …[truncated 12345 bytes]"; the marker is
// included in the cap.
const MaxLineBytes = 64 << 10

// LineOverhead is what a line costs besides its message and meta: its
// struct in memory (time, level, source and the headers of its strings, about
// 80 bytes) and its JSON framing in a Result (the field names, the time and
// the punctuation, about 100 bytes), rounded up. Ring charges it to every
// line, so that millions of empty lines cannot fit in a small budget.
const LineOverhead = 128

// MetaTruncatedKey is the only key of the meta that replaces one too large
// to keep; its value is the size in bytes of the meta's JSON form (0 when it
// could not be encoded at all).
const MetaTruncatedKey = "_truncated"

// FitMessage returns s as valid UTF-8 of at most max bytes (MaxLineBytes
// when max <= 0), cut with a marker when needed.
func FitMessage(s string, max int) string {
	if max <= 0 {
		max = MaxLineBytes
	}
	if len(s) <= max && utf8.ValidString(s) {
		return s
	}
	return fit([]byte(s), max, 0)
}

// jsonStringLen bounds the size of s (valid UTF-8) as a JSON string from
// encoding/json: quotes, two bytes per short escape, six per \u escape (the
// other control characters, the HTML characters <, > and &, and U+2028 and
// U+2029).
func jsonStringLen(s string) int {
	n := 2 + len(s)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
			n++
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			n += 5
		case c == 0xe2 && i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xa8 || s[i+2] == 0xa9):
			n += 3 // the 3-byte character becomes a 6-byte escape
		}
	}
	return n
}

// jsonSize is the size of v as JSON; false when it cannot be encoded.
func jsonSize(v any) (int, bool) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, false
	}
	return len(b), true
}

func marker(n int64) string { return fmt.Sprintf(" …[truncated %d bytes]", n) }

// markerMax is reserved when cutting, so that head plus marker fit the cap
// whatever the count.
var markerMax = len(marker(math.MaxInt64))

// fit returns b as valid UTF-8 of at most max bytes, cutting it with a marker
// when needed. extra counts bytes of the same line already discarded (not in
// b); the marker counts input bytes, not replacement characters.
func fit(b []byte, max int, extra int64) string {
	if extra == 0 {
		if s, n := clip(b, max); n == len(b) {
			return s
		}
	}
	s, n := clip(b, max-markerMax)
	return s + marker(int64(len(b)-n)+extra)
}

// clip copies the longest prefix of b whose sanitised form fits in limit
// bytes, replacing each invalid byte with U+FFFD and never splitting a
// character. It returns that form and the number of input bytes it covers.
func clip(b []byte, limit int) (string, int) {
	if len(b) <= limit && utf8.Valid(b) {
		return string(b), len(b)
	}
	var sb strings.Builder
	i := 0
	for i < len(b) {
		r, size := utf8.DecodeRune(b[i:])
		bad := r == utf8.RuneError && size == 1
		n := size
		if bad {
			n = utf8.RuneLen(utf8.RuneError)
		}
		if sb.Len()+n > limit {
			break
		}
		if bad {
			sb.WriteRune(utf8.RuneError)
		} else {
			sb.Write(b[i : i+size])
		}
		i += size
	}
	return sb.String(), i
}
