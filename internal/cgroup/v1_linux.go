package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// userHZ is the unit of cpuacct.stat: USER_HZ is 100 on every architecture
// Linux exposes to user space through this file.
const userHZ = 100

var v1Required = []string{"memory", "pids", "cpu", "cpuacct"}

// hier is one mounted v1 hierarchy (possibly several co-mounted
// controllers, such as cpu,cpuacct) and our sandbox/ in it.
type hier struct {
	ctrls    []string
	parent   string // absolute path of sandbox/
	cgParent string // sandbox/ as /proc/<pid>/cgroup shows it
}

// v1Manager runs every run in <ctrl>/sandbox/<name> of the v1 memory, pids,
// cpu, cpuacct (and freezer) hierarchies, plus a v2 leaf on hybrid hosts.
type v1Manager struct {
	root   string
	hiers  []hier // unique hierarchies, each once
	byCtrl map[string]int
	leaf   *hier // hybrid: sandbox/ in the cgroup2 mount, nil otherwise
	ops    fsops
	feat   Features
}

var _ Manager = (*v1Manager)(nil)

func newV1(root string, v1 map[string]mount, unified *mount, euid int, ops fsops) (*v1Manager, error) {
	if miss := missingMounts(v1, v1Required...); len(miss) > 0 {
		return nil, fmt.Errorf("cgroup v1: no %s hierarchy", strings.Join(miss, ", "))
	}
	m := &v1Manager{root: root, byCtrl: map[string]int{}, ops: ops}
	for _, c := range append(slices.Clone(v1Required), "freezer") {
		mnt, ok := v1[c]
		if !ok {
			continue
		}
		if i := slices.IndexFunc(m.hiers, func(h hier) bool { return slices.Equal(h.ctrls, mnt.ctrls) }); i >= 0 {
			m.byCtrl[c] = i
			continue
		}
		h := hier{ctrls: mnt.ctrls, parent: filepath.Join(root, mnt.point, Parent), cgParent: path.Join(mnt.root, Parent)}
		if euid != 0 && unix.Access(h.parent, unix.W_OK) != nil {
			return nil, fmt.Errorf("cgroup v1 needs root, or a %s/%s that root created and chowned to uid %d; "+
				"on cgroup v2 a delegated subtree is enough (systemd Delegate=yes)", mnt.point, Parent, euid)
		}
		if err := ensureDir(ops, h.parent); err != nil {
			return nil, fmt.Errorf("cgroup v1: create parent: %w", err)
		}
		m.byCtrl[c] = len(m.hiers)
		m.hiers = append(m.hiers, h)
	}
	mem := m.hierOf("memory").parent
	// Children must be charged to sandbox/ so a budget on it holds (always
	// on since 5.16, where writing 0 is refused). Only possible while
	// sandbox/ has no children, hence best effort.
	if b, err := os.ReadFile(filepath.Join(mem, "memory.use_hierarchy")); err == nil && strings.TrimSpace(string(b)) == "0" {
		_ = ops.write(filepath.Join(mem, "memory.use_hierarchy"), "1")
	}
	if unified != nil {
		h := &hier{parent: filepath.Join(root, unified.point, Parent), cgParent: path.Join(unified.root, Parent)}
		if ensureDir(ops, h.parent) == nil {
			m.leaf = h
		}
	}
	pids := m.hierOf("pids").parent
	m.feat = Features{
		Memory: true, Pids: true, CPU: true, CPUAcct: true, ThreadEntry: true,
		MemorySwap: exists(filepath.Join(mem, "memory.memsw.limit_in_bytes")),
		Freeze:     hasKey(v1, "freezer"),
		MemoryPeak: exists(filepath.Join(mem, "memory.max_usage_in_bytes")),
		PidsPeak:   exists(filepath.Join(pids, "pids.peak")),
		Leaf:       m.leaf != nil,
	}
	if m.leaf != nil {
		m.feat.KillFile = exists(filepath.Join(m.leaf.parent, "cgroup.kill"))
		m.feat.CloneIntoCgroup = m.feat.KillFile || kernelAtLeast(5, 7)
	}
	return m, nil
}

func hasKey[V any](m map[string]V, k string) bool { _, ok := m[k]; return ok }

func missingMounts(v1 map[string]mount, want ...string) []string {
	var out []string
	for _, w := range want {
		if !hasKey(v1, w) {
			out = append(out, w)
		}
	}
	return out
}

func (m *v1Manager) hierOf(ctrl string) hier { return m.hiers[m.byCtrl[ctrl]] }

func (m *v1Manager) Version() string    { return "v1" }
func (m *v1Manager) Features() Features { return m.feat }

func (m *v1Manager) group(name string) *v1Group {
	g := &v1Group{m: m, name: name, leafFD: -1}
	for _, h := range m.hiers {
		g.dirs = append(g.dirs, filepath.Join(h.parent, name))
		g.kill.members = append(g.kill.members, member{dir: filepath.Join(h.parent, name), cgPath: path.Join(h.cgParent, name), ctrl: h.ctrls[0]})
	}
	if m.leaf != nil {
		g.leaf = filepath.Join(m.leaf.parent, name)
		g.kill.members = append(g.kill.members, member{dir: g.leaf, cgPath: path.Join(m.leaf.cgParent, name)})
	}
	g.kill.procRoot = filepath.Join(m.root, "proc")
	if m.feat.Freeze {
		state := filepath.Join(g.dirOf("freezer"), "freezer.state")
		g.kill.freeze = func() bool {
			if m.ops.write(state, "FROZEN") != nil {
				return false
			}
			return pollFile(state, 200*time.Millisecond, func(s string) bool { return strings.TrimSpace(s) == "FROZEN" })
		}
		g.kill.thaw = func() { _ = m.ops.write(state, "THAWED") }
	}
	return g
}

func (m *v1Manager) Create(name string, l Limits) (Group, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if err := l.Validate(); err != nil {
		return nil, err
	}
	g := m.group(name)
	g.limits = l
	fail := func(err error) (Group, error) {
		return nil, errors.Join(fmt.Errorf("cgroup: create run %q: %w", name, err), g.Close())
	}
	for _, d := range g.dirs {
		if err := m.ops.mkdir(d); err != nil {
			return fail(err)
		}
		g.owned = append(g.owned, d)
	}
	if g.leaf != "" {
		// Best effort: a missing leaf only loses cgroup.kill.
		if m.ops.mkdir(g.leaf) == nil {
			g.owned = append(g.owned, g.leaf)
			if fd, err := unix.Open(g.leaf, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
				g.leafFD = fd
			}
		} else {
			g.leaf = ""
		}
	}
	// The OOM killer must stay enabled: with it disabled a run at its limit
	// hangs instead of failing.
	if err := m.ops.write(filepath.Join(g.dirOf("memory"), "memory.oom_control"), "0"); err != nil {
		return fail(err)
	}
	if err := m.writeLimits(g.dirOf, l); err != nil {
		return fail(err)
	}
	f, err := os.Open(filepath.Join(g.dirOf("cpuacct"), "cpuacct.usage"))
	if err != nil {
		return fail(err)
	}
	g.cpu = f
	return g, nil
}

// writeLimits writes l into the directories dirOf gives per controller.
func (m *v1Manager) writeLimits(dirOf func(string) string, l Limits) error {
	if l.MemoryBytes > 0 {
		if err := writeV1Memory(m.ops, dirOf("memory"), l.MemoryBytes); err != nil {
			return err
		}
	}
	if l.Pids > 0 {
		if err := m.ops.write(filepath.Join(dirOf("pids"), "pids.max"), strconv.FormatInt(l.Pids, 10)); err != nil {
			return err
		}
	}
	if l.CPUs > 0 {
		d := dirOf("cpu")
		if err := m.ops.write(filepath.Join(d, "cpu.cfs_period_us"), strconv.Itoa(cpuPeriod)); err != nil {
			return err
		}
		if err := m.ops.write(filepath.Join(d, "cpu.cfs_quota_us"), strconv.FormatInt(cpuQuota(l.CPUs), 10)); err != nil {
			return err
		}
	}
	return nil
}

// writeV1Memory sets memory.limit_in_bytes and memory.memsw.limit_in_bytes
// to the same value. The kernel keeps memsw >= limit at every step, so when
// raising above the current memsw, memsw goes first; otherwise limit first.
// Without swap accounting (no memsw file) only the RAM limit is set and
// Features.MemorySwap says so.
func writeV1Memory(ops fsops, dir string, bytes int64) error {
	v := strconv.FormatInt(bytes, 10)
	limit := filepath.Join(dir, "memory.limit_in_bytes")
	memsw := filepath.Join(dir, "memory.memsw.limit_in_bytes")
	cur, err := os.ReadFile(memsw)
	if errors.Is(err, fs.ErrNotExist) {
		return ops.write(limit, v)
	}
	if err != nil {
		return err
	}
	if n, err := parseInt(cur); err == nil && bytes > n {
		if err := ops.write(memsw, v); err != nil {
			return err
		}
		return ops.write(limit, v)
	}
	if err := ops.write(limit, v); err != nil {
		return err
	}
	return ops.write(memsw, v)
}

func (m *v1Manager) SetBudget(l Limits) error {
	if err := l.Validate(); err != nil {
		return err
	}
	return m.writeLimits(func(c string) string { return m.hierOf(c).parent }, l)
}

func (m *v1Manager) Sweep(prefix string) (int, error) {
	var parents []string
	for _, h := range m.hiers {
		parents = append(parents, h.parent)
	}
	if m.leaf != nil {
		parents = append(parents, m.leaf.parent)
	}
	return sweep(prefix, parents, func(name string) closer {
		g := m.group(name)
		g.owned = append(slices.Clone(g.dirs), g.leaf)
		return g
	})
}

// v1Group is one run on cgroup v1 (plus its hybrid v2 leaf).
type v1Group struct {
	m      *v1Manager
	name   string
	dirs   []string // per unique hierarchy, in m.hiers order
	leaf   string   // hybrid v2 leaf dir, "" without one
	kill   killer
	limits Limits

	mu     sync.Mutex
	owned  []string // dirs we created, removed by Close
	leafFD int
	cpu    *os.File // cpuacct.usage, kept open for CPUUsage
	opened bool     // OpenTasks handed out the tasks files
	closed bool
}

var _ Group = (*v1Group)(nil)

func (g *v1Group) dirOf(ctrl string) string { return g.dirs[g.m.byCtrl[ctrl]] }

func (g *v1Group) Name() string { return g.name }

func (g *v1Group) Dir() (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return -1, fmt.Errorf("cgroup: run %q: %w", g.name, os.ErrClosed)
	}
	if g.leafFD < 0 {
		return -1, fmt.Errorf("cgroup v1: run %q has no v2 directory: %w", g.name, errors.ErrUnsupported)
	}
	return g.leafFD, nil
}

func (g *v1Group) restorePids() error {
	if g.limits.Pids <= 0 {
		return nil
	}
	return g.m.ops.write(filepath.Join(g.dirOf("pids"), "pids.max"), strconv.FormatInt(g.limits.Pids, 10))
}

// EnterLeaf: see Group.
func (g *v1Group) EnterLeaf(pid int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.leaf == "" {
		return nil
	}
	return g.m.ops.write(filepath.Join(g.leaf, "cgroup.procs"), strconv.Itoa(pid))
}

// Parents: see Manager.
func (m *v1Manager) Parents() []string {
	var out []string
	for _, h := range m.hiers {
		out = append(out, h.parent)
	}
	if m.leaf != nil {
		out = append(out, m.leaf.parent)
	}
	return out
}

// OpenTasks: see Group.
func (g *v1Group) OpenTasks() ([]*os.File, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.closed:
		return nil, fmt.Errorf("cgroup: run %q: %w", g.name, os.ErrClosed)
	case g.opened:
		return nil, fmt.Errorf("%w: run %q: tasks files already handed out", ErrInvalid, g.name)
	}
	var files []*os.File
	for _, d := range g.dirs {
		f, err := os.OpenFile(filepath.Join(d, "tasks"), os.O_WRONLY, 0)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("cgroup: open tasks file: %w", err)
		}
		files = append(files, f)
	}
	if g.limits.Pids > 0 {
		if err := g.m.ops.write(filepath.Join(g.dirOf("pids"), "pids.max"), strconv.FormatInt(g.limits.Pids+1, 10)); err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, err
		}
	}
	g.opened = true
	return files, nil
}

// ForgetThread: see Group.
func (g *v1Group) ForgetThread() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.opened {
		return fmt.Errorf("%w: no thread entered run %q through OpenTasks", ErrInvalid, g.name)
	}
	return g.restorePids()
}

func (g *v1Group) AddProcess(pid int) error {
	p := strconv.Itoa(pid)
	for _, d := range g.dirs {
		if err := g.m.ops.write(filepath.Join(d, "cgroup.procs"), p); err != nil {
			return fmt.Errorf("cgroup: add process %d: %w", pid, err)
		}
	}
	if g.leaf != "" {
		_ = g.m.ops.write(filepath.Join(g.leaf, "cgroup.procs"), p)
	}
	return nil
}

func (g *v1Group) Stats() (Stats, error) {
	return v1Stats(g.dirOf("cpuacct"), g.dirOf("memory"), g.dirOf("pids"))
}

// v1Stats reads accounting from the v1 cpuacct, memory and pids cgroups.
func v1Stats(cpuacct, memory, pids string) (Stats, error) {
	var s Stats
	b, err := os.ReadFile(filepath.Join(cpuacct, "cpuacct.usage"))
	if err != nil {
		return s, err
	}
	n, err := parseInt(b)
	if err != nil {
		return s, err
	}
	s.CPUUsage, s.HasCPU = time.Duration(n), true
	u, uerr := os.ReadFile(filepath.Join(cpuacct, "cpuacct.usage_user"))
	k, kerr := os.ReadFile(filepath.Join(cpuacct, "cpuacct.usage_sys"))
	un, uerr2 := parseInt(u)
	kn, kerr2 := parseInt(k)
	if uerr == nil && kerr == nil && uerr2 == nil && kerr2 == nil {
		s.CPUUser, s.CPUSystem = time.Duration(un), time.Duration(kn)
	} else if b, err := os.ReadFile(filepath.Join(cpuacct, "cpuacct.stat")); err == nil {
		kv := parseKV(b)
		s.CPUUser = time.Duration(kv["user"]) * time.Second / userHZ
		s.CPUSystem = time.Duration(kv["system"]) * time.Second / userHZ
	}
	for _, f := range []string{"memory.memsw.max_usage_in_bytes", "memory.max_usage_in_bytes"} {
		if b, err := os.ReadFile(filepath.Join(memory, f)); err == nil {
			if s.MemoryPeak, err = parseInt(b); err == nil {
				s.HasMemoryPeak = true
				break
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(memory, "memory.oom_control")); err == nil {
		s.OOMKills = int(parseKV(b)["oom_kill"])
	}
	pidsStats(pids, &s)
	return s, nil
}

func (g *v1Group) CPUUsage() (time.Duration, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cpu == nil {
		return 0, fmt.Errorf("cgroup: run %q: %w", g.name, os.ErrClosed)
	}
	var buf [32]byte
	n, err := g.cpu.ReadAt(buf[:], 0)
	if n == 0 && err != nil {
		return 0, err
	}
	ns, err := parseInt(buf[:n])
	return time.Duration(ns), err
}

func (g *v1Group) Kill() error {
	deadline := time.Now().Add(killTimeout)
	if g.leaf != "" {
		// Atomic against forks, but only covers processes added to the leaf.
		_ = g.m.ops.write(filepath.Join(g.leaf, "cgroup.kill"), "1")
	}
	return g.kill.killAll(deadline)
}

func (g *v1Group) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	var errs []error
	if g.leafFD >= 0 {
		unix.Close(g.leafFD)
		g.leafFD = -1
	}
	if g.cpu != nil {
		g.cpu.Close()
		g.cpu = nil
	}
	if len(g.owned) == 0 {
		return errors.Join(errs...)
	}
	deadline := time.Now().Add(killTimeout)
	errs = append(errs, g.Kill())
	var dirs []string
	for _, d := range g.owned {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	errs = append(errs, rmdirAll(g.m.ops, dirs, deadline))
	return errors.Join(errs...)
}
