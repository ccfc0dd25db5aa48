//go:build linux

package hostile

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kb-labs/sandbox/internal/cgroup"
	"github.com/kb-labs/sandbox/internal/mount"
)

// hostDetailsScript prints what a program learns of its host from its own
// cgroup and mount tables, and from pid 1's (the reaper, which stays in the
// supervisor's cgroups), one section each.
const hostDetailsScript = `cat /proc/self/cgroup; echo @@; cat /proc/1/cgroup /proc/1/task/1/cgroup; echo @@; cat /proc/self/mountinfo`

// hostDetailCases read /proc/self/cgroup and /proc/self/mountinfo inside a
// run: neither may name the supervisor's pid or cgroup, the run's cgroup, or
// a host path the run was not given (RATIONALE.md, "What a run can see of
// its host").
func hostDetailCases() []hcase {
	return []hcase{
		{name: "cgroup_and_mounts", fn: func(c *cctx) error {
			// No host directory at all: /hostile would show its host path as
			// the root of its bind, which is the kernel's and documented.
			c.cfg.Permissions.Filesystem.ReadOnly = nil
			o := c.run("sh", "-c", hostDetailsScript)
			if err := ok(o); err != nil {
				return err
			}
			self, pid1, mounts := hostDetailSections(o)
			errs := []error{cgroupRooted("/proc/self/cgroup", self, o.res.Isolation.Cgroup),
				noHostNames("/proc/1/cgroup", pid1), noHostNames("/proc/self/mountinfo", mounts)}
			for _, l := range mounts {
				errs = append(errs, neutralMount(l, ""))
			}
			return all(errs...)
		}},
		{name: "host_workdir", fn: func(c *cctx) error {
			c.cfg.Permissions.Filesystem.ReadOnly = nil
			wd := c.workdir()
			o := c.run("sh", "-c", hostDetailsScript)
			if err := ok(o); err != nil {
				return err
			}
			self, pid1, mounts := hostDetailSections(o)
			errs := []error{cgroupRooted("/proc/self/cgroup", self, o.res.Isolation.Cgroup),
				noHostNames("/proc/1/cgroup", pid1), noHostNames("/proc/self/mountinfo", mounts)}
			for _, l := range append(self, pid1...) {
				if strings.Contains(l, wd) {
					errs = append(errs, fmt.Errorf("HOST DETAIL: a cgroup line names the run's directory %s: %q", wd, l))
				}
			}
			// The workdir's bind shows its path within the host filesystem
			// as its root (field 4): the kernel's, and the one thing a host
			// directory given to the run is expected to show.
			for _, l := range mounts {
				errs = append(errs, neutralMount(l, wd))
			}
			return all(errs...)
		}},
	}
}

func TestHostDetails(t *testing.T) { runCases(t, hostDetailCases()) }

// hostDetailSections splits the script's output into its three parts.
func hostDetailSections(o *outcome) (self, pid1, mounts []string) {
	parts := strings.SplitN(string(o.res.Stdout), "@@\n", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	lines := func(s string) []string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			if l != "" {
				out = append(out, l)
			}
		}
		return out
	}
	return lines(parts[0]), lines(parts[1]), lines(parts[2])
}

// hostNames are what a run must not see, computed on the host side: the
// supervisor's pid (this process: the library runs in it), the cgroups this
// process is in, and the parent of every run's cgroup.
func hostNames() (pid *regexp.Regexp, paths []string) {
	pid = regexp.MustCompile(`(^|[^0-9])` + strconv.Itoa(os.Getpid()) + `([^0-9]|$)`)
	paths = []string{"/" + cgroup.Parent + "/"}
	b, _ := os.ReadFile("/proc/self/cgroup")
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) == 3 && parts[2] != "/" && parts[2] != "" {
			paths = append(paths, parts[2])
		}
	}
	return pid, paths
}

// noHostNames fails for a line naming the supervisor's pid or a host cgroup
// path. For mountinfo only the path fields are searched for the pid: mount
// ids and sizes are numbers too.
func noHostNames(file string, lines []string) error {
	pid, paths := hostNames()
	var errs []error
	for _, l := range lines {
		text := l
		if strings.HasSuffix(file, "mountinfo") {
			f := strings.Fields(l)
			if len(f) < 5 {
				continue
			}
			text = f[3] + " " + f[4]
		}
		if pid.MatchString(text) {
			errs = append(errs, fmt.Errorf("HOST DETAIL: %s names the supervisor's pid %d: %q", file, os.Getpid(), l))
		}
		for _, p := range paths {
			if strings.Contains(l, p) {
				errs = append(errs, fmt.Errorf("HOST DETAIL: %s names the host cgroup path %s: %q", file, p, l))
			}
		}
	}
	return all(errs...)
}

// cgroupRooted requires every line of the program's own cgroup file to show
// "/": its cgroup namespace is rooted at its cgroups, so no path names the
// host's. Pure cgroup v2 is the documented exception: the program is moved
// into its cgroup after its exec, below a namespace rooted at the init's
// cgroup; there only the host names are checked.
func cgroupRooted(file string, lines []string, backend string) error {
	if len(lines) == 0 {
		return fmt.Errorf("%s: empty", file)
	}
	if backend == "v2" {
		return noHostNames(file, lines)
	}
	var errs []error
	for _, l := range lines {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 || parts[2] != "/" {
			errs = append(errs, fmt.Errorf("HOST DETAIL: %s shows a path other than /: %q", file, l))
		}
	}
	return all(append(errs, noHostNames(file, lines))...)
}

// neutralMount checks one mountinfo line: a bind's root (field 4) is where
// it is mounted (/usr at /usr, /sys at /proc/sys) or a device node masking
// a /proc entry, never some other host path; tmpfs and proc mounts have
// neutral sources. allowedRoot, when set, is a host directory the run was
// given: its bind may show it as root, and only at /workspace.
func neutralMount(line, allowedRoot string) error {
	pre, post, found := strings.Cut(line, " - ")
	f, g := strings.Fields(pre), strings.Fields(post)
	if !found || len(f) < 5 || len(g) < 2 {
		return fmt.Errorf("mountinfo: malformed line %q", line)
	}
	root, point, fstype, source := f[3], f[4], g[0], g[1]
	switch {
	case allowedRoot != "" && root == allowedRoot:
		if point != mount.Workspace {
			return fmt.Errorf("HOST DETAIL: the run's directory is mounted at %s, not %s: %q", point, mount.Workspace, line)
		}
	case root == "/", strings.HasSuffix(point, root):
	case fstype == "devtmpfs" && filepath.Dir(root) == "/" && strings.HasPrefix(point, "/proc/"):
	default:
		return fmt.Errorf("HOST DETAIL: mount at %s shows the host path %s as its root: %q", point, root, line)
	}
	if allowedRoot != "" && strings.Contains(point+" "+source, allowedRoot) {
		return fmt.Errorf("HOST DETAIL: mountinfo names the run's directory %s: %q", allowedRoot, line)
	}
	if (fstype == "tmpfs" || fstype == "proc") && strings.HasPrefix(source, "/") {
		return fmt.Errorf("HOST DETAIL: %s mount at %s has a host path as its source: %q", fstype, point, line)
	}
	return nil
}
