package cgroup

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeHost is a plain directory tree shaped like a host's cgroupfs: tests of
// detection, limits, stats and sweep run unprivileged against it.
type fakeHost struct {
	t    *testing.T
	root string
	// files are the control files mkdir creates in a new child of each mount
	// point (relative to root), as the kernel would.
	files map[string]map[string]string
	log   []string // "mkdir rel", "write rel=value", "rmdir rel" in order
	fail  func(op, rel string) error
}

func newFakeHost(t *testing.T, mountinfo string) *fakeHost {
	f := &fakeHost{t: t, root: t.TempDir(), files: map[string]map[string]string{}}
	f.write("proc/self/mountinfo", mountinfo)
	return f
}

func (f *fakeHost) write(rel, content string) {
	f.t.Helper()
	p := filepath.Join(f.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeHost) read(rel string) string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.root, rel))
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

func (f *fakeHost) exists(rel string) bool { return exists(filepath.Join(f.root, rel)) }

// mountPoint declares a hierarchy at rel with the control files of its
// root and of every child mkdir creates.
func (f *fakeHost) mountPoint(rel string, rootFiles, childFiles map[string]string) {
	if err := os.MkdirAll(filepath.Join(f.root, rel), 0o755); err != nil {
		f.t.Fatal(err)
	}
	for n, c := range rootFiles {
		f.write(filepath.Join(rel, n), c)
	}
	f.files[rel] = childFiles
}

func (f *fakeHost) rel(p string) string {
	r, _ := filepath.Rel(f.root, p)
	return r
}

func (f *fakeHost) ops() fsops {
	return fsops{
		mkdir: func(p string) error {
			if f.fail != nil {
				if err := f.fail("mkdir", f.rel(p)); err != nil {
					return err
				}
			}
			if err := os.Mkdir(p, 0o755); err != nil {
				return err
			}
			f.log = append(f.log, "mkdir "+f.rel(p))
			best := ""
			for mp := range f.files {
				if strings.HasPrefix(f.rel(p), mp+"/") && len(mp) > len(best) {
					best = mp
				}
			}
			for n, c := range f.files[best] {
				if err := os.WriteFile(filepath.Join(p, n), []byte(c), 0o644); err != nil {
					return err
				}
			}
			return nil
		},
		rmdir: func(p string) error {
			if _, err := os.Stat(p); err != nil {
				return err
			}
			f.log = append(f.log, "rmdir "+f.rel(p))
			return os.RemoveAll(p)
		},
		write: func(p, data string) error {
			if f.fail != nil {
				if err := f.fail("write", f.rel(p)); err != nil {
					return err
				}
			}
			if err := writeCtl(p, data); err != nil {
				return err
			}
			f.log = append(f.log, "write "+f.rel(p)+"="+data)
			return nil
		},
	}
}

// writes returns the logged writes whose path contains sub, in order.
func (f *fakeHost) writes(sub string) []string {
	var out []string
	for _, l := range f.log {
		if strings.HasPrefix(l, "write ") && strings.Contains(l, sub) {
			out = append(out, strings.TrimPrefix(l, "write "))
		}
	}
	return out
}

func (f *fakeHost) detect(euid int) (Manager, error) { return detect(f.root, euid, f.ops()) }

const (
	miV2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
	// miHybrid is this project's CI host: split v1 hierarchies plus an
	// empty cgroup2 at unified.
	miHybrid = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	// miComounted is a classic systemd v1 host: cpu,cpuacct share a
	// hierarchy; no cgroup2 and no freezer.
	miComounted = `25 18 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
29 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,cpu,cpuacct
30 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,pids
`
	memswMax = "9223372036854771712\n"
)

var (
	v2Child = map[string]string{
		"cgroup.procs": "", "cgroup.controllers": "memory pids cpu", "cgroup.subtree_control": "",
		"cgroup.kill": "", "cgroup.freeze": "0", "cgroup.events": "populated 0\nfrozen 0\n",
		"memory.max": "max\n", "memory.swap.max": "max\n", "memory.peak": "0\n", "memory.events": "oom_kill 0\n",
		"pids.max": "max\n", "pids.peak": "0\n", "pids.events": "max 0\n", "cpu.max": "max 100000\n",
		"cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
	}
	v1Mem = map[string]string{
		"cgroup.procs": "", "tasks": "", "memory.limit_in_bytes": memswMax, "memory.memsw.limit_in_bytes": memswMax,
		"memory.max_usage_in_bytes": "0\n", "memory.memsw.max_usage_in_bytes": "0\n", "memory.use_hierarchy": "1\n",
		"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
	}
	v1Pids    = map[string]string{"cgroup.procs": "", "tasks": "", "pids.max": "max\n", "pids.peak": "0\n", "pids.events": "max 0\n"}
	v1CPU     = map[string]string{"cgroup.procs": "", "tasks": "", "cpu.cfs_period_us": "100000\n", "cpu.cfs_quota_us": "-1\n"}
	v1CPUAcct = map[string]string{"cgroup.procs": "", "tasks": "", "cpuacct.usage": "0\n", "cpuacct.usage_user": "0\n",
		"cpuacct.usage_sys": "0\n", "cpuacct.stat": "user 0\nsystem 0\n"}
	v1Freezer = map[string]string{"cgroup.procs": "", "tasks": "", "freezer.state": "THAWED\n"}
	v2Leaf    = map[string]string{"cgroup.procs": "", "cgroup.kill": "", "cgroup.events": "populated 0\n", "cpu.stat": "usage_usec 0\n"}
)

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func fakeV2(t *testing.T) *fakeHost {
	f := newFakeHost(t, miV2)
	f.mountPoint("sys/fs/cgroup", map[string]string{
		"cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n", "cgroup.subtree_control": "cpu memory pids\n",
		"cgroup.procs": "1\n",
	}, v2Child)
	return f
}

func fakeHybrid(t *testing.T) *fakeHost {
	f := newFakeHost(t, miHybrid)
	f.mountPoint("sys/fs/cgroup/memory", map[string]string{"memory.use_hierarchy": "1\n"}, v1Mem)
	f.mountPoint("sys/fs/cgroup/pids", nil, v1Pids)
	f.mountPoint("sys/fs/cgroup/cpu", nil, v1CPU)
	f.mountPoint("sys/fs/cgroup/cpuacct", nil, v1CPUAcct)
	f.mountPoint("sys/fs/cgroup/freezer", nil, v1Freezer)
	f.mountPoint("sys/fs/cgroup/unified", map[string]string{"cgroup.controllers": "", "cgroup.subtree_control": ""}, v2Leaf)
	return f
}

func fakeComounted(t *testing.T) *fakeHost {
	f := newFakeHost(t, miComounted)
	f.mountPoint("sys/fs/cgroup/memory", map[string]string{"memory.use_hierarchy": "0\n"}, v1Mem)
	f.mountPoint("sys/fs/cgroup/pids", nil, v1Pids)
	f.mountPoint("sys/fs/cgroup/cpu,cpuacct", nil, merge(v1CPU, v1CPUAcct))
	return f
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func sameStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got  %q\n want %q", what, got, want)
	}
}
