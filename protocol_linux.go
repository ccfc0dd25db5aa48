package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kb-labs/sandbox/internal/monitor"
	"github.com/kb-labs/sandbox/internal/mount"
	"github.com/kb-labs/sandbox/internal/proc"
	"github.com/kb-labs/sandbox/internal/protocol"
)

// stderrTail is how much of the end of stderr is searched for V8's heap
// out-of-memory message.
const stderrTail = 4 << 10

// ipcRun is the parent side of the handler protocol for one subprocess run
// (docs/handler-protocol.md): file handlers always, commands with Protocol.
// The engine hooks it in at four points: command() creates it and the socket,
// execute() hands the child's end over as fd 3 and calls startProtocol
// after the release, wait()'s terminate sends cancel before SIGTERM, and
// collect() maps the Outcome (finishProtocol).
type ipcRun struct {
	child   *os.File // the program's end; closed by execute once handed over
	sess    *protocol.Session
	run     protocol.RunMessage
	node    bool          // node's heap OOM is memory_limit
	started chan struct{} // closed when the Start goroutine returned
	out     atomic.Int64  // protocol bytes counted toward maxOutput
	// call spans the handler's work: from the run message to the end.
	call atomic.Pointer[monitor.Span]
}

// protocolCommand prepares a run that speaks the protocol: it returns the
// argv, adds the protocol's environment to env, and creates r.ipc with the
// socketpair and the session.
func (r *subRun) protocolCommand(env map[string]string) ([]string, error) {
	rs := r.rs
	h := rs.handler
	var argv []string
	run := protocol.RunMessage{}
	switch rs.kind {
	case KindFile:
		argv = handlerArgv(h.Runtime, r.exec.Memory)
		run.Handler = protocol.HandlerRef{File: h.File, Export: h.export()}
		in, err := inputJSON(rs.input)
		if err != nil {
			return nil, err
		}
		run.Input = in
		// Bytecode caches would be written into the read-only plugin root.
		env["PYTHONDONTWRITEBYTECODE"] = "1"
	case KindCommand:
		argv = h.Command
		run.Handler = protocol.HandlerRef{File: h.Command[0]}
		run.Input = commandInput(rs.input)
	default:
		return nil, fmt.Errorf("%s handlers do not speak the handler protocol", rs.kind)
	}
	ctxJSON, err := json.Marshal(r.insideContext())
	if err != nil {
		return nil, fmt.Errorf("encode the execution context: %w", err)
	}
	run.Context = ctxJSON
	env["SANDBOX_IPC_FD"] = "3"

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("protocol socketpair: %w", err)
	}
	pf := os.NewFile(uintptr(fds[0]), "protocol-parent")
	conn, err := net.FileConn(pf) // dups the descriptor into the poller
	pf.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, fmt.Errorf("protocol socket: %w", err)
	}
	ipc := &ipcRun{
		child:   os.NewFile(uintptr(fds[1]), "protocol-child"),
		run:     run,
		node:    rs.kind == KindFile && h.Runtime == "node",
		started: make(chan struct{}),
	}
	max := int64(r.exec.MaxOutput)
	ipc.sess = protocol.NewSession(conn, protocol.Options{
		MaxMessageBytes:  int(r.s.cfg.Protocol.MaxMessageBytes),
		HandshakeTimeout: time.Duration(r.s.cfg.Protocol.HandshakeTimeout),
		RequireReady:     rs.kind == KindFile,
		OnLog: func(level, message string, meta map[string]any) {
			rs.log(LogLine{Level: normLevel(level), Source: "handler", Message: message, Meta: meta})
		},
		OnProgress: rs.progress,
		OnInvalid:  func(error) { r.kill() },
		CountBytes: func(n int) bool {
			if max < 0 || ipc.out.Add(int64(n)) <= max {
				return true
			}
			rs.limit(StatusOutputLimit, "protocol messages passed the "+r.exec.MaxOutput.String()+" output limit")
			r.kill()
			return false
		},
	})
	r.ipc = ipc
	return argv, nil
}

// commandInput is the run message's input for a protocol command: the
// input also goes to stdin, and what stdin takes as bytes (raw bytes,
// strings, readers) is not JSON, so it is sent as null.
func commandInput(input any) json.RawMessage {
	switch input.(type) {
	case nil, []byte, string, io.Reader:
		return nil
	}
	in, err := inputJSON(input)
	if err != nil {
		return nil
	}
	return in
}

// insideContext is the execution context as the handler sees it: host
// paths replaced by the paths inside the sandbox, or dropped when nothing
// is mounted for them.
func (r *subRun) insideContext() ExecutionContext {
	c := r.rs.ec
	c.Workdir = mount.Workspace
	c.Outdir = ""
	if r.rs.ec.Outdir != "" || r.s.cfg.Permissions.Filesystem.Outdir != "" {
		c.Outdir = mount.Out
	}
	c.PluginRoot = ""
	if _, ok, _ := pluginRoot(r.rs.ec); (ok || r.filesArePlugin()) && r.rs.kind == KindFile {
		c.PluginRoot = pluginTarget
	}
	return c
}

// startProtocol waits for ready (file handlers) and sends the run message,
// off the engine's goroutine: the wall-clock limit and cancellation keep
// running in wait(). A protocol failure (handshake timeout, invalid
// message) ends the run; Finish reports it.
func (r *subRun) startProtocol(ctx context.Context) {
	if r.ipc == nil {
		return
	}
	ipc := r.ipc
	// handler.load: the interpreter's start and the bootstrap, until ready
	// (for commands, which may skip ready, it ends at once).
	load := r.rs.traces.Start("handler.load", map[string]any{"handler.file": ipc.run.Handler.File, "handler.export": ipc.run.Handler.Export})
	go func() {
		defer close(ipc.started)
		err := ipc.sess.Start(ctx, ipc.run)
		load.End()
		if err == nil {
			ipc.call.Store(r.rs.span("handler.call"))
		}
		var perr *protocol.Error
		if errors.As(err, &perr) {
			r.kill()
		}
		// ErrClosed: the child closed its end and is ending by itself;
		// ErrOutputLimit: CountBytes ended the run; ctx: wait() ends it.
	}()
}

// cancelProtocol sends {"type":"cancel"} (the engine sends SIGTERM next).
func (r *subRun) cancelProtocol() {
	if r.ipc != nil {
		r.ipc.sess.Cancel()
	}
}

// closeProtocol releases the session on every path (idempotent).
func (r *subRun) closeProtocol() {
	if r.ipc != nil {
		r.ipc.child.Close()
		r.ipc.sess.Close()
	}
}

// finishProtocol judges the run from the protocol's messages and how the
// program ended (internal/protocol/doc.go), after collect mapped the exit.
func (r *subRun) finishProtocol(e proc.Exit) {
	ipc := r.ipc
	rs := r.rs
	bySandbox := r.bySandbox.Load()
	select {
	case <-r.killed:
		bySandbox = true
	default:
	}
	exit := protocol.ExitInfo{Code: -1, BySandbox: bySandbox}
	switch {
	case !e.Reported:
		exit.Signal = syscall.SIGKILL
	case e.Status.Exited():
		exit.Code = e.Status.ExitStatus()
	case e.Status.Signaled():
		exit.Signal = e.Status.Signal()
	}
	o := ipc.sess.Finish(exit)
	select {
	case <-ipc.started:
	case <-time.After(time.Second): // Start never began (set-up failed) or is stuck
	}
	if sp := ipc.call.Load(); sp != nil {
		sp.SetAttr("handler.verdict", string(o.Verdict))
		sp.End()
	}
	if !e.Reported && !bySandbox {
		return // the init died: collect's setup_error stands
	}
	switch o.Verdict {
	case protocol.VerdictOK:
		rs.outcome(StatusOK, "", "")
		rs.mu.Lock()
		rs.result.Data = o.Data
		rs.mu.Unlock()
	case protocol.VerdictHandlerError:
		rs.outcome(StatusHandlerError, o.Err.Code, o.Err.Message)
		r.setStack(o.Err.Stack)
	case protocol.VerdictSetupError:
		rs.setupError(o.Err.Code, o.Err.Message)
	case protocol.VerdictMemoryLimit:
		rs.limit(StatusMemoryLimit, "the handler ran out of memory: "+o.Err.Message)
		r.setStack(o.Err.Stack)
	case protocol.VerdictExit:
		if !ipc.node {
			break
		}
		tail := rs.result.Stderr
		if len(tail) > stderrTail {
			tail = tail[len(tail)-stderrTail:]
		}
		if protocol.IsNodeHeapOOM(tail, exit) {
			rs.limit(StatusMemoryLimit, fmt.Sprintf("JavaScript heap out of memory (V8 heap limit %d MiB, derived from the %s memory limit)",
				nodeHeapMiB(r.exec.Memory), r.exec.Memory))
		}
	}
}

func (r *subRun) setStack(stack string) {
	if stack == "" {
		return
	}
	r.rs.mu.Lock()
	defer r.rs.mu.Unlock()
	if r.rs.result.Error != nil {
		r.rs.result.Error.Stack = stack
	}
}
