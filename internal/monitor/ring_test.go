package monitor

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

func messages(ls []Line) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Message
	}
	return out
}

func TestRingEvictsOldestFirst(t *testing.T) {
	r := NewRing(10)
	for _, m := range []string{"aaaa", "bbbb", "cc", "dddd", "e"} {
		r.Add(Line{Message: m})
	}
	// aaaa+bbbb+cc = 10 fit; dddd evicts aaaa (10), e evicts bbbb (7).
	got := strings.Join(messages(r.Lines()), ",")
	if got != "cc,dddd,e" || r.Dropped() != 2 || r.Bytes() != 7 {
		t.Fatalf("lines %q dropped %d bytes %d; want cc,dddd,e 2 7", got, r.Dropped(), r.Bytes())
	}
}

func TestRingStaysWithinBudget(t *testing.T) {
	r := NewRing(1000)
	for i := range 5000 {
		r.Add(Line{Message: fmt.Sprintf("line %05d", i)}) // 10 bytes each
	}
	ls := r.Lines()
	if len(ls) != 100 || r.Dropped() != 4900 || r.Bytes() != 1000 {
		t.Fatalf("held %d dropped %d bytes %d; want 100 4900 1000", len(ls), r.Dropped(), r.Bytes())
	}
	if ls[0].Message != "line 04900" || ls[99].Message != "line 04999" {
		t.Fatalf("held %q..%q; want the newest 100 in order", ls[0].Message, ls[99].Message)
	}
	if len(r.lines) > 200 {
		t.Errorf("backing slice holds %d entries for 100 lines: compaction not working", len(r.lines))
	}
}

func TestRingTruncatesOversizedLine(t *testing.T) {
	r := NewRing(1 << 20)
	r.Add(Line{Message: strings.Repeat("x", 100000)})
	m := r.Lines()[0].Message
	want := strings.Repeat("x", MaxLineBytes-markerMax)
	wantMarker := fmt.Sprintf(" …[truncated %d bytes]", 100000-len(want))
	if !strings.HasPrefix(m, want) || !strings.HasSuffix(m, wantMarker) || len(m) != len(want)+len(wantMarker) {
		t.Fatalf("message %d bytes ending %q; want %d x then %q", len(m), m[len(m)-40:], len(want), wantMarker)
	}
	if len(m) > MaxLineBytes {
		t.Errorf("message %d bytes, over the %d cap", len(m), MaxLineBytes)
	}

	// A small ring caps lines at its own size.
	small := NewRing(100)
	small.Add(Line{Message: strings.Repeat("y", 500)})
	m = small.Lines()[0].Message
	if len(m) > 100 || !strings.HasSuffix(m, fmt.Sprintf("[truncated %d bytes]", 500-(len(m)-len(strings.TrimLeft(m, "y"))))) {
		t.Fatalf("small ring kept %q (%d bytes)", m, len(m))
	}
}

func TestRingTinyKeepsNewest(t *testing.T) {
	r := NewRing(5)
	r.Add(Line{Message: "abc"})
	r.Add(Line{Message: "0123456789"})
	ls := r.Lines()
	if len(ls) != 1 || !strings.HasSuffix(ls[0].Message, "[truncated 10 bytes]") || r.Dropped() != 1 {
		t.Fatalf("lines %q dropped %d; want only the newest, as a marker", messages(ls), r.Dropped())
	}
}

func TestRingDefaultSize(t *testing.T) {
	r := NewRing(0)
	if r.max != DefaultRingBytes {
		t.Fatalf("NewRing(0) budget %d, want %d", r.max, DefaultRingBytes)
	}
}

func TestRingReplacesInvalidUTF8(t *testing.T) {
	r := NewRing(100)
	r.Add(Line{Message: "a\xffb"})
	if m := r.Lines()[0].Message; m != "a\uFFFDb" {
		t.Fatalf("message %q, want a\\uFFFDb", m)
	}
}

func TestRingLinesIsACopy(t *testing.T) {
	r := NewRing(100)
	r.Add(Line{Message: "one"})
	ls := r.Lines()
	ls[0].Message = "changed"
	if r.Lines()[0].Message != "one" {
		t.Fatal("Lines shares its slice with the ring")
	}
}

func TestRingConcurrent(t *testing.T) {
	r := NewRing(1 << 20)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				r.Add(Line{Message: fmt.Sprintf("g%d-%04d", g, i)})
				if i%100 == 0 {
					_ = r.Lines()
				}
			}
		})
	}
	wg.Wait()
	if n := len(r.Lines()); n != 8000 || r.Dropped() != 0 {
		t.Fatalf("held %d lines, dropped %d; want 8000, 0", n, r.Dropped())
	}
}

func TestFitNeverSplitsCharacters(t *testing.T) {
	s := strings.Repeat("é", 100) // 2 bytes each
	for max := markerMax; max < 250; max++ {
		got := fit([]byte(s), max, 0)
		if len(got) > max || !utf8.ValidString(got) {
			t.Fatalf("fit(max %d) = %d bytes, valid %v", max, len(got), utf8.ValidString(got))
		}
	}
}
