package server

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/kb-labs/sandbox"
)

// Capabilities is the answer of GET /v1/capabilities: the doctor report
// (sandbox.RunPreflight of the default configuration), the isolation a run
// gets, and what a request may ask for.
type Capabilities struct {
	sandbox.Preflight
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
	c.Preflight, c.Isolation = s.preflight(r.Context())
	for _, ch := range c.Checks {
		if ch.Passed && strings.HasPrefix(ch.Name, "runtime ") {
			c.Handlers = append(c.Handlers, strings.TrimPrefix(ch.Name, "runtime "))
		}
	}
	writeJSON(w, http.StatusOK, c)
}

// preflight runs the doctor checks and a probe run of `true` under the
// default configuration, at most once a minute: cgroups, namespaces and
// Landlock can change under a long-running server, but a report per
// request would be a cheap way to load the host.
func (s *Server) preflight(ctx context.Context) (sandbox.Preflight, *sandbox.Isolation) {
	s.capsMu.Lock()
	defer s.capsMu.Unlock()
	if !s.capsAt.IsZero() && time.Since(s.capsAt) < capsTTL {
		return s.capsPre, s.capsIso
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s.capsPre, s.capsIso = sandbox.RunPreflight(ctx, s.cfg), nil
	if r, release, _, err := s.runners.acquire(s.cfg); err == nil {
		if res, err := r.Run(ctx, sandbox.Command("true"), nil, nil); err == nil {
			iso := res.Isolation
			s.capsIso = &iso
		}
		release()
	}
	s.capsAt = time.Now()
	return s.capsPre, s.capsIso
}
