package protocol

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Options.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultDrainTimeout     = time.Second
)

// Options configure a Session. The zero value of each field is its default.
type Options struct {
	// MaxMessageBytes is the per-line limit (default 16 MiB).
	MaxMessageBytes int
	// HandshakeTimeout bounds the wait for ready when RequireReady is set
	// (default 10s).
	HandshakeTimeout time.Duration
	// RequireReady selects file-handler rules (set it for file handlers,
	// leave it false for commands run with protocol: true):
	//   - ready is required within HandshakeTimeout, else E_HANDSHAKE_TIMEOUT;
	//   - nothing but ready may come before it, and no result before run;
	//   - exiting 0 without a result is E_NO_RESULT.
	// Without it (the handshake timeout is for file handlers only) a
	// command may skip ready — run is sent at once — but if it sends ready,
	// ready must be its first message; and a command that exits 0 without a
	// result succeeds with data null.
	RequireReady bool
	// DrainTimeout bounds how long Finish keeps reading what the child
	// wrote before it exited, for when a descendant still holds the
	// socket open (default 1s). Finish returns at end of stream before that.
	DrainTimeout time.Duration

	// OnLog and OnProgress are called from the session's reader goroutine,
	// one message at a time, in order. They must return promptly: while one
	// runs, the child's messages are not read (and Finish waits for it).
	OnLog      func(level, message string, meta map[string]any)
	OnProgress func(percent float64, message string)
	// OnInvalid is called once, from the reader goroutine, when the run has
	// failed with E_INVALID_MESSAGE; the engine should end the run (Finish
	// still reports E_INVALID_MESSAGE when BySandbox is set). Afterwards
	// the session keeps draining the socket without parsing it, so a child
	// blocked in write cannot turn the failure into a timeout.
	OnInvalid func(err error)
	// CountBytes is told the size of every line read except the accepted
	// result (logs, progress, ready, blank lines and invalid bytes alike,
	// newline included), before the line is dispatched; blank lines are
	// told as they are skipped. When it returns false the output budget is exhausted: the
	// session stops reading and the engine ends the run with output_limit.
	CountBytes func(n int) bool
}

// Session is the parent side of the handler protocol for one run. It owns
// conn (normally one end of a socketpair whose other end is the child's fd
// 3) and closes it in Finish or Close.
//
// Lifecycle: NewSession starts reading; Start waits for ready and sends
// run; Cancel may be called at any time from any goroutine; after the
// process has ended the engine calls Finish exactly for the verdict, or
// Close on set-up failure paths. Both release every goroutine of the
// session; both are idempotent.
type Session struct {
	conn net.Conn
	opts Options
	dec  *Decoder

	mu sync.Mutex
	st state

	readyCh    chan struct{}
	failCh     chan struct{}
	readerDone chan struct{}
	wq         chan []byte
	stop       chan struct{}
	writerDone chan struct{}

	started    atomic.Bool
	cancelSent atomic.Bool
	closeOnce  sync.Once
	finishOnce sync.Once
	outcome    Outcome
	counted    int64 // decoder offset told to CountBytes; reader goroutine only
}

// state is what the reader saw; guarded by Session.mu.
type state struct {
	ready, seen, runSent bool
	result               *ResultMessage
	failure              *ErrorInfo // first protocol failure, final
	invalid              string
	exhausted            bool
	fds                  int
}

// NewSession starts the reader and writer goroutines on conn.
func NewSession(conn net.Conn, opts Options) *Session {
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	s := &Session{
		conn:       conn,
		opts:       opts,
		dec:        NewDecoder(conn, opts.MaxMessageBytes),
		readyCh:    make(chan struct{}),
		failCh:     make(chan struct{}),
		readerDone: make(chan struct{}),
		wq:         make(chan []byte, 2), // run and cancel, each at most once
		stop:       make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	go s.read()
	go s.write()
	return s
}

// Start waits for ready (with RequireReady; HandshakeTimeout runs from
// this call, so the engine calls it right after the spawn) and then queues
// the run message; MaxMessageBytes is filled in from the options when zero. It
// returns an *Error with code E_HANDSHAKE_TIMEOUT when ready does not come
// in time, E_INVALID_MESSAGE when the child broke the protocol first,
// ErrClosed or ErrOutputLimit when reading ended before ready, or
// ctx.Err(). After any error the engine should end the run and call Finish,
// which reports the same failure. Start does not wait for the child to read
// the run message: a child that never reads cannot block it.
func (s *Session) Start(ctx context.Context, run RunMessage) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("protocol: Start called twice")
	}
	if s.opts.RequireReady {
		t := time.NewTimer(s.opts.HandshakeTimeout)
		defer t.Stop()
		select {
		case <-s.readyCh:
		case <-s.failCh:
			return s.failErr()
		case <-s.readerDone:
			if err := s.endedErr(); err != nil {
				return err
			}
		case <-t.C:
			s.fail(&ErrorInfo{Code: CodeHandshakeTimeout,
				Message: fmt.Sprintf("no ready message within %s", s.opts.HandshakeTimeout)}, false)
			return s.failErr()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if run.MaxMessageBytes == 0 {
		run.MaxMessageBytes = s.opts.MaxMessageBytes
	}
	line, err := Encode(run)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.st.failure != nil {
		s.mu.Unlock()
		return s.failErr()
	}
	s.st.runSent = true
	s.mu.Unlock()
	s.wq <- line
	return nil
}

// endedErr explains why reading ended before ready; nil if ready came.
func (s *Session) endedErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.st.failure != nil:
		return &Error{Code: s.st.failure.Code, Message: s.st.failure.Message}
	case s.st.ready:
		return nil
	case s.st.exhausted:
		return ErrOutputLimit
	}
	return ErrClosed
}

func (s *Session) failErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &Error{Code: s.st.failure.Code, Message: s.st.failure.Message}
}

// Cancel queues {"type":"cancel"} once; later calls do nothing. It never
// blocks, whether or not the child reads.
func (s *Session) Cancel() {
	if !s.cancelSent.CompareAndSwap(false, true) {
		return
	}
	line, _ := Encode(CancelMessage{})
	select {
	case s.wq <- line:
	default:
	}
}

// Finish is called once the child has exited or been killed. It reads what
// the child wrote before it ended (until end of stream, at most
// DrainTimeout), stops the session, closes conn, and returns the Outcome
// (see doc.go for the verdict rules). Later calls return the same Outcome.
func (s *Session) Finish(exit ExitInfo) Outcome {
	s.finishOnce.Do(func() {
		_ = s.conn.SetReadDeadline(time.Now().Add(s.opts.DrainTimeout))
		<-s.readerDone
		s.shutdown()
		s.mu.Lock()
		s.outcome = judge(&s.st, s.opts.RequireReady, exit)
		s.mu.Unlock()
	})
	return s.outcome
}

// Close stops the session at once without a verdict and closes conn; for
// paths where the child never ran. Safe to call after Finish.
func (s *Session) Close() error {
	s.shutdown()
	return nil
}

func (s *Session) shutdown() {
	s.closeOnce.Do(func() {
		close(s.stop)
		now := time.Now()
		_ = s.conn.SetWriteDeadline(now)
		_ = s.conn.SetReadDeadline(now)
		<-s.writerDone
		<-s.readerDone
		_ = s.conn.Close()
	})
}

func (s *Session) write() {
	defer close(s.writerDone)
	for {
		select {
		case <-s.stop:
			return
		case b := <-s.wq:
			if _, err := s.conn.Write(b); err != nil {
				return // the child is gone or stopped reading; Finish judges
			}
		}
	}
}

func (s *Session) read() {
	defer close(s.readerDone)
	defer func() {
		s.mu.Lock()
		s.st.fds = s.dec.ClosedFDs()
		s.mu.Unlock()
	}()
	// Blank lines between messages are counted as they are skipped, not
	// only when a message follows: a child writing nothing but newlines
	// passes its budget like any other.
	s.dec.idle = func() bool { return s.count(0) }
	for {
		if s.failed() {
			// Drain without parsing: the verdict is final.
			if _, err := s.dec.skip(); err != nil || !s.count(0) {
				return
			}
			continue
		}
		msg, err := s.dec.Next()
		var perr *Error
		switch {
		case errors.As(err, &perr):
			if !s.count(0) {
				return
			}
			s.fail(&ErrorInfo{Code: perr.Code, Message: perr.Message}, true)
			continue
		case err != nil:
			s.count(0)
			return
		}
		if !s.handle(msg) {
			return
		}
	}
}

// count tells CountBytes about the bytes consumed since its last call, less
// the final except bytes (the accepted result's line), and reports whether
// the budget still holds.
func (s *Session) count(except int) bool {
	off := s.dec.Offset()
	n := off - s.counted - int64(except)
	s.counted = off
	if n <= 0 || s.opts.CountBytes == nil || s.opts.CountBytes(int(n)) {
		return true
	}
	s.mu.Lock()
	s.st.exhausted = true
	s.mu.Unlock()
	return false
}

func (s *Session) failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.failure != nil
}

// handle applies the ordering rules, counts msg's bytes and dispatches it;
// it reports whether reading goes on (false: the output budget is
// exhausted). A message is counted before it is dispatched, so a log that
// passes the budget never reaches the run's log.
func (s *Session) handle(msg Message) bool {
	s.mu.Lock()
	st := &s.st
	var problem string
	switch m := msg.(type) {
	case ReadyMessage:
		if st.ready || st.seen {
			problem = "ready out of order"
			break
		}
		st.ready, st.seen = true, true
		close(s.readyCh)
	case LogMessage, ProgressMessage:
		switch {
		case s.opts.RequireReady && !st.ready:
			problem = msg.Type() + " before ready"
		case st.result != nil:
			problem = msg.Type() + " after the result"
		}
		if problem != "" {
			break
		}
		st.seen = true
		s.mu.Unlock()
		if !s.count(0) {
			return false
		}
		if l, ok := m.(LogMessage); ok && s.opts.OnLog != nil {
			s.opts.OnLog(l.Level, l.Message, l.Meta)
		} else if p, ok := m.(ProgressMessage); ok && s.opts.OnProgress != nil {
			s.opts.OnProgress(p.Percent, p.Message)
		}
		return true
	case ResultMessage:
		switch {
		case s.opts.RequireReady && !st.runSent:
			problem = "result before run"
		case st.result != nil:
			problem = "second result"
		}
		if problem != "" {
			break
		}
		st.seen = true
		st.result = &m
		s.mu.Unlock()
		// The result's own line is the run's data, not output; what came
		// before it on the wire (blank lines) is.
		return s.count(s.dec.lastLen)
	default:
		problem = fmt.Sprintf("%q is a parent-to-child message", msg.Type())
	}
	s.mu.Unlock()
	if problem != "" {
		s.fail(&ErrorInfo{Code: CodeInvalidMessage, Message: problem}, true)
	}
	return s.count(0)
}

// fail records the first protocol failure; invalid ones are reported to
// OnInvalid.
func (s *Session) fail(e *ErrorInfo, invalid bool) {
	s.mu.Lock()
	if s.st.failure != nil {
		s.mu.Unlock()
		return
	}
	s.st.failure = e
	if invalid {
		s.st.invalid = e.Message
	}
	close(s.failCh)
	s.mu.Unlock()
	if invalid && s.opts.OnInvalid != nil {
		s.opts.OnInvalid(&Error{Code: e.Code, Message: e.Message})
	}
}
