package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/kb-labs/sandbox"
)

// checkStart proves at start that the host can run the server's
// configuration, and logs what its runs get. The engine decides what the
// host can enforce (fail closed unless bestEffort, the same rules as for
// `sandbox run`); a server refused here is better than one answering
// set-up errors to every run, and an operator must learn from the start
// log, not from a Result, that a limit is not enforced (a rootless server
// without a delegated cgroup: RATIONALE.md, "Rootless serve").
func (s *Server) checkStart() error {
	_, release, _, err := s.runners.acquire(s.cfg)
	if err != nil {
		return fmt.Errorf("server: the default run configuration: %w", err)
	}
	release()
	if err := s.checkCeilings(); err != nil {
		return err
	}
	// The probe runs on a Runner of its own: the operator's observers see
	// clients' runs only, and a warm pool keeps its slots for them.
	cfg := s.cfg
	cfg.Observers, cfg.Pool = nil, sandbox.PoolConfig{}
	r, err := sandbox.New(cfg)
	if err != nil {
		return fmt.Errorf("server: the default run configuration: %w", err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := r.Run(ctx, sandbox.Command("true"), nil, nil)
	if err != nil {
		return fmt.Errorf("server: a probe run of the default configuration: %w", err)
	}
	if !res.OK {
		msg := string(res.Status)
		if res.Error != nil {
			msg += ": " + res.Error.Message
		}
		return fmt.Errorf("server: a probe run of `true` under the default configuration failed: %s", msg)
	}
	s.logIsolation(res.Isolation)
	return nil
}

// checkCeilings: an explicit ceiling on a limit only a cgroup enforces
// (server.ceilings.memory) promises that no run goes past it, which the
// host must be able to keep; the engine judges it like a default set to
// the ceiling.
func (s *Server) checkCeilings() error {
	asked := firstSet(s.asked, s.ceilAsked)
	if asked == s.asked {
		return nil
	}
	cfg := s.cfg
	cfg.Execution = asked
	cfg.Pool = sandbox.PoolConfig{} // judged, not run
	r, err := sandbox.New(cfg)
	if err != nil {
		return fmt.Errorf("server: server.ceilings bound every run: %w", err)
	}
	r.Close()
	return nil
}

// logIsolation writes one line saying what protects the runs; a warning
// when something is degraded.
func (s *Server) logIsolation(iso sandbox.Isolation) {
	degraded := make([]string, 0, len(iso.Degraded))
	for _, d := range iso.Degraded {
		degraded = append(degraded, d.Layer+": "+d.Reason)
	}
	lvl, msg := slog.LevelInfo, "isolation"
	if len(degraded) > 0 {
		lvl, msg = slog.LevelWarn, "isolation degraded: runs lack what degraded lists"
	}
	s.log.LogAttrs(context.Background(), lvl, msg, slog.Bool("rootless", os.Geteuid() != 0), slog.Int("uid", os.Geteuid()),
		slog.String("cgroup", iso.Cgroup), slog.Bool("seccomp", iso.Seccomp), slog.Int("landlockAbi", iso.LandlockABI),
		slog.Bool("bestEffort", s.cfg.BestEffort), slog.Any("degraded", degraded))
}

// unenforceable answers a run whose own limits the engine cannot enforce on
// this host (a sandbox.UnenforceableError naming them): 422 naming the
// request's limits. The engine's message names host paths and ids, so it
// goes to the log only. nil when the request's limits are not to blame.
func unenforceable(ue *sandbox.UnenforceableError, l *Limits) error {
	if l == nil {
		return nil
	}
	var names []string
	for _, f := range limitFields {
		if f.req(l) != 0 && slices.Contains(ue.Fields, f.path) {
			names = append(names, "limits."+f.name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	return aboveCeiling("%s: this server cannot enforce it (its host offers it no usable %s); omit it, or see GET /v1/capabilities for what runs get",
		strings.Join(names, ", "), ue.Layer)
}
