//go:build linux

package hostile

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kb-labs/sandbox"
)

// atMost checks a numeric key against a bound.
func atMost(o *outcome, key string, max int64) error {
	v, err := strconv.ParseInt(o.kv[key], 10, 64)
	if err != nil {
		return fmt.Errorf("%s=%q: not a number", key, o.kv[key])
	}
	if v > max {
		return fmt.Errorf("%s=%d, above the limit %d", key, v, max)
	}
	return nil
}

func pidsLimitHit(o *outcome, max int64) error {
	m := o.res.Metrics
	var errs []error
	if m.PidsLimitHit == nil || !*m.PidsLimitHit {
		errs = append(errs, fmt.Errorf("metrics.pidsLimitHit = %v, want true", m.PidsLimitHit))
	}
	if m.PidsPeak != nil && *m.PidsPeak > max {
		errs = append(errs, fmt.Errorf("metrics.pidsPeak = %d, above the limit %d", *m.PidsPeak, max))
	}
	return all(errs...)
}

// sysvKeyOnHost reports whether a System V object with key exists on the
// host (the run has its own IPC namespace).
func sysvKeyOnHost(key int64) error {
	for _, f := range []string{"shm", "msg", "sem"} {
		b, _ := os.ReadFile("/proc/sysvipc/" + f)
		for _, l := range strings.Split(string(b), "\n")[1:] {
			if fs := strings.Fields(l); len(fs) > 0 && fs[0] == strconv.FormatInt(key, 10) {
				return fmt.Errorf("HOST EFFECT: System V %s with key %#x exists on the host", f, key)
			}
		}
	}
	return nil
}

func resourceCases() []hcase {
	return []hcase{
		{name: "fork_bomb", fn: func(c *cctx) error {
			c.cfg.Execution.Pids = 32
			c.cfg.Execution.Timeout = sandbox.Duration(2 * time.Second)
			c.cfg.Execution.Grace = sandbox.Duration(200 * time.Millisecond)
			o := c.run("sh", "-c", "f() { f | f & f; }; f")
			// dash gives up on "Cannot fork" or the bomb runs into the
			// timeout; either way the pids limit held it.
			return all(status(o, sandbox.StatusTimeout, sandbox.StatusNonzeroExit), pidsLimitHit(o, 32),
				bounded(o, 2*time.Second+200*time.Millisecond+2*time.Second))
		}},
		{name: "thread_bomb", fn: func(c *cctx) error {
			c.cfg.Execution.Pids = 32
			o := c.run("probe", "threads")
			return all(status(o, sandbox.StatusNonzeroExit, sandbox.StatusSignaled), pidsLimitHit(o, 32))
		}},
		{name: "memory_bomb", fn: func(c *cctx) error {
			c.cfg.Execution.Memory = 64 * sandbox.MiB
			o := c.run("probe", "mem")
			errs := []error{status(o, sandbox.StatusMemoryLimit)}
			if p := o.res.Metrics.MemPeakBytes; p != nil && *p > 72<<20 {
				errs = append(errs, fmt.Errorf("memPeakBytes %d above the 64 MiB limit", *p))
			}
			return all(errs...)
		}},
		{name: "sysv_shm_memory_bomb", fn: func(c *cctx) error {
			c.cfg.Execution.Memory = 64 * sandbox.MiB
			key := int64(0x4f000000) | int64(os.Getpid()&0xffff)<<8 | 1
			o := c.run("probe", "shm", fmt.Sprint(key), "256")
			return all(status(o, sandbox.StatusMemoryLimit), sysvKeyOnHost(key))
		}},
		{name: "sysv_ipc_namespace", fn: func(c *cctx) error {
			key := int64(0x4f000000) | int64(os.Getpid()&0xffff)<<8 | 2
			o := c.run("probe", "shm", fmt.Sprint(key), "1")
			return all(ok(o), kvIn(o, "shmget", "ok"), kvIn(o, "msgget", "ok"), kvIn(o, "semget", "ok"),
				sysvKeyOnHost(key))
		}},
		{name: "output_flood_stdout", fn: func(c *cctx) error {
			c.cfg.Execution.MaxOutput = 64 * sandbox.KiB
			o := c.run("yes")
			return all(status(o, sandbox.StatusOutputLimit), outputBounded(o.res.Stdout, o.res.StdoutTruncated, 64<<10))
		}},
		{name: "output_flood_stderr", fn: func(c *cctx) error {
			c.cfg.Execution.MaxOutput = 64 * sandbox.KiB
			o := c.run("sh", "-c", "yes >&2")
			return all(status(o, sandbox.StatusOutputLimit), outputBounded(o.res.Stderr, o.res.StderrTruncated, 64<<10))
		}},
		{name: "fd_exhaustion", fn: func(c *cctx) error {
			c.cfg.Execution.MaxOpenFiles = 64
			o := c.run("probe", "fds")
			return all(ok(o), kvIn(o, "fds", "EMFILE"), atMost(o, "opened", 64))
		}},
		{name: "disk_fill_workspace_tmpfs", fn: func(c *cctx) error {
			c.cfg.Permissions.Filesystem.WorkspaceSize = 16 * sandbox.MiB
			o := c.run("probe", "fill", "/workspace/fill")
			return all(ok(o), kvIn(o, "fill", "ENOSPC"), atMost(o, "bytes", 16<<20))
		}},
		{name: "disk_fill_tmp", fn: func(c *cctx) error {
			c.cfg.Execution.MaxFileSize = 2 * sandbox.DefaultTmpSize // ENOSPC first
			o := c.run("probe", "fill", "/tmp/fill")
			return all(ok(o), kvIn(o, "fill", "ENOSPC"), atMost(o, "bytes", int64(sandbox.DefaultTmpSize)))
		}},
		{name: "disk_fill_host_workdir_sigxfsz", fn: func(c *cctx) error {
			// The program itself dies of SIGXFSZ at the limit.
			wd := c.workdir()
			c.cfg.Execution.MaxFileSize = sandbox.MiB
			o := c.run("sh", "-c", "exec head -c 8M /dev/zero > /workspace/big")
			return all(status(o, sandbox.StatusFileSizeLimit), hostFileBounded(filepath.Join(wd, "big"), 1<<20))
		}},
		{name: "disk_fill_host_workdir_sigxfsz_child", fn: func(c *cctx) error {
			// A child of the program dies of SIGXFSZ; the shell exits 153.
			// docs/result.md: file_size_limit is "a process of the run was
			// killed by SIGXFSZ", not only the program.
			wd := c.workdir()
			c.cfg.Execution.MaxFileSize = sandbox.MiB
			o := c.run("sh", "-c", "head -c 8M /dev/zero > /workspace/big; exit $?")
			return all(status(o, sandbox.StatusFileSizeLimit), hostFileBounded(filepath.Join(wd, "big"), 1<<20))
		}},
		{name: "disk_fill_host_workdir_efbig", fn: func(c *cctx) error {
			// The Go runtime ignores SIGXFSZ: the write fails with EFBIG
			// and the program carries on; the host file stays bounded.
			wd := c.workdir()
			c.cfg.Execution.MaxFileSize = sandbox.MiB
			o := c.run("probe", "fill", "/workspace/big")
			return all(ok(o), kvIn(o, "fill", "EFBIG"), hostFileBounded(filepath.Join(wd, "big"), 1<<20))
		}},

		{name: "inode_exhaustion", fn: func(c *cctx) error {
			o := c.run("probe", "inodes", "/tmp")
			return all(ok(o), kvIn(o, "inodes", "ENOSPC"), atMost(o, "files", int64(sandbox.DefaultTmpSize)/4096))
		}},
		{name: "dev_shm_fill", fn: func(c *cctx) error {
			c.cfg.Execution.MaxFileSize = 128 * sandbox.MiB // ENOSPC first
			o := c.run("probe", "fill", "/dev/shm/"+c.mark)
			errs := []error{ok(o), kvIn(o, "fill", "ENOSPC"), atMost(o, "bytes", 64<<20)}
			if _, err := os.Stat("/dev/shm/" + c.mark); err == nil {
				errs = append(errs, fmt.Errorf("HOST EFFECT: the run's file appeared in the host's /dev/shm"))
			}
			return all(errs...)
		}},
		{name: "inotify_exhaustion", fn: func(c *cctx) error {
			o := c.run("probe", "inotify", "/tmp")
			errs := []error{ok(o), kvIn(o, "instances_err", "EMFILE"), atMost(o, "instances", 16),
				kvIn(o, "watches_err", "ENOSPC"), atMost(o, "watches", 8192)}
			// The host still has inotify.
			if fd, err := unix.InotifyInit1(unix.IN_CLOEXEC); err != nil {
				errs = append(errs, fmt.Errorf("HOST EFFECT: inotify_init1 on the host: %v", err))
			} else {
				unix.Close(fd)
			}
			return all(errs...)
		}},
	}
}

// hostFileBounded checks a file the run wrote on the host: at most max
// bytes, owned by the workdir's owner (never root).
func hostFileBounded(path string, max int64) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Size() > max {
		return fmt.Errorf("HOST EFFECT: host file grew to %d bytes past the %d-byte limit", fi.Size(), max)
	}
	return ownedByWorkdirOwner(path)
}

func outputBounded(b []byte, truncated bool, max int) error {
	if len(b) > max {
		return fmt.Errorf("captured %d bytes, above maxOutput %d", len(b), max)
	}
	if !truncated {
		return fmt.Errorf("output not marked truncated")
	}
	return nil
}

// bounded checks the wall time of Run.
func bounded(o *outcome, max time.Duration) error {
	if o.elapsed > max {
		return fmt.Errorf("Run took %v, more than %v", o.elapsed, max)
	}
	return nil
}

func TestResourceExhaustion(t *testing.T) { runCases(t, resourceCases()) }
