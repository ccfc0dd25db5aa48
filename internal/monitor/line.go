package monitor

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Line is one log line of a run (DESIGN section 4, "logs").
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
