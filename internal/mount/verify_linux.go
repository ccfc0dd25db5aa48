package mount

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// VerifyCwd changes the working directory to dir, resolved inside the
// current root, and checks that the kernel agrees it is inside: getcwd must
// return a reachable path naming the same inode. Call it after Apply.
func VerifyCwd(dir string) error {
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return step("cwd", err)
	}
	defer unix.Close(root)
	fd, err := openat2(root, dir, unix.O_PATH|unix.O_DIRECTORY, inRoot)
	if err != nil {
		return step("cwd", pathErr("open", dir, err))
	}
	defer unix.Close(fd)
	if err := unix.Fchdir(fd); err != nil {
		return step("cwd", pathErr("chdir", dir, err))
	}
	wd, err := unix.Getwd() // ENOENT when the kernel says "(unreachable)"
	if err != nil {
		return step("cwd", pathErr("getcwd", dir, err))
	}
	again, err := openat2(root, wd, unix.O_PATH|unix.O_DIRECTORY, unix.RESOLVE_IN_ROOT|unix.RESOLVE_NO_SYMLINKS)
	if err != nil {
		return step("cwd", pathErr("open", wd, err))
	}
	defer unix.Close(again)
	var a, b unix.Stat_t
	if err := unix.Fstat(fd, &a); err != nil {
		return step("cwd", err)
	}
	if err := unix.Fstat(again, &b); err != nil {
		return step("cwd", err)
	}
	if a.Dev != b.Dev || a.Ino != b.Ino {
		return step("cwd", fmt.Errorf("working directory %s is not %s inside the root", wd, dir))
	}
	return nil
}

// Check reports whether the running kernel has the syscalls Apply uses
// (openat2, open_tree, move_mount, mount_setattr), for preflight.
func Check() error {
	fd, err := openat2(unix.AT_FDCWD, "/", unix.O_PATH, unix.RESOLVE_NO_MAGICLINKS)
	if err != nil {
		return fmt.Errorf("%w: openat2 (Linux 5.6): %v", ErrUnsupported, err)
	}
	defer unix.Close(fd)
	// Invalid calls: ENOSYS means missing, anything else means present.
	if err := unix.MountSetattr(-1, "", unix.AT_EMPTY_PATH, &unix.MountAttr{}); err == unix.ENOSYS {
		return fmt.Errorf("%w: mount_setattr (Linux 5.12) missing", ErrUnsupported)
	}
	if _, err := unix.OpenTree(-1, "", unix.AT_EMPTY_PATH); err == unix.ENOSYS {
		return fmt.Errorf("%w: open_tree (Linux 5.2) missing", ErrUnsupported)
	}
	return nil
}
