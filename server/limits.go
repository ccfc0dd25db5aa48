package server

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/kb-labs/sandbox"
)

// Limits are the request-facing limits: numbers with
// the unit in the name. Zero or absent means the server's default.
type Limits struct {
	TimeoutMs        int64   `json:"timeoutMs,omitempty"`
	GraceMs          int64   `json:"graceMs,omitempty"`
	CPUTimeMs        int64   `json:"cpuTimeMs,omitempty"`
	CPUs             float64 `json:"cpus,omitempty"`
	MemoryBytes      int64   `json:"memoryBytes,omitempty"`
	Pids             int64   `json:"pids,omitempty"`
	MaxOutputBytes   int64   `json:"maxOutputBytes,omitempty"`
	MaxFileSizeBytes int64   `json:"maxFileSizeBytes,omitempty"`
}

// LimitsReport is how defaults and ceilings are shown in /v1/capabilities:
// the request names, with null for unlimited.
type LimitsReport struct {
	TimeoutMs        *int64   `json:"timeoutMs"`
	GraceMs          *int64   `json:"graceMs"`
	CPUTimeMs        *int64   `json:"cpuTimeMs"`
	CPUs             *float64 `json:"cpus"`
	MemoryBytes      *int64   `json:"memoryBytes"`
	Pids             *int64   `json:"pids"`
	MaxOutputBytes   *int64   `json:"maxOutputBytes"`
	MaxFileSizeBytes *int64   `json:"maxFileSizeBytes"`
	MaxOpenFiles     *int64   `json:"maxOpenFiles"`
}

// limitField ties one request limit to its Execution field, as int64 in the
// request's unit (float64 for cpus).
type limitField struct {
	name string
	path string // the engine's config path (sandbox.UnenforceableError.Fields)
	req  func(*Limits) float64
	get  func(*sandbox.Execution) float64 // request unit; sandbox.Unlimited stays -1
	set  func(*sandbox.Execution, float64)
	min  float64 // smallest value the engine accepts
}

const unlimited = float64(sandbox.Unlimited)

func durMs(d sandbox.Duration) float64 {
	if d == sandbox.Unlimited {
		return unlimited
	}
	return float64(time.Duration(d) / time.Millisecond)
}

func msDur(v float64) sandbox.Duration { return sandbox.Duration(time.Duration(v) * time.Millisecond) }

var limitFields = []limitField{
	{"timeoutMs", "execution.timeout", func(l *Limits) float64 { return float64(l.TimeoutMs) },
		func(e *sandbox.Execution) float64 { return durMs(e.Timeout) },
		func(e *sandbox.Execution, v float64) { e.Timeout = msDur(v) }, 1},
	{"graceMs", "execution.grace", func(l *Limits) float64 { return float64(l.GraceMs) },
		func(e *sandbox.Execution) float64 { return durMs(e.Grace) },
		func(e *sandbox.Execution, v float64) { e.Grace = msDur(v) }, 1},
	{"cpuTimeMs", "execution.cpuTime", func(l *Limits) float64 { return float64(l.CPUTimeMs) },
		func(e *sandbox.Execution) float64 { return durMs(e.CPUTime) },
		func(e *sandbox.Execution, v float64) { e.CPUTime = msDur(v) }, 1},
	{"cpus", "execution.cpus", func(l *Limits) float64 { return l.CPUs },
		func(e *sandbox.Execution) float64 { return float64(e.CPUs) },
		func(e *sandbox.Execution, v float64) { e.CPUs = sandbox.CPUs(v) }, 0.01},
	{"memoryBytes", "execution.memory", func(l *Limits) float64 { return float64(l.MemoryBytes) },
		func(e *sandbox.Execution) float64 { return float64(e.Memory) },
		func(e *sandbox.Execution, v float64) { e.Memory = sandbox.Size(v) }, float64(4 * sandbox.MiB)},
	{"pids", "execution.pids", func(l *Limits) float64 { return float64(l.Pids) },
		func(e *sandbox.Execution) float64 { return float64(e.Pids) },
		func(e *sandbox.Execution, v float64) { e.Pids = sandbox.Count(v) }, 1},
	{"maxOutputBytes", "execution.maxOutput", func(l *Limits) float64 { return float64(l.MaxOutputBytes) },
		func(e *sandbox.Execution) float64 { return float64(e.MaxOutput) },
		func(e *sandbox.Execution, v float64) { e.MaxOutput = sandbox.Size(v) }, 1},
	{"maxFileSizeBytes", "execution.maxFileSize", func(l *Limits) float64 { return float64(l.MaxFileSizeBytes) },
		func(e *sandbox.Execution) float64 { return float64(e.MaxFileSize) },
		func(e *sandbox.Execution, v float64) { e.MaxFileSize = sandbox.Size(v) }, 1},
}

// builtinDefaults are the engine's documented defaults, spelled out because
// the engine applies them privately.
var builtinDefaults = sandbox.Execution{
	Timeout: sandbox.DefaultTimeout, Grace: sandbox.DefaultGrace, CPUTime: sandbox.Unlimited,
	CPUs: sandbox.Unlimited, Memory: sandbox.DefaultMemory, Pids: sandbox.DefaultPids,
	MaxOutput: sandbox.DefaultMaxOutput, MaxFileSize: sandbox.DefaultMaxFileSize,
	MaxOpenFiles: sandbox.DefaultMaxOpenFiles,
}

// firstSet returns, field by field, the first non-zero of the executions.
func firstSet(list ...sandbox.Execution) sandbox.Execution {
	var out sandbox.Execution
	for i := len(list) - 1; i >= 0; i-- {
		e := list[i]
		if e.Timeout != 0 {
			out.Timeout = e.Timeout
		}
		if e.Grace != 0 {
			out.Grace = e.Grace
		}
		if e.CPUTime != 0 {
			out.CPUTime = e.CPUTime
		}
		if e.CPUs != 0 {
			out.CPUs = e.CPUs
		}
		if e.Memory != 0 {
			out.Memory = e.Memory
		}
		if e.Pids != 0 {
			out.Pids = e.Pids
		}
		if e.MaxOutput != 0 {
			out.MaxOutput = e.MaxOutput
		}
		if e.MaxFileSize != 0 {
			out.MaxFileSize = e.MaxFileSize
		}
		if e.MaxOpenFiles != 0 {
			out.MaxOpenFiles = e.MaxOpenFiles
		}
	}
	return out
}

// resolveLimits returns the server's defaults (server.defaults, then
// execution, then the built-in defaults) and ceilings (server.ceilings, and
// the default where a ceiling is not set: requests lower limits only).
func resolveLimits(cfg sandbox.Config) (def, ceil sandbox.Execution, err error) {
	def = firstSet(askedLimits(cfg), builtinDefaults)
	ceil = firstSet(cfg.Server.Ceilings, def)
	for _, f := range limitFields {
		d, c := f.get(&def), f.get(&ceil)
		if c != unlimited && (d == unlimited || d > c) {
			return def, ceil, fmt.Errorf("server.defaults: %s %s is above server.ceilings %s", f.name, fmtLimit(d), fmtLimit(c))
		}
	}
	return def, ceil, nil
}

// askedLimits are the limits the operator set (server.defaults, then
// execution), zero elsewhere. Runs get these, lowered by the request's own,
// and the engine fills in its defaults: so it can tell a limit somebody
// asked for, which it refuses where it cannot enforce it, from a default,
// which it reports as degraded (a rootless server without a cgroup, see
// RATIONALE.md "Rootless serve").
func askedLimits(cfg sandbox.Config) sandbox.Execution {
	return firstSet(cfg.Server.Defaults, cfg.Execution)
}

func fmtLimit(v float64) string {
	if v == unlimited {
		return "unlimited"
	}
	return strings.TrimSuffix(fmt.Sprintf("%.3f", v), ".000")
}

// apply sets the request's limits over base (the operator's asked limits),
// refusing what is above ceil.
func (l *Limits) apply(base, ceil sandbox.Execution) (sandbox.Execution, error) {
	out := base
	if l == nil {
		return out, nil
	}
	for _, f := range limitFields {
		v := f.req(l)
		switch {
		case v == 0:
			continue
		case v < 0 || math.IsNaN(v) || math.IsInf(v, 0):
			return out, badRequest("limits.%s: want a positive number (0 or absent means the server default)", f.name)
		case v < f.min:
			return out, badRequest("limits.%s: want at least %s", f.name, fmtLimit(f.min))
		}
		if c := f.get(&ceil); c != unlimited && v > c {
			return out, aboveCeiling("limits.%s %s is above the server's ceiling %s", f.name, fmtLimit(v), fmtLimit(c))
		}
		f.set(&out, v)
	}
	return out, nil
}

func report(e sandbox.Execution) LimitsReport {
	i := func(v float64) *int64 {
		if v == unlimited {
			return nil
		}
		n := int64(v)
		return &n
	}
	var r LimitsReport
	r.TimeoutMs = i(limitFields[0].get(&e))
	r.GraceMs = i(limitFields[1].get(&e))
	r.CPUTimeMs = i(limitFields[2].get(&e))
	if e.CPUs != sandbox.Unlimited {
		c := float64(e.CPUs)
		r.CPUs = &c
	}
	r.MemoryBytes = i(float64(e.Memory))
	r.Pids = i(float64(e.Pids))
	r.MaxOutputBytes = i(float64(e.MaxOutput))
	r.MaxFileSizeBytes = i(float64(e.MaxFileSize))
	r.MaxOpenFiles = i(float64(e.MaxOpenFiles))
	return r
}
