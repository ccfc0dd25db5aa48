package main

import (
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Modes with set-id bits. hiMode also sets bit 32, which the kernel drops
// (a mode is 16 bits): a filter comparing all 64 bits would miss it.
const (
	suid   = unix.S_ISUID | 0o755
	sgid   = unix.S_ISGID | 0o755
	hiMode = 1<<32 | unix.S_ISUID | 0o755
)

// cmdSetID tries every system call that can give a file in dir a set-uid or
// set-gid bit, each through the raw call (no libc or Go wrapper choosing
// another), and prints the kernel's answer per attempt. Controls without the
// bits must succeed. The host test then looks for set-id files in dir.
func cmdSetID(args []string) {
	dir := args[0]
	p := func(name string) string { return filepath.Join(dir, name) }
	plain := p("plain")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\nid\n"), 0o755); err != nil {
		say("setup", errName(err))
		return
	}
	dirfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		say("setup", errName(err))
		return
	}
	fd, err := unix.Open(plain, unix.O_RDONLY, 0)
	if err != nil {
		say("setup", errName(err))
		return
	}
	at := func(path string, mode uintptr, nr uintptr) error {
		b, _ := unix.BytePtrFromString(path)
		_, _, e := unix.Syscall6(nr, uintptr(dirfd), uintptr(unsafe.Pointer(b)), mode, 0, 0, 0)
		return errno(e)
	}
	openat := func(name string, flags int, mode uintptr) error {
		b, _ := unix.BytePtrFromString(name)
		r, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(b)), uintptr(flags), mode, 0, 0)
		return closeRaw(r, e)
	}
	report("fchmod_suid", raw(unix.SYS_FCHMOD, uintptr(fd), suid))
	report("fchmod_sgid", raw(unix.SYS_FCHMOD, uintptr(fd), sgid))
	report("fchmod_hi", raw(unix.SYS_FCHMOD, uintptr(fd), hiMode))
	report("fchmodat_suid", at("plain", suid, unix.SYS_FCHMODAT))
	report("fchmodat_sgid", at("plain", sgid, unix.SYS_FCHMODAT))
	report("fchmodat2_suid", at("plain", suid, unix.SYS_FCHMODAT2))
	report("openat_creat", openat("openat", unix.O_CREAT|unix.O_WRONLY, suid))
	report("openat_creat_hi", openat("openat_hi", unix.O_CREAT|unix.O_WRONLY, hiMode))
	report("openat_excl", openat("openat_excl", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, sgid))
	tmp := openatTmpfile(dirfd, p("tmpfile"))
	report("openat_tmpfile", tmp)
	report("mkdirat_sgid", at("mkdirat", sgid, unix.SYS_MKDIRAT))
	report("mkdirat_suid", at("mkdirat_u", suid, unix.SYS_MKDIRAT))
	report("mknodat_reg", at("mknodat", unix.S_IFREG|suid, unix.SYS_MKNODAT))
	// openat2 carries its mode in a struct the filter cannot read.
	how := unix.OpenHow{Flags: unix.O_CREAT | unix.O_WRONLY, Mode: suid}
	report("openat2_creat", closeFD(unix.Openat2(dirfd, "openat2", &how)))
	// File capabilities are the other way to plant privilege in a file:
	// setting them needs CAP_SETFCAP, which the program does not hold.
	report("setxattr_fcap", unix.Setxattr(plain, "security.capability", fcapV2(), 0))
	legacySetID(dir, suid, sgid, hiMode)

	// Controls: modes without set-id bits, and set-id bits in the mode of
	// an open that creates nothing (the kernel ignores the mode then).
	report("ctl_fchmod", raw(unix.SYS_FCHMOD, uintptr(fd), 0o750))
	report("ctl_openat_creat", openat("ctl_openat", unix.O_CREAT|unix.O_WRONLY, 0o644))
	report("ctl_openat_nocreat", openat("plain", unix.O_RDONLY, suid))
	report("ctl_mkdirat_sticky", at("ctl_sticky", unix.S_ISVTX|0o777, unix.SYS_MKDIRAT))
	report("ctl_fchmodat_sticky", at("ctl_sticky", unix.S_ISVTX|0o755, unix.SYS_FCHMODAT))
	var st unix.Stat_t
	if unix.Stat(plain, &st) == nil {
		say("plain_mode", fmt.Sprintf("%o", st.Mode&0o7777))
	}
}

func raw(nr, a, b uintptr) error {
	_, _, e := unix.Syscall(nr, a, b, 0)
	return errno(e)
}

// openatTmpfile creates an unnamed set-uid file with O_TMPFILE and, if that
// worked, gives it a name through /proc/self/fd so the host can see it.
func openatTmpfile(dirfd int, name string) error {
	b, _ := unix.BytePtrFromString(".")
	r, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(b)), uintptr(unix.O_TMPFILE|unix.O_WRONLY), suid, 0, 0)
	if e != 0 {
		return e
	}
	defer unix.Close(int(r))
	return unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", r), unix.AT_FDCWD, name, unix.AT_SYMLINK_FOLLOW)
}

// fcapV2 is a VFS_CAP_REVISION_2 xattr granting every capability,
// effective.
func fcapV2() []byte {
	b := make([]byte, 20)
	b[0], b[3] = 0x01, 0x02 // magic_etc = 0x02000001 (revision 2 | effective)
	for i := 4; i < 20; i++ {
		b[i] = 0xff
	}
	return b
}
