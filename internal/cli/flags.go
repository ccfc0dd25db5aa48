package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/kb-labs/sandbox"
	"github.com/kb-labs/sandbox/internal/units"
)

// flagError is a bad flag value, reported as one line naming the flag and the
// accepted form.
type flagError struct {
	flag  string
	value string
	want  string
}

func (e *flagError) Error() string {
	if e.value == "" {
		return fmt.Sprintf("--%s: %s", e.flag, e.want)
	}
	return fmt.Sprintf("--%s: %s; got %q", e.flag, e.want, e.value)
}

// parser wraps a FlagSet so that value errors keep their own wording.
type parser struct {
	fs  *flag.FlagSet
	bad *flagError
}

func newParser(name string) *parser {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &parser{fs: fs}
}

// value adapts a parse function into a flag.Value that records the first
// bad value with the flag's name.
type value struct {
	p     *parser
	name  string
	set   bool
	text  string
	parse func(string) error
	multi bool
}

func (v *value) String() string { return v.text }

func (v *value) Set(s string) error {
	if err := v.parse(s); err != nil {
		if v.p.bad == nil {
			v.p.bad = &flagError{flag: v.name, value: s, want: wantOf(err)}
		}
		return err
	}
	v.set, v.text = true, s
	return nil
}

// wantOf keeps the accepted-form part of a parse error, and for a unit the
// reason too: it may name the spelling meant ("MB", "30s").
func wantOf(err error) string {
	msg := err.Error()
	var ue *units.Error
	if i := strings.LastIndex(msg, "; want "); i >= 0 && errors.As(err, &ue) {
		return ue.Reason + msg[i:]
	}
	if i := strings.Index(msg, "want "); i >= 0 {
		msg = msg[i:]
	}
	// flagError quotes the value itself.
	msg, _, _ = strings.Cut(msg, "; got ")
	return msg
}

func (p *parser) add(name, usage string, parse func(string) error) *value {
	v := &value{p: p, name: name, parse: parse}
	p.fs.Var(v, name, usage)
	return v
}

func (p *parser) size(name, usage string, dst *sandbox.Size) *value {
	return p.add(name, usage, func(s string) error {
		// 0 means the default, like an absent flag (docs/cli.md).
		v, err := sandbox.ParseSize(s)
		if err == nil && v != 0 {
			*dst = v
		}
		return err
	})
}

func (p *parser) duration(name, usage string, dst *sandbox.Duration) *value {
	return p.add(name, usage, func(s string) error {
		v, err := sandbox.ParseDuration(s)
		if err != nil {
			return err
		}
		if v != 0 {
			*dst = v
		}
		return nil
	})
}

func (p *parser) count(name, usage string, dst *sandbox.Count) *value {
	return p.add(name, usage, func(s string) error {
		v, err := sandbox.ParseCount(s)
		if err != nil {
			return err
		}
		if v != 0 {
			*dst = v
		}
		return nil
	})
}

func (p *parser) list(name, usage string, parse func(string) error) *value {
	v := p.add(name, usage, parse)
	v.multi = true
	return v
}

// parse parses args; the error, if any, is a *flagError or a usage error.
func (p *parser) parse(args []string) error {
	err := p.fs.Parse(args)
	if p.bad != nil {
		return p.bad
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
			return &flagError{flag: strings.TrimLeft(name, "-"), want: "unknown flag; run 'sandbox " + p.fs.Name() + " -h' for the list"}
		}
		if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
			return &flagError{flag: strings.TrimLeft(name, "-"), want: "needs a value"}
		}
		return err
	}
	return nil
}

func (p *parser) usage(w io.Writer, synopsis string) {
	fmt.Fprintf(w, "Usage: %s\n\nFlags:\n", synopsis)
	p.fs.SetOutput(w)
	p.fs.PrintDefaults()
	p.fs.SetOutput(io.Discard)
}
