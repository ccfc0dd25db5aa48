package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// cpuPeriod is the CFS period, in microseconds, used for CPU quotas.
const cpuPeriod = 100000

var v2Controllers = []string{"memory", "pids", "cpu"}

// v2Manager runs every run in <parent>/<name> of a cgroup2 hierarchy.
type v2Manager struct {
	root     string // filesystem root (tests use a temporary tree)
	parent   string // absolute path of sandbox/
	cgParent string // sandbox/ as /proc/<pid>/cgroup shows it
	ops      fsops
	feat     Features
}

var _ Manager = (*v2Manager)(nil)

// newV2 checks that memory, pids and cpu are delegated to a sandbox/ cgroup
// in the cgroup2 mount mnt, creating sandbox/ (and enabling the controllers
// in its subtree_control) when needed.
func newV2(root string, mnt mount, euid int, ops fsops) (*v2Manager, error) {
	point := filepath.Join(root, mnt.point)
	have, err := fieldsOf(filepath.Join(point, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("cgroup v2 at %s: %w", mnt.point, err)
	}
	if miss := missing(have, v2Controllers...); len(miss) > 0 {
		return nil, fmt.Errorf("cgroup v2 at %s does not offer %s", mnt.point, strings.Join(miss, ", "))
	}
	base, cgBase, err := v2Base(root, mnt, euid)
	if err != nil {
		return nil, err
	}
	parent := filepath.Join(base, Parent)
	if err := ensureDir(ops, parent); err != nil {
		return nil, fmt.Errorf("cgroup v2: create parent: %w%s", err, delegateHint(euid))
	}
	// sandbox/ is ours: enabling its subtree controllers is the one write
	// Detect makes. It fails with EBUSY if someone put a process in it.
	sub, err := fieldsOf(filepath.Join(parent, "cgroup.subtree_control"))
	if err != nil {
		return nil, fmt.Errorf("cgroup v2: %w", err)
	}
	if miss := missing(sub, v2Controllers...); len(miss) > 0 {
		if err := ops.write(filepath.Join(parent, "cgroup.subtree_control"), "+"+strings.Join(miss, " +")); err != nil {
			return nil, fmt.Errorf("cgroup v2: enable %s for runs: %w%s", strings.Join(miss, ", "), err, delegateHint(euid))
		}
		if sub, err = fieldsOf(filepath.Join(parent, "cgroup.subtree_control")); err != nil {
			return nil, fmt.Errorf("cgroup v2: %w", err)
		}
		if miss := missing(sub, v2Controllers...); len(miss) > 0 {
			return nil, fmt.Errorf("cgroup v2: %s not enabled in %s/cgroup.subtree_control", strings.Join(miss, ", "), parent)
		}
	}
	m := &v2Manager{root: root, parent: parent, cgParent: path.Join(cgBase, Parent), ops: ops}
	m.feat = Features{
		Memory: true, Pids: true, CPU: true, CPUAcct: true,
		MemorySwap:      exists(filepath.Join(parent, "memory.swap.max")),
		Freeze:          exists(filepath.Join(parent, "cgroup.freeze")),
		KillFile:        exists(filepath.Join(parent, "cgroup.kill")),
		MemoryPeak:      exists(filepath.Join(parent, "memory.peak")),
		PidsPeak:        exists(filepath.Join(parent, "pids.peak")),
		CloneIntoCgroup: exists(filepath.Join(parent, "cgroup.kill")) || kernelAtLeast(5, 7),
	}
	return m, nil
}

// v2Base picks the cgroup under which sandbox/ lives: the mount root for
// root; for an ordinary user, a sandbox/ an administrator created and
// chowned, or else the deepest ancestor of our own cgroup that is writable
// and delegates the controllers (our own cgroup holds processes, so it
// cannot have controller-enabled children).
func v2Base(root string, mnt mount, euid int) (dir, cgPath string, err error) {
	point := filepath.Join(root, mnt.point)
	if euid == 0 {
		sub, err := fieldsOf(filepath.Join(point, "cgroup.subtree_control"))
		if err != nil {
			return "", "", fmt.Errorf("cgroup v2: %w", err)
		}
		if miss := missing(sub, v2Controllers...); len(miss) > 0 && !exists(filepath.Join(point, Parent)) {
			// Never write the host's root cgroup files: ask the administrator.
			return "", "", fmt.Errorf("cgroup v2 at %s does not delegate %s to its children (enable with: echo '+%s' > %s/cgroup.subtree_control)",
				mnt.point, strings.Join(miss, ", "), strings.Join(miss, " +"), mnt.point)
		}
		return point, mnt.root, nil
	}
	if unix.Access(filepath.Join(point, Parent, "cgroup.procs"), unix.W_OK) == nil &&
		unix.Access(filepath.Join(point, Parent), unix.W_OK) == nil {
		return point, mnt.root, nil
	}
	b, err := os.ReadFile(filepath.Join(root, "proc/self/cgroup"))
	if err != nil {
		return "", "", err
	}
	for _, l := range parseProcCgroup(b) {
		if len(l.ctrls) != 0 {
			continue
		}
		for p := path.Dir(l.path); ; p = path.Dir(p) {
			rel, ok := strings.CutPrefix(p, mnt.root)
			if !ok || p == "/" {
				break
			}
			d := filepath.Join(point, rel)
			sub, err := fieldsOf(filepath.Join(d, "cgroup.subtree_control"))
			if err == nil && len(missing(sub, v2Controllers...)) == 0 && unix.Access(d, unix.W_OK) == nil {
				return d, p, nil
			}
		}
	}
	return "", "", fmt.Errorf("cgroup v2: no writable cgroup delegating %s to uid %d%s",
		strings.Join(v2Controllers, ", "), euid, delegateHint(euid))
}

func delegateHint(euid int) string {
	if euid == 0 {
		return ""
	}
	return fmt.Sprintf("; run under a systemd unit with Delegate=yes (systemd-run --user --scope -p Delegate=yes ...), "+
		"or as root: mkdir /sys/fs/cgroup/%[1]s && chown -R %[2]d /sys/fs/cgroup/%[1]s && "+
		"echo '+memory +pids +cpu' > /sys/fs/cgroup/%[1]s/cgroup.subtree_control", Parent, euid)
}

func (m *v2Manager) Version() string    { return "v2" }
func (m *v2Manager) Features() Features { return m.feat }

func (m *v2Manager) Create(name string, l Limits) (Group, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if err := l.Validate(); err != nil {
		return nil, err
	}
	g := m.group(name)
	if err := m.ops.mkdir(g.dir); err != nil {
		return nil, fmt.Errorf("cgroup: create run %q: %w", name, err)
	}
	g.owned = true
	err := writeV2Limits(m.ops, g.dir, l)
	if err == nil {
		err = g.open()
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("cgroup: create run %q: %w", name, err), g.Close())
	}
	return g, nil
}

func (m *v2Manager) group(name string) *v2Group {
	g := &v2Group{name: name, dir: filepath.Join(m.parent, name), ops: m.ops, dirFD: -1}
	g.kill = killer{
		procRoot: filepath.Join(m.root, "proc"),
		members:  []member{{dir: g.dir, cgPath: path.Join(m.cgParent, name)}},
	}
	if m.feat.Freeze {
		g.kill.freeze = func() bool {
			if m.ops.write(filepath.Join(g.dir, "cgroup.freeze"), "1") != nil {
				return false
			}
			return pollFile(filepath.Join(g.dir, "cgroup.events"), 200*time.Millisecond, func(s string) bool {
				return parseKV([]byte(s))["frozen"] == 1
			})
		}
		g.kill.thaw = func() { _ = m.ops.write(filepath.Join(g.dir, "cgroup.freeze"), "0") }
	}
	return g
}

// writeV2Limits writes l into dir. Zero fields stay at the default "max".
func writeV2Limits(ops fsops, dir string, l Limits) error {
	if l.MemoryBytes > 0 {
		if err := ops.write(filepath.Join(dir, "memory.max"), strconv.FormatInt(l.MemoryBytes, 10)); err != nil {
			return err
		}
		// Absent without swap support in the kernel: nothing to limit then.
		if err := ops.write(filepath.Join(dir, "memory.swap.max"), "0"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if l.Pids > 0 {
		if err := ops.write(filepath.Join(dir, "pids.max"), strconv.FormatInt(l.Pids, 10)); err != nil {
			return err
		}
	}
	if l.CPUs > 0 {
		if err := ops.write(filepath.Join(dir, "cpu.max"), fmt.Sprintf("%d %d", cpuQuota(l.CPUs), cpuPeriod)); err != nil {
			return err
		}
	}
	return nil
}

// cpuQuota converts cores to microseconds per cpuPeriod; the kernel refuses
// quotas under 1 ms.
func cpuQuota(cpus float64) int64 {
	return max(int64(cpus*cpuPeriod+0.5), 1000)
}

func (m *v2Manager) SetBudget(l Limits) error {
	if err := l.Validate(); err != nil {
		return err
	}
	return writeV2Limits(m.ops, m.parent, l)
}

func (m *v2Manager) Sweep(prefix string) (int, error) {
	return sweep(prefix, []string{m.parent}, func(name string) closer {
		g := m.group(name)
		g.owned = true
		return g
	})
}

// v2Group is one run on cgroup v2.
type v2Group struct {
	name  string
	dir   string
	ops   fsops
	kill  killer
	owned bool // dir was created by us (or is a swept leftover)

	mu     sync.Mutex
	closed bool
	dirFD  int
	cpu    *os.File // cpu.stat, kept open for CPUUsage
}

var _ Group = (*v2Group)(nil)

func (g *v2Group) open() error {
	fd, err := unix.Open(g.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return pathErr("open", g.dir, err)
	}
	g.dirFD = fd
	g.cpu, err = os.Open(filepath.Join(g.dir, "cpu.stat"))
	return err
}

func (g *v2Group) Name() string { return g.name }

func (g *v2Group) Dir() (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.dirFD < 0 {
		return -1, fmt.Errorf("cgroup: run %q: %w", g.name, os.ErrClosed)
	}
	return g.dirFD, nil
}

// ForgetThread: v2 has no thread entry (OpenTasks).
func (g *v2Group) ForgetThread() error {
	return fmt.Errorf("cgroup v2: no thread entered: %w", errors.ErrUnsupported)
}

// OpenTasks: v2 moves whole processes only.
func (g *v2Group) OpenTasks() ([]*os.File, error) {
	return nil, fmt.Errorf("cgroup v2: no per-thread tasks files: %w", errors.ErrUnsupported)
}

// EnterLeaf: v2 has no separate leaf.
func (g *v2Group) EnterLeaf(int) error { return nil }

// Parents: see Manager.
func (m *v2Manager) Parents() []string { return []string{m.parent} }

func (g *v2Group) AddProcess(pid int) error {
	return g.ops.write(filepath.Join(g.dir, "cgroup.procs"), strconv.Itoa(pid))
}

func (g *v2Group) Stats() (Stats, error) { return v2Stats(g.dir) }

// v2Stats reads the accounting files of a v2 cgroup. Optional files (peaks)
// that are absent leave their Has* flag false.
func v2Stats(dir string) (Stats, error) {
	var s Stats
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return s, err
	}
	cpu := parseKV(b)
	s.CPUUsage = time.Duration(cpu["usage_usec"]) * time.Microsecond
	s.CPUUser = time.Duration(cpu["user_usec"]) * time.Microsecond
	s.CPUSystem = time.Duration(cpu["system_usec"]) * time.Microsecond
	s.HasCPU = true
	if b, err := os.ReadFile(filepath.Join(dir, "memory.peak")); err == nil {
		if s.MemoryPeak, err = parseInt(b); err == nil {
			s.HasMemoryPeak = true
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "memory.events")); err == nil {
		s.OOMKills = int(parseKV(b)["oom_kill"])
	}
	pidsStats(dir, &s)
	return s, nil
}

func (g *v2Group) CPUUsage() (time.Duration, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cpu == nil {
		return 0, fmt.Errorf("cgroup: run %q: %w", g.name, os.ErrClosed)
	}
	var buf [512]byte
	n, err := g.cpu.ReadAt(buf[:], 0)
	if n == 0 && err != nil {
		return 0, err
	}
	// usage_usec is the first line of cpu.stat.
	line, _, _ := strings.Cut(string(buf[:n]), "\n")
	v, ok := strings.CutPrefix(line, "usage_usec ")
	if !ok {
		return 0, fmt.Errorf("cgroup: unexpected cpu.stat line %q", line)
	}
	us, err := strconv.ParseInt(v, 10, 64)
	return time.Duration(us) * time.Microsecond, err
}

func (g *v2Group) Kill() error {
	deadline := time.Now().Add(killTimeout)
	if g.ops.write(filepath.Join(g.dir, "cgroup.kill"), "1") == nil {
		return g.kill.waitEmpty(deadline)
	}
	return g.kill.killAll(deadline)
}

func (g *v2Group) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	if g.dirFD >= 0 {
		unix.Close(g.dirFD)
		g.dirFD = -1
	}
	if g.cpu != nil {
		g.cpu.Close()
		g.cpu = nil
	}
	if !g.owned {
		return nil
	}
	deadline := time.Now().Add(killTimeout)
	err := g.Kill()
	return errors.Join(err, rmdirAll(g.ops, []string{g.dir}, deadline))
}
