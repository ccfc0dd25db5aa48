package seccomp

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"

	"golang.org/x/net/bpf"
)

// input is struct seccomp_data as a filter sees it.
type input struct {
	arch uint32
	nr   uint32
	args [6]uint64
}

// bytes lays the input out for x/net/bpf's VM, which loads words big-endian:
// each 32-bit word sits at its native offset in big-endian order, so a load
// sees the value the kernel's native load would.
func (in input) bytes() []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], in.nr)
	binary.BigEndian.PutUint32(b[4:], in.arch)
	for i, a := range in.args {
		binary.BigEndian.PutUint32(b[16+8*i:], uint32(a))       // low half first (little-endian ABI)
		binary.BigEndian.PutUint32(b[16+8*i+4:], uint32(a>>32)) // high half
	}
	return b
}

// Values written out again rather than taken from policy.go, so the
// reference does not share the generator's mistakes.
const (
	refAllow   = 0x7fff0000
	refKill    = 0x80000000
	refNotify  = 0x7fc00000
	refEPERM   = 0x00050000 | 1
	refENOSYS  = 0x00050000 | 38
	refNOAFSUP = 0x00050000 | 97

	auditX8664   = 0xc000003e
	auditI386    = 0x40000003
	auditAArch64 = 0xc00000b7
	auditARM     = 0x40000028
)

// reference is the intended verdict of the filter, written as plain Go.
func reference(a *Arch, o Options, in input) uint32 {
	viol := uint32(refEPERM)
	if o.OnViolation == Kill {
		viol = refKill
	} else if o.Notify {
		viol = refNotify
	}
	if in.arch != a.audit {
		return refKill
	}
	if a == AMD64 && in.nr&0x40000000 != 0 {
		return refKill // x32
	}
	name := ""
	if int64(in.nr) <= int64(a.Max()) {
		name = a.Name(int(in.nr))
	}
	lo := func(i int) uint32 { return uint32(in.args[i]) }
	const setID = 0o6000       // S_ISUID | S_ISGID
	const creates = 0o20000100 // O_CREAT | __O_TMPFILE
	install := uint32(refAllow)
	if o.Notify && o.OnViolation != Kill {
		install = refNotify
	}
	mode := func(flags, m int) uint32 {
		if flags >= 0 && lo(flags)&creates == 0 || lo(m)&setID == 0 {
			return refAllow
		}
		return viol
	}
	switch name {
	case "", "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents", "openat2":
		return refENOSYS
	case "chmod", "fchmod", "creat", "mkdir", "mknod":
		return mode(-1, 1)
	case "fchmodat", "fchmodat2", "mkdirat", "mknodat":
		return mode(-1, 2)
	case "open":
		return mode(1, 2)
	case "openat":
		return mode(2, 3)
	case "seccomp":
		if lo(0) == 1 { // SECCOMP_SET_MODE_FILTER
			return install
		}
		return refAllow
	case "prctl":
		if lo(0) == 22 && lo(1) == 2 { // PR_SET_SECCOMP, SECCOMP_MODE_FILTER
			return install
		}
		return refAllow
	case "clone3":
		return refENOSYS
	case "clone":
		const ns = 0x00020000 /*NEWNS*/ | 0x02000000 /*NEWCGROUP*/ | 0x04000000 /*NEWUTS*/ | 0x08000000 /*NEWIPC*/ |
			0x10000000 /*NEWUSER*/ | 0x20000000 /*NEWPID*/ | 0x40000000 /*NEWNET*/ | 0x80 /*NEWTIME*/
		if lo(0)&ns != 0 {
			return viol
		}
		return refAllow
	case "socket", "socketpair":
		switch lo(0) {
		case 1, 2, 10, 16: // AF_UNIX, AF_INET, AF_INET6, AF_NETLINK
			return refAllow
		}
		return refNOAFSUP
	case "personality":
		switch lo(0) {
		case 0, 8, 0x20000, 0x20008, 0xffffffff:
			return refAllow
		}
		return viol
	case "ptrace":
		if o.TraceMe && in.args[0] == 0 {
			return refAllow
		}
		return viol
	case "ioctl":
		switch lo(1) {
		case 0x5412, 0x541c, 0x541d, 0x5423: // TIOCSTI, TIOCLINUX, TIOCCONS, TIOCSETD
			return viol
		}
		return refAllow
	}
	if allowed[name] {
		return refAllow
	}
	return viol
}

// argVariants exercise every argument rule, including high bits the kernel
// ignores.
var argVariants = [][6]uint64{
	{},
	{0x10000000},                     // clone CLONE_NEWUSER
	{0x1_0000_0000},                  // high bits only: clone/personality 0, socket 0
	{0x1_1000_0000},                  // CLONE_NEWUSER under high bits
	{0x00020000 | 17},                // CLONE_NEWNS | SIGCHLD
	{0x80},                           // CLONE_NEWTIME
	{0x003d0f00 | 17},                // what pthread_create passes
	{1}, {2}, {10}, {16}, {17}, {40}, // socket families, AF_PACKET, AF_VSOCK
	{0x1_0000_0002},              // AF_INET with high bits
	{8}, {0x20008}, {0xffffffff}, // personalities
	{0x0400000}, {0xffff_ffff_ffff_ffff}, // READ_IMPLIES_EXEC, 64-bit -1
	{0, 0x5412}, {0, 0x1_0000_5412}, {0, 0x541c}, {0, 0x541d}, {0, 0x5423},
	{0, 0x5401}, {0, 0x541b}, {0, 0xffff_ffff_0000_5412},
	// modes: set-uid, set-gid, sticky, plain, set-uid under high bits
	{0, 0o4755}, {0, 0o2755}, {0, 0o1777}, {0, 0o755}, {0, 0x1_0000_0000 | 0o4755},
	{0, 0, 0o4755}, {0, 0, 0o2000}, {0, 0, 0o644},
	// open (flags 1, mode 2) and openat (flags 2, mode 3): O_CREAT,
	// O_TMPFILE, O_CREAT under high bits, no creation flag
	{0, 0o100, 0o4755}, {0, 0o100, 0o755}, {0, 0o20200000, 0o2755}, {0, 0o1, 0o4755},
	{0, 0x1_0000_0040, 0o4755},
	{0, 0, 0o100, 0o4755}, {0, 0, 0o100, 0o644}, {0, 0, 0o20200002, 0o6000}, {0, 0, 0o2, 0o4755},
	{0, 0, 0o101, 0x1_0000_0000 | 0o2000},
	// prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER), its strict mode, and
	// high bits; seccomp's ops are {0}, {1}, {2} above
	{22, 2}, {22, 1}, {0x1_0000_0016, 2}, {22, 0x1_0000_0002}, {23, 2},
}

func options() []Options {
	return []Options{{}, {Notify: true}, {OnViolation: Kill}, {OnViolation: Kill, Notify: true}, {TraceMe: true}, {TraceMe: true, Notify: true}}
}

// TestFilterMatchesReference runs the generated BPF in x/net/bpf's VM for
// every system call number of both ABIs, foreign ABIs and every argument
// rule, and compares it with the reference.
func TestFilterMatchesReference(t *testing.T) {
	for _, a := range []*Arch{AMD64, ARM64} {
		for _, o := range options() {
			t.Run(fmt.Sprintf("%s/%+v", a, o), func(t *testing.T) {
				vm := newVM(t, a, o)
				var nrs []uint32
				for nr := 0; nr <= a.Max()+10; nr++ {
					nrs = append(nrs, uint32(nr))
				}
				nrs = append(nrs, 1024, 0x3fffffff, 0x40000000, 0x40000001, 0x40000000+1023,
					0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff)
				arches := []uint32{a.audit, auditX8664, auditI386, auditAArch64, auditARM, 0, 0xffffffff}
				checked, mismatches := 0, 0
				for _, arch := range arches {
					for _, nr := range nrs {
						for _, args := range argVariants {
							in := input{arch: arch, nr: nr, args: args}
							got, err := vm.Run(in.bytes())
							if err != nil {
								t.Fatalf("VM: %v", err)
							}
							checked++
							if want := reference(a, o, in); uint32(got) != want {
								mismatches++
								if mismatches < 20 {
									t.Errorf("arch %#x nr %d (%s) args %#x: filter %#x, reference %#x",
										arch, nr, a.Name(int(nr)), args[:2], uint32(got), want)
								}
							}
						}
					}
				}
				if mismatches > 0 {
					t.Fatalf("%d of %d inputs disagree", mismatches, checked)
				}
			})
		}
	}
}

func newVM(t testing.TB, a *Arch, o Options) *bpf.VM {
	t.Helper()
	raw, err := Build(a, o)
	if err != nil {
		t.Fatal(err)
	}
	prog, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("the assembled filter does not disassemble")
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

// TestPolicy pins the verdict of the calls the design names, by name, on both
// ABIs, so a change to the allow-list that lets one through fails here.
func TestPolicy(t *testing.T) {
	denied := []string{
		"ptrace", "process_vm_readv", "process_vm_writev", "io_uring_setup", "io_uring_enter",
		"io_uring_register", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
		"mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick", "open_tree",
		"open_tree_attr", "move_mount", "mount_setattr", "unshare", "setns", "kexec_load", "kexec_file_load",
		"init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff", "acct", "quotactl",
		"quotactl_fd", "open_by_handle_at", "name_to_handle_at", "syslog", "settimeofday", "clock_settime",
		"clock_adjtime", "adjtimex", "iopl", "ioperm", "modify_ldt", "mbind", "set_mempolicy",
		"migrate_pages", "move_pages", "get_mempolicy", "set_mempolicy_home_node", "lookup_dcookie",
		"nfsservctl", "vhangup", "kcmp", "pidfd_getfd",
		"process_madvise", "fanotify_init", "sethostname", "setdomainname", "uselib", "_sysctl",
		"statmount", "listmount", "listns",
	}
	needed := []string{
		"read", "write", "openat", "close", "mmap", "mprotect", "brk", "rt_sigaction", "rt_sigprocmask",
		"futex", "execve", "exit_group", "wait4", "pipe2", "dup3", "getdents64", "newfstatat", "statx",
		"epoll_pwait", "sched_getaffinity", "prlimit64", "getrandom", "rseq", "set_robust_list",
		"sigaltstack", "madvise", "tgkill", "pidfd_open", "pidfd_send_signal", "waitid", "prctl", "uname",
		"memfd_create", "eventfd2", "fcntl", "getcwd", "close_range", "faccessat2", "fchmodat2",
		"mkdirat", "mknodat", "fchmod", "fchmodat", "seccomp",
	}
	unsupported := []string{"io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents",
		"io_pgetevents", "openat2"}
	for _, a := range []*Arch{AMD64, ARM64} {
		for _, name := range denied {
			nr, ok := a.Number(name)
			if !ok {
				continue // not in this ABI
			}
			if c := classify(a, Options{}, nr); c.rule != ruleNone || c.ret != refEPERM {
				t.Errorf("%s: %s (%d) is %+v, want EPERM", a, name, nr, c)
			}
		}
		// Needed calls are allowed with ordinary (zero) arguments, whether
		// or not an argument rule looks at them.
		vm := newVM(t, a, Options{Notify: true})
		for _, name := range needed {
			nr, ok := a.Number(name)
			if !ok {
				t.Errorf("%s: %s missing from the table", a, name)
				continue
			}
			if got, _ := vm.Run(input{arch: a.audit, nr: uint32(nr)}.bytes()); got != refAllow {
				t.Errorf("%s: %s (%d) answers %#x, want allowed", a, name, nr, got)
			}
		}
		for _, name := range unsupported {
			nr, ok := a.Number(name)
			if !ok {
				t.Errorf("%s: %s missing from the table", a, name)
				continue
			}
			if c := classify(a, Options{Notify: true}, nr); c.rule != ruleNone || c.ret != refENOSYS {
				t.Errorf("%s: %s (%d) is %+v, want ENOSYS", a, name, nr, c)
			}
		}
		for name := range allowed {
			if slices.Contains(denied, name) {
				t.Errorf("%s is both allowed and denied", name)
			}
		}
	}
	if n, _ := AMD64.Number("clone"); n != 56 {
		t.Errorf("amd64 clone is %d, want 56", n)
	}
	if n, _ := ARM64.Number("newfstatat"); n != 79 {
		t.Errorf("arm64 newfstatat is %d, want 79", n)
	}
	if _, ok := ARM64.Number("open"); ok {
		t.Error("arm64 has no open(2)")
	}
}

// TestFilterPathLength bounds the instructions an allowed call runs (the
// filter's cost when the kernel cannot cache the verdict), and checks that
// calls without argument rules never load anything but nr and arch, which is
// what lets the kernel cache their verdict.
func TestFilterPathLength(t *testing.T) {
	for _, a := range []*Arch{AMD64, ARM64} {
		raw, err := Build(a, Options{})
		if err != nil {
			t.Fatal(err)
		}
		longest := 0
		for nr := 0; nr <= a.Max(); nr++ {
			steps, argLoad := walk(t, raw, input{arch: a.audit, nr: uint32(nr)})
			_, hasRule := rules[a.Name(nr)]
			_, hasMode := modeRules[a.Name(nr)]
			hasRule = hasRule || hasMode
			if argLoad && !hasRule {
				t.Errorf("%s: %s (%d) loads an argument", a, a.Name(nr), nr)
			}
			longest = max(longest, steps)
		}
		t.Logf("%s: %d instructions, at most %d run per call", a, len(raw), longest)
		if longest > 24 {
			t.Errorf("%s: a call runs %d instructions, want a binary search (<= 24)", a, longest)
		}
	}
}

// walk interprets the few opcodes the generator emits and counts steps.
func walk(t *testing.T, raw []bpf.RawInstruction, in input) (steps int, argLoad bool) {
	var acc uint32
	for pc := 0; pc < len(raw); steps++ {
		ins := raw[pc]
		switch ins.Op {
		case 0x20: // ld [k]
			switch ins.K {
			case 0:
				acc = in.nr
			case 4:
				acc = in.arch
			default:
				argLoad = true
				acc = uint32(in.args[(ins.K-16)/8])
			}
			pc++
		case 0x05: // ja
			pc += 1 + int(ins.K)
		case 0x15, 0x35, 0x45: // jeq, jge, jset
			var ok bool
			switch ins.Op {
			case 0x15:
				ok = acc == ins.K
			case 0x35:
				ok = acc >= ins.K
			default:
				ok = acc&ins.K != 0
			}
			if ok {
				pc += 1 + int(ins.Jt)
			} else {
				pc += 1 + int(ins.Jf)
			}
		case 0x06: // ret k
			return steps + 1, argLoad
		default:
			t.Fatalf("unexpected opcode %#x at %d", ins.Op, pc)
		}
	}
	t.Fatal("ran off the end of the filter")
	return 0, false
}

func TestBuildRejects(t *testing.T) {
	if _, err := Build(nil, Options{}); err == nil {
		t.Error("Build(nil) succeeded")
	}
	if _, err := Build(AMD64, Options{OnViolation: 7}); err == nil {
		t.Error("Build with action 7 succeeded")
	}
}

func TestViolationsSorted(t *testing.T) {
	l := NewListener(-1)
	for _, n := range []string{"keyctl", "bpf", "keyctl", "mount", "bpf", "keyctl"} {
		l.record(n)
	}
	want := []Violation{{"keyctl", 3}, {"bpf", 2}, {"mount", 1}}
	if got := l.Violations(); !slices.Equal(got, want) {
		t.Errorf("Violations() = %v, want %v", got, want)
	}
	if got := syscallName(auditAArch64, 217); got != "add_key" {
		t.Errorf("arm64 217 = %q, want add_key", got)
	}
	if got := syscallName(auditARM, 5); got != "syscall_5" {
		t.Errorf("unknown ABI name = %q", got)
	}
}
