package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// killTimeout bounds Kill and the wait in Close: a process in
// uninterruptible sleep can outlive SIGKILL for a while, but a run must not
// hold its supervisor forever.
var killTimeout = 5 * time.Second

// member is the run's cgroup in one hierarchy, as seen from the filesystem
// (dir) and from /proc/<pid>/cgroup (cgPath, on the line of ctrl; ctrl is
// "" for the v2 line).
type member struct {
	dir    string
	cgPath string
	ctrl   string
}

// killer SIGKILLs every process of a run until none is left. Processes are
// signalled through a pidfd after checking they are still in the run, so a
// pid recycled by a host process is never signalled; when a freezer is
// available the run is frozen first so it cannot fork while it is emptied.
type killer struct {
	procRoot string
	members  []member
	freeze   func() bool // nil without a freezer; reports whether frozen
	thaw     func()
}

func (k *killer) pids() ([]int, error) {
	var all []int
	var errs []error
	for _, m := range k.members {
		p, err := procsOf(m.dir)
		if err != nil {
			errs = append(errs, err)
		}
		all = append(all, p...)
	}
	slices.Sort(all)
	return slices.Compact(all), errors.Join(errs...)
}

// waitEmpty polls until the run has no process or deadline passes.
func (k *killer) waitEmpty(deadline time.Time) error {
	for delay := 50 * time.Microsecond; ; delay = min(2*delay, 50*time.Millisecond) {
		p, err := k.pids()
		if err == nil && len(p) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return err
			}
			return fmt.Errorf("%w: %d still running (pids %v)", ErrBusy, len(p), p[:min(len(p), 8)])
		}
		time.Sleep(delay)
	}
}

// killAll repeats freeze, kill, thaw until the run is empty or deadline.
func (k *killer) killAll(deadline time.Time) error {
	// Killed processes usually are gone within a fraction of a millisecond:
	// start polling fine, then back off.
	for delay := 50 * time.Microsecond; ; delay = min(2*delay, 20*time.Millisecond) {
		p, err := k.pids()
		if err == nil && len(p) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return k.waitEmpty(deadline)
		}
		if k.freeze != nil {
			k.freeze()
			if p, err = k.pids(); err != nil && len(p) == 0 {
				k.thaw()
				return err
			}
		}
		for _, pid := range p {
			k.signal(pid)
		}
		if k.freeze != nil {
			k.thaw()
		}
		time.Sleep(delay)
	}
}

// signal SIGKILLs pid when it is (still) a member of the run.
func (k *killer) signal(pid int) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err == nil {
		defer unix.Close(fd)
		if k.isMember(pid) {
			_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		}
		return
	}
	if errors.Is(err, unix.ESRCH) {
		return
	}
	// No pidfd (kernel < 5.3): only safe against pid reuse while frozen,
	// since a frozen task cannot exit; unfrozen, the membership check
	// narrows the window to microseconds.
	if k.isMember(pid) {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
}

// isMember checks /proc/<pid>/cgroup against the run's paths.
func (k *killer) isMember(pid int) bool {
	b, err := os.ReadFile(filepath.Join(k.procRoot, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return false
	}
	for _, l := range parseProcCgroup(b) {
		for _, m := range k.members {
			if m.ctrl == "" && len(l.ctrls) != 0 || m.ctrl != "" && !slices.Contains(l.ctrls, m.ctrl) {
				continue
			}
			if l.path == m.cgPath || strings.HasPrefix(l.path, m.cgPath+"/") {
				return true
			}
		}
	}
	return false
}

// pollFile waits until check(content of p) holds, for at most d.
func pollFile(p string, d time.Duration, check func(string) bool) bool {
	end := time.Now().Add(d)
	for delay := 100 * time.Microsecond; ; delay = min(2*delay, 10*time.Millisecond) {
		b, err := os.ReadFile(p)
		if err == nil && check(string(b)) {
			return true
		}
		if err != nil || time.Now().After(end) {
			return false
		}
		time.Sleep(delay)
	}
}
