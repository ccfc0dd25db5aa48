package units

import (
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Unlimited is what the parsers return for "unlimited". It converts to
// time.Duration as well as to int64.
const Unlimited = -1

// Binary size units.
const (
	KiB int64 = 1 << (10 * (iota + 1))
	MiB
	GiB
	TiB
)

// maxInput bounds the work done on hostile input; no valid value is longer.
const maxInput = 64

// ErrInvalid is matched (errors.Is) by every error of this package.
var ErrInvalid = errors.New("invalid value")

// Error reports a value that is not in an accepted form.
type Error struct {
	Kind   string // "size", "duration" or "count"
	Value  string // the input as given (cut to 64 bytes)
	Reason string // what is wrong with it
}

var wants = map[string]string{
	"size":     `a size such as 512MiB, 64KB or 1048576 bytes, or "unlimited"`,
	"duration": `a duration such as 500ms, 2s, 1m or 1m30s, or "unlimited"`,
	"count":    `a whole number such as 128, or "unlimited"`,
}

func (e *Error) Error() string {
	return fmt.Sprintf("invalid %s %q: %s; want %s", e.Kind, e.Value, e.Reason, wants[e.Kind])
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *Error) Unwrap() error { return ErrInvalid }

func invalid(kind, value, reason string, args ...any) error {
	if len(value) > maxInput {
		value = value[:maxInput] + "..."
	}
	return &Error{Kind: kind, Value: value, Reason: fmt.Sprintf(reason, args...)}
}

type unit struct {
	name string
	mult int64
}

// formatUnits is in the order FormatSize prefers them: binary first, because
// the documented defaults are binary, then the largest unit that divides.
var formatUnits = []unit{
	{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
}

var sizeUnits = map[string]int64{
	"": 1, "B": 1,
	"K": KiB, "KiB": KiB, "M": MiB, "MiB": MiB, "G": GiB, "GiB": GiB, "T": TiB, "TiB": TiB,
	"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
}

// ParseSize parses a size in bytes (see the package comment for the forms).
// Surrounding white space is ignored. It returns Unlimited for "unlimited" and
// a *Error for an empty, negative, overflowing or unrecognised value.
func ParseSize(s string) (int64, error) {
	in := s
	s = strings.TrimSpace(s)
	switch {
	case s == "unlimited":
		return Unlimited, nil
	case s == "":
		return 0, invalid("size", in, "empty")
	case len(s) > maxInput:
		return 0, invalid("size", in, "too long")
	case s[0] == '-':
		return 0, invalid("size", in, "negative")
	}
	i := digits(s, 0)
	whole, frac := s[:i], ""
	if whole == "" {
		return 0, invalid("size", in, "must start with a number")
	}
	if i < len(s) && s[i] == '.' {
		j := digits(s, i+1)
		frac = s[i+1 : j]
		if frac == "" {
			return 0, invalid("size", in, "no digits after the decimal point")
		}
		i = j
	}
	name := strings.TrimLeft(s[i:], " \t")
	mult, ok := sizeUnits[name]
	if !ok {
		return 0, invalid("size", in, "unknown unit %q%s", name, caseHint(name))
	}
	if frac != "" && mult == 1 {
		return 0, invalid("size", in, "a byte count must be a whole number")
	}
	// big.Int keeps "0.000000001GB" and "9223372036854775807" exact; the
	// input length bound keeps it cheap.
	n, _ := new(big.Int).SetString(whole+frac, 10)
	n.Mul(n, big.NewInt(mult))
	n.Quo(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(frac))), nil))
	if !n.IsInt64() {
		return 0, invalid("size", in, "too large")
	}
	return n.Int64(), nil
}

func digits(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// caseHint names the accepted spelling of a unit written in the wrong case.
func caseHint(name string) string {
	keys := make([]string, 0, len(sizeUnits))
	for k := range sizeUnits {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k != "" && strings.EqualFold(k, name) {
			return fmt.Sprintf(" (units are case-sensitive: %q)", k)
		}
	}
	return ""
}

// FormatSize returns n in the form ParseSize reads back to n: "unlimited" for
// Unlimited, else with the largest unit that divides n exactly (binary units
// first), else as bare bytes. Other negative values are formatted as bare
// numbers, which ParseSize refuses.
func FormatSize(n int64) string {
	if n == Unlimited {
		return "unlimited"
	}
	if n > 0 {
		for _, u := range formatUnits {
			if n%u.mult == 0 {
				return strconv.FormatInt(n/u.mult, 10) + u.name
			}
		}
	}
	return strconv.FormatInt(n, 10)
}

// ParseDuration parses a duration in Go syntax ("500ms", "2s", "1m30s"; units
// ns, us, µs, ms, s, m, h). Surrounding white space is ignored. It returns
// Unlimited for "unlimited", and a *Error for an empty, negative or malformed
// value and for a bare number other than "0".
func ParseDuration(s string) (time.Duration, error) {
	in := s
	s = strings.TrimSpace(s)
	switch {
	case s == "unlimited":
		return Unlimited, nil
	case s == "":
		return 0, invalid("duration", in, "empty")
	case len(s) > maxInput:
		return 0, invalid("duration", in, "too long")
	case s[0] == '-':
		return 0, invalid("duration", in, "negative")
	case s[0] < '0' || s[0] > '9':
		return 0, invalid("duration", in, "must start with a number")
	case s != "0" && strings.Trim(s, "0123456789.") == "":
		return 0, invalid("duration", in, "missing unit (did you mean %ss or %sms?)", s, s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		if strings.HasSuffix(s, "d") {
			return 0, invalid("duration", in, "no day unit (use h, e.g. 24h)")
		}
		return 0, invalid("duration", in, "not a duration, or out of range (units: ns, us, ms, s, m, h)")
	}
	return d, nil
}

// FormatDuration returns d in the form ParseDuration reads back to d:
// "unlimited" for Unlimited, else time.Duration.String without zero trailing
// components ("1h", "5m", "1m30s", "500ms").
func FormatDuration(d time.Duration) string {
	if d == Unlimited {
		return "unlimited"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// ParseCount parses a count (processes, open files): a non-negative decimal
// integer, or "unlimited" (Unlimited). Surrounding white space is ignored.
func ParseCount(s string) (int64, error) {
	in := s
	s = strings.TrimSpace(s)
	switch {
	case s == "unlimited":
		return Unlimited, nil
	case s == "":
		return 0, invalid("count", in, "empty")
	case len(s) > maxInput:
		return 0, invalid("count", in, "too long")
	case s[0] == '-':
		return 0, invalid("count", in, "negative")
	case digits(s, 0) != len(s):
		return 0, invalid("count", in, "not a whole number")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, invalid("count", in, "too large")
	}
	return n, nil
}

// FormatCount returns n as ParseCount reads it: "unlimited" for Unlimited,
// else decimal.
func FormatCount(n int64) string {
	if n == Unlimited {
		return "unlimited"
	}
	return strconv.FormatInt(n, 10)
}
