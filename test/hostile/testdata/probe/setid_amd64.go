package main

import (
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// legacySetID tries the calls only amd64 has (arm64 has the *at forms
// only).
func legacySetID(dir string, suid, sgid, hiMode uintptr) {
	path := func(name string) uintptr {
		b, _ := unix.BytePtrFromString(filepath.Join(dir, name))
		return uintptr(unsafe.Pointer(b))
	}
	report("chmod_suid", raw(unix.SYS_CHMOD, path("plain"), suid))
	report("chmod_sgid", raw(unix.SYS_CHMOD, path("plain"), sgid))
	report("chmod_hi", raw(unix.SYS_CHMOD, path("plain"), hiMode))
	r, _, e := unix.Syscall(unix.SYS_OPEN, path("open"), uintptr(unix.O_CREAT|unix.O_WRONLY), suid)
	report("open_creat", closeRaw(r, e))
	r, _, e = unix.Syscall(unix.SYS_CREAT, path("creat"), sgid, 0)
	report("creat_sgid", closeRaw(r, e))
	report("mkdir_sgid", raw(unix.SYS_MKDIR, path("mkdir"), sgid))
	_, _, e = unix.Syscall(unix.SYS_MKNOD, path("mknod"), unix.S_IFREG|suid, 0)
	report("mknod_reg", errno(e))
	report("ctl_chmod", raw(unix.SYS_CHMOD, path("plain"), 0o755))
}
