package server

import (
	"context"
	"net/http"
	"os/exec"
	"time"

	"github.com/kb-labs/sandbox"
)

// Check is one line of the capabilities report (the Preflight shape of
// DESIGN.md section 2).
type Check struct {
	Name        string   `json:"name"`
	Passed      bool     `json:"passed"`
	Error       string   `json:"error,omitempty"`
	Suggestions []string `json:"suggestions,omitempty"`
}

// Capabilities is the answer of GET /v1/capabilities: what this host
// enforces for the default configuration, and what a request may ask for.
type Capabilities struct {
	Passed          bool               `json:"passed"`
	Checks          []Check            `json:"checks"`
	Isolation       *sandbox.Isolation `json:"isolation"`
	Handlers        []string           `json:"handlers"`
	Defaults        LimitsReport       `json:"defaults"`
	Ceilings        LimitsReport       `json:"ceilings"`
	Networks        []string           `json:"networks"`
	EnvAllowCeiling []string           `json:"envAllowCeiling"`
	MaxBodyBytes    int64              `json:"maxBodyBytes"`
	MaxFiles        int                `json:"maxFiles"`
	MaxConcurrency  int                `json:"maxConcurrency"`
	MaxQueue        int                `json:"maxQueue"`
}

// capsTTL bounds how often the report runs a probe sandbox.
const capsTTL = time.Minute

func (s *Server) handleCapabilities(w http.ResponseWriter, r *http.Request) {
	c := Capabilities{
		Defaults: report(s.def), Ceilings: report(s.ceil),
		Networks:        []string{"none", "loopback"},
		EnvAllowCeiling: append([]string{}, s.envAllow...),
		MaxBodyBytes:    s.maxBody, MaxFiles: s.files.count,
		MaxConcurrency: s.conc, MaxQueue: s.queue,
		Handlers: []string{"command"},
	}
	if s.allowHost {
		c.Networks = append(c.Networks, "host")
	}
	// Can the host still build the default sandbox? (cgroups, namespaces
	// and Landlock can change under a long-running server.)
	runner := Check{Name: "sandbox", Passed: true}
	rn, err := sandbox.New(s.cfg)
	if err != nil {
		runner.Passed, runner.Error = false, err.Error()
		runner.Suggestions = []string{"run `sandbox doctor` on this host for the fixes"}
	} else {
		rn.Close()
	}
	c.Checks = append(c.Checks, runner)
	iso, fail := s.probeIsolation(r.Context())
	c.Isolation = iso
	c.Checks = append(c.Checks, Check{Name: "probe run", Passed: fail == "", Error: fail})
	for _, rt := range []struct{ name, bin string }{{"node", "node"}, {"python", "python3"}} {
		ch := Check{Name: "runtime " + rt.name, Passed: true}
		if _, err := exec.LookPath(rt.bin); err != nil {
			ch.Passed, ch.Error = false, rt.bin+" is not installed on the host"
			ch.Suggestions = []string{"install " + rt.bin + " to accept runtime \"" + rt.name + "\" handlers"}
		} else {
			c.Handlers = append(c.Handlers, rt.name)
		}
		c.Checks = append(c.Checks, ch)
	}
	c.Passed = runner.Passed && fail == ""
	writeJSON(w, http.StatusOK, c)
}

// probeIsolation runs `true` under the default configuration (at most once
// a minute) and reports the isolation the engine applied.
func (s *Server) probeIsolation(ctx context.Context) (*sandbox.Isolation, string) {
	s.capsMu.Lock()
	defer s.capsMu.Unlock()
	if !s.capsAt.IsZero() && time.Since(s.capsAt) < capsTTL {
		return s.capsIso, s.capsFail
	}
	r, release, _, err := s.runners.acquire(s.cfg)
	if err != nil {
		return nil, "the default configuration cannot be built on this host"
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := r.Run(ctx, sandbox.Command("true"), nil, nil)
	s.capsAt, s.capsIso, s.capsFail = time.Now(), nil, ""
	switch {
	case err != nil:
		s.capsFail = "the probe run was refused"
	case !res.OK:
		s.capsFail = "the probe run of `true` ended " + string(res.Status)
		if res.Error != nil {
			s.capsFail += ": " + res.Error.Code
		}
		iso := res.Isolation
		s.capsIso = &iso
	default:
		iso := res.Isolation
		s.capsIso = &iso
	}
	return s.capsIso, s.capsFail
}
