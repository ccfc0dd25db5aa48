package landlock

import (
	"errors"
	"fmt"
	"runtime"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// ProbeABI returns the kernel's Landlock ABI version, 0 when Landlock is
// unavailable.
func ProbeABI() int {
	v, err := ll.LandlockGetABIVersion()
	if err != nil || v < 0 {
		return 0
	}
	return v
}

// Apply restricts the calling OS thread, and every process it later forks, to
// r. It locks the calling goroutine to its thread for good
// (runtime.LockOSThread, never undone), so the restricted thread is never
// handed to other goroutines and dies with this one. The thread must have
// no_new_privs set, or CAP_SYS_ADMIN in its user namespace.
//
// When the kernel lacks Landlock, or a scope r asks for, Apply returns
// ErrUnavailable or ErrABITooOld unless bestEffort; Result says what was
// applied and what was dropped either way. A failure after the ruleset was
// built leaves the thread unrestricted and returns an error naming the step.
func Apply(r Rules, bestEffort bool) (Result, error) {
	p, err := makePlan(r, ProbeABI(), bestEffort)
	if err != nil {
		return Result{}, err
	}
	res := Result{ABI: p.abi, Dropped: p.dropped}
	if p.abi == 0 {
		return res, nil
	}
	attr := ll.RulesetAttr{HandledAccessFS: p.handled, Scoped: p.scoped}
	fd, err := ll.LandlockCreateRuleset(&attr, 0)
	if err != nil {
		return Result{}, fmt.Errorf("landlock: create_ruleset: %w", err)
	}
	defer unix.Close(fd)
	for _, rl := range p.rules(r) {
		if err := addRule(fd, rl); err != nil {
			return Result{}, err
		}
	}
	runtime.LockOSThread()
	if err := ll.LandlockRestrictSelf(fd, 0); err != nil {
		if errors.Is(err, unix.EPERM) {
			return Result{}, fmt.Errorf("landlock: restrict_self (is no_new_privs set?): %w", err)
		}
		return Result{}, fmt.Errorf("landlock: restrict_self: %w", err)
	}
	return res, nil
}

func addRule(ruleset int, rl rule) error {
	fd, err := unix.Open(rl.path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("landlock: rule for %s: %w", rl.path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("landlock: rule for %s: %w", rl.path, err)
	}
	rights := rl.rights
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		rights &= fileRights
	}
	attr := ll.PathBeneathAttr{AllowedAccess: rights, ParentFd: fd}
	if err := ll.LandlockAddPathBeneathRule(ruleset, &attr, 0); err != nil {
		return fmt.Errorf("landlock: add_rule for %s: %w", rl.path, err)
	}
	return nil
}
