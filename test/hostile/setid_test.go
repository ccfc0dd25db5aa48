//go:build linux

package hostile

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// setIDAttempts are the probe's attempts to create or chmod a file with a
// set-uid or set-gid bit, and the answer each must get: EPERM from the
// filter, ENOSYS for openat2 (whose mode the filter cannot see), EPERM from
// the kernel for file capabilities.
var setIDAttempts = map[string]string{
	"fchmod_suid": eperm, "fchmod_sgid": eperm, "fchmod_hi": eperm,
	"fchmodat_suid": eperm, "fchmodat_sgid": eperm, "fchmodat2_suid": eperm,
	"openat_creat": eperm, "openat_creat_hi": eperm, "openat_excl": eperm, "openat_tmpfile": eperm,
	"mkdirat_sgid": eperm, "mkdirat_suid": eperm, "mknodat_reg": eperm,
	"openat2_creat": "ENOSYS", "setxattr_fcap": eperm,
	"ctl_fchmod": "ok", "ctl_openat_creat": "ok", "ctl_openat_nocreat": "ok",
	"ctl_mkdirat_sticky": "ok", "ctl_fchmodat_sticky": "ok",
}

// legacySetIDAttempts exist on amd64 only.
var legacySetIDAttempts = map[string]string{
	"chmod_suid": eperm, "chmod_sgid": eperm, "chmod_hi": eperm, "open_creat": eperm,
	"creat_sgid": eperm, "mkdir_sgid": eperm, "mknod_reg": eperm, "ctl_chmod": "ok",
}

// TestSetIDFiles: a program can never leave a set-uid or set-gid file (or
// one with file capabilities) in a host directory, where a host user could
// later run it. The host checks the directory itself after the run.
func TestSetIDFiles(t *testing.T) {
	runCases(t, setIDCases())
}

func setIDCases() []hcase {
	return []hcase{{name: "setid_in_host_workdir", seccompOnly: true, fn: func(c *cctx) error {
		wd := c.workdir()
		o := c.run("probe", "setid", "/workspace")
		errs := []error{ok(o)}
		want := maps.Clone(setIDAttempts)
		if runtime.GOARCH == "amd64" {
			for k, v := range legacySetIDAttempts {
				want[k] = v
			}
		}
		for k, v := range want {
			errs = append(errs, kvIn(o, k, v))
		}
		for _, call := range []string{"fchmod", "fchmodat", "openat", "mkdirat"} {
			errs = append(errs, violated(o, call))
		}
		if runtime.GOARCH == "amd64" {
			errs = append(errs, violated(o, "chmod"))
		}
		errs = append(errs, hostSetIDFree(wd))
		return all(errs...)
	}}}
}

// hostSetIDFree walks dir on the host: no entry may carry a set-id bit or a
// security.capability attribute, and the probe's control files must be
// there (so the walk saw the run's files at all).
func hostSetIDFree(dir string) error {
	var errs []error
	seen := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		seen++
		if fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
			errs = append(errs, fmt.Errorf("HOST EFFECT: %s is %v on the host", path, fi.Mode()))
		}
		if _, err := unix.Lgetxattr(path, "security.capability", make([]byte, 64)); err == nil {
			errs = append(errs, fmt.Errorf("HOST EFFECT: %s carries file capabilities on the host", path))
		} else if !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.ENOTSUP) {
			errs = append(errs, fmt.Errorf("getxattr %s: %v", path, err))
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	for _, name := range []string{"plain", "ctl_openat", "ctl_sticky"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
			errs = append(errs, fmt.Errorf("control %s missing on the host: %v", name, err))
		}
	}
	if len(errs) > 0 {
		var names []string
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if fi, err := e.Info(); err == nil {
				names = append(names, fmt.Sprintf("%s:%v", e.Name(), fi.Mode()))
			}
		}
		errs = append(errs, fmt.Errorf("workdir holds %d entries: %s", seen, strings.Join(names, " ")))
	}
	return errors.Join(errs...)
}
