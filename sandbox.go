package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/kb-labs/sandbox/internal/monitor"
)

// Runner runs handlers under one validated Config. It is safe for concurrent
// use; a Result is never reused. Close releases what the Runner holds (warm
// sandboxes, compiled modules, observer goroutines); Run after Close returns
// ErrClosed.
type Runner struct {
	cfg      Config
	strategy strategy
	hooks    *dispatcher

	mu      sync.RWMutex
	closed  bool
	running sync.WaitGroup
}

// strategy is one execution mode.
type strategy interface {
	// supports returns nil when the strategy can run handlers of kind k.
	supports(k Kind, h Handler) error
	// run executes the handler and fills rs.result; every outcome is a result.
	run(ctx context.Context, rs *runState)
	close() error
}

// New validates cfg (preflight: every bad value is a *ConfigError naming the
// field and the accepted form; a protection the host cannot enforce is an
// error unless cfg.BestEffort) and returns a Runner for cfg.Mode.
func New(cfg Config) (*Runner, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	r := &Runner{cfg: c}
	var err error
	switch c.Mode {
	case InProcess:
		r.strategy, err = newInProcess(&r.cfg)
	case Subprocess:
		r.strategy, err = newSubprocess(&r.cfg, cfg.Execution)
	}
	if err != nil {
		return nil, err
	}
	r.hooks = newDispatcher(c.Observers)
	return r, nil
}

// Config returns the Runner's configuration with defaults applied.
func (r *Runner) Config() Config { return r.cfg }

// Run executes h with input under the Runner's configuration. input is the
// handler's input: for commands and WASI modules, nil, []byte, string or an
// io.Reader becomes stdin (a reader is copied until it ends or the run does;
// a Read already blocked when the run ends still completes later, and its
// data is dropped); for file handlers it is sent as JSON (a json.RawMessage
// as is); Go functions get it as it is. execCtx may be nil.
//
// Run returns an error only for misuse: an invalid handler, a kind the mode
// cannot run, a closed Runner. Every outcome of an actual run, set-up failures
// included, is a Result; use Result.Err for an error.
func (r *Runner) Run(ctx context.Context, h Handler, input any, execCtx *ExecutionContext) (*Result, error) {
	return r.run(ctx, h, input, execCtx, nil)
}

func (r *Runner) run(ctx context.Context, h Handler, input any, execCtx *ExecutionContext, st *Stream) (*Result, error) {
	kind, err := h.Kind()
	if err != nil {
		return nil, err
	}
	if err := r.strategy.supports(kind, h); err != nil {
		return nil, err
	}
	var ec ExecutionContext
	if execCtx != nil {
		ec = *execCtx
	}
	if err := ec.validate(); err != nil {
		return nil, err
	}
	if err := filesFit(&r.cfg, h, ec); err != nil {
		return nil, err
	}
	if ec.RequestID == "" {
		ec.RequestID = newRequestID()
	}
	r.mu.RLock()
	if r.closed {
		r.mu.RUnlock()
		return nil, ErrClosed
	}
	r.running.Add(1)
	r.mu.RUnlock()
	defer r.running.Done()

	rs := newRunState(&r.cfg, r.hooks, h, kind, input, ec)
	rs.stream = st
	rs.hooks.start(StartEvent{RequestID: ec.RequestID, Kind: kind, Context: ec})
	r.strategy.run(ctx, rs)
	res := rs.finish()
	r.hooks.finish(res)
	return res, nil
}

// Close releases the Runner's resources after the runs in flight end. It is
// safe to call more than once.
func (r *Runner) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.running.Wait()
	err := r.strategy.close()
	r.hooks.close()
	return err
}

// runState is one run in progress: what every strategy fills in.
type runState struct {
	cfg     *Config
	hooks   *dispatcher
	handler Handler
	kind    Kind
	input   any
	ec      ExecutionContext

	start  time.Time
	ring   *monitor.Ring
	traces *monitor.Recorder

	stream *Stream

	mu     sync.Mutex
	result Result
	fired  map[Status]bool
	own    Status // the program's own outcome
	msg    map[Status]string
}

func newRunState(cfg *Config, hooks *dispatcher, h Handler, kind Kind, input any, ec ExecutionContext) *runState {
	rs := &runState{
		cfg: cfg, hooks: hooks, handler: h, kind: kind, input: input, ec: ec,
		start: time.Now(),
		ring:  monitor.NewRing(int(cfg.Monitoring.LogBufferSize)),
		fired: map[Status]bool{},
		msg:   map[Status]string{},
	}
	rs.traces = monitor.NewRecorder(ec.TraceID, ec.SpanID)
	rs.result = Result{RequestID: ec.RequestID, ExitCode: -1}
	return rs
}

// span starts a phase span; End it when the phase ends.
func (rs *runState) span(name string) *monitor.Span {
	return rs.traces.Start(name, nil)
}

// log records a line and streams it to the observers.
func (rs *runState) log(l LogLine) {
	if l.Time.IsZero() {
		l.Time = time.Now().UTC()
	}
	// The observers get the line as the ring keeps it: cut to the per-line
	// caps, so that their queues are bounded like the ring.
	m, cost := rs.ring.Add(monitor.Line{Time: l.Time, Level: l.Level, Source: l.Source, Message: l.Message, Meta: l.Meta})
	l.Message, l.Meta = m.Message, m.Meta
	rs.hooks.logLine(LogEvent{RequestID: rs.ec.RequestID, Line: l}, cost)
}

// lineSink adapts monitor lines (from output streams) to log.
func (rs *runState) lineSink(l monitor.Line) {
	rs.log(LogLine{Time: l.Time, Level: l.Level, Source: l.Source, Message: l.Message, Meta: l.Meta})
}

func (rs *runState) progress(percent float64, message string) {
	if percent < 0 {
		percent = 0
	}
	if percent > 100 {
		percent = 100
	}
	message = monitor.FitMessage(message, 0)
	rs.hooks.progress(ProgressEvent{RequestID: rs.ec.RequestID, Percent: percent, Message: message},
		monitor.LineOverhead+len(message))
}

// limit records that a limit verdict fired (precedence decides later).
func (rs *runState) limit(s Status, message string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if !rs.fired[s] {
		rs.fired[s] = true
		rs.msg[s] = message
	}
}

func (rs *runState) limitFired(s Status) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.fired[s]
}

// outcome records the program's own outcome.
func (rs *runState) outcome(s Status, code, message string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.own = s
	if s != StatusOK {
		rs.result.Error = &ErrorInfo{Code: code, Message: message}
	} else {
		rs.result.Error = nil
	}
}

// setupError ends the run as setup_error with a code.
func (rs *runState) setupError(code, message string) {
	rs.outcome(StatusSetupError, code, message)
}

var limitCodes = map[Status]string{
	StatusCancelled: CodeCancelled, StatusTimeout: CodeTimeout, StatusMemoryLimit: CodeMemoryLimit,
	StatusCPULimit: CodeCPULimit, StatusOutputLimit: CodeOutputLimit, StatusFileSizeLimit: CodeFileSizeLimit,
	StatusViolation: CodeSeccompViolation,
}

// finish applies the precedence and builds the Result.
func (rs *runState) finish() *Result {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := &rs.result
	if rs.own == "" {
		rs.own = StatusSetupError
		if r.Error == nil {
			r.Error = &ErrorInfo{Code: CodeSetupFailed, Message: "the run produced no outcome"}
		}
	}
	r.Status = decide(rs.fired, rs.own)
	if r.Status != rs.own {
		stack := ""
		if r.Error != nil {
			stack = r.Error.Stack
		}
		r.Error = &ErrorInfo{Code: limitCodes[r.Status], Message: rs.msg[r.Status], Stack: stack}
	}
	r.OK = r.Status == StatusOK
	if r.OK {
		r.Error = nil
	}
	if r.Metrics.TimeMs == nil {
		r.Metrics.TimeMs = ms(time.Since(rs.start))
	}
	if *rs.cfg.Monitoring.CollectLogs {
		for _, l := range rs.ring.Lines() {
			r.Logs = append(r.Logs, LogLine{Time: l.Time, Level: l.Level, Source: l.Source, Message: l.Message, Meta: l.Meta})
		}
		if n := rs.ring.Dropped(); n > 0 {
			// Appended, not added to the ring: the note must not evict a
			// line itself (RATIONALE.md, "What a log line costs").
			r.Logs = append(r.Logs, LogLine{Time: time.Now().UTC(), Level: "warn", Source: "sandbox",
				Message: fmt.Sprintf("%d earlier log lines were dropped: the log passed monitoring.logBufferSize (%s)",
					n, rs.cfg.Monitoring.LogBufferSize)})
		}
	}
	if rs.cfg.Monitoring.CollectTraces {
		for _, s := range rs.traces.Spans() {
			r.Traces = append(r.Traces, Span{TraceID: s.TraceID, SpanID: s.SpanID, ParentSpanID: s.ParentSpanID,
				Name: s.Name, StartTime: s.Start.UTC(), EndTime: s.End.UTC(), Attributes: s.Attributes})
		}
	}
	out := *r
	return &out
}

// inputJSON encodes a handler input for the protocol and Go functions.
func inputJSON(input any) (json.RawMessage, error) {
	switch v := input.(type) {
	case nil:
		return json.RawMessage("null"), nil
	case json.RawMessage:
		if !json.Valid(v) {
			return nil, fmt.Errorf("%w: input is not valid JSON", ErrInvalidHandler)
		}
		return v, nil
	}
	b, err := json.Marshal(input)
	if err != nil {
		return nil, fmt.Errorf("%w: input cannot be encoded as JSON: %v", ErrInvalidHandler, err)
	}
	return b, nil
}

// PoolDepth is the number of warm sandboxes ready now (0 without a pool).
func (r *Runner) PoolDepth() int {
	if d, ok := r.strategy.(interface{ poolDepth() int }); ok {
		return d.poolDepth()
	}
	return 0
}
