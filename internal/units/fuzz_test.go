package units

import "testing"

// The properties: parsing never panics, and whatever parses formats to a
// string that parses back to the same value.

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "1048576", "512MiB", "1.5GiB", "64 KB", "unlimited", "-1", "1e6", "9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			return
		}
		if n < 0 && n != Unlimited {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
		back, err := ParseSize(FormatSize(n))
		if err != nil || back != n {
			t.Fatalf("ParseSize(%q) = %d; FormatSize = %q parses to %d, %v", s, n, FormatSize(n), back, err)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"0", "500ms", "2s", "1m30s", "1.5h", "unlimited", "30", "-1s", "1d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d < 0 && d != Unlimited {
			t.Fatalf("ParseDuration(%q) = %v", s, d)
		}
		back, err := ParseDuration(FormatDuration(d))
		if err != nil || back != d {
			t.Fatalf("ParseDuration(%q) = %v; FormatDuration = %q parses to %v, %v", s, d, FormatDuration(d), back, err)
		}
	})
}

func FuzzParseCount(f *testing.F) {
	f.Add("128")
	f.Add("unlimited")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseCount(s)
		if err != nil {
			return
		}
		if back, err := ParseCount(FormatCount(n)); err != nil || back != n {
			t.Fatalf("ParseCount(%q) = %d does not round-trip: %d, %v", s, n, back, err)
		}
	})
}
