package cgroup

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Parent is the name of the cgroup, in every hierarchy, that holds all runs.
const Parent = "sandbox"

// Limits are the resource limits of one run (or of the whole parent, see
// Manager.SetBudget). A zero field means no limit.
type Limits struct {
	// MemoryBytes limits memory with swap included: v2 memory.max plus
	// memory.swap.max 0; v1 memory.limit_in_bytes and memsw = the same value
	// (see Features.MemorySwap for hosts without swap accounting).
	MemoryBytes int64
	// Pids limits the number of tasks (processes and threads).
	Pids int64
	// CPUs is a bandwidth quota in cores (1.5 = 150 ms per 100 ms period).
	CPUs float64
}

// Validate reports a negative or out-of-range limit.
func (l Limits) Validate() error {
	switch {
	case l.MemoryBytes < 0:
		return fmt.Errorf("%w: negative memory limit %d", ErrInvalid, l.MemoryBytes)
	case l.Pids < 0:
		return fmt.Errorf("%w: negative pids limit %d", ErrInvalid, l.Pids)
	case l.CPUs < 0 || l.CPUs > 1e6 || l.CPUs != l.CPUs:
		return fmt.Errorf("%w: cpu quota %v out of range", ErrInvalid, l.CPUs)
	}
	return nil
}

// Stats is the accounting of one run, read from its own cgroup.
type Stats struct {
	CPUUsage, CPUUser, CPUSystem time.Duration
	HasCPU                       bool
	// MemoryPeak is the high-water mark of memory (v1: memory+swap when swap
	// accounting is on). HasMemoryPeak is false when the kernel has no peak
	// file (v2 before 5.19).
	MemoryPeak    int64
	HasMemoryPeak bool
	// OOMKills counts processes the OOM killer killed inside the run.
	OOMKills int
	// PidsPeak is the high-water mark of tasks. On v1 it includes the init's
	// forking thread while it was inside (OpenTasks): a run that never forks
	// can report 2.
	PidsPeak    int64
	HasPidsPeak bool
	// PidsLimitHit is true when a fork or clone failed on the pids limit.
	PidsLimitHit bool
}

// Features says what the detected backend can do on this host. The engine
// checks it before promising a protection (fail closed) and lists what is
// missing in isolation.degraded.
type Features struct {
	Memory bool
	// MemorySwap is true when the memory limit also bounds swap (v1 without
	// swapaccount=1 has no memsw files: the limit then bounds RAM only).
	MemorySwap bool
	Pids       bool
	CPU        bool // bandwidth quota
	CPUAcct    bool // CPU time accounting (Stats.HasCPU, Group.CPUUsage)
	// Freeze is true when Kill can freeze the run before signalling it (v1
	// freezer hierarchy or v2 cgroup.freeze).
	Freeze bool
	// KillFile is true when cgroup.kill is available (v2, or the hybrid v2
	// leaf).
	KillFile   bool
	MemoryPeak bool
	PidsPeak   bool
	// CloneIntoCgroup is true when Group.Dir returns a v2 directory usable
	// with clone3(CLONE_INTO_CGROUP) (v2, or the hybrid v2 leaf).
	CloneIntoCgroup bool
	// ThreadEntry is true when Group.OpenTasks works (v1).
	ThreadEntry bool
	// Leaf is true on a hybrid host where each run also gets a v2 leaf.
	Leaf bool
}

// Manager creates run cgroups. It is picked once by Detect and is safe for
// concurrent use.
type Manager interface {
	// Version is "v1" or "v2" (the backend that enforces limits).
	Version() string
	// Create makes the cgroup of run name (in every hierarchy) with limits l.
	// On error nothing it created is left behind. A name that already exists
	// is refused (errors.Is(err, fs.ErrExist)): Sweep leftovers first.
	Create(name string, l Limits) (Group, error)
	// Sweep kills and removes every run cgroup whose name starts with prefix
	// and returns how many runs it removed. An empty prefix is refused.
	Sweep(prefix string) (removed int, err error)
	// SetBudget writes l on the parent sandbox/ cgroup: a host-wide budget
	// shared by all runs. Zero fields are left as they are.
	SetBudget(l Limits) error
	// Features reports what is usable on this host.
	Features() Features
	// Parents lists the parent sandbox/ directories the runs live under
	// (one per hierarchy), for finding leftovers by owner.
	Parents() []string
}

// Group is the cgroup of one run. Its methods are safe for concurrent use.
type Group interface {
	// Name is the run name given to Create.
	Name() string
	// Dir returns an O_PATH directory fd of the run's v2 cgroup for
	// clone3(CLONE_INTO_CGROUP) (syscall.SysProcAttr.UseCgroupFD). The fd
	// belongs to the group and stays valid until Close; do not close it.
	// Errors with errors.ErrUnsupported when there is no v2 directory.
	Dir() (fd int, err error)
	// OpenTasks is the fast way in for a thread (v1): it raises the pids
	// limit by one and returns the run's tasks file in every v1 hierarchy,
	// open for writing, for a thread that moves itself in by writing "0" to
	// each. The kernel moves the writing thread without taking the global
	// lock that a move by id takes, and so without that lock's RCU grace
	// period (5-16 ms, measured): about 20 µs per hierarchy. The files are
	// the caller's to close; ForgetThread restores the limit. Errors with
	// errors.ErrUnsupported on v2.
	OpenTasks() ([]*os.File, error)
	// ForgetThread is for the thread that came in through OpenTasks and is
	// about to end inside the run (ending is how it leaves, with no
	// migration): it restores the pids limit. Call it while the thread
	// still lives and before the program can fork, so the program never gets
	// more than Limits.Pids tasks.
	ForgetThread() error
	// EnterLeaf moves process pid into the run's v2 leaf on a hybrid host:
	// the leaf enforces nothing and its accounting is not read, it only
	// offers cgroup.kill, which then covers pid and everything it forks. A
	// no-op without a leaf.
	EnterLeaf(pid int) error
	// AddProcess moves a whole process into the run, including the hybrid v2
	// leaf (best effort there). On v2 the engine places its stopped program
	// with it; on v1 the program is born inside (OpenTasks).
	AddProcess(pid int) error
	// Stats reads the run's accounting.
	Stats() (Stats, error)
	// CPUUsage is the run's CPU time, read cheaply (one pread on a file kept
	// open) for polling against a CPU-time limit.
	CPUUsage() (time.Duration, error)
	// Kill sends SIGKILL to every process of the run and waits (a few seconds
	// at most) until the run is empty. It uses cgroup.kill where available,
	// otherwise freezes the run, kills each listed process and thaws, until
	// no process is left. A thread that came in through OpenTasks is part of
	// the run: Kill kills its process (the engine's init, ending anyway).
	Kill() error
	// Close kills every process, waits until the run is empty and removes
	// its directory in every hierarchy. It is idempotent and safe after a
	// partial Create.
	Close() error
}

var (
	// ErrInvalid reports a bad name or limit.
	ErrInvalid = errors.New("cgroup: invalid argument")
	// ErrUnavailable reports a host whose cgroups cannot enforce limits for
	// this process; the message says what is missing and how to fix it.
	ErrUnavailable = errors.New("cgroup: no usable cgroup hierarchy")
	// ErrBusy reports a run that still had processes after the kill timeout.
	ErrBusy = errors.New("cgroup: processes left in run cgroup")
)

// validName refuses names that are not a single path element we own.
func validName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 200 ||
		strings.ContainsAny(name, "/\x00\n") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("%w: run cgroup name %q", ErrInvalid, name)
	}
	// Names shaped like control files would be refused by the kernel or
	// confuse Sweep.
	if isControllerFile(name) {
		return fmt.Errorf("%w: run cgroup name %q looks like a control file", ErrInvalid, name)
	}
	return nil
}

func isControllerFile(name string) bool {
	for _, p := range []string{"cgroup.", "memory.", "pids.", "cpu.", "cpuacct.", "cpuset.", "io.", "freezer.", "notify_on_release", "release_agent", "tasks"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
