package monitor

import (
	"errors"
	"testing"
)

// Property: never panics; what parses re-formats to a header that parses to
// the same ids and flag, and a version 00 header re-formats to itself but for
// unknown flag bits.
func FuzzParseTraceparent(f *testing.F) {
	for _, s := range []string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
		"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tr, sp, sampled, err := ParseTraceparent(h)
		if err != nil {
			if !errors.Is(err, ErrTraceparent) || tr != "" || sp != "" {
				t.Fatalf("error %v with ids %q %q", err, tr, sp)
			}
			return
		}
		if !ValidTraceID(tr) || !ValidSpanID(sp) {
			t.Fatalf("ParseTraceparent(%q) accepted ids %q %q", h, tr, sp)
		}
		out := FormatTraceparent(tr, sp, sampled)
		tr2, sp2, s2, err := ParseTraceparent(out)
		if err != nil || tr2 != tr || sp2 != sp || s2 != sampled {
			t.Fatalf("%q -> %q does not round-trip: %v", h, out, err)
		}
		if h[:2] == "00" && out[:53] != h[:53] {
			t.Fatalf("%q re-formatted as %q", h, out)
		}
	})
}
