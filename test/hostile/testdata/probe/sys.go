package main

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// probes are single system calls against the privileged kernel surface.
// Each returns the kernel's answer; nil means the call succeeded.
var probes = map[string]func() error{
	"ptrace_attach": func() error { return unix.PtraceAttach(1) },
	"ptrace_seize": func() error {
		_, _, e := unix.RawSyscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, 1, 0, 0, 0, 0)
		return errno(e)
	},
	"process_vm_readv": func() error {
		var b [8]byte
		local := []unix.Iovec{{Base: &b[0], Len: 8}}
		remote := []unix.RemoteIovec{{Base: 0x400000, Len: 8}}
		_, err := unix.ProcessVMReadv(1, local, remote, 0)
		return err
	},
	"mount_tmpfs":  func() error { return unix.Mount("none", "/tmp", "tmpfs", 0, "") },
	"mount_bind":   func() error { return unix.Mount("/", "/tmp", "", unix.MS_BIND|unix.MS_REC, "") },
	"mount_proc":   func() error { return unix.Mount("proc", "/tmp", "proc", 0, "") },
	"mount_cgroup": func() error { return unix.Mount("cgroup", "/tmp", "cgroup", 0, "pids") },
	"remount_rw":   func() error { return unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND, "") },
	"umount_proc":  func() error { return unix.Unmount("/proc", unix.MNT_DETACH) },
	"fsopen":       func() error { return closeFD(unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)) },
	"fspick":       func() error { return closeFD(unix.Fspick(unix.AT_FDCWD, "/", unix.FSPICK_CLOEXEC)) },
	"open_tree": func() error {
		return closeFD(unix.OpenTree(unix.AT_FDCWD, "/usr", unix.OPEN_TREE_CLONE|unix.AT_RECURSIVE|unix.OPEN_TREE_CLOEXEC))
	},
	"move_mount": func() error {
		return unix.MoveMount(unix.AT_FDCWD, "/usr", unix.AT_FDCWD, "/tmp", 0)
	},
	"mount_setattr": func() error {
		attr := unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY}
		return unix.MountSetattr(unix.AT_FDCWD, "/usr", unix.AT_RECURSIVE, &attr)
	},
	"pivot_root":     func() error { return unix.PivotRoot("/tmp", "/tmp") },
	"chroot":         func() error { return unix.Chroot("/tmp") },
	"clone_newuser":  func() error { return rawClone(unix.CLONE_NEWUSER) },
	"clone_newns":    func() error { return rawClone(unix.CLONE_NEWNS) },
	"clone_newnet":   func() error { return rawClone(unix.CLONE_NEWNET) },
	"clone_newpid":   func() error { return rawClone(unix.CLONE_NEWPID) },
	"clone_plain":    func() error { return rawClone(0) },
	"clone3_newuser": func() error { return rawClone3(unix.CLONE_NEWUSER) },
	"clone3_plain":   func() error { return rawClone3(0) },
	"unshare_user":   func() error { return unix.Unshare(unix.CLONE_NEWUSER) },
	"unshare_ns":     func() error { return unix.Unshare(unix.CLONE_NEWNS) },
	"unshare_net":    func() error { return unix.Unshare(unix.CLONE_NEWNET) },
	"setns_mnt":      setnsMnt,
	"keyctl": func() error {
		_, err := unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_SESSION_KEYRING, 1, 0, 0)
		return err
	},
	"keyctl_join": func() error { _, err := unix.KeyctlJoinSessionKeyring("hostile"); return err },
	"add_key": func() error {
		_, err := unix.AddKey("user", "hostile", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
		return err
	},
	"request_key": func() error {
		_, err := unix.RequestKey("user", "hostile", "", unix.KEY_SPEC_PROCESS_KEYRING)
		return err
	},
	"bpf_map_create":  bpfMapCreate,
	"perf_event_open": perfEventOpen,
	"userfaultfd": func() error {
		const uffdUserModeOnly = 1
		fd, _, e := unix.RawSyscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|uffdUserModeOnly, 0, 0)
		return closeRaw(fd, e)
	},
	"io_uring_setup": func() error {
		var params [120]byte // struct io_uring_params
		fd, _, e := unix.RawSyscall(unix.SYS_IO_URING_SETUP, 8, uintptr(unsafe.Pointer(&params[0])), 0)
		return closeRaw(fd, e)
	},
	// AIO contexts count against the host-wide fs.aio-nr; the filter
	// answers ENOSYS (libaio users fall back to threads).
	"io_setup": func() error {
		var ctx uint64
		_, _, e := unix.RawSyscall(unix.SYS_IO_SETUP, 1, uintptr(unsafe.Pointer(&ctx)), 0)
		if e == 0 {
			unix.RawSyscall(unix.SYS_IO_DESTROY, uintptr(ctx), 0, 0)
		}
		return errno(e)
	},
	"open_by_handle_at": func() error {
		var h [8 + 128]byte
		_, _, e := unix.RawSyscall(unix.SYS_OPEN_BY_HANDLE_AT, uintptr(unix.Stdin), uintptr(unsafe.Pointer(&h[0])), 0)
		return errno(e)
	},
	"kexec_load":   func() error { _, _, e := unix.RawSyscall6(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0, 0, 0); return errno(e) },
	"init_module":  func() error { _, _, e := unix.RawSyscall(unix.SYS_INIT_MODULE, 0, 0, 0); return errno(e) },
	"finit_module": func() error { _, _, e := unix.RawSyscall(unix.SYS_FINIT_MODULE, 0, 0, 0); return errno(e) },
	"reboot":       func() error { _, _, e := unix.RawSyscall6(unix.SYS_REBOOT, 0, 0, 0, 0, 0, 0); return errno(e) },
	"swapon": func() error {
		p, _ := unix.BytePtrFromString("/tmp/swap")
		_, _, e := unix.RawSyscall(unix.SYS_SWAPON, uintptr(unsafe.Pointer(p)), 0, 0)
		return errno(e)
	},
	"syslog":        func() error { _, err := unix.Klogctl(3, make([]byte, 64)); return err },
	"iopl":          func() error { _, _, e := unix.RawSyscall(unix.SYS_IOPL, 3, 0, 0); return errno(e) },
	"ioperm":        func() error { _, _, e := unix.RawSyscall(unix.SYS_IOPERM, 0x80, 1, 1); return errno(e) },
	"modify_ldt":    func() error { _, _, e := unix.RawSyscall(unix.SYS_MODIFY_LDT, 0, 0, 0); return errno(e) },
	"settimeofday":  func() error { tv := unix.Timeval{Sec: 1}; return unix.Settimeofday(&tv) },
	"clock_settime": func() error { ts := unix.Timespec{Sec: 1}; return unix.ClockSettime(unix.CLOCK_REALTIME, &ts) },
	"acct":          func() error { return unix.Acct("/tmp/acct") },
	"set_mempolicy": func() error { _, _, e := unix.RawSyscall(unix.SYS_SET_MEMPOLICY, 0, 0, 0); return errno(e) },
	"fanotify_init": func() error {
		fd, _, e := unix.RawSyscall(unix.SYS_FANOTIFY_INIT, 0, 0, 0)
		return closeRaw(fd, e)
	},
	"personality_rx":    func() error { return personality(0x0400000) }, // READ_IMPLIES_EXEC
	"personality_nornd": func() error { return personality(0x0040000) }, // ADDR_NO_RANDOMIZE
	"personality_query": func() error { return personality(0xffffffff) },
	// Socket families: only UNIX, INET, INET6 and NETLINK are allowed.
	"socket_packet":    func() error { return sock(unix.AF_PACKET, unix.SOCK_RAW, 0x0300) },
	"socket_packet_hi": func() error { return sock(1<<32|unix.AF_PACKET, unix.SOCK_RAW, 0x0300) },
	"socket_raw_icmp":  func() error { return sock(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP) },
	"socket_raw_ip6":   func() error { return sock(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_RAW) },
	"socket_vsock":     func() error { return sock(unix.AF_VSOCK, unix.SOCK_STREAM, 0) },
	"socket_alg":       func() error { return sock(unix.AF_ALG, unix.SOCK_SEQPACKET, 0) },
	"socket_key":       func() error { return sock(unix.AF_KEY, unix.SOCK_RAW, 2) },
	"socket_bluetooth": func() error { return sock(unix.AF_BLUETOOTH, unix.SOCK_RAW, 0) },
	"socket_xdp":       func() error { return sock(unix.AF_XDP, unix.SOCK_RAW, 0) },
	"socket_can":       func() error { return sock(unix.AF_CAN, unix.SOCK_RAW, 1) },
	"socket_tipc":      func() error { return sock(unix.AF_TIPC, unix.SOCK_RDM, 0) },
	"socket_rds":       func() error { return sock(unix.AF_RDS, unix.SOCK_SEQPACKET, 0) },
	"socket_appletalk": func() error { return sock(unix.AF_APPLETALK, unix.SOCK_DGRAM, 0) },
	"socket_x25":       func() error { return sock(unix.AF_X25, unix.SOCK_SEQPACKET, 0) },
	"socket_llc":       func() error { return sock(unix.AF_LLC, unix.SOCK_DGRAM, 0) },
	"socket_smc":       func() error { return sock(unix.AF_SMC, unix.SOCK_STREAM, 0) },
	"socket_mctp":      func() error { return sock(unix.AF_MCTP, unix.SOCK_DGRAM, 0) },
	"socket_qipcrtr":   func() error { return sock(unix.AF_QIPCRTR, unix.SOCK_DGRAM, 0) },
	"socketpair_packet": func() error {
		_, _, e := unix.RawSyscall6(unix.SYS_SOCKETPAIR, unix.AF_PACKET, unix.SOCK_RAW, 0, uintptr(unsafe.Pointer(new([2]int32))), 0, 0)
		return errno(e)
	},
	"socket_unix":    func() error { return sock(unix.AF_UNIX, unix.SOCK_STREAM, 0) },
	"socket_netlink": func() error { return sock(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE) },
	// Terminal injection. The sandbox has no terminal; fd 0 is a pipe, so
	// without the filter these fail with ENOTTY, with it EPERM.
	"tiocsti":     func() error { return ioctlByte(0, unix.TIOCSTI) },
	"tiocsti_hi":  func() error { return ioctlByte(0, 1<<32|unix.TIOCSTI) },
	"tiocsti_1":   func() error { return ioctlByte(1, unix.TIOCSTI) },
	"tioclinux":   func() error { return ioctlByte(0, unix.TIOCLINUX) },
	"tiocsetd":    func() error { return ioctlByte(0, unix.TIOCSETD) },
	"tioccons":    func() error { return ioctlByte(0, unix.TIOCCONS) },
	"tioccons_hi": func() error { return ioctlByte(0, 0xffffffff00000000|unix.TIOCCONS) },
	"open_ptmx":   func() error { return closeFD(unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY, 0)) },
	"open_tty":    func() error { return closeFD(unix.Open("/dev/tty", unix.O_RDWR|unix.O_NOCTTY, 0)) },
	"open_console": func() error {
		return closeFD(unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0))
	},
	"sched_fifo": func() error {
		p := struct{ prio int32 }{1}
		_, _, e := unix.RawSyscall(unix.SYS_SCHED_SETSCHEDULER, 0, 1 /* SCHED_FIFO */, uintptr(unsafe.Pointer(&p)))
		return errno(e)
	},
	"sched_rr": func() error {
		p := struct{ prio int32 }{99}
		_, _, e := unix.RawSyscall(unix.SYS_SCHED_SETSCHEDULER, 0, 2 /* SCHED_RR */, uintptr(unsafe.Pointer(&p)))
		return errno(e)
	},
	"nice_neg":   func() error { return unix.Setpriority(unix.PRIO_PROCESS, 0, -10) },
	"mlockall":   func() error { return unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE) },
	"mlock_big":  mlockBig,
	"setuid0":    func() error { return unix.Setresuid(0, 0, 0) },
	"setgroups":  func() error { return unix.Setgroups([]int{0}) },
	"capset_all": capsetAll,
	"chown_root": func() error { return unix.Chown("/tmp", 0, 0) },
}

func cmdSys(args []string) {
	for _, name := range args {
		p := probes[name]
		if p == nil {
			say(name, "UNKNOWN_PROBE")
			continue
		}
		report(name, p())
	}
}

func closeFD(fd int, err error) error {
	if err == nil {
		unix.Close(fd)
	}
	return err
}

func closeRaw(fd uintptr, e unix.Errno) error {
	if e != 0 {
		return e
	}
	unix.Close(int(fd))
	return nil
}

func sock(family uint64, typ, proto int) error {
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), uintptr(typ), uintptr(proto))
	return closeRaw(fd, e)
}

func ioctlByte(fd int, req uint64) error {
	c := byte('!')
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(&c)))
	return errno(e)
}

func personality(p uintptr) error {
	_, _, e := unix.RawSyscall(unix.SYS_PERSONALITY, p, 0, 0)
	return errno(e)
}

// rawClone forks with namespace flags. The child exits at once; it runs
// nothing but the exit (no Go code that could touch shared runtime state).
//
//go:norace
func rawClone(flags uintptr) error {
	pid, _, e := unix.RawSyscall6(unix.SYS_CLONE, flags|uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
	if e != 0 {
		return e
	}
	if pid == 0 {
		unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
	}
	var ws unix.WaitStatus
	unix.Wait4(int(pid), &ws, 0, nil)
	return nil
}

// cloneArgs is struct clone_args (version 2, 88 bytes).
type cloneArgs struct {
	flags, pidfd, childTID, parentTID, exitSignal, stack, stackSize, tls, setTID, setTIDSize, cgroup uint64
}

//go:norace
func rawClone3(flags uint64) error {
	a := cloneArgs{flags: flags, exitSignal: uint64(unix.SIGCHLD)}
	pid, _, e := unix.RawSyscall(unix.SYS_CLONE3, uintptr(unsafe.Pointer(&a)), unsafe.Sizeof(a), 0)
	if e != 0 {
		return e
	}
	if pid == 0 {
		unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
	}
	var ws unix.WaitStatus
	unix.Wait4(int(pid), &ws, 0, nil)
	return nil
}

func setnsMnt() error {
	fd, err := unix.Open("/proc/1/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		// The init is not dumpable: opening its namespace already fails.
		say("setns_open", errName(err))
		fd, err = unix.Open("/proc/self/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
	}
	defer unix.Close(fd)
	return unix.Setns(fd, unix.CLONE_NEWNS)
}

func bpfMapCreate() error {
	// union bpf_attr for BPF_MAP_CREATE: type, key size, value size, max entries.
	attr := [4]uint32{2 /* BPF_MAP_TYPE_ARRAY */, 4, 4, 1}
	fd, _, e := unix.RawSyscall(unix.SYS_BPF, 0 /* BPF_MAP_CREATE */, uintptr(unsafe.Pointer(&attr[0])), unsafe.Sizeof(attr))
	return closeRaw(fd, e)
}

func perfEventOpen() error {
	attr := unix.PerfEventAttr{
		Type:   unix.PERF_TYPE_SOFTWARE,
		Config: unix.PERF_COUNT_SW_TASK_CLOCK,
		Bits:   unix.PerfBitExcludeKernel | unix.PerfBitExcludeHv,
	}
	attr.Size = uint32(unsafe.Sizeof(attr))
	return closeFD(unix.PerfEventOpen(&attr, 0, -1, -1, unix.PERF_FLAG_FD_CLOEXEC))
}

func mlockBig() error {
	b, err := unix.Mmap(-1, 0, 64<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("mmap: %w", err)
	}
	defer unix.Munmap(b)
	return unix.Mlock(b)
}

func capsetAll() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{{Effective: ^uint32(0), Permitted: ^uint32(0), Inheritable: ^uint32(0)},
		{Effective: ^uint32(0), Permitted: ^uint32(0), Inheritable: ^uint32(0)}}
	return unix.Capset(&hdr, &data[0])
}

// cmdMknod makes device nodes at the paths given: char 1:3 (null) and block
// 8:0 (the first disk). Then it tries to open what it made.
func cmdMknod(args []string) {
	for _, p := range args {
		report("chr:"+p, unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		report("blk:"+p+".blk", unix.Mknod(p+".blk", unix.S_IFBLK|0o666, int(unix.Mkdev(8, 0))))
		if f, err := os.OpenFile(p+".blk", os.O_RDONLY, 0); err == nil {
			b := make([]byte, 512)
			n, err := f.Read(b)
			say("blkread", fmt.Sprintf("%d:%s", n, errName(err)))
			f.Close()
		}
		report("fifo:"+p+".fifo", unix.Mkfifo(p+".fifo", 0o600))
	}
}
