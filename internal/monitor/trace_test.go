package monitor

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestNewIDs(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		tr, sp := NewTraceID(), NewSpanID()
		if !ValidTraceID(tr) || !ValidSpanID(sp) {
			t.Fatalf("invalid ids %q %q", tr, sp)
		}
		if seen[tr] || seen[sp] {
			t.Fatalf("id repeated: %q %q", tr, sp)
		}
		seen[tr], seen[sp] = true, true
	}
}

const (
	tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	sid = "00f067aa0ba902b7"
)

func TestTraceparentRoundTrip(t *testing.T) {
	for _, sampled := range []bool{true, false} {
		h := FormatTraceparent(tid, sid, sampled)
		tr, sp, smp, err := ParseTraceparent(h)
		if err != nil || tr != tid || sp != sid || smp != sampled {
			t.Fatalf("ParseTraceparent(%q) = %q %q %v %v", h, tr, sp, smp, err)
		}
	}
	if h := FormatTraceparent(tid, sid, true); h != "00-"+tid+"-"+sid+"-01" {
		t.Fatalf("FormatTraceparent = %q", h)
	}
}

func TestParseTraceparent(t *testing.T) {
	ok := []struct {
		h       string
		sampled bool
	}{
		{"00-" + tid + "-" + sid + "-01", true},
		{"00-" + tid + "-" + sid + "-00", false},
		{"00-" + tid + "-" + sid + "-09", true}, // unknown flag bits are ignored
		{"00-" + tid + "-" + sid + "-fe", false},
		{"01-" + tid + "-" + sid + "-01", true},                 // a later version
		{"cc-" + tid + "-" + sid + "-01-what-the-future", true}, // a later version with more fields
	}
	for _, tt := range ok {
		tr, sp, sampled, err := ParseTraceparent(tt.h)
		if err != nil || tr != tid || sp != sid || sampled != tt.sampled {
			t.Errorf("ParseTraceparent(%q) = %q %q %v %v; want sampled %v", tt.h, tr, sp, sampled, err, tt.sampled)
		}
	}
}

func TestParseTraceparentRejects(t *testing.T) {
	zeroT, zeroS := strings.Repeat("0", 32), strings.Repeat("0", 16)
	tests := []struct{ name, h, why string }{
		{"empty", "", "shorter"},
		{"short trace id", "00-" + tid[1:] + "-" + sid + "-01", "shorter"},
		{"long trace id", "00-" + tid + "a-" + sid + "-01", "exactly 55"},
		{"long span id", "00-" + tid + "-" + sid + "a-01", "exactly 55"},
		{"version 00 with more fields", "00-" + tid + "-" + sid + "-01-x", "exactly 55"},
		{"version ff", "ff-" + tid + "-" + sid + "-01", "version ff"},
		{"uppercase version", "0A-" + tid + "-" + sid + "-01", "version"},
		{"uppercase trace id", "00-" + strings.ToUpper(tid) + "-" + sid + "-01", "lowercase hex"},
		{"uppercase span id", "00-" + tid + "-" + strings.ToUpper(sid) + "-01", "lowercase hex"},
		{"uppercase flags", "00-" + tid + "-" + sid + "-0A", "lowercase hex"},
		{"non-hex", "00-" + tid[:31] + "g-" + sid + "-01", "lowercase hex"},
		{"all-zero trace id", "00-" + zeroT + "-" + sid + "-01", "all-zero trace id"},
		{"all-zero span id", "00-" + tid + "-" + zeroS + "-01", "all-zero parent id"},
		{"wrong separator", "00_" + tid + "-" + sid + "-01", "separated"},
		{"later version, no dash after flags", "01-" + tid + "-" + sid + "-01x", "must start with '-'"},
		{"leading space", " 00-" + tid + "-" + sid + "-01", "version"},
		{"trailing space", "00-" + tid + "-" + sid + "-01 ", "exactly 55"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, sp, _, err := ParseTraceparent(tt.h)
			if !errors.Is(err, ErrTraceparent) || !strings.Contains(err.Error(), tt.why) {
				t.Fatalf("ParseTraceparent(%q) = %q %q %v; want ErrTraceparent (%s)", tt.h, tr, sp, err, tt.why)
			}
			if tr != "" || sp != "" {
				t.Errorf("ids %q %q returned with an error", tr, sp)
			}
		})
	}
}

func TestRecorderTree(t *testing.T) {
	rec := NewRecorder(tid, sid)
	run := rec.Start("run", map[string]any{"mode": "subprocess"})
	setup := run.Child("setup")
	setup.SetAttr("cgroup", "v1")
	setup.End()
	exec := run.Child("execute")
	exec.End()
	run.End()
	run.End() // a second End keeps the first time
	other := rec.Start("teardown", nil)
	other.End()

	spans := rec.Spans()
	if len(spans) != 4 {
		t.Fatalf("%d spans, want 4", len(spans))
	}
	byName := make(map[string]SpanData)
	for _, s := range spans {
		byName[s.Name] = s
		if s.TraceID != tid || !ValidSpanID(s.SpanID) || s.End.Before(s.Start) || s.End.IsZero() || s.Attributes == nil {
			t.Fatalf("span %+v malformed", s)
		}
	}
	_, runID := run.Context()
	if byName["run"].ParentSpanID != sid || byName["teardown"].ParentSpanID != sid {
		t.Errorf("top-level spans' parents %q %q, want the caller's %q", byName["run"].ParentSpanID, byName["teardown"].ParentSpanID, sid)
	}
	if byName["setup"].ParentSpanID != runID || byName["execute"].ParentSpanID != runID {
		t.Errorf("children's parents %q %q, want run %q", byName["setup"].ParentSpanID, byName["execute"].ParentSpanID, runID)
	}
	if byName["run"].Attributes["mode"] != "subprocess" || byName["setup"].Attributes["cgroup"] != "v1" {
		t.Errorf("attributes lost: %v %v", byName["run"].Attributes, byName["setup"].Attributes)
	}
	if byName["run"].End.Before(byName["execute"].End) {
		t.Error("the second End moved the end time")
	}
	if spans[0].Name != "run" || spans[3].Name != "teardown" {
		t.Errorf("spans not in start order: %s..%s", spans[0].Name, spans[3].Name)
	}
}

func TestRecorderCopies(t *testing.T) {
	rec := NewRecorder("", "")
	attrs := map[string]any{"a": 1}
	s := rec.Start("x", attrs)
	attrs["a"] = 2
	got := rec.Spans()
	got[0].Attributes["a"] = 3
	if v := rec.Spans()[0].Attributes["a"]; v != 1 {
		t.Fatalf("attribute a = %v, want 1: the recorder shares a map", v)
	}
	if !rec.Spans()[0].End.IsZero() {
		t.Fatal("open span has an end time")
	}
	s.End()
}

func TestNewRecorderIDs(t *testing.T) {
	tests := []struct {
		name, trace, parent string
		keepTrace           bool
		wantParent          string
	}{
		{"continue", tid, sid, true, sid},
		{"new trace", "", "", false, ""},
		{"invalid trace drops parent", strings.ToUpper(tid), sid, false, ""},
		{"invalid parent", tid, "xyz", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := NewRecorder(tt.trace, tt.parent)
			if !ValidTraceID(rec.TraceID()) || (rec.TraceID() == tid) != tt.keepTrace {
				t.Fatalf("trace id %q (keep %v)", rec.TraceID(), tt.keepTrace)
			}
			s := rec.Start("a", nil)
			if p := rec.Spans()[0].ParentSpanID; p != tt.wantParent {
				t.Fatalf("parent %q, want %q", p, tt.wantParent)
			}
			if tr, _ := s.Context(); tr != rec.TraceID() {
				t.Fatalf("span trace %q, recorder %q", tr, rec.TraceID())
			}
		})
	}
}

func TestNilRecorderAndSpan(t *testing.T) {
	var rec *Recorder
	s := rec.Start("x", nil)
	c := s.Child("y")
	c.SetAttr("k", 1)
	c.End()
	tr, sp := c.Context()
	if s != nil || c != nil || tr != "" || sp != "" || rec.Spans() != nil || rec.TraceID() != "" {
		t.Fatal("a nil recorder recorded something")
	}
}

func TestRecorderConcurrent(t *testing.T) {
	rec := NewRecorder("", "")
	root := rec.Start("root", nil)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				c := root.Child(fmt.Sprintf("c%d-%d", g, i))
				c.SetAttr("i", i)
				root.SetAttr(fmt.Sprintf("g%d", g), i)
				c.End()
				_ = rec.Spans()
			}
		})
	}
	wg.Wait()
	root.End()
	spans := rec.Spans()
	if len(spans) != 1+16*50 || len(spans[0].Attributes) != 16 {
		t.Fatalf("%d spans, root attrs %d; want %d, 16", len(spans), len(spans[0].Attributes), 1+16*50)
	}
}
