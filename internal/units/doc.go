// Package units parses and formats the limit values of the command line and the
// config file (docs/cli.md, "Units"): sizes, durations and counts, each of
// which may also be "unlimited".
//
// It protects against misread limits: a value is accepted only in one of the
// documented forms, and everything else is refused with an error naming the
// accepted form, so that "512m" never silently means 512 bytes or 512 milli-
// anything. It needs no kernel feature.
//
// Sizes are whole bytes: a bare number ("1048576"), or a number with a unit —
// B, K/KiB, M/MiB, G/GiB, T/TiB (1024-based) or KB, MB, GB, TB (1000-based) —
// optionally separated by spaces and optionally fractional ("1.5GiB"; the result
// is rounded down to a whole byte). Units are case-sensitive: "512mb" and
// "64k" are refused with a hint naming the spelling that is accepted, because
// lowercase prefixes are ambiguous (m is milli, b is bits) and the limit is a
// security boundary.
//
// Durations use Go syntax ("500ms", "2s", "1m30s"); a bare number other than 0
// is refused because it would not say whether it meant seconds or milliseconds.
//
// Every parser returns Unlimited for "unlimited". Whether 0 also means no limit
// depends on the setting (docs/cli.md) and is decided by the caller.
// Every error is a *Error that matches ErrInvalid with errors.Is.
package units
