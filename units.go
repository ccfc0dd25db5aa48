package sandbox

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kb-labs/sandbox/internal/units"
)

// Unlimited, as a Size, Count or Duration, means no limit.
const Unlimited = units.Unlimited

// Size is a number of bytes. In config files and flags it is written as
// bytes or with K/KiB, M/MiB, G/GiB (1024-based) or KB, MB, GB (1000-based),
// or "unlimited".
type Size int64

// Common sizes.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
)

func (s Size) String() string { return units.FormatSize(int64(s)) }

// ParseSize parses a size as written in flags and config files.
func ParseSize(text string) (Size, error) {
	n, err := units.ParseSize(text)
	return Size(n), err
}

func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	*s = v
	return err
}

func (s *Size) UnmarshalJSON(b []byte) error {
	if n, ok := jsonNumber(b); ok {
		if n < 0 || n != float64(int64(n)) {
			return fmt.Errorf("want a size such as 512MiB or a whole number of bytes, or \"unlimited\"; got %s", b)
		}
		*s = Size(n)
		return nil
	}
	var text string
	if err := json.Unmarshal(b, &text); err != nil {
		return fmt.Errorf("want a size such as 512MiB, or \"unlimited\"; got %s", b)
	}
	return s.UnmarshalText([]byte(text))
}

// Duration is a time span written as 500ms, 2s, 1m, or "unlimited".
type Duration time.Duration

func (d Duration) String() string { return units.FormatDuration(time.Duration(d)) }

// ParseDuration parses a duration as written in flags and config files.
func ParseDuration(text string) (Duration, error) {
	v, err := units.ParseDuration(text)
	return Duration(v), err
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	*d = v
	return err
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	var text string
	if err := json.Unmarshal(b, &text); err != nil {
		return fmt.Errorf("want a duration such as 500ms, 2s or 1m, or \"unlimited\"; got %s", b)
	}
	return d.UnmarshalText([]byte(text))
}

// Count is a number of things (processes, open files), or Unlimited.
type Count int64

func (c Count) String() string {
	if c == Unlimited {
		return "unlimited"
	}
	return strconv.FormatInt(int64(c), 10)
}

// ParseCount parses a non-negative whole number or "unlimited".
func ParseCount(text string) (Count, error) {
	n, err := units.ParseCount(text)
	return Count(n), err
}

func (c Count) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

func (c *Count) UnmarshalText(b []byte) error {
	v, err := ParseCount(string(b))
	*c = v
	return err
}

func (c *Count) UnmarshalJSON(b []byte) error {
	if n, ok := jsonNumber(b); ok {
		if n < 0 || n != float64(int64(n)) {
			return fmt.Errorf("want a whole number >= 0 or \"unlimited\"; got %s", b)
		}
		*c = Count(n)
		return nil
	}
	var text string
	if err := json.Unmarshal(b, &text); err != nil {
		return fmt.Errorf("want a whole number or \"unlimited\"; got %s", b)
	}
	return c.UnmarshalText([]byte(text))
}

// CPUs is a CPU quota in cores (0.5 = half a core), or Unlimited.
type CPUs float64

func (c CPUs) String() string {
	if c == Unlimited {
		return "unlimited"
	}
	return strconv.FormatFloat(float64(c), 'f', -1, 64)
}

// ParseCPUs parses a positive number of cores or "unlimited".
func ParseCPUs(text string) (CPUs, error) {
	text = strings.TrimSpace(text)
	if text == "unlimited" {
		return Unlimited, nil
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || f < 0 || f > 4096 || f != f {
		return 0, fmt.Errorf("want a number of cores such as 0.5 or 2, or \"unlimited\"; got %q", text)
	}
	return CPUs(f), nil
}

func (c CPUs) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

func (c *CPUs) UnmarshalText(b []byte) error {
	v, err := ParseCPUs(string(b))
	*c = v
	return err
}

func (c *CPUs) UnmarshalJSON(b []byte) error {
	if n, ok := jsonNumber(b); ok {
		return c.UnmarshalText([]byte(strconv.FormatFloat(n, 'f', -1, 64)))
	}
	var text string
	if err := json.Unmarshal(b, &text); err != nil {
		return fmt.Errorf("want a number of cores such as 0.5, or \"unlimited\"; got %s", b)
	}
	return c.UnmarshalText([]byte(text))
}

func jsonNumber(b []byte) (float64, bool) {
	s := strings.TrimSpace(string(b))
	if s == "" || s[0] == '"' {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}

// Bool returns a pointer to b, for the optional switches of Config.
func Bool(b bool) *bool { return &b }
