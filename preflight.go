package sandbox

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Preflight is what a host can enforce for a configuration (`sandbox
// doctor`, docs/cli.md). Passed is true when every check passed.
type Preflight struct {
	Passed bool    `json:"passed"`
	Checks []Check `json:"checks"`
}

// Check is one preflight check; Suggestions say how to fix a failure.
type Check struct {
	Name        string   `json:"name"`
	Passed      bool     `json:"passed"`
	Error       string   `json:"error,omitempty"`
	Detail      string   `json:"detail,omitempty"`
	Suggestions []string `json:"suggestions,omitempty"`
	// Optional checks inform without failing the preflight (a runtime that
	// is only needed by file handlers).
	Optional bool `json:"optional,omitempty"`
}

func (p *Preflight) add(c Check) {
	p.Checks = append(p.Checks, c)
}

func (p *Preflight) finish() {
	p.Passed = true
	for _, c := range p.Checks {
		if !c.Passed && !c.Optional {
			p.Passed = false
		}
	}
}

// RunPreflight checks what this host can enforce for cfg: each kernel
// feature by attempting it (host probes, then a real sandboxed run of
// /bin/true in a throwaway sandbox), the runtimes, and the configuration's
// own values.
func RunPreflight(ctx context.Context, cfg Config) Preflight {
	var p Preflight
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		p.add(Check{Name: "config", Error: err.Error(), Suggestions: []string{"fix the configuration value named in the error"}})
		p.finish()
		return p
	}
	p.add(Check{Name: "config", Passed: true})
	for _, hc := range hostChecks() {
		p.add(hc)
	}
	if c.Mode == Subprocess {
		p.add(hostIDCheck(c.Security))
	}
	if c.Mode == Subprocess {
		p.add(sandboxCheck(ctx, cfg))
	}
	for _, rt := range []struct{ name, bin, arg string }{{"runtime node", "node", "--version"}, {"runtime python", "/usr/bin/python3", "--version"}} {
		p.add(runtimeCheck(ctx, rt.name, rt.bin, rt.arg))
	}
	p.finish()
	return p
}

// sandboxCheck builds a real sandbox with cfg and runs /bin/true in it: the
// proof that the whole chain works on this host.
func sandboxCheck(ctx context.Context, cfg Config) Check {
	ch := Check{Name: "sandboxed run"}
	r, err := New(cfg)
	if err != nil {
		ch.Error = err.Error()
		ch.Suggestions = []string{"fix the failing checks above, or set bestEffort to run with what the host offers"}
		return ch
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	res, err := r.Run(ctx, Command("/bin/true"), nil, nil)
	switch {
	case err != nil:
		ch.Error = err.Error()
	case !res.OK:
		ch.Error = fmt.Sprintf("%s: %s", res.Status, res.Error.Message)
	default:
		ch.Passed = true
		iso := res.Isolation
		ch.Detail = fmt.Sprintf("namespaces %s, cgroup %s, seccomp %v, landlock ABI %d, %.1f ms",
			strings.Join(iso.Namespaces, ","), orNone(iso.Cgroup), iso.Seccomp, iso.LandlockABI, *res.Metrics.TimeMs)
		for _, d := range iso.Degraded {
			ch.Detail += fmt.Sprintf("; degraded %s: %s", d.Layer, d.Reason)
		}
	}
	if !ch.Passed {
		ch.Suggestions = []string{"run `sandbox doctor` as root, or see the failing check above"}
	}
	return ch
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func runtimeCheck(ctx context.Context, name, bin, arg string) Check {
	ch := Check{Name: name, Optional: true}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	path, err := exec.LookPath(bin)
	if err != nil {
		ch.Error = err.Error()
		ch.Suggestions = []string{"install it (needed only for " + strings.TrimPrefix(name, "runtime ") + " file handlers), e.g. apt-get install nodejs python3"}
		return ch
	}
	out, err := exec.CommandContext(ctx, path, arg).CombinedOutput()
	if err != nil {
		ch.Error = err.Error()
		return ch
	}
	ch.Passed = true
	ch.Detail = path + " " + strings.TrimSpace(string(out))
	return ch
}
