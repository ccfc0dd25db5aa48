package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Tests that check rootless behaviour run a copy of their test binary as an
// ordinary user: a uid with no passwd entry (UnusedID), so nothing on the
// host is changed, started through exec.Cmd with a syscall.Credential.

func init() {
	Register("rootless", probeRootless)
}

// probeRootless: can an ordinary user on this host create user namespaces?
func probeRootless() error {
	read := func(p string) (string, bool) {
		b, err := os.ReadFile(p)
		return strings.TrimSpace(string(b)), err == nil
	}
	if v, ok := read("/proc/sys/kernel/unprivileged_userns_clone"); ok && v != "1" {
		return errors.New("kernel.unprivileged_userns_clone is " + v)
	}
	if v, ok := read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"); ok && v != "0" {
		return errors.New("AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=" + v + ")")
	}
	if v, ok := read("/proc/sys/user/max_user_namespaces"); !ok || v == "0" {
		return errors.New("user.max_user_namespaces is 0 or unreadable")
	}
	if unshare, err := exec.LookPath("unshare"); err == nil && os.Geteuid() == 0 {
		// Attempt it as nobody (an LSM may refuse what the sysctls allow).
		// The user switch must come first: a namespace made as root and
		// entered by setuid would have no mapping for nobody.
		cmd := exec.Command(unshare, "--user", "--map-root-user", "/bin/true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("an unprivileged user cannot create a user namespace: %v: %s", err, out)
		}
	}
	return nil
}

// UnusedID returns a uid, usable as gid too, that names no account or group
// and owns no process: an ordinary user that exists only for the test.
func UnusedID() (int, error) {
	passwd, _ := os.ReadFile("/etc/passwd")
	group, _ := os.ReadFile("/etc/group")
	procs, _ := filepath.Glob("/proc/[0-9]*/status")
	used := map[int]bool{}
	for _, f := range procs {
		b, _ := os.ReadFile(f)
		for _, l := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(l, "Uid:"); ok {
				for _, u := range strings.Fields(rest) {
					n, _ := strconv.Atoi(u)
					used[n] = true
				}
			}
		}
	}
	taken := func(db []byte, id int) bool {
		return bytes.Contains(db, []byte(":"+strconv.Itoa(id)+":"))
	}
	for id := 61000 + os.Getpid()%500; id < 62000; id++ {
		if !used[id] && !taken(passwd, id) && !taken(group, id) {
			return id, nil
		}
	}
	return 0, errors.New("no unused uid in 61000-61999")
}

// ProcessesOf lists the pids of live processes with uid among their ids.
func ProcessesOf(uid int) []int {
	procs, _ := filepath.Glob("/proc/[0-9]*/status")
	var out []int
	for _, f := range procs {
		b, _ := os.ReadFile(f)
		for _, l := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(l, "Uid:"); ok {
				for _, u := range strings.Fields(rest) {
					if u == strconv.Itoa(uid) {
						pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
						out = append(out, pid)
						break
					}
				}
			}
		}
	}
	return out
}

// CopyFile copies src to a new file dst with mode (an ordinary user cannot
// execute a test binary under root's 0700 temporary directories).
func CopyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
