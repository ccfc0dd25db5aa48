package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/kb-labs/sandbox/internal/cgroup"
	"github.com/kb-labs/sandbox/internal/hostid"
	"github.com/kb-labs/sandbox/internal/landlock"
	"github.com/kb-labs/sandbox/internal/mount"
	"github.com/kb-labs/sandbox/internal/proc"
)

// subprocess runs every handler in a fresh isolated process tree
// (docs/security.md). Host capabilities are probed once, by New; what the
// configuration asks for and the host cannot enforce is an error unless
// BestEffort, and then listed in every result's isolation.degraded.
type subprocess struct {
	cfg      *Config
	cg       cgroup.Manager // nil when cgroups are unavailable (best effort only)
	plan     *mount.Plan    // built once from the config; per-run host paths rebuild it
	planOpts mount.Options
	seccomp  bool
	landlock int // ABI to apply, 0 = off
	degraded []Degradation
	prefix   string
	ids      hostid.Range // root only: each sandbox leases a pair from it

	pool *pool // warm sandboxes, nil when pool.size is 0
}

// newSubprocess probes the host for cfg (defaults applied); asked holds the
// execution limits as the caller gave them, before defaults, so that an
// explicitly requested limit can be told from a default one.
func newSubprocess(cfg *Config, asked Execution) (strategy, error) {
	s := &subprocess{cfg: cfg, prefix: ownerPrefix()}
	var err error
	if s.ids, err = hostIDRange(cfg.Security); err != nil {
		return nil, &ConfigError{Field: "security.hostIdRange", Value: cfg.Security.HostIDRange, Want: err.Error()}
	}
	fail := func(layer, reason, fix string, fields ...string) error {
		if cfg.BestEffort {
			s.degraded = append(s.degraded, Degradation{Layer: layer, Reason: reason})
			return nil
		}
		return &UnenforceableError{Layer: layer, Fields: fields,
			msg: fmt.Sprintf("sandbox: %s: %s; %s (or set bestEffort to run with weaker isolation)", layer, reason, fix)}
	}
	if err := checkUserNamespaces(); err != nil {
		// Without user namespaces nothing of section 3 holds: never degrade.
		return nil, &UnenforceableError{Layer: "user namespaces",
			msg: fmt.Sprintf("sandbox: user namespaces: %v; enable them (sysctl user.max_user_namespaces=15000, kernel.unprivileged_userns_clone=1)", err)}
	}
	if err := mount.Check(); err != nil {
		return nil, &UnenforceableError{Layer: "mount API", msg: fmt.Sprintf("sandbox: mount API: %v; a kernel 5.12 or newer is needed", err)}
	}
	if proc.Rootless() {
		if d, ok := rootlessGroups(); !ok {
			s.degraded = append(s.degraded, d)
		}
	}
	cg, err := sharedCgroups()
	if err != nil {
		switch {
		case proc.Rootless():
			if !cfg.BestEffort {
				if e := rootlessNoCgroup(asked, err); e != nil {
					return nil, e
				}
			}
			s.degraded = append(s.degraded, Degradation{Layer: "cgroup", Reason: noCgroupReason(cfg, err)})
		default:
			if e := fail("cgroup", err.Error(), "run as root or delegate a cgroup v2 subtree to this user"); e != nil {
				return nil, e
			}
		}
	} else {
		s.cg = cg
		f := cg.Features()
		if cfg.Execution.Memory != Unlimited && !f.Memory {
			if e := fail("cgroup", "the memory controller is not usable", "enable the memory controller", "execution.memory"); e != nil {
				return nil, e
			}
		} else if cfg.Execution.Memory != Unlimited && !f.MemorySwap {
			if e := fail("cgroup", "swap is not accounted (memory.memsw / memory.swap.max missing): the memory limit would not bound swap", "boot with swapaccount=1", "execution.memory"); e != nil {
				return nil, e
			}
		}
		if cfg.Execution.Pids != Unlimited && !f.Pids {
			if e := fail("cgroup", "the pids controller is not usable", "enable the pids controller", "execution.pids"); e != nil {
				return nil, e
			}
		}
		if cfg.Execution.CPUs != Unlimited && !f.CPU {
			if e := fail("cgroup", "the cpu controller is not usable", "enable the cpu controller", "execution.cpus"); e != nil {
				return nil, e
			}
		}
		if cfg.Execution.CPUTime != Unlimited && !f.CPUAcct {
			if e := fail("cgroup", "CPU time accounting is not usable: only RLIMIT_CPU per process bounds CPU time", "enable the cpuacct (v1) or cpu (v2) controller", "execution.cpuTime"); e != nil {
				return nil, e
			}
		}
	}
	if *cfg.Security.Seccomp {
		if err := checkSeccomp(); err != nil {
			if e := fail("seccomp", err.Error(), "use a kernel with CONFIG_SECCOMP_FILTER", "security.seccomp"); e != nil {
				return nil, e
			}
		} else {
			s.seccomp = true
		}
	}
	if *cfg.Security.Landlock {
		abi := landlock.ProbeABI()
		switch {
		case abi == 0:
			if e := fail("landlock", "the kernel lacks Landlock", "enable CONFIG_SECURITY_LANDLOCK and add landlock to the lsm= boot parameter", "security.landlock"); e != nil {
				return nil, e
			}
		case abi < 6:
			if e := fail("landlock", fmt.Sprintf("Landlock ABI %d lacks signal and abstract socket scoping (ABI 6)", abi), "use a kernel 6.12 or newer", "security.landlock"); e != nil {
				return nil, e
			}
			s.landlock = abi
		default:
			s.landlock = abi
		}
	}
	s.planOpts = planOptions(cfg)
	if s.plan, err = mount.NewPlan(s.planOpts); err != nil {
		return nil, planError(err, cfg.Permissions.Filesystem)
	}
	if os.Geteuid() == 0 {
		if err := checkHostPaths(s.plan, s.planOpts); err != nil {
			return nil, &ConfigError{Field: "permissions.filesystem", Want: err.Error()}
		}
	}
	if cfg.Pool.Size > 0 {
		s.pool = newPool(s, cfg.Pool.Size)
	}
	return s, nil
}

func planError(err error, fs Filesystem) error {
	var oe *mount.OptionError
	if errors.As(err, &oe) {
		return &ConfigError{Field: optionKey(oe.Option, fs), Value: oe.Value, Want: oe.Err.Error()}
	}
	return fmt.Errorf("sandbox: filesystem: %w", err)
}

// optionKey names a mount option by the config key the user wrote:
// "ReadOnly[1].Source" is permissions.filesystem.readOnly[1].source, and a
// Tmpfs index counts the /tmp entries planOptions folds into TmpSize.
func optionKey(opt string, fs Filesystem) string {
	var parts []string
	for part := range strings.SplitSeq(opt, ".") {
		if part != "" {
			part = strings.ToLower(part[:1]) + part[1:]
		}
		parts = append(parts, part)
	}
	if i, ok := tmpfsIndex(parts[0]); ok {
		for j, t := range fs.Tmpfs {
			if t.Target == "/tmp" {
				continue
			}
			if i == 0 {
				parts[0] = fmt.Sprintf("tmpfs[%d]", j)
				break
			}
			i--
		}
	}
	if parts[0] == "tmpSize" {
		parts[0] = "tmpfs"
	}
	if parts[0] == "network" || parts[0] == "hostname" {
		return "permissions." + strings.Join(parts, ".")
	}
	return "permissions.filesystem." + strings.Join(parts, ".")
}

func tmpfsIndex(p string) (int, bool) {
	n, ok := strings.CutPrefix(p, "tmpfs[")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(strings.TrimSuffix(n, "]"))
	return i, err == nil
}

func planOptions(cfg *Config) mount.Options {
	fs := cfg.Permissions.Filesystem
	o := mount.Options{
		Network:       mount.Network(cfg.Permissions.Network),
		Hostname:      cfg.Permissions.Hostname,
		WorkspaceSize: int64(fs.WorkspaceSize),
		TmpSize:       int64(DefaultTmpSize),
		Workdir:       fs.Workdir,
		Outdir:        fs.Outdir,
		AllowSockets:  fs.AllowSockets,
		IDMap:         idmapped(cfg),
	}
	for _, m := range fs.ReadOnly {
		o.ReadOnly = append(o.ReadOnly, mount.Bind{Source: m.Source, Target: orDefault(m.Target, m.Source)})
	}
	for _, m := range fs.ReadWrite {
		o.ReadWrite = append(o.ReadWrite, mount.Bind{Source: m.Source, Target: orDefault(m.Target, m.Source)})
	}
	for _, t := range fs.Tmpfs {
		if t.Target == "/tmp" {
			if t.Size > 0 {
				o.TmpSize = int64(t.Size)
			}
			continue
		}
		o.Tmpfs = append(o.Tmpfs, mount.Tmpfs{Target: t.Target, Size: int64(t.Size)})
	}
	return o
}

func (s *subprocess) supports(k Kind, h Handler) error {
	switch k {
	case KindCommand, KindFile:
		return nil
	}
	return fmt.Errorf("%w: %s handlers need inprocess mode", ErrUnsupportedHandler, k)
}

func (s *subprocess) close() error {
	if s.pool != nil {
		s.pool.close()
	}
	return nil
}

// runSeq numbers the runs of every Runner of the process: run cgroup names
// share the process's owner prefix, so they must not repeat across Runners.
var runSeq atomic.Int64

var (
	cgroupOnce sync.Once
	cgroupMgr  cgroup.Manager
	cgroupErr  error
)

// sharedCgroups detects the cgroup backend once per process and sweeps what
// dead supervisors left behind.
func sharedCgroups() (cgroup.Manager, error) {
	cgroupOnce.Do(func() {
		cgroupMgr, cgroupErr = cgroup.Detect("/")
		if cgroupErr == nil {
			sweepDeadOwners(cgroupMgr)
		}
	})
	return cgroupMgr, cgroupErr
}

// ownerPrefix names this process's runs: sbx-<pid>.<start time>-, so a later
// process can tell a dead owner's leftovers from a live one's even when the
// pid was reused.
func ownerPrefix() string {
	return fmt.Sprintf("sbx-%d.%s-", os.Getpid(), startTime(os.Getpid()))
}

func startTime(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "0"
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		f := strings.Fields(s[i+1:])
		if len(f) > 19 {
			return f[19]
		}
	}
	return "0"
}

// sweepDeadOwners removes run cgroups whose owner process is gone.
func sweepDeadOwners(m cgroup.Manager) {
	seen := map[string]bool{}
	for _, dir := range m.Parents() {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			name := e.Name()
			rest, ok := strings.CutPrefix(name, "sbx-")
			if !ok || !e.IsDir() {
				continue
			}
			owner, _, ok := strings.Cut(rest, "-")
			if !ok || seen[owner] {
				continue
			}
			seen[owner] = true
			pid, st, _ := strings.Cut(owner, ".")
			n, err := strconv.Atoi(pid)
			if err != nil {
				continue
			}
			if startTime(n) == st && st != "0" {
				continue // alive
			}
			m.Sweep("sbx-" + owner + "-")
		}
	}
}

// explicitLimits names the cgroup-enforced limits the caller set (a value
// other than 0, the default, and Unlimited).
func explicitLimits(asked Execution) []string {
	var out []string
	if asked.Memory != 0 && asked.Memory != Unlimited {
		out = append(out, "execution.memory")
	}
	if asked.Pids != 0 && asked.Pids != Unlimited {
		out = append(out, "execution.pids")
	}
	if asked.CPUs != 0 && asked.CPUs != Unlimited {
		out = append(out, "execution.cpus")
	}
	if asked.CPUTime != 0 && asked.CPUTime != Unlimited {
		out = append(out, "execution.cpuTime")
	}
	return out
}

// rootlessNoCgroup refuses a rootless run without usable cgroups when the
// caller explicitly asked for a limit only a cgroup enforces.
func rootlessNoCgroup(asked Execution, cause error) error {
	lim := explicitLimits(asked)
	if len(lim) == 0 {
		return nil
	}
	return &UnenforceableError{Layer: "cgroup", Fields: lim, msg: fmt.Sprintf(
		"sandbox: cgroup: %s requested, but this user (uid %d) has no delegated cgroup v2 subtree to enforce it (%v); "+
			"delegate one (systemd: Delegate=yes, e.g. systemd-run --user --scope -p Delegate=yes -- COMMAND; or, as root, chown a cgroup v2 "+
			"directory to uid %d with +memory +pids +cpu in its cgroup.subtree_control), or remove the limit, or set bestEffort to run without it",
		strings.Join(lim, ", "), os.Geteuid(), cause, os.Geteuid())}
}

// noCgroupReason says plainly what a run without cgroups lacks.
func noCgroupReason(cfg *Config, cause error) string {
	e := cfg.Execution
	var off []string
	if e.Memory != Unlimited {
		off = append(off, "memory "+e.Memory.String())
	}
	if e.Pids != Unlimited {
		off = append(off, "pids "+e.Pids.String())
	}
	r := "rootless without a delegated cgroup v2 subtree: the run has no memory, pids or CPU limit and no cgroup accounting"
	if len(off) > 0 {
		r += " (not enforced: " + strings.Join(off, ", ") + ")"
	}
	return r + "; only rlimits bound it: " + cause.Error()
}

// rootlessGroups checks that the caller has no supplementary groups other
// than its own gid: an unprivileged user namespace must deny setgroups, so
// the program keeps them (they govern access to bind-mounted host files).
func rootlessGroups() (Degradation, bool) {
	gs, err := unix.Getgroups()
	if err != nil {
		return Degradation{Layer: "identity", Reason: "cannot read the caller's supplementary groups: " + err.Error()}, false
	}
	var extra []string
	for _, g := range gs {
		if g != os.Getegid() {
			extra = append(extra, strconv.Itoa(g))
		}
	}
	if len(extra) == 0 {
		return Degradation{}, true
	}
	return Degradation{Layer: "identity", Reason: "rootless: the program keeps the caller's supplementary groups (host gids " +
		strings.Join(extra, ", ") + ", shown as 65534 inside) because an unprivileged user namespace cannot call setgroups; " +
		"run the supervisor as a user without supplementary groups to avoid it"}, false
}

func checkUserNamespaces() error {
	b, err := os.ReadFile("/proc/sys/user/max_user_namespaces")
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(b)) == "0" {
		return errors.New("user.max_user_namespaces is 0")
	}
	return nil
}

func checkSeccomp() error {
	if _, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("seccomp unavailable: %v", err)
	}
	if _, err := os.Stat("/proc/sys/kernel/seccomp/actions_avail"); err != nil {
		return errors.New("seccomp filters unavailable (no /proc/sys/kernel/seccomp/actions_avail)")
	}
	return nil
}

func (s *subprocess) poolDepth() int {
	if s.pool == nil {
		return 0
	}
	return s.pool.depth()
}
