//go:build linux

package hostile

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/kb-labs/sandbox"
)

// escapeCases try to outlive or outrun the run: daemons, ignored signals,
// the init stopped or killed, host processes signalled.
func escapeCases() []hcase {
	return []hcase{
		{name: "double_fork_setsid_daemon", fn: func(c *cctx) error {
			// The daemon keeps the stdout pipe open and ignores SIGTERM/HUP:
			// the run must end when the program does, and kill it.
			o := c.run("probe", "daemon")
			return all(ok(o), kvIn(o, "daemon", "ok"), bounded(o, 5*time.Second))
		}},
		{name: "python_double_fork_daemon", fn: func(c *cctx) error {
			o := c.run("python3", "-c", `import os, signal, sys, time
if os.fork(): sys.exit(0)
os.setsid()
if os.fork(): sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
time.sleep(300)`)
			return all(ok(o), bounded(o, 5*time.Second))
		}},
		{name: "sh_setsid_background", fn: func(c *cctx) error {
			o := c.run("sh", "-c", `setsid sh -c 'trap "" TERM HUP; sleep 300; :' "$0" & echo started=1`)
			return all(ok(o), kvIn(o, "started", "1"), bounded(o, 5*time.Second))
		}},
		{name: "signal_ignoring_loop_timeout", fn: func(c *cctx) error {
			c.cfg.Execution.Timeout = sandbox.Duration(time.Second)
			c.cfg.Execution.Grace = sandbox.Duration(300 * time.Millisecond)
			o := c.run("probe", "sigspin")
			return all(status(o, sandbox.StatusTimeout), kvIn(o, "spinning", "1"),
				bounded(o, time.Second+300*time.Millisecond+1500*time.Millisecond))
		}},
		{name: "signal_ignoring_loop_cpu_limit", fn: func(c *cctx) error {
			c.cfg.Execution.CPUTime = sandbox.Duration(500 * time.Millisecond)
			c.cfg.Execution.Timeout = sandbox.Duration(10 * time.Second)
			o := c.run("probe", "sigspin")
			return all(status(o, sandbox.StatusCPULimit), bounded(o, 5*time.Second))
		}},
		{name: "stop_and_kill_init", fn: func(c *cctx) error {
			o := c.run("probe", "killinit")
			// Whether the kernel or Landlock refuses, the init survives and
			// the run ends normally.
			return all(ok(o), kvIn(o, "alive", "yes"), bounded(o, 5*time.Second))
		}},
		{name: "signal_host_processes", fn: func(c *cctx) error {
			sentinel := fmt.Sprint(host.sentinel.Process.Pid)
			self := fmt.Sprint(os.Getpid())
			o := c.run("probe", "kill", sentinel, self, "1")
			return all(ok(o),
				kvIn(o, "kill"+sentinel, "ESRCH"), kvIn(o, "pidfd"+sentinel, "ESRCH"),
				kvIn(o, "kill"+self, "ESRCH", "EPERM"), kvIn(o, "pidfd"+self, "ESRCH", "EPERM"),
				kvIn(o, "kill1", "EPERM", "ok"))
			// host.intact (run after every case) checks the sentinel lives.
		}},
	}
}

func TestEscapingLimits(t *testing.T) { runCases(t, escapeCases()) }
