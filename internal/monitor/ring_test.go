package monitor

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"
)

func messages(ls []Line) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Message
	}
	return out
}

// cost is what the ring charges a plain message of n ASCII bytes.
func cost(n int) int { return LineOverhead + 2 + n }

func TestRingEvictsOldestFirst(t *testing.T) {
	r := NewRing(cost(4) + cost(4) + cost(2))
	for _, m := range []string{"aaaa", "bbbb", "cc", "dddd", "e"} {
		r.Add(Line{Message: m})
	}
	// aaaa+bbbb+cc fit; dddd evicts aaaa, e evicts bbbb.
	got := strings.Join(messages(r.Lines()), ",")
	if want := cost(2) + cost(4) + cost(1); got != "cc,dddd,e" || r.Dropped() != 2 || r.Bytes() != want {
		t.Fatalf("lines %q dropped %d bytes %d; want cc,dddd,e 2 %d", got, r.Dropped(), r.Bytes(), want)
	}
}

func TestRingStaysWithinBudget(t *testing.T) {
	r := NewRing(100 * cost(10))
	for i := range 5000 {
		r.Add(Line{Message: fmt.Sprintf("line %05d", i)}) // 10 bytes each
	}
	ls := r.Lines()
	if len(ls) != 100 || r.Dropped() != 4900 || r.Bytes() != 100*cost(10) {
		t.Fatalf("held %d dropped %d bytes %d; want 100 4900 %d", len(ls), r.Dropped(), r.Bytes(), 100*cost(10))
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

// TestRingBoundsEmptyLines is the amplification case: empty lines cost
// their overhead, so a flood of them is bounded in entries and in the size
// of their JSON, not only in message bytes (which are zero).
func TestRingBoundsEmptyLines(t *testing.T) {
	const budget = 64 << 10
	r := NewRing(budget)
	for range 1 << 20 {
		r.Add(Line{Time: time.Now(), Level: "error", Source: "stderr"})
	}
	ls := r.Lines()
	if max := budget/LineOverhead + 1; len(ls) > max {
		t.Fatalf("held %d empty lines in a %d-byte ring; want at most %d", len(ls), budget, max)
	}
	if r.Dropped() != 1<<20-len(ls) {
		t.Errorf("dropped %d, want %d", r.Dropped(), 1<<20-len(ls))
	}
	b, err := json.Marshal(ls)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > budget {
		t.Fatalf("the held lines are %d bytes of JSON, over the %d-byte budget", len(b), budget)
	}
	if len(r.lines) > 2*len(ls)+64 {
		t.Errorf("backing slice holds %d entries for %d lines", len(r.lines), len(ls))
	}
}

// TestLineOverheadCoversAnEmptyLine checks the constant against what an
// empty line really costs: its JSON in a Result and its struct in memory.
func TestLineOverheadCoversAnEmptyLine(t *testing.T) {
	l := Line{Time: time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC), Level: "error", Source: "handler"}
	b, _ := json.Marshal(l)
	if n := len(b) + 1; n > LineOverhead { // +1: the comma between lines
		t.Errorf("an empty line is %d bytes of JSON, over LineOverhead %d", n, LineOverhead)
	}
	if n := int(unsafe.Sizeof(held{})); n > LineOverhead {
		t.Errorf("a held line is %d bytes in memory, over LineOverhead %d", n, LineOverhead)
	}
}

// TestRingChargesJSONSize: a message is charged as the JSON it becomes, so
// characters that encoding/json escapes cannot multiply the Result.
func TestRingChargesJSONSize(t *testing.T) {
	for _, m := range []string{"plain", "\x01\x02<>&\"\\\n\t", "\u2028\u2029é", strings.Repeat("<", 1000)} {
		_, c := NewRing(1 << 20).Add(Line{Message: m})
		b, _ := json.Marshal(m)
		if c < LineOverhead+len(b) {
			t.Errorf("%q charged %d, its JSON is %d bytes (+%d)", m, c, len(b), LineOverhead)
		}
	}
}

func TestRingBoundsMeta(t *testing.T) {
	r := NewRing(1 << 20)
	big := map[string]any{"k": strings.Repeat("m", 200000)}
	l, c := r.Add(Line{Message: "x", Meta: big})
	if len(l.Meta) != 1 || l.Meta[MetaTruncatedKey] == nil {
		t.Fatalf("a %d-byte meta was kept: %v keys", 200000, len(l.Meta))
	}
	if c > LineOverhead+64 {
		t.Errorf("the marker meta charged %d", c)
	}
	if got := r.Lines()[0].Meta[MetaTruncatedKey]; got != 200000+len(`{"k":""}`) {
		t.Errorf("marker %v, want the meta's JSON size %d", got, 200000+len(`{"k":""}`))
	}
	small := map[string]any{"a": 1.0, "b": "two"}
	l, c = r.Add(Line{Message: "x", Meta: small})
	if len(l.Meta) != 2 || c != LineOverhead+3+len(`{"a":1,"b":"two"}`) {
		t.Errorf("a small meta: kept %v, charged %d", l.Meta, c)
	}
	l, _ = r.Add(Line{Message: "x", Meta: map[string]any{"ch": make(chan int)}})
	if l.Meta[MetaTruncatedKey] != 0 {
		t.Errorf("an unencodable meta became %v, want the marker with 0", l.Meta)
	}
	// Many metas within the cap still fit the byte budget, meta included.
	r = NewRing(64 << 10)
	for range 1000 {
		r.Add(Line{Meta: map[string]any{"k": strings.Repeat("v", 1000)}})
	}
	if b, _ := json.Marshal(r.Lines()); len(b) > 64<<10 {
		t.Errorf("lines with meta are %d bytes of JSON in a 64KiB ring", len(b))
	}
}

func TestRingConcurrent(t *testing.T) {
	r := NewRing(8000 * cost(7))
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
