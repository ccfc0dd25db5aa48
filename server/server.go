package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/kb-labs/sandbox"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3 document of the service (also served at
// /v1/openapi.json).
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

// Defaults of the service (the server section of the configuration).
const (
	DefaultListen       = "127.0.0.1:8080"
	DefaultMaxQueue     = 64
	DefaultMaxBodyBytes = 10 * sandbox.MiB
	DefaultMaxFiles     = 1000
	DefaultMaxBodyMem   = 256 * sandbox.MiB
	DefaultDrainTimeout = 30 * time.Second
)

// Options are the settings of a Server that are not in sandbox.Config.
type Options struct {
	// Token is the bearer token clients must send; "" turns authentication
	// off, which ServeListener allows on loopback only.
	Token string
	// Logger receives the JSON request log; nil logs JSON to stderr.
	Logger *slog.Logger
	// MaxBodyMemory bounds the bytes of request bodies held in memory at
	// once, over every request being read, queued or run (default 256 MiB,
	// and never less than the body limit). A body that would pass it is
	// answered 429 OVERLOADED.
	MaxBodyMemory int64
	// MaxFiles caps the files of one request (default 1000, at most
	// sandbox.MaxWorkspaceFiles); their total size is capped by the body
	// limit and the workspace size (permissions.filesystem.workspaceSize).
	MaxFiles int
	// DrainTimeout bounds how long ServeListener's shutdown (its ctx done)
	// lets runs in flight finish before cancelling them (default 30s).
	DrainTimeout time.Duration
	// TracerProvider overrides the OpenTelemetry provider (default: an SDK
	// provider exporting over OTLP/HTTP when OTEL_* variables ask for it).
	TracerProvider trace.TracerProvider
	// RunnerCacheSize bounds the Runners kept for distinct per-run
	// configurations (default 32).
	RunnerCacheSize int

	bodyTimeout time.Duration // tests shorten it; default 60s
}

// Server is the HTTP service. Create it with New, serve with ServeListener
// or use it as an http.Handler, and stop it with Shutdown.
type Server struct {
	cfg      sandbox.Config // base run configuration; execution holds the asked limits
	def      sandbox.Execution
	ceil     sandbox.Execution
	traces   bool // the operator asked for traces in results
	opts     Options
	token    [32]byte
	hasToken bool
	maxBody  int64
	bodies   budget // bytes of request bodies in memory (Options.MaxBodyMemory)
	files    fileLimits
	conc     int
	// asked are the limits the operator set (askedLimits), ceilAsked its
	// ceilings: what the engine must be able to enforce.
	asked     sandbox.Execution
	ceilAsked sandbox.Execution
	// bodyTimeout bounds reading a run's body (before admission: a slow
	// client holds its connection only).
	bodyTimeout time.Duration
	queue       int
	allowHost   bool
	envAllow    []string

	log     *slog.Logger
	metrics *metrics
	gate    *gate
	runners *runnerCache
	tracer  trace.Tracer
	ownTP   *sdktrace.TracerProvider
	routes  []route
	http    *http.Server

	runCtx     context.Context // cancelled when the drain timeout passes
	cancelRuns context.CancelFunc
	stopping   chan struct{} // closed when shutdown starts
	done       chan struct{} // closed when shutdown ends
	stopOnce   sync.Once
	ready      atomic.Bool

	capsMu  sync.Mutex
	capsAt  time.Time
	capsIso *sandbox.Isolation
	capsPre sandbox.Preflight
}

// New validates cfg (the server section and the defaults every run starts
// from) and checks that the host can run the default configuration.
func New(cfg sandbox.Config, opts Options) (*Server, error) {
	if cfg.Mode != "" && cfg.Mode != sandbox.Subprocess {
		return nil, fmt.Errorf("server: mode %q: the service runs commands and runtime handlers, which need subprocess mode", cfg.Mode)
	}
	def, ceil, err := resolveLimits(cfg)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	sc := cfg.Server
	for i, p := range sc.EnvAllowCeiling {
		if !sandbox.ValidEnvPattern(p) {
			return nil, fmt.Errorf("server: server.envAllowCeiling[%d] %q: want a variable name or a PREFIX_* glob", i, p)
		}
	}
	s := &Server{cfg: cfg, def: def, ceil: ceil, opts: opts, traces: cfg.Monitoring.CollectTraces,
		allowHost: sc.AllowHostNetwork, envAllow: append([]string(nil), sc.EnvAllowCeiling...)}
	s.cfg.Mode = sandbox.Subprocess
	s.asked, s.ceilAsked = askedLimits(cfg), sc.Ceilings
	s.cfg.Execution = s.asked
	s.cfg.Server = sandbox.ServerConfig{}
	// The engine's phase spans feed the setup metric and the OTel trace;
	// they reach the client only when the operator asked for them.
	s.cfg.Monitoring.CollectTraces = true
	if opts.Token != "" {
		s.token, s.hasToken = sha256.Sum256([]byte(opts.Token)), true
	}
	s.maxBody = int64(sc.MaxBodyBytes)
	if s.maxBody <= 0 {
		s.maxBody = int64(DefaultMaxBodyBytes)
	}
	s.bodies.left = max(opts.MaxBodyMemory, s.maxBody)
	if opts.MaxBodyMemory <= 0 {
		s.bodies.left = max(int64(DefaultMaxBodyMem), s.maxBody)
	}
	s.files = fileLimits{count: opts.MaxFiles, total: s.maxBody, depth: 32}
	if s.files.count <= 0 {
		s.files.count = DefaultMaxFiles
	}
	s.files.count = min(s.files.count, sandbox.MaxWorkspaceFiles)
	s.bodyTimeout = opts.bodyTimeout
	if s.bodyTimeout <= 0 {
		s.bodyTimeout = 60 * time.Second
	}
	s.conc = sc.MaxConcurrency
	if s.conc <= 0 {
		s.conc = runtime.NumCPU()
	}
	switch s.queue = sc.MaxQueue; {
	case s.queue == 0:
		s.queue = DefaultMaxQueue
	case s.queue < 0:
		s.queue = 0
	}
	if s.opts.DrainTimeout <= 0 {
		s.opts.DrainTimeout = DefaultDrainTimeout
	}
	if s.opts.RunnerCacheSize <= 0 {
		s.opts.RunnerCacheSize = 32
	}
	s.log = opts.Logger
	if s.log == nil {
		s.log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	s.metrics = newMetrics()
	s.gate = newGate(s.conc, s.queue, func(d int64) { s.metrics.queueDepth.Set(float64(d)) })
	s.runners = newRunnerCache(s.opts.RunnerCacheSize)
	s.metrics.poolDepth(s.runners.poolDepth)
	if err := s.checkStart(); err != nil {
		s.runners.close()
		return nil, err
	}
	tp := opts.TracerProvider
	if tp == nil {
		own, err := newTracerProvider(context.Background())
		if err != nil {
			return nil, fmt.Errorf("server: OpenTelemetry exporter: %w", err)
		}
		s.ownTP, tp = own, own
	}
	s.tracer = tp.Tracer("github.com/kb-labs/sandbox/server")
	s.runCtx, s.cancelRuns = context.WithCancel(context.Background())
	s.stopping = make(chan struct{})
	s.done = make(chan struct{})
	s.routes = s.routeTable()
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		// No ReadTimeout: its deadline would also end the connection's
		// background read during a long run, which cancels the run. The
		// body gets its own read deadline (bodyTimeout, readBody).
		IdleTimeout: 120 * time.Second,
		// No WriteTimeout: a run may last up to the timeout ceiling and is
		// bounded by it; a write timeout would cut answers of long runs.
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.ready.Store(true)
	return s, nil
}

// route is one entry of the router; the OpenAPI test walks this table.
type route struct {
	method string
	path   string
	public bool // no token needed
	h      http.HandlerFunc
}

func (s *Server) routeTable() []route {
	return []route{
		{http.MethodPost, "/v1/runs", false, s.handleRun},
		{http.MethodGet, "/v1/capabilities", false, s.handleCapabilities},
		{http.MethodGet, "/v1/openapi.json", false, s.handleOpenAPI},
		{http.MethodGet, "/metrics", false, promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}).ServeHTTP},
		{http.MethodGet, "/healthz", true, s.handleHealth},
		{http.MethodGet, "/readyz", true, s.handleReady},
	}
}

type ctxKey struct{}

func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validRequestID accepts client ids of up to 128 visible ASCII characters
// (they end up in logs and results).
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ServeHTTP is the whole request pipeline: request id, trace span,
// authentication, routing, access log.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get("X-Request-Id")
	if !validRequestID(id) {
		id = newID()
	}
	w.Header().Set("X-Request-Id", id)
	ctx := context.WithValue(r.Context(), ctxKey{}, id)
	ctx = propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
	rt, known := s.match(r)
	name := r.Method + " " + r.URL.Path
	if !known {
		name = r.Method + " (unknown route)"
	}
	ctx, span := s.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method),
			attribute.String("url.path", r.URL.Path), attribute.String("sandbox.request_id", id)))
	defer span.End()
	r = r.WithContext(ctx)
	sw := &statusWriter{ResponseWriter: w}

	authorized := (rt != nil && rt.public) || s.authorized(r)
	if rt == nil || !authorized {
		// Refused before any handler reads the body: close instead of
		// waiting for a body nobody needs.
		sw.Header().Set("Connection", "close")
	}
	switch {
	case rt != nil && rt.public:
	case !authorized:
		s.writeError(sw, r, &Error{http.StatusUnauthorized, CodeUnauthorized, "missing or wrong bearer token"})
	case rt == nil && known:
		sw.Header().Set("Allow", s.allowed(r.URL.Path))
		s.writeError(sw, r, &Error{http.StatusMethodNotAllowed, CodeBadRequest, "method " + r.Method + " is not allowed here; see Allow"})
	case rt == nil:
		s.writeError(sw, r, &Error{http.StatusNotFound, CodeNotFound, "no such endpoint; see /v1/openapi.json"})
	}
	if sw.status == 0 && rt != nil {
		rt.h(sw, r)
	}
	span.SetAttributes(attribute.Int("http.response.status_code", sw.status))
	s.log.LogAttrs(ctx, slog.LevelInfo, "request", slog.String("requestId", id),
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", sw.status),
		slog.Float64("ms", float64(time.Since(start).Microseconds())/1000),
		slog.String("traceId", span.SpanContext().TraceID().String()))
}

// match finds the route for r; known reports whether the path exists (for
// 405 versus 404).
func (s *Server) match(r *http.Request) (rt *route, known bool) {
	for i := range s.routes {
		if s.routes[i].path == r.URL.Path {
			known = true
			if s.routes[i].method == r.Method || r.Method == http.MethodHead && s.routes[i].method == http.MethodGet {
				return &s.routes[i], true
			}
		}
	}
	return nil, known
}

func (s *Server) allowed(path string) string {
	var m []string
	for _, rt := range s.routes {
		if rt.path == path {
			m = append(m, rt.method)
		}
	}
	return strings.Join(m, ", ")
}

// authorized compares the bearer token in constant time (hashes of equal
// length, so neither content nor length leaks through timing).
func (s *Server) authorized(r *http.Request) bool {
	if !s.hasToken {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	h := sha256.Sum256([]byte(strings.TrimSpace(got)))
	return subtle.ConstantTimeCompare(h[:], s.token[:]) == 1
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPI)
}

// isLoopback reports whether a listener only accepts local connections.
func isLoopback(a net.Addr) bool {
	switch v := a.(type) {
	case *net.TCPAddr:
		return v.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback() || host == "localhost"
}

// ErrNoToken is returned by ServeListener for a non-loopback listener
// without a token.
var ErrNoToken = errors.New("server: refusing to listen beyond loopback without a bearer token (set SANDBOX_TOKEN or --token-file)")

// ServeListener serves on ln until Shutdown, or until ctx is done, which
// starts a graceful shutdown bounded by Options.DrainTimeout. It returns nil
// after a shutdown.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	if !s.hasToken && !isLoopback(ln.Addr()) {
		ln.Close()
		return ErrNoToken
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), s.opts.DrainTimeout)
			defer cancel()
			s.Shutdown(sctx)
		case <-done:
		}
	}()
	s.log.Info("listening", "addr", ln.Addr().String(), "auth", s.hasToken,
		"maxConcurrency", s.conc, "maxQueue", s.queue)
	err := s.http.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-s.done
		return nil
	}
	return err
}

// Shutdown stops accepting connections, answers queued requests 503, lets
// runs in flight finish until ctx is done, then cancels them (they are
// answered with status cancelled), and releases the Runners. Nothing the
// server started outlives it.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	first := false
	s.stopOnce.Do(func() {
		first = true
		s.ready.Store(false)
		close(s.stopping)
	})
	if !first {
		<-s.done
		return nil
	}
	defer close(s.done)
	s.log.Info("shutting down: draining runs in flight")
	if err = s.http.Shutdown(ctx); err != nil {
		s.log.Warn("drain timeout passed: cancelling the runs left")
		s.cancelRuns()
		// The cancelled runs are still answered: wait again (bounded) for
		// the connections to finish their responses, which the server
		// writes after the handlers return, and only then close the rest.
		fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if s.http.Shutdown(fctx) != nil {
			s.http.Close()
		}
		cancel()
		err = nil
	}
	s.cancelRuns()
	// Runner.Close waits for its runs; a run the engine cannot end must
	// not hold the process forever.
	closed := make(chan struct{})
	go func() { s.runners.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		s.log.Error("runs still in the engine 10s after cancellation; not waiting for them")
	}
	if s.ownTP != nil {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.ownTP.Shutdown(fctx)
		cancel()
	}
	s.log.Info("shut down")
	return err
}
