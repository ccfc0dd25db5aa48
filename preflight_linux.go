package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/kb-labs/sandbox/internal/cgroup"
	"github.com/kb-labs/sandbox/internal/landlock"
	"github.com/kb-labs/sandbox/internal/mount"
)

// hostChecks probes each kernel feature, by attempting it where that is
// cheap and harmless (a throwaway child in new namespaces, a throwaway
// cgroup).
func hostChecks() []Check {
	var out []Check
	out = append(out, userNSCheck())
	out = append(out, cgroupChecks()...)
	out = append(out, seccompCheck())
	out = append(out, landlockCheck())
	mc := Check{Name: "mount API (open_tree, move_mount, mount_setattr)", Passed: true}
	if err := mount.Check(); err != nil {
		mc.Passed, mc.Error = false, err.Error()
		mc.Suggestions = []string{"use a kernel 5.12 or newer"}
	}
	out = append(out, mc)
	return out
}

func userNSCheck() Check {
	ch := Check{Name: "user namespaces"}
	if err := checkUserNamespaces(); err != nil {
		ch.Error = err.Error()
		ch.Suggestions = []string{"sysctl -w user.max_user_namespaces=15000", "on Debian/Ubuntu kernels: sysctl -w kernel.unprivileged_userns_clone=1"}
		return ch
	}
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID |
		syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWCGROUP}
	if err := cmd.Run(); err != nil {
		ch.Error = "creating user, mount, pid, net, ipc, uts and cgroup namespaces failed: " + err.Error()
		ch.Suggestions = []string{"check that the kernel has CONFIG_USER_NS and that no LSM (AppArmor restrict_unprivileged_userns) blocks it"}
		return ch
	}
	ch.Passed = true
	ch.Detail = "user, pid, mount, net, ipc, uts, cgroup"
	if os.Geteuid() != 0 {
		ch.Detail += fmt.Sprintf("; rootless: inside uid/gid 1000 maps to this user (uid %d, gid %d), inside 0 is unmapped, setgroups denied", os.Geteuid(), os.Getegid())
	}
	return ch
}

func cgroupChecks() []Check {
	ch := Check{Name: "cgroups"}
	m, err := sharedCgroups()
	if err != nil {
		ch.Error = err.Error()
		ch.Suggestions = []string{"run as root, or delegate a cgroup v2 subtree (systemd: Delegate=yes; or chown a cgroup directory to this user)"}
		return []Check{ch}
	}
	f := m.Features()
	ch.Passed = true
	ch.Detail = "backend " + m.Version()
	// Attempt it: create and remove a throwaway run cgroup with limits.
	g, err := m.Create(ownerPrefix()+"doctor", cgroup.Limits{MemoryBytes: 64 << 20, Pids: 16, CPUs: 0.5})
	if err != nil {
		ch.Passed, ch.Error = false, "creating a run cgroup failed: "+err.Error()
	} else if err := g.Close(); err != nil {
		ch.Passed, ch.Error = false, "removing a run cgroup failed: "+err.Error()
	}
	out := []Check{ch}
	ctl := func(name string, ok bool, fix string) {
		c := Check{Name: "cgroup " + name, Passed: ok, Detail: m.Version()}
		if !ok {
			c.Error = name + " is not usable"
			c.Suggestions = []string{fix}
		}
		out = append(out, c)
	}
	ctl("memory", f.Memory, "enable the memory controller (cgroup_enable=memory)")
	ctl("memory+swap", f.MemorySwap, "boot with swapaccount=1 so the memory limit bounds swap too")
	ctl("pids", f.Pids, "enable the pids controller")
	ctl("cpu", f.CPU, "enable the cpu controller")
	ctl("cpuacct", f.CPUAcct, "enable cpuacct (v1) or the cpu controller (v2) for CPU-time limits")
	extra := Check{Name: "cgroup v2 kill/events", Passed: true, Optional: true}
	var have []string
	if f.KillFile {
		have = append(have, "cgroup.kill")
	}
	if f.CloneIntoCgroup {
		have = append(have, "clone-into-cgroup")
	}
	if f.Freeze {
		have = append(have, "freeze")
	}
	if f.MemoryPeak {
		have = append(have, "memory peak")
	}
	if f.PidsPeak {
		have = append(have, "pids peak")
	}
	extra.Detail = strings.Join(have, ", ")
	if m.Version() == "v1" && f.KillFile {
		extra.Detail = "v2 hierarchy (/sys/fs/cgroup/unified) leaf per run: " + extra.Detail + ", cgroup.events, cpu.stat"
	}
	if !f.KillFile {
		extra.Passed = false
		extra.Error = "no cgroup.kill: runs are ended through the pid namespace and the freezer"
		extra.Suggestions = []string{"a kernel 5.14 or newer with cgroup v2 offers cgroup.kill"}
	}
	return append(out, extra)
}

func seccompCheck() Check {
	ch := Check{Name: "seccomp"}
	if err := checkSeccomp(); err != nil {
		ch.Error = err.Error()
		ch.Suggestions = []string{"use a kernel built with CONFIG_SECCOMP_FILTER"}
		return ch
	}
	b, _ := os.ReadFile("/proc/sys/kernel/seccomp/actions_avail")
	actions := strings.Fields(string(b))
	ch.Passed = true
	ch.Detail = "filter actions: " + strings.Join(actions, " ")
	notif := false
	for _, a := range actions {
		if a == "user_notif" {
			notif = true
		}
	}
	if !notif {
		ch.Detail += "; no user notification: denied calls cannot be reported (violations stay empty)"
	}
	return ch
}

func landlockCheck() Check {
	abi := landlock.ProbeABI()
	ch := Check{Name: "landlock", Detail: fmt.Sprintf("ABI %d", abi)}
	switch {
	case abi == 0:
		ch.Error = "the kernel lacks Landlock"
		ch.Suggestions = []string{"enable CONFIG_SECURITY_LANDLOCK and add landlock to the lsm= boot parameter"}
	case abi < 6:
		ch.Error = fmt.Sprintf("Landlock ABI %d lacks signal and abstract socket scoping (ABI 6)", abi)
		ch.Suggestions = []string{"use a kernel 6.12 or newer"}
	default:
		ch.Passed = true
	}
	return ch
}
