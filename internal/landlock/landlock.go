package landlock

import (
	"errors"
	"fmt"
	"path/filepath"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// Rules describe the domain. Paths are absolute paths as the restricted
// thread sees them (inside the new root); a path that does not exist is an
// error. Everything not listed is denied. Rules is a plain value.
type Rules struct {
	// ReadOnly paths may be read and listed.
	ReadOnly []string
	// ReadWrite paths get every right the ABI handles: read, write,
	// create, remove, rename across them, truncate, device ioctl, execute,
	// connect to unix sockets.
	ReadWrite []string
	// ReadExec paths may be read, listed and executed.
	ReadExec []string
	// ScopeSignals forbids signalling processes outside the domain (ABI 6).
	ScopeSignals bool
	// ScopeAbstractUnix forbids connecting to abstract unix sockets
	// created outside the domain (ABI 6).
	ScopeAbstractUnix bool
}

// Result says what Apply enforced.
type Result struct {
	// ABI is the Landlock ABI whose rights were applied (0: none).
	ABI int
	// Dropped names what this kernel could not enforce: "landlock" (no
	// Landlock at all), "truncate", "ioctl_dev", "resolve_unix",
	// "scope_signals", "scope_abstract_unix".
	Dropped []string
}

// MaxABI is the newest Landlock ABI whose rights this package knows; a newer
// kernel is used at this level.
const MaxABI = 9

const scopeABI = 6

var (
	// ErrUnavailable: the kernel has no Landlock (not built, or not in the
	// lsm= list).
	ErrUnavailable = errors.New("landlock: not available on this kernel (needs Linux 5.13+ with landlock in the lsm= boot parameter)")
	// ErrABITooOld: a requested feature needs a newer Landlock ABI.
	ErrABITooOld = errors.New("landlock: kernel ABI too old for a requested feature")
	// ErrUnsupported is returned outside Linux.
	ErrUnsupported = errors.New("landlock: only supported on Linux")
)

// fsRights returns every filesystem right of an ABI.
func fsRights(abi int) uint64 {
	r := uint64(ll.AccessFSExecute | ll.AccessFSWriteFile | ll.AccessFSReadFile | ll.AccessFSReadDir |
		ll.AccessFSRemoveDir | ll.AccessFSRemoveFile | ll.AccessFSMakeChar | ll.AccessFSMakeDir |
		ll.AccessFSMakeReg | ll.AccessFSMakeSock | ll.AccessFSMakeFifo | ll.AccessFSMakeBlock | ll.AccessFSMakeSym)
	if abi >= 2 {
		r |= ll.AccessFSRefer
	}
	if abi >= 3 {
		r |= ll.AccessFSTruncate
	}
	if abi >= 5 {
		r |= ll.AccessFSIoctlDev
	}
	if abi >= 9 {
		r |= ll.AccessFSResolveUnix
	}
	return r
}

// fileRights are the rights that apply to a file (not a directory) as a
// rule's target; the kernel refuses others there.
const fileRights = ll.AccessFSExecute | ll.AccessFSWriteFile | ll.AccessFSReadFile |
	ll.AccessFSTruncate | ll.AccessFSIoctlDev

const (
	readRights = ll.AccessFSReadFile | ll.AccessFSReadDir
	execRights = readRights | ll.AccessFSExecute
)

// plan is what Apply will ask the kernel for at a given ABI.
type plan struct {
	abi     int
	handled uint64
	scoped  uint64
	dropped []string
}

// makePlan decides, without touching the kernel, what rules r become at
// kernel ABI abi.
func makePlan(r Rules, abi int, bestEffort bool) (plan, error) {
	for _, list := range [][]string{r.ReadOnly, r.ReadWrite, r.ReadExec} {
		for _, p := range list {
			if !filepath.IsAbs(p) {
				return plan{}, fmt.Errorf("landlock: rule path %q is not absolute", p)
			}
		}
	}
	if abi <= 0 {
		if !bestEffort {
			return plan{}, ErrUnavailable
		}
		return plan{dropped: []string{"landlock"}}, nil
	}
	p := plan{abi: min(abi, MaxABI)}
	p.handled = fsRights(p.abi)
	for _, f := range []struct {
		name string
		abi  int
	}{{"truncate", 3}, {"ioctl_dev", 5}, {"resolve_unix", 9}} {
		if p.abi < f.abi {
			p.dropped = append(p.dropped, f.name)
		}
	}
	for _, s := range []struct {
		want bool
		name string
		bit  uint64
	}{
		{r.ScopeSignals, "scope_signals", ll.ScopeSignal},
		{r.ScopeAbstractUnix, "scope_abstract_unix", ll.ScopeAbstractUnixSocket},
	} {
		switch {
		case !s.want:
		case p.abi >= scopeABI:
			p.scoped |= s.bit
		case bestEffort:
			p.dropped = append(p.dropped, s.name)
		default:
			return plan{}, fmt.Errorf("%w: %s needs ABI %d, the kernel has %d", ErrABITooOld, s.name, scopeABI, abi)
		}
	}
	return p, nil
}

// rule is one path and the rights granted beneath it.
type rule struct {
	path   string
	rights uint64
}

func (p plan) rules(r Rules) []rule {
	var out []rule
	add := func(paths []string, rights uint64) {
		for _, path := range paths {
			out = append(out, rule{path: path, rights: rights & p.handled})
		}
	}
	add(r.ReadOnly, readRights)
	add(r.ReadExec, execRights)
	add(r.ReadWrite, p.handled)
	return out
}
