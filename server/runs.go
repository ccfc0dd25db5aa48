package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/kb-labs/sandbox"
)

// RunRequest is the body of POST /v1/runs. It is decoded strictly
// (decodeStrict): keys as spelled here, each once.
type RunRequest struct {
	Handler     *HandlerSpec    `json:"handler"`
	Files       []File          `json:"files,omitempty"`
	Input       json.RawMessage `json:"input,omitempty"`
	Stdin       *string         `json:"stdin,omitempty"`
	StdinBase64 *string         `json:"stdinBase64,omitempty"`
	Context     *RunContext     `json:"context,omitempty"`
	Limits      *Limits         `json:"limits,omitempty"`
	Permissions *Permissions    `json:"permissions,omitempty"`
}

// HandlerSpec is a command (argv, optionally offered the handler protocol)
// or a runtime handler (node or python, a file of the upload, an export).
type HandlerSpec struct {
	Command  []string `json:"command,omitempty"`
	Protocol bool     `json:"protocol,omitempty"`
	Runtime  string   `json:"runtime,omitempty"`
	File     string   `json:"file,omitempty"`
	Export   string   `json:"export,omitempty"`
}

// RunContext is the execution context a client may give: that of
// sandbox.ExecutionContext without its host paths (workdir, outdir,
// pluginRoot), which only the library and the CLI honour. Having no field
// for them, the type cannot carry one into a run, whatever the spelling.
// TraceID, SpanID and ParentSpanID are replaced by the server's own trace.
type RunContext struct {
	RequestID     string               `json:"requestId,omitempty"`
	PluginID      string               `json:"pluginId,omitempty"`
	PluginVersion string               `json:"pluginVersion,omitempty"`
	ConfigSection string               `json:"configSection,omitempty"`
	User          *sandbox.User        `json:"user,omitempty"`
	Debug         bool                 `json:"debug,omitempty"`
	TraceID       string               `json:"traceId,omitempty"`
	SpanID        string               `json:"spanId,omitempty"`
	ParentSpanID  string               `json:"parentSpanId,omitempty"`
	Adapter       map[string]any       `json:"adapterContext,omitempty"`
	AdapterMeta   *sandbox.AdapterMeta `json:"adapterMeta,omitempty"`
	DryRun        bool                 `json:"dryRun,omitempty"`
	Version       string               `json:"version,omitempty"`
}

// hostPathKeys are the ExecutionContext keys naming host paths.
var hostPathKeys = []string{"workdir", "outdir", "pluginRoot"}

// refuseKey names host-path keys, in any case, as not accepted over HTTP
// (rather than merely unknown).
func (*RunContext) refuseKey(key string) (string, bool) {
	for _, k := range hostPathKeys {
		if strings.EqualFold(key, k) {
			return "host paths are not accepted over HTTP; send files instead", true
		}
	}
	return "", false
}

// executionContext is the engine's context for c; it has no host path.
func (c *RunContext) executionContext() sandbox.ExecutionContext {
	if c == nil {
		return sandbox.ExecutionContext{}
	}
	return sandbox.ExecutionContext{
		RequestID: c.RequestID, PluginID: c.PluginID, PluginVersion: c.PluginVersion,
		ConfigSection: c.ConfigSection, User: c.User, Debug: c.Debug,
		Adapter: c.Adapter, AdapterMeta: c.AdapterMeta, DryRun: c.DryRun, Version: c.Version,
	}
}

// Permissions a request may ask for, within the operator's ceilings.
type Permissions struct {
	Env     *EnvPermissions `json:"env,omitempty"`
	Network string          `json:"network,omitempty"`
}

// EnvPermissions: Allow passes the server's own variables (names or
// PREFIX_* globs within envAllowCeiling); Set adds variables.
type EnvPermissions struct {
	Allow []string          `json:"allow,omitempty"`
	Set   map[string]string `json:"set,omitempty"`
}

// prepared is a validated request, ready to run.
type prepared struct {
	cfg     sandbox.Config
	handler sandbox.Handler
	input   any
	ec      sandbox.ExecutionContext
	runtime bool
	limits  *Limits // as the request gave them
}

// decodeRun decodes a body read in full (readBody) strictly: one JSON
// object, every key known and spelled exactly, none twice.
func decodeRun(body []byte) (*RunRequest, error) {
	var req RunRequest
	if err := decodeStrict(body, &req); err != nil {
		return nil, err
	}
	return &req, nil
}

// prepare validates the request against the server's ceilings and builds
// what the engine needs. It touches nothing on disk.
func (s *Server) prepare(req *RunRequest, requestID string) (*prepared, error) {
	p := &prepared{cfg: s.cfg}
	h := req.Handler
	switch {
	case h == nil:
		return nil, badRequest("handler: required: {\"command\": [...]} or {\"runtime\": \"node|python\", \"file\": ...}")
	case len(h.Command) > 0 && (h.Runtime != "" || h.File != "" || h.Export != ""):
		return nil, badRequest("handler: set either command or runtime/file/export, not both")
	case len(h.Command) > 0:
		if h.Command[0] == "" {
			return nil, badRequest("handler.command[0]: empty program name")
		}
		for _, a := range h.Command {
			if strings.ContainsRune(a, 0) {
				return nil, badRequest("handler.command: an argument contains a NUL byte")
			}
		}
		p.handler = sandbox.Handler{Command: h.Command, Protocol: h.Protocol}
	case h.Runtime != "" || h.File != "":
		if h.Runtime != "node" && h.Runtime != "python" {
			return nil, badRequest("handler.runtime %q: want \"node\" or \"python\"", clip(h.Runtime))
		}
		if h.Protocol {
			return nil, badRequest("handler.protocol: applies to commands only (runtime handlers always speak it)")
		}
		if _, err := checkPath(h.File, s.files.depth); err != nil {
			return nil, badRequest("handler.file %q: %s", clip(h.File), err.Error())
		}
		p.handler = sandbox.File(h.Runtime, h.File, h.Export)
		p.runtime = true
	default:
		return nil, badRequest("handler: want a non-empty command, or a runtime and a file")
	}

	files, err := checkFiles(req.Files, s.files)
	if err != nil {
		return nil, err
	}
	if ws := s.cfg.Permissions.Filesystem.WorkspaceSize; ws > 0 {
		var total int64
		for _, f := range files {
			total += int64(len(f.Content))
		}
		if total > int64(ws) {
			return nil, aboveCeiling("files: %d bytes, more than the run's workspace holds (permissions.filesystem.workspaceSize %d)", total, int64(ws))
		}
	}
	// Written by the engine into the sandbox's own workspace tmpfs (and,
	// for a runtime handler, its plugin root at /plugin): nothing of the
	// request reaches the host's disk.
	p.handler.Files = files

	n := 0
	for _, set := range []bool{len(req.Input) > 0, req.Stdin != nil, req.StdinBase64 != nil} {
		if set {
			n++
		}
	}
	if n > 1 {
		return nil, badRequest("input, stdin and stdinBase64: give at most one")
	}
	switch {
	case req.Stdin != nil:
		if p.runtime {
			return nil, badRequest("stdin: runtime handlers take input (JSON), not stdin")
		}
		p.input = []byte(*req.Stdin)
	case req.StdinBase64 != nil:
		if p.runtime {
			return nil, badRequest("stdinBase64: runtime handlers take input (JSON), not stdin")
		}
		b, err := base64.StdEncoding.DecodeString(*req.StdinBase64)
		if err != nil {
			return nil, badRequest("stdinBase64: not valid standard base64")
		}
		p.input = b
	case len(req.Input) > 0:
		p.input = json.RawMessage(req.Input)
	}

	if err := checkContext(req.Context); err != nil {
		return nil, err
	}
	p.ec = req.Context.executionContext()
	if p.ec.RequestID == "" {
		p.ec.RequestID = requestID
	}

	p.limits = req.Limits
	if p.cfg.Execution, err = req.Limits.apply(s.asked, s.ceil); err != nil {
		return nil, err
	}
	if err := s.applyPermissions(req.Permissions, &p.cfg); err != nil {
		return nil, err
	}
	return p, nil
}

// checkContext applies the context's own rules, naming the key.
func checkContext(ec *RunContext) error {
	if ec == nil {
		return nil
	}
	if ec.RequestID != "" && !validRequestID(ec.RequestID) {
		return badRequest("context.requestId: want at most 128 visible ASCII characters")
	}
	if v := ec.Version; v != "" {
		if major, _, _ := strings.Cut(strings.TrimPrefix(v, "v"), "."); major != "1" {
			return badRequest("context.version %q: want a semver string with major 1 (1.x.y)", clip(v))
		}
	}
	if ec.Adapter != nil {
		switch ec.Adapter["type"] {
		case "cli", "rest", "job":
		default:
			return badRequest("context.adapterContext.type: want \"cli\", \"rest\" or \"job\"")
		}
	}
	return nil
}

func (s *Server) applyPermissions(p *Permissions, cfg *sandbox.Config) error {
	if p == nil {
		return nil
	}
	switch sandbox.Network(p.Network) {
	case "":
	case sandbox.NetworkNone, sandbox.NetworkLoopback:
		cfg.Permissions.Network = sandbox.Network(p.Network)
	case sandbox.NetworkHost:
		if !s.cfgAllowHost() {
			return aboveCeiling("permissions.network \"host\" is not allowed by this server (server.allowHostNetwork)")
		}
		cfg.Permissions.Network = sandbox.NetworkHost
	default:
		return badRequest("permissions.network %q: want \"none\" or \"loopback\"", clip(p.Network))
	}
	if p.Env == nil {
		return nil
	}
	for i, a := range p.Env.Allow {
		if strings.Trim(a, "*") == "" && a != "" {
			return aboveCeiling("permissions.env.allow[%d] %q: the whole host environment is never passed; name variables within server.envAllowCeiling", i, clip(a))
		}
		if !sandbox.ValidEnvPattern(a) {
			return badRequest("permissions.env.allow[%d] %q: want a variable name (A-Z, a-z, 0-9, _) or a PREFIX_* glob", i, clip(a))
		}
		if !withinCeiling(a, s.envCeiling()) {
			return aboveCeiling("permissions.env.allow[%d] %q is not within the server's envAllowCeiling", i, clip(a))
		}
	}
	for k := range p.Env.Set {
		if !sandbox.ValidEnvName(k) {
			return badRequest("permissions.env.set %q: want variable names of A-Z, a-z, 0-9 and _, not starting with a digit", clip(k))
		}
	}
	cfg.Permissions.Env.Allow = append(append([]string(nil), cfg.Permissions.Env.Allow...), p.Env.Allow...)
	if len(p.Env.Set) > 0 {
		set := make(map[string]string, len(cfg.Permissions.Env.Set)+len(p.Env.Set))
		for k, v := range cfg.Permissions.Env.Set {
			set[k] = v
		}
		for k, v := range p.Env.Set {
			set[k] = v
		}
		cfg.Permissions.Env.Set = set
	}
	return nil
}

// withinCeiling: a name is covered by an equal name or a glob whose prefix
// it starts with; a glob by a glob whose prefix its own prefix starts with.
func withinCeiling(pattern string, ceiling []string) bool {
	prefix, glob := strings.CutSuffix(pattern, "*")
	for _, c := range ceiling {
		cp, cglob := strings.CutSuffix(c, "*")
		switch {
		case cglob && strings.HasPrefix(prefix, cp):
			return true
		case !cglob && !glob && c == pattern:
			return true
		}
	}
	return false
}

// handleRun is POST /v1/runs.
func (s *Server) handleRun(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := requestIDFrom(ctx)

	// The body is read and validated before admission: a client that sends
	// it slowly (or never) holds its own connection and the bytes it sent,
	// never a run slot or a queue place. See RATIONALE.md, "Bodies before
	// admission".
	bStart := time.Now()
	_, bspan := s.tracer.Start(ctx, "body")
	body, release, err := s.readBody(w, r)
	if err != nil {
		bspan.End()
		// What is left of the body is not worth waiting for.
		w.Header().Set("Connection", "close")
		s.writeError(w, r, err)
		return
	}
	defer release()
	req, err := decodeRun(body)
	var p *prepared
	if err == nil {
		p, err = s.prepare(req, id)
	}
	bspan.End()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, body = nil, nil // what the run needs is in p now
	s.metrics.setup.WithLabelValues("body").Observe(time.Since(bStart).Seconds())

	qStart := time.Now()
	_, qspan := s.tracer.Start(ctx, "queue")
	leave, err := s.gate.enter(ctx, s.stopping)
	qspan.End()
	if err != nil {
		if ctx.Err() != nil {
			s.metrics.rejected.WithLabelValues("client_gone").Inc()
			return
		}
		s.writeError(w, r, err)
		return
	}
	defer leave()
	s.metrics.setup.WithLabelValues("queue").Observe(time.Since(qStart).Seconds())
	s.metrics.inFlight.Inc()
	defer s.metrics.inFlight.Dec()

	res, err := s.execute(ctx, p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// errBodies answers a body that would take the memory held by request
// bodies past Options.MaxBodyMemory.
var errBodies = &Error{http.StatusTooManyRequests, CodeOverloaded, "too many request bodies in memory; retry later"}

// readBody reads the whole body within the body deadline: at most maxBody
// bytes (413 past it), charged to the server's budget for bodies in memory
// as they arrive (429 past it), so a client holds only what it has sent.
// release returns the charge; call it when the run no longer needs the
// request.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (body []byte, release func(), err error) {
	if r.ContentLength > s.maxBody {
		return nil, nil, &http.MaxBytesError{Limit: s.maxBody}
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(s.bodyTimeout))
	// Cleared once read: the connection's background read (which notices a
	// client that goes away) must not time out during the run.
	defer rc.SetReadDeadline(time.Time{})
	var held int64
	release = func() { s.bodies.put(held) }
	rd := http.MaxBytesReader(w, r.Body, s.maxBody)
	buf := make([]byte, 0)
	for {
		if len(buf) == cap(buf) {
			grow := int64(max(cap(buf), 16<<10))
			grow = min(grow, s.maxBody+1-int64(cap(buf))) // +1: room to see the byte past the limit
			if !s.bodies.take(grow) {
				release()
				return nil, nil, errBodies
			}
			held += grow
			buf = append(make([]byte, 0, int64(cap(buf))+grow), buf...)
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, release, nil
		}
		if err != nil {
			release()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, nil, &Error{http.StatusRequestTimeout, CodeBadRequest, "the body was not received in time"}
			}
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, nil, err
			}
			return nil, nil, badRequest("the body could not be read")
		}
	}
}

// execute runs p on a Runner for its configuration. The run has no host
// directory: its workspace is the sandbox's own tmpfs.
func (s *Server) execute(ctx context.Context, p *prepared) (*sandbox.Result, error) {
	parentID := trace.SpanContextFromContext(ctx).SpanID().String()
	ctx, span := s.tracer.Start(ctx, "run")
	defer span.End()

	rStart := time.Now()
	runner, release, created, err := s.runners.acquire(p.cfg)
	if err != nil {
		if errors.Is(err, sandbox.ErrClosed) {
			return nil, errShuttingDown
		}
		var ue *sandbox.UnenforceableError
		if errors.As(err, &ue) {
			if e := unenforceable(ue, p.limits); e != nil {
				s.log.Info("limits not enforceable on this host", "requestId", requestIDFrom(ctx), "err", err.Error())
				return nil, e
			}
		}
		return nil, err
	}
	defer release()
	if created {
		s.metrics.setup.WithLabelValues("runner").Observe(time.Since(rStart).Seconds())
	}

	// The engine's spans become children of the run span, in the trace the
	// client's traceparent started (the request span continues it).
	sc := span.SpanContext()
	p.ec.TraceID, p.ec.SpanID, p.ec.ParentSpanID = sc.TraceID().String(), sc.SpanID().String(), parentID
	// The run ends when the client goes away (ctx) or when the drain
	// timeout of a shutdown passes (runCtx).
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.runCtx, cancel)
	defer stop()

	res, err := runner.Run(runCtx, p.handler, p.input, &p.ec)
	if err != nil {
		span.SetStatus(codes.Error, "misuse")
		return nil, err
	}
	s.observe(ctx, span, res)
	if !s.traces {
		res.Traces = nil
	}
	return res, nil
}

func (s *Server) observe(ctx context.Context, span trace.Span, res *sandbox.Result) {
	st := string(res.Status)
	s.metrics.runs.WithLabelValues(st).Inc()
	if t := res.Metrics.TimeMs; t != nil {
		s.metrics.duration.WithLabelValues(st).Observe(*t / 1000)
	}
	if m := res.Metrics.MemPeakBytes; m != nil {
		s.metrics.memPeak.Observe(float64(*m))
	}
	for _, sp := range res.Traces {
		if sp.Name == "setup" {
			s.metrics.setup.WithLabelValues("sandbox").Observe(sp.EndTime.Sub(sp.StartTime).Seconds())
		}
	}
	engineSpans(ctx, s.tracer, res.Traces)
	span.SetAttributes(attribute.String("sandbox.status", st), attribute.Int("sandbox.exit_code", res.ExitCode),
		attribute.String("sandbox.request_id", res.RequestID))
	if !res.OK {
		span.SetStatus(codes.Error, st)
	}
}

func (s *Server) cfgAllowHost() bool   { return s.allowHost }
func (s *Server) envCeiling() []string { return s.envAllow }
