package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/kb-labs/sandbox"
)

// console shows a handler's own logs and progress on stderr while it runs
// (without --json): a handler's console.log or print() output goes over the
// protocol, not to the process's stdout, so without this it would appear
// nowhere. On a terminal, progress is one bar redrawn in place; elsewhere,
// one line per report.
type console struct {
	mu  sync.Mutex
	w   io.Writer
	tty bool
	bar bool // a progress bar is on the last line
}

func newConsole(w io.Writer) *console {
	return &console{w: w, tty: isTerminal(w)}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (c *console) observer() sandbox.Observer {
	return sandbox.Observer{
		OnLog: func(e sandbox.LogEvent) {
			if e.Line.Source != "handler" {
				return // stdout and stderr already stream through
			}
			msg := e.Line.Message
			if e.Line.Level != "info" {
				msg = e.Line.Level + ": " + msg
			}
			c.line(msg)
		},
		OnProgress: func(e sandbox.ProgressEvent) { c.progress(e.Percent, e.Message) },
	}
}

// line prints one log line, above the bar when one is shown.
func (c *console) line(msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clearBar()
	fmt.Fprintln(c.w, strings.TrimRight(msg, "\n"))
}

const barWidth = 30

func (c *console) progress(percent float64, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	msg = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r < ' ' {
			return ' '
		}
		return r
	}, msg)
	if !c.tty {
		fmt.Fprintf(c.w, "progress %3.0f%% %s\n", percent, msg)
		return
	}
	if len(msg) > 60 {
		msg = strings.ToValidUTF8(msg[:60], "") + "…"
	}
	n := int(percent / 100 * barWidth)
	fmt.Fprintf(c.w, "\r\x1b[K[%s%s] %3.0f%% %s", strings.Repeat("#", n), strings.Repeat(" ", barWidth-n), percent, msg)
	c.bar = true
}

// done removes the bar before the run's own last words.
func (c *console) done() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clearBar()
}

func (c *console) clearBar() {
	if c.bar {
		fmt.Fprint(c.w, "\r\x1b[K")
		c.bar = false
	}
}
