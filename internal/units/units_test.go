package units

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"1048576", 1048576},
		{"512B", 512},
		{"1K", 1024},
		{"1KiB", 1024},
		{"64KB", 64000},
		{"512MiB", 512 << 20},
		{"512M", 512 << 20},
		{"1MB", 1000000},
		{"2GiB", 2 << 30},
		{"2G", 2 << 30},
		{"3GB", 3e9},
		{"1TiB", 1 << 40},
		{"1.5GiB", 3 << 29},
		{"0.5KiB", 512},
		{"0.1KiB", 102}, // 102.4 rounded down
		{"1.25MB", 1250000},
		{"0.000000001GB", 1},
		{"512 MiB", 512 << 20},
		{"  64KiB\n", 64 << 10},
		{"007K", 7 << 10},
		{"9223372036854775807", 1<<63 - 1},
		{"8388607.999999TiB", 9223372036853676296}, // exact near the top of int64
		{"unlimited", Unlimited},
		{" unlimited ", Unlimited},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseSizeErrors(t *testing.T) {
	tests := []struct{ in, reason string }{
		{"", "empty"},
		{"   ", "empty"},
		{"-1", "negative"},
		{"-1MiB", "negative"},
		{"9223372036854775808", "too large"},
		{"8EiB", `unknown unit "EiB"`},
		{"8388608TiB", "too large"},
		{"10000000GB", ""}, // 1e16 fits: not an error; checked below
		{"abc", "must start with a number"},
		{"MiB", "must start with a number"},
		{".5GiB", "must start with a number"},
		{"+5", "must start with a number"},
		{"1.GiB", "no digits after the decimal point"},
		{"1.5", "a byte count must be a whole number"},
		{"1.5B", "a byte count must be a whole number"},
		{"512mb", `unknown unit "mb" (units are case-sensitive: "MB")`},
		{"64k", `unknown unit "k" (units are case-sensitive: "K")`},
		{"1kib", `(units are case-sensitive: "KiB")`},
		{"1Mi", `unknown unit "Mi"`},
		{"1 2", `unknown unit "2"`},
		{"1e6", `unknown unit "e6"`},
		{"0x10", `unknown unit "x10"`},
		{"Unlimited", "must start with a number"},
		{strings.Repeat("9", 65), "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("ParseSize(%q): %v", tt.in, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseSize(%q) = %d, want error %q", tt.in, got, tt.reason)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
			var e *Error
			if !errors.As(err, &e) || e.Kind != "size" || !strings.Contains(e.Reason, tt.reason) {
				t.Errorf("error %#v: want Kind size, Reason containing %q", err, tt.reason)
			}
			if !strings.Contains(err.Error(), `want a size such as 512MiB, 64KB or 1048576 bytes, or "unlimited"`) {
				t.Errorf("message %q does not state the accepted form", err)
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{Unlimited, "unlimited"},
		{0, "0"},
		{1, "1"},
		{1023, "1023"},
		{1024, "1KiB"},
		{1536, "1536"}, // 1.5KiB: whole in neither KiB nor KB
		{3 << 29, "1536MiB"},
		{512 << 20, "512MiB"},
		{1 << 30, "1GiB"},
		{1 << 40, "1TiB"},
		{64000, "64KB"},
		{1024000, "1000KiB"}, // binary preferred when both divide
		{3e9, "3GB"},
		{1<<63 - 1, "9223372036854775807"},
		{-5, "-5"},
	}
	for _, tt := range tests {
		if got := FormatSize(tt.in); got != tt.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"0", 0},
		{"0s", 0},
		{"500ms", 500 * time.Millisecond},
		{"2s", 2 * time.Second},
		{"1m", time.Minute},
		{"1m30s", 90 * time.Second},
		{"1.5h", 90 * time.Minute},
		{"250us", 250 * time.Microsecond},
		{"250µs", 250 * time.Microsecond},
		{" 30s ", 30 * time.Second},
		{"unlimited", Unlimited},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseDurationErrors(t *testing.T) {
	tests := []struct{ in, reason string }{
		{"", "empty"},
		{"-1s", "negative"},
		{"-1", "negative"},
		{"30", "missing unit (did you mean 30s or 30ms?)"},
		{"1.5", "missing unit"},
		{"00", "missing unit"},
		{"1d", "no day unit"},
		{"5x", "not a duration"},
		{"1s2", "not a duration"},
		{"99999999999h", "out of range"},
		{"s", "must start with a number"},
		{"+5s", "must start with a number"},
		{"Unlimited", "must start with a number"},
		{strings.Repeat("1", 65) + "s", "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			var e *Error
			if !errors.As(err, &e) || e.Kind != "duration" || !strings.Contains(e.Reason, tt.reason) {
				t.Fatalf("ParseDuration(%q) = %v, %v; want *Error with reason %q", tt.in, got, err, tt.reason)
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "want a duration such as 500ms") {
				t.Errorf("message %q: want ErrInvalid and the accepted form", err)
			}
		})
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{Unlimited, "unlimited"},
		{0, "0s"},
		{500 * time.Millisecond, "500ms"},
		{30 * time.Second, "30s"},
		{5 * time.Minute, "5m"},
		{90 * time.Second, "1m30s"},
		{time.Hour, "1h"},
		{time.Hour + 5*time.Second, "1h0m5s"},
		{2*time.Hour + 3*time.Minute, "2h3m"},
	}
	for _, tt := range tests {
		got := FormatDuration(tt.in)
		if got != tt.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tt.in, got, tt.want)
		}
		if back, err := ParseDuration(got); err != nil || back != tt.in {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", got, back, err, tt.in)
		}
	}
}

func TestParseCount(t *testing.T) {
	ok := []struct {
		in   string
		want int64
	}{{"0", 0}, {"128", 128}, {" 256 ", 256}, {"unlimited", Unlimited}, {"9223372036854775807", 1<<63 - 1}}
	for _, tt := range ok {
		got, err := ParseCount(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseCount(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
		if back, _ := ParseCount(FormatCount(got)); back != got {
			t.Errorf("FormatCount(%d) does not round-trip", got)
		}
	}
	bad := []struct{ in, reason string }{
		{"", "empty"}, {"-1", "negative"}, {"1.5", "not a whole number"}, {"1K", "not a whole number"},
		{"+1", "not a whole number"}, {"9223372036854775808", "too large"},
	}
	for _, tt := range bad {
		got, err := ParseCount(tt.in)
		var e *Error
		if !errors.As(err, &e) || e.Kind != "count" || !strings.Contains(e.Reason, tt.reason) {
			t.Errorf("ParseCount(%q) = %d, %v; want reason %q", tt.in, got, err, tt.reason)
		}
	}
}

func TestErrorCutsLongValue(t *testing.T) {
	_, err := ParseSize(strings.Repeat("x", 10000))
	if err == nil || len(err.Error()) > 300 {
		t.Fatalf("error %d bytes long, want a short message", len(err.Error()))
	}
}
