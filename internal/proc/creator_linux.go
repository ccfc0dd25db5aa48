package proc

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// asCreator runs start (which clones the init into its new user namespace)
// with the calling thread's real and effective ids set to the sandbox root's
// host id, and restores them after.
//
// The kernel charges several per-user budgets of a user namespace to the
// namespace's creator in the parent namespace: the inotify instances and
// watches (fs.inotify.max_user_instances, 128 per user by default) are
// counted at every level of the namespace chain, and at the top level
// against the owner's uid. Created by host root, every run's inotify
// instances count against root's own budget, and a handful of runs would
// leave root none. Owned by the sandbox's root id, a run's instances count
// against that id (the per-namespace limit of the init bounds each run).
//
// Only the credentials of this one thread change, and the saved uid stays 0:
// the thread keeps its permitted capabilities (the kernel clears only the
// effective set when the effective uid leaves 0), raises them again for
// the parent's half of the start (writing the id maps needs CAP_SETUID and
// CAP_SETGID in this namespace, CLONE_INTO_CGROUP write access to the
// cgroup), and no process of the sandbox's ids may trace it (ptrace needs
// all three uids to match). It must run on the spawner thread: a locked
// thread, which the Go runtime never clones new threads from.
func asCreator(uid, gid int, start func() error) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var caps [2]unix.CapUserData
	if err := unix.Capget(&hdr, &caps[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	dumpable, _ := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	restore := func() error {
		// Effective uid back to 0: the kernel copies permitted to effective.
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, 0, 0, 0); e != 0 {
			return fmt.Errorf("setresuid back to root: %w", e)
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, 0, 0, 0); e != 0 {
			return fmt.Errorf("setresgid back to root: %w", e)
		}
		// An effective-uid change makes the process non-dumpable.
		if dumpable == 1 {
			unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0)
		}
		return nil
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), 0); e != 0 {
		return fmt.Errorf("setresgid %d: %w", gid, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), 0); e != 0 {
		err := fmt.Errorf("setresuid %d: %w", uid, e)
		if rerr := restore(); rerr != nil {
			panic("sandbox: cannot restore the spawner thread's credentials: " + rerr.Error())
		}
		return err
	}
	if dumpable == 1 {
		unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0)
	}
	raised := caps
	raised[0].Effective, raised[1].Effective = caps[0].Permitted, caps[1].Permitted
	err := unix.Capset(&hdr, &raised[0])
	if err == nil {
		err = start()
	} else {
		err = fmt.Errorf("capset: %w", err)
	}
	if rerr := restore(); rerr != nil {
		// This thread starts every init; with wrong credentials it must
		// not go on.
		panic("sandbox: cannot restore the spawner thread's credentials: " + rerr.Error())
	}
	return err
}
