package monitor

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

type sink struct {
	mu    sync.Mutex
	lines []Line
}

func (s *sink) emit(l Line) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, l)
}

func (s *sink) messages() []string { return messages(s.lines) }

func write(w *LineWriter, chunks ...string) {
	for _, c := range chunks {
		if n, err := w.Write([]byte(c)); n != len(c) || err != nil {
			panic(fmt.Sprintf("Write = %d, %v", n, err))
		}
	}
}

func TestLineWriter(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		flush  bool
		want   []string
	}{
		{"one line", []string{"hello\n"}, false, []string{"hello"}},
		{"split across writes", []string{"hel", "lo wo", "rld\nnext"}, false, []string{"hello world"}},
		{"byte by byte", strings.Split("ab\ncd\n", ""), false, []string{"ab", "cd"}},
		{"several in one write", []string{"a\nb\nc\n"}, false, []string{"a", "b", "c"}},
		{"blank lines kept", []string{"a\n\n\nb\n"}, false, []string{"a", "", "", "b"}},
		{"CRLF", []string{"a\r\nb\r\n"}, false, []string{"a", "b"}},
		{"CR and LF in separate writes", []string{"a\r", "\nb\r", "", "\n"}, false, []string{"a", "b"}},
		{"only the trailing CR", []string{"50%\r100%\r\n"}, false, []string{"50%\r100%"}},
		{"partial held until flush", []string{"done\npart"}, false, []string{"done"}},
		{"flush emits partial", []string{"done\npart"}, true, []string{"done", "part"}},
		{"flush with nothing pending", []string{"done\n"}, true, []string{"done"}},
		{"invalid UTF-8", []string{"a\xff\xfeb\n"}, false, []string{"a\uFFFD\uFFFDb"}},
		{"split character", []string{"\xc3", "\xa9\n"}, false, []string{"é"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s sink
			w := NewLineWriter("stdout", "info", s.emit)
			write(w, tt.chunks...)
			if tt.flush {
				w.Flush()
			}
			if got := s.messages(); strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Fatalf("lines %q, want %q", got, tt.want)
			}
			for _, l := range s.lines {
				if l.Source != "stdout" || l.Level != "info" || l.Time.IsZero() {
					t.Fatalf("line %+v: want source stdout, level info, a time", l)
				}
			}
		})
	}
}

func TestLineWriterOverlongLine(t *testing.T) {
	const max = 64
	keep := max - markerMax
	tests := []struct {
		name   string
		chunks []string
		want   []string
	}{
		{"exactly the cap", []string{strings.Repeat("a", max) + "\n"}, []string{strings.Repeat("a", max)}},
		{"cap plus CRLF", []string{strings.Repeat("a", max) + "\r\n"}, []string{strings.Repeat("a", max)}},
		{"one over", []string{strings.Repeat("a", max+1) + "\nnext\n"},
			[]string{strings.Repeat("a", keep) + marker(int64(max+1-keep)), "next"}},
		{"over across writes, dropped counted to the newline", []string{strings.Repeat("b", 50), strings.Repeat("b", 50), strings.Repeat("b", 900) + "\r\nok\n"},
			[]string{strings.Repeat("b", keep) + marker(int64(1000-keep)), "ok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s sink
			w := NewLineWriter("stderr", "error", s.emit)
			w.max = max
			write(w, tt.chunks...)
			if got := s.messages(); strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("lines %q, want %q", got, tt.want)
			}
			for _, m := range s.messages() {
				if len(m) > max {
					t.Errorf("line of %d bytes passes the cap %d", len(m), max)
				}
			}
			if cap(w.buf) > 2*max {
				t.Errorf("writer buffer grew to %d bytes", cap(w.buf))
			}
		})
	}
}

func TestLineWriterOverlongFlush(t *testing.T) {
	var s sink
	w := NewLineWriter("stdout", "info", s.emit)
	big := strings.Repeat("z", 3*MaxLineBytes)
	write(w, big[:MaxLineBytes], big[MaxLineBytes:])
	if len(s.lines) != 0 {
		t.Fatalf("emitted %d lines before the line ended", len(s.lines))
	}
	w.Flush()
	want := strings.Repeat("z", MaxLineBytes-markerMax) + marker(int64(2*MaxLineBytes+markerMax))
	if got := s.messages(); len(got) != 1 || got[0] != want {
		t.Fatalf("got %d lines, first ending %q; want one ending %q", len(got), got[0][len(got[0])-40:], want[len(want)-40:])
	}
}

// Sixteen writers each writing whole lines: every line must arrive intact and
// none may be lost or merged.
func TestLineWriterConcurrentWriters(t *testing.T) {
	const writers, perWriter = 16, 500
	var s sink
	w := NewLineWriter("stdout", "info", s.emit)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range perWriter {
				fmt.Fprintf(w, "w%02d-%04d-%s\n", g, i, strings.Repeat(string(rune('a'+g)), 1+i%97))
			}
		})
	}
	wg.Wait()
	w.Flush()
	if len(s.lines) != writers*perWriter {
		t.Fatalf("%d lines, want %d", len(s.lines), writers*perWriter)
	}
	seen := make(map[string]bool)
	next := make([]int, writers)
	for _, l := range s.lines {
		var g, i int
		var body string
		if n, err := fmt.Sscanf(l.Message, "w%02d-%04d-%s", &g, &i, &body); n != 3 || err != nil {
			t.Fatalf("line %q is not whole: %v", l.Message, err)
		}
		if body != strings.Repeat(string(rune('a'+g)), 1+i%97) || seen[l.Message] {
			t.Fatalf("line %q corrupt or repeated", l.Message)
		}
		if i != next[g] {
			t.Fatalf("writer %d: line %d arrived when %d was expected", g, i, next[g])
		}
		next[g]++
		seen[l.Message] = true
	}
}

func TestLineWriterNilEmit(t *testing.T) {
	w := NewLineWriter("stdout", "info", nil)
	write(w, "discarded\n", "partial")
	w.Flush()
	if len(w.buf) != 0 {
		t.Fatal("pending bytes left after Flush")
	}
}

func TestLineWriterIntoRing(t *testing.T) {
	r := NewRing(1 << 20)
	w := NewLineWriter("stderr", "error", func(l Line) { r.Add(l) })
	write(w, strings.Repeat("q", 200000)+"\n")
	m := r.Lines()[0].Message
	if strings.Count(m, "truncated") != 1 || len(m) > MaxLineBytes {
		t.Fatalf("a line cut by the writer is cut again by the ring: %d bytes, %d markers", len(m), strings.Count(m, "truncated"))
	}
}
