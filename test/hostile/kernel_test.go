//go:build linux

package hostile

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/kb-labs/sandbox"
)

// sysProbe is one system call against the privileged kernel surface: the
// errnos accepted, and the violation the run must report ("" for calls the
// filter answers without counting, or that the kernel itself refuses).
type sysProbe struct {
	probe       string
	viol        string
	want        []string
	seccompOnly bool
}

func sysCase(p sysProbe) hcase {
	return hcase{name: p.probe, seccompOnly: p.seccompOnly, fn: func(c *cctx) error {
		before := hostMountPoints()
		o := c.run("probe", "sys", p.probe)
		errs := []error{ok(o), kvIn(o, p.probe, p.want...)}
		if p.viol != "" {
			errs = append(errs, violated(o, p.viol))
		}
		errs = append(errs, mountsUnchanged(before))
		return all(errs...)
	}}
}

const eperm = "EPERM"

// kernelProbes: with the filter, every one of them is refused.
var kernelProbes = []sysProbe{
	// ptrace and cross-process memory.
	{probe: "ptrace_attach", viol: "ptrace", want: []string{eperm}},
	{probe: "ptrace_seize", viol: "ptrace", want: []string{eperm}},
	{probe: "process_vm_readv", viol: "process_vm_readv", want: []string{eperm}},
	// The mount family, old and new API.
	{probe: "mount_tmpfs", viol: "mount", want: []string{eperm}},
	{probe: "mount_bind", viol: "mount", want: []string{eperm}},
	{probe: "mount_proc", viol: "mount", want: []string{eperm}},
	{probe: "remount_rw", viol: "mount", want: []string{eperm}},
	{probe: "umount_proc", viol: "umount2", want: []string{eperm}},
	{probe: "fsopen", viol: "fsopen", want: []string{eperm}},
	{probe: "fspick", viol: "fspick", want: []string{eperm}},
	{probe: "open_tree", viol: "open_tree", want: []string{eperm}},
	{probe: "move_mount", viol: "move_mount", want: []string{eperm}},
	{probe: "mount_setattr", viol: "mount_setattr", want: []string{eperm}},
	{probe: "pivot_root", viol: "pivot_root", want: []string{eperm}},
	{probe: "chroot", viol: "chroot", want: []string{eperm}},
	// Namespaces: clone flags, clone3 (ENOSYS so libc falls back), unshare, setns.
	{probe: "clone_newuser", viol: "clone", want: []string{eperm}},
	{probe: "clone_newns", viol: "clone", want: []string{eperm}},
	{probe: "clone_newnet", viol: "clone", want: []string{eperm}},
	{probe: "clone_newpid", viol: "clone", want: []string{eperm}},
	{probe: "clone3_newuser", want: []string{"ENOSYS"}},
	{probe: "unshare_user", viol: "unshare", want: []string{eperm}, seccompOnly: true},
	{probe: "unshare_ns", viol: "unshare", want: []string{eperm}},
	{probe: "setns_mnt", viol: "setns", want: []string{eperm}},
	// Keyrings, bpf, perf, userfaultfd, io_uring.
	{probe: "keyctl", viol: "keyctl", want: []string{eperm}, seccompOnly: true},
	{probe: "add_key", viol: "add_key", want: []string{eperm}, seccompOnly: true},
	{probe: "request_key", viol: "request_key", want: []string{eperm}},
	{probe: "bpf_map_create", viol: "bpf", want: []string{eperm}},
	{probe: "perf_event_open", viol: "perf_event_open", want: []string{eperm}, seccompOnly: true},
	{probe: "userfaultfd", viol: "userfaultfd", want: []string{eperm}, seccompOnly: true},
	{probe: "io_uring_setup", viol: "io_uring_setup", want: []string{eperm}, seccompOnly: true},
	// AIO: ENOSYS, not a violation (see TestHostBudgets/aio_contexts).
	{probe: "io_setup", want: []string{"ENOSYS"}, seccompOnly: true},
	// Machine-wide state.
	{probe: "open_by_handle_at", viol: "open_by_handle_at", want: []string{eperm}},
	{probe: "kexec_load", viol: "kexec_load", want: []string{eperm}},
	{probe: "init_module", viol: "init_module", want: []string{eperm}},
	{probe: "finit_module", viol: "finit_module", want: []string{eperm}},
	{probe: "reboot", viol: "reboot", want: []string{eperm}},
	{probe: "swapon", viol: "swapon", want: []string{eperm}},
	{probe: "syslog", viol: "syslog", want: []string{eperm}},
	{probe: "iopl", viol: "iopl", want: []string{eperm}},
	{probe: "ioperm", viol: "ioperm", want: []string{eperm}},
	{probe: "modify_ldt", viol: "modify_ldt", want: []string{eperm}},
	{probe: "settimeofday", viol: "settimeofday", want: []string{eperm}},
	{probe: "clock_settime", viol: "clock_settime", want: []string{eperm}},
	{probe: "acct", viol: "acct", want: []string{eperm}},
	{probe: "set_mempolicy", viol: "set_mempolicy", want: []string{eperm}},
	{probe: "fanotify_init", viol: "fanotify_init", want: []string{eperm}},
	// personality: only the harmless values.
	{probe: "personality_rx", viol: "personality", want: []string{eperm}, seccompOnly: true},
	{probe: "personality_nornd", viol: "personality", want: []string{eperm}},
	// Raw and packet sockets: packet is an unlisted family (EAFNOSUPPORT,
	// also when the family hides in the high 32 bits); raw INET sockets need
	// CAP_NET_RAW, which the run does not hold.
	{probe: "socket_packet", want: []string{"EAFNOSUPPORT"}},
	{probe: "socket_packet_hi", want: []string{"EAFNOSUPPORT"}},
	{probe: "socketpair_packet", want: []string{"EAFNOSUPPORT"}},
	{probe: "socket_raw_icmp", want: []string{eperm}},
	{probe: "socket_raw_ip6", want: []string{eperm}},
	// TIOCSTI and friends, with the request's high bits set too. No
	// terminal exists inside (/dev/ptmx and /dev/tty are absent), so the
	// ioctls are tried on fd 0 and 1: EPERM proves the filter answered
	// (the kernel alone would say ENOTTY).
	{probe: "tiocsti", viol: "ioctl", want: []string{eperm}, seccompOnly: true},
	{probe: "tiocsti_hi", viol: "ioctl", want: []string{eperm}, seccompOnly: true},
	{probe: "tiocsti_1", viol: "ioctl", want: []string{eperm}},
	{probe: "tioclinux", viol: "ioctl", want: []string{eperm}},
	{probe: "tiocsetd", viol: "ioctl", want: []string{eperm}},
	{probe: "tioccons", viol: "ioctl", want: []string{eperm}},
	{probe: "tioccons_hi", viol: "ioctl", want: []string{eperm}},
	{probe: "open_ptmx", want: []string{"ENOENT"}},
	{probe: "open_tty", want: []string{"ENOENT", "ENXIO"}},
	{probe: "open_console", want: []string{"ENOENT"}},
	// Scheduling and memory locking: rtprio 0, memlock 64 KiB, no caps.
	{probe: "sched_fifo", want: []string{eperm}},
	{probe: "sched_rr", want: []string{eperm}},
	{probe: "nice_neg", want: []string{"EACCES", eperm}},
	{probe: "mlockall", want: []string{"ENOMEM", eperm}},
	{probe: "mlock_big", want: []string{"ENOMEM", eperm}},
	// Credentials: no capability, not even inside the user namespace.
	{probe: "setuid0", want: []string{eperm}},
	{probe: "setgroups", want: []string{eperm}},
	{probe: "capset_all", want: []string{eperm}},
	{probe: "chown_root", want: []string{eperm}},
}

// exoticSockets are the families outside the allow-list; one run tries them all.
var exoticSockets = []string{"socket_vsock", "socket_alg", "socket_key", "socket_bluetooth", "socket_xdp",
	"socket_can", "socket_tipc", "socket_rds", "socket_appletalk", "socket_x25", "socket_llc", "socket_smc",
	"socket_mctp", "socket_qipcrtr"}

// controls must work under the filter: they prove the probes are sound and
// the allow-list lets ordinary programs run.
var controlProbes = []string{"clone_plain", "socket_unix", "socket_netlink", "personality_query"}

func kernelCases() []hcase {
	var cases []hcase
	for _, p := range kernelProbes {
		cases = append(cases, sysCase(p))
	}
	cases = append(cases,
		hcase{name: "exotic_socket_families", fn: func(c *cctx) error {
			o := c.run(append([]string{"probe", "sys"}, exoticSockets...)...)
			errs := []error{ok(o)}
			for _, s := range exoticSockets {
				errs = append(errs, kvIn(o, s, "EAFNOSUPPORT"))
			}
			return all(errs...)
		}},
		hcase{name: "controls_allowed", fn: func(c *cctx) error {
			o := c.run(append(append([]string{"probe", "sys"}, controlProbes...), "clone3_plain")...)
			errs := []error{ok(o), kvIn(o, "clone3_plain", "ENOSYS")}
			for _, s := range controlProbes {
				errs = append(errs, kvIn(o, s, "ok"))
			}
			if len(o.res.Violations) != 0 {
				errs = append(errs, fmt.Errorf("allowed calls reported as violations: %v", o.res.Violations))
			}
			return all(errs...)
		}},
		hcase{name: "unshare_U_binary", seccompOnly: true, fn: func(c *cctx) error {
			o := c.run("unshare", "-U", "--map-root-user", "/bin/true")
			return all(status(o, sandbox.StatusNonzeroExit), violated(o, "unshare"),
				stderrHas(o, "Operation not permitted"))
		}},
		hcase{name: "mknod_devices", fn: func(c *cctx) error {
			wd := c.workdir()
			o := c.run("probe", "mknod", "/workspace/dev", "/tmp/dev")
			errs := []error{ok(o),
				kvIn(o, "chr:/workspace/dev", eperm), kvIn(o, "blk:/workspace/dev.blk", eperm),
				kvIn(o, "chr:/tmp/dev", eperm), kvIn(o, "blk:/tmp/dev.blk", eperm),
				kvIn(o, "fifo:/tmp/dev.fifo", "ok")}
			if _, ok := o.kv["blkread"]; ok {
				errs = append(errs, fmt.Errorf("HOST EFFECT: read a block device: %s", o.kv["blkread"]))
			}
			ents, _ := os.ReadDir(wd)
			for _, e := range ents {
				if fi, err := e.Info(); err == nil && fi.Mode()&(os.ModeDevice|os.ModeCharDevice) != 0 {
					errs = append(errs, fmt.Errorf("HOST EFFECT: device node %s created in the host workdir", e.Name()))
				}
			}
			return all(errs...)
		}},
	)
	return cases
}

func TestKernelSurface(t *testing.T) { runCases(t, kernelCases()) }

// TestForeignABI: the x32 ABI and int $0x80 kill the process (SIGSYS)
// before the call runs.
func TestForeignABI(t *testing.T) {
	runCases(t, []hcase{
		{name: "x32_getpid", fn: func(c *cctx) error { return killedBySIGSYS(c.run("probe", "x32")) }},
		{name: "int80_getpid", fn: func(c *cctx) error { return killedBySIGSYS(c.run("probe", "int80")) }},
	})
}

func killedBySIGSYS(o *outcome) error {
	errs := []error{status(o, sandbox.StatusSignaled, sandbox.StatusViolation), kvIn(o, "before", "1")}
	if o.res.Signal != "SIGSYS" {
		errs = append(errs, fmt.Errorf("signal %q, want SIGSYS", o.res.Signal))
	}
	if v, ok := o.kv["after"]; ok {
		errs = append(errs, fmt.Errorf("the foreign-ABI call returned %s instead of killing the process", v))
	}
	return all(errs...)
}

func stderrHas(o *outcome, s string) error {
	if strings.Contains(string(o.res.Stderr), s) {
		return nil
	}
	return fmt.Errorf("stderr lacks %q", s)
}

// hostMountPoints returns the host's mount points that a mount escape would
// touch.
func hostMountPoints() map[string]int {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	m := map[string]int{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == "/" || f[4] == "/tmp" || f[4] == "/usr" || f[4] == "/proc") {
			m[f[4]]++
		}
	}
	return m
}

func mountsUnchanged(before map[string]int) error {
	after := hostMountPoints()
	for k, v := range after {
		if before[k] != v {
			return fmt.Errorf("HOST EFFECT: host mounts on %s changed from %d to %d", k, before[k], v)
		}
	}
	return nil
}
