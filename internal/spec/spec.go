// Package spec is the versioned set-up message between the supervisor and
// the sandbox's init (internal/initproc), carried over a SOCK_SEQPACKET unix
// socket: one JSON message per packet, file descriptors alongside as
// SCM_RIGHTS.
//
// The set-up comes in two parts so that a sandbox can be prepared before the
// command is known (a warm pool): Prepare builds everything that does not
// depend on the run (namespaces are already made by clone; the root
// filesystem, hostname, network); Exec delivers the run: argv, environment,
// limits, per-run mounts and the stdio descriptors.
//
//	supervisor                              init (pid 1, root of the new user namespace)
//	clone(NEWUSER|NEWPID|NEWNS|NEWNET|...) ─► the binary, passed as fd 4 (closed at once),
//	                                          fd 3 = this socket
//	Prepare ──────────────────────────────► mount root (phase 1), hostname, lo; the forking
//	                                          thread and the reaper
//	        ◄────────────────────────────── Reply{Step:"prepared"} | Reply{Err}
//	Exec + fds [stdin, stdout, stderr, ipc?, ► read by the forking thread: phase-2 mounts
//	  v1 tasks files..., files?, trees...,    (host trees moved in), the workspace files,
//	  gate]                                   rlimits, /proc, cgroup
//	                                          entry, no_new_privs, Landlock, seccomp,
//	                                          fork+exec the program stopped before its
//	                                          first instruction (ptrace)
//	        ◄────────────────────────────── Reply{Step:"stopped", Pid} + [pidfd, listener]
//	(supervisor places the program in its cgroups on v2, follows its processes)
//	one byte on the gate pipe ────────────► release (the forking thread, its tracer, exits)
//	Signal{Sig} ──────────────────────────► kill(-1, sig): every process of the run
//	        ◄────────────────────────────── Reply{Step:"exited", Status}
//
// Every failure is a Reply with Step naming the failed step and Errno when
// the failure was a system call's.
package spec

import (
	"encoding/json"
	"fmt"
)

// Version is bumped on any incompatible change; init refuses other versions.
const Version = 1

// ChannelFD is the descriptor number of the set-up socket in the init.
const ChannelFD = 3

// BinaryFD is the descriptor the init is executed from (/proc/self/fd/4:
// the supervisor's pinned binary or its sealed copy, see proc.Start); the
// init closes it first thing.
const BinaryFD = 4

// Argv0 is the argv[0] the supervisor gives the re-executed init.
const Argv0 = "sandbox-init"

// Kind tags a message.
type Kind string

const (
	KindPrepare Kind = "prepare"
	KindExec    Kind = "exec"
	KindSignal  Kind = "signal"
	KindReply   Kind = "reply"
)

// Message is the envelope of every packet.
type Message struct {
	Version int      `json:"v"`
	Kind    Kind     `json:"kind"`
	Prepare *Prepare `json:"prepare,omitempty"`
	Exec    *Exec    `json:"exec,omitempty"`
	Signal  int      `json:"signal,omitempty"`
	Reply   *Reply   `json:"reply,omitempty"`
}

// Prepare is what the sandbox needs before the command is known.
type Prepare struct {
	Hostname string `json:"hostname"`
	// Loopback brings lo up in the new network namespace.
	Loopback bool `json:"loopback"`
	// Mounts is the mount plan (internal/mount) as JSON.
	Mounts json.RawMessage `json:"mounts"`
	// InotifyInstances and InotifyWatches bound the user namespace's inotify use.
	InotifyInstances int `json:"inotifyInstances"`
	InotifyWatches   int `json:"inotifyWatches"`
	// Seccomp, when set, lets the init build the filter ahead; Exec still
	// decides whether and which filter is installed.
	Seccomp *Seccomp `json:"seccomp,omitempty"`
}

// Rlimit is one resource limit; -1 means infinity.
type Rlimit struct {
	Resource int   `json:"resource"`
	Cur      int64 `json:"cur"`
	Max      int64 `json:"max"`
}

// Exec is the run: delivered with descriptors as SCM_RIGHTS in this order:
// stdin, stdout, stderr, the protocol socket when IPC is set, CgroupTasks
// tasks files, the files' content when Files is not empty, Trees detached
// mount trees, and last the read end of the release gate, a pipe whose write end the supervisor
// keeps: one byte written there releases the stopped program (read by the
// forking thread itself, the program's tracer).
type Exec struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir"`
	// RunMounts is the per-run part of the mount plan (phase 2) as JSON.
	RunMounts json.RawMessage `json:"runMounts,omitempty"`
	UID       int             `json:"uid"`
	GID       int             `json:"gid"`
	Rlimits   []Rlimit        `json:"rlimits"`
	IPC       bool            `json:"ipc"`
	// Seccomp is nil when the filter is off.
	Seccomp *Seccomp `json:"seccomp,omitempty"`
	// Landlock is nil when Landlock is off.
	Landlock *Landlock `json:"landlock,omitempty"`
	// OOMScoreAdj is written for the program (1000).
	OOMScoreAdj int `json:"oomScoreAdj"`
	// CgroupTasks is how many descriptors, after stdio and the protocol
	// socket, are cgroup v1 tasks files: the forking thread writes "0" to
	// each before it forks the program, which moves the thread itself into
	// the run's cgroups (cgroup.Group.OpenTasks).
	CgroupTasks int `json:"cgroupTasks,omitempty"`
	// Trees is how many descriptors, before the gate, are detached mount
	// trees the supervisor made for RunMounts' Tree mounts, in plan order
	// (at most MaxTrees).
	Trees int `json:"trees,omitempty"`
	// Files are written into /workspace once the root is finished, before
	// the program starts. Their contents, one after the other in this
	// order, are a sealed memfd sent as a descriptor (a message stays
	// small whatever the files hold).
	Files []File `json:"files,omitempty"`
}

// MaxFiles bounds Exec.Files.
const MaxFiles = 4096

// MaxTrees bounds Exec.Trees: the host mounts of one run.
const MaxTrees = 64

// File is one workspace file of Exec.Files.
type File struct {
	Path string `json:"path"` // relative to /workspace, validated by the supervisor and checked again by the init
	Mode uint32 `json:"mode"` // permission bits only
	Size int64  `json:"size"` // bytes of the content descriptor that are this file's
}

// Seccomp configures the system call filter.
type Seccomp struct {
	Kill   bool `json:"kill"`   // denied calls kill the process
	Notify bool `json:"notify"` // denied calls are reported through a listener fd
}

// Landlock configures the filesystem wall (paths inside the new root).
type Landlock struct {
	ReadOnly   []string `json:"readOnly"`
	ReadExec   []string `json:"readExec"`
	ReadWrite  []string `json:"readWrite"`
	BestEffort bool     `json:"bestEffort"`
}

// Reply is the init's answer.
type Reply struct {
	Step  string `json:"step"`
	Err   string `json:"err,omitempty"`
	Errno int    `json:"errno,omitempty"`
	// Pid is the program's pid inside (stopped).
	Pid int `json:"pid,omitempty"`
	// Status is the program's wait status (exited).
	Status int `json:"status,omitempty"`
	// LandlockABI is the ABI applied (0 when off).
	LandlockABI int `json:"landlockAbi,omitempty"`
	// PidFD reports that a pidfd of the program accompanies the reply
	// (first), from which the supervisor learns its host pid.
	PidFD bool `json:"pidfd,omitempty"`
	// Listener reports that a seccomp listener fd accompanies the reply
	// (after the pidfd).
	Listener bool `json:"listener,omitempty"`
	// Notes are things the init weakened under best effort.
	Notes []string `json:"notes,omitempty"`
	// UserUsec and SysUsec are the CPU time of the processes the init had
	// reaped when the program ended (exited): the program and the orphans
	// it left, not the init. Where no cgroup accounts for the run
	// (rootless without delegation) they are its CPU time.
	UserUsec int64 `json:"userUsec,omitempty"`
	SysUsec  int64 `json:"sysUsec,omitempty"`
}

// StepError is a failure in the init, naming its step.
type StepError struct {
	Step  string
	Err   string
	Errno int
}

func (e *StepError) Error() string { return fmt.Sprintf("setup step %q: %s", e.Step, e.Err) }

// Encode marshals m with the current version.
func Encode(m Message) ([]byte, error) {
	m.Version = Version
	return json.Marshal(m)
}

// Decode unmarshals a packet and checks its version.
func Decode(b []byte) (Message, error) {
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("spec: malformed message: %w", err)
	}
	if m.Version != Version {
		return m, fmt.Errorf("spec: version %d, want %d (supervisor and init binaries differ)", m.Version, Version)
	}
	return m, nil
}
