package cgroup

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDetect(t *testing.T) {
	tests := []struct {
		name    string
		host    func(*testing.T) *fakeHost
		version string
		want    Features
		parents []string // sandbox/ dirs that must exist afterwards
	}{
		{"v2", fakeV2, "v2", Features{Memory: true, MemorySwap: true, Pids: true, CPU: true, CPUAcct: true,
			Freeze: true, KillFile: true, MemoryPeak: true, PidsPeak: true, CloneIntoCgroup: true},
			[]string{"sys/fs/cgroup/sandbox"}},
		{"hybrid", fakeHybrid, "v1", Features{Memory: true, MemorySwap: true, Pids: true, CPU: true, CPUAcct: true,
			Freeze: true, KillFile: true, MemoryPeak: true, PidsPeak: true, CloneIntoCgroup: true, ThreadEntry: true, Leaf: true},
			[]string{"sys/fs/cgroup/memory/sandbox", "sys/fs/cgroup/pids/sandbox", "sys/fs/cgroup/cpu/sandbox",
				"sys/fs/cgroup/cpuacct/sandbox", "sys/fs/cgroup/freezer/sandbox", "sys/fs/cgroup/unified/sandbox"}},
		{"comounted", fakeComounted, "v1", Features{Memory: true, MemorySwap: true, Pids: true, CPU: true, CPUAcct: true,
			MemoryPeak: true, PidsPeak: true, ThreadEntry: true},
			[]string{"sys/fs/cgroup/memory/sandbox", "sys/fs/cgroup/pids/sandbox", "sys/fs/cgroup/cpu,cpuacct/sandbox"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.host(t)
			m, err := f.detect(0)
			noErr(t, err)
			if m.Version() != tt.version {
				t.Errorf("Version = %s, want %s", m.Version(), tt.version)
			}
			if got := m.Features(); got != tt.want {
				t.Errorf("Features:\n got  %+v\n want %+v", got, tt.want)
			}
			for _, p := range tt.parents {
				if !f.exists(p) {
					t.Errorf("parent %s not created", p)
				}
			}
			// The only writes allowed outside sandbox/ are none at all.
			for _, w := range f.writes("") {
				if !strings.Contains(w, "/sandbox/") {
					t.Errorf("wrote host cgroup file %s", w)
				}
			}
		})
	}
}

func TestDetectV2EnablesControllersInSandboxOnly(t *testing.T) {
	f := fakeV2(t)
	_, err := f.detect(0)
	noErr(t, err)
	sameStrings(t, "writes", f.writes(""), []string{"sys/fs/cgroup/sandbox/cgroup.subtree_control=+memory +pids +cpu"})
}

func TestDetectFailures(t *testing.T) {
	tests := []struct {
		name  string
		host  func(*testing.T) *fakeHost
		euid  int
		wants []string
	}{
		{"v2 root not delegating", func(t *testing.T) *fakeHost {
			f := fakeV2(t)
			f.write("sys/fs/cgroup/cgroup.subtree_control", "cpu\n")
			return f
		}, 0, []string{"does not delegate memory, pids", "cgroup.subtree_control"}},
		{"v2 without pids", func(t *testing.T) *fakeHost {
			f := fakeV2(t)
			f.write("sys/fs/cgroup/cgroup.controllers", "cpu memory io\n")
			return f
		}, 0, []string{"does not offer pids"}},
		{"v1 without pids", func(t *testing.T) *fakeHost {
			return newFakeHost(t, strings.ReplaceAll(miComounted, "rw,pids\n", "rw,devices\n"))
		}, 0, []string{"no pids hierarchy"}},
		{"rootless v2 without delegation", func(t *testing.T) *fakeHost {
			f := fakeV2(t)
			f.write("proc/self/cgroup", "0::/user.slice/user-1000.slice/session-2.scope\n")
			f.write("sys/fs/cgroup/user.slice/cgroup.subtree_control", "memory pids\n")
			f.write("sys/fs/cgroup/user.slice/user-1000.slice/cgroup.subtree_control", "memory\n")
			return f
		}, 1000, []string{"no writable cgroup delegating", "Delegate=yes", "chown"}},
		{"nothing mounted", func(t *testing.T) *fakeHost {
			return newFakeHost(t, "22 1 8:1 / / rw - ext4 /dev/root rw\n")
		}, 0, []string{"no cgroup or cgroup2 filesystem"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.host(t)
			m, err := f.detect(tt.euid)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("detect = %v, %v; want ErrUnavailable", m, err)
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if f.exists("sys/fs/cgroup/sandbox") && tt.name != "rootless v2 without delegation" {
				t.Errorf("sandbox/ created although detection failed")
			}
		})
	}
}

func TestDetectRootlessDelegatedV2(t *testing.T) {
	f := fakeV2(t)
	svc := "sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service"
	f.write("proc/self/cgroup", "0::/user.slice/user-1000.slice/user@1000.service/app.slice/term.scope\n")
	f.write("sys/fs/cgroup/user.slice/cgroup.subtree_control", "memory pids cpu\n")
	f.write(svc+"/cgroup.subtree_control", "memory pids cpu\n")
	f.write(svc+"/app.slice/cgroup.subtree_control", "memory pids cpu\n")
	f.write(svc+"/app.slice/term.scope/cgroup.procs", "4242\n")
	m, err := f.detect(1000)
	noErr(t, err)
	// Running as root in tests makes every directory writable, so the
	// deepest delegating ancestor wins: our scope's parent.
	if !f.exists(svc + "/app.slice/sandbox") {
		t.Fatalf("sandbox/ not created under app.slice; log %q", f.log)
	}
	g, err := m.Create("sbx-1-a", Limits{Pids: 3})
	noErr(t, err)
	if got := f.read(svc + "/app.slice/sandbox/sbx-1-a/pids.max"); got != "3" {
		t.Errorf("pids.max = %q", got)
	}
	noErr(t, g.Close())
}

func TestCreateWritesLimits(t *testing.T) {
	l := Limits{MemoryBytes: 32 << 20, Pids: 10, CPUs: 1.5}
	tests := []struct {
		name   string
		host   func(*testing.T) *fakeHost
		writes []string // in order, paths relative to the run's sandbox/ parents
	}{
		{"v2", fakeV2, []string{
			"sys/fs/cgroup/sandbox/r1/memory.max=33554432",
			"sys/fs/cgroup/sandbox/r1/memory.swap.max=0",
			"sys/fs/cgroup/sandbox/r1/pids.max=10",
			"sys/fs/cgroup/sandbox/r1/cpu.max=150000 100000",
		}},
		{"hybrid", fakeHybrid, []string{
			"sys/fs/cgroup/memory/sandbox/r1/memory.oom_control=0",
			"sys/fs/cgroup/memory/sandbox/r1/memory.limit_in_bytes=33554432",
			"sys/fs/cgroup/memory/sandbox/r1/memory.memsw.limit_in_bytes=33554432",
			"sys/fs/cgroup/pids/sandbox/r1/pids.max=10",
			"sys/fs/cgroup/cpu/sandbox/r1/cpu.cfs_period_us=100000",
			"sys/fs/cgroup/cpu/sandbox/r1/cpu.cfs_quota_us=150000",
		}},
		{"comounted", fakeComounted, []string{
			"sys/fs/cgroup/memory/sandbox/r1/memory.oom_control=0",
			"sys/fs/cgroup/memory/sandbox/r1/memory.limit_in_bytes=33554432",
			"sys/fs/cgroup/memory/sandbox/r1/memory.memsw.limit_in_bytes=33554432",
			"sys/fs/cgroup/pids/sandbox/r1/pids.max=10",
			"sys/fs/cgroup/cpu,cpuacct/sandbox/r1/cpu.cfs_period_us=100000",
			"sys/fs/cgroup/cpu,cpuacct/sandbox/r1/cpu.cfs_quota_us=150000",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.host(t)
			m, err := f.detect(0)
			noErr(t, err)
			f.log = nil
			g, err := m.Create("r1", l)
			noErr(t, err)
			sameStrings(t, "writes", f.writes("/r1/"), tt.writes)
			for _, w := range tt.writes {
				p, v, _ := strings.Cut(w, "=")
				if got := f.read(p); got != v {
					t.Errorf("%s = %q, want %q", p, got, v)
				}
			}
			if g.Name() != "r1" {
				t.Errorf("Name = %q", g.Name())
			}
			noErr(t, g.Close())
			for _, l := range f.log {
				if strings.HasPrefix(l, "mkdir ") && f.exists(strings.TrimPrefix(l, "mkdir ")) {
					t.Errorf("Close left %s", strings.TrimPrefix(l, "mkdir "))
				}
			}
			noErr(t, g.Close()) // idempotent
		})
	}
}

func TestV1MemoryOrder(t *testing.T) {
	tests := []struct {
		name      string
		cur       string // current memsw limit; "" = no swap accounting
		set       int64
		want      []string
		swapLimit bool
	}{
		{"fresh: limit first", memswMax, 64 << 20, []string{"memory.limit_in_bytes=67108864", "memory.memsw.limit_in_bytes=67108864"}, true},
		{"raise: memsw first", "1048576\n", 2 << 20, []string{"memory.memsw.limit_in_bytes=2097152", "memory.limit_in_bytes=2097152"}, true},
		{"lower: limit first", "4194304\n", 2 << 20, []string{"memory.limit_in_bytes=2097152", "memory.memsw.limit_in_bytes=2097152"}, true},
		{"no swapaccount", "", 2 << 20, []string{"memory.limit_in_bytes=2097152"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fakeHybrid(t)
			if tt.cur == "" {
				f.files["sys/fs/cgroup/memory"] = merge(v1Mem)
				delete(f.files["sys/fs/cgroup/memory"], "memory.memsw.limit_in_bytes")
			}
			m, err := f.detect(0)
			noErr(t, err)
			if tt.cur != "" {
				f.write("sys/fs/cgroup/memory/sandbox/memory.memsw.limit_in_bytes", tt.cur)
			}
			if got := m.Features().MemorySwap; got != tt.swapLimit {
				t.Errorf("MemorySwap = %v, want %v", got, tt.swapLimit)
			}
			f.log = nil
			noErr(t, m.SetBudget(Limits{MemoryBytes: tt.set}))
			var got []string
			for _, w := range f.writes("memory/sandbox/memory.") {
				got = append(got, strings.TrimPrefix(w, "sys/fs/cgroup/memory/sandbox/"))
			}
			sameStrings(t, "writes", got, tt.want)
		})
	}
}

func TestLimitsValidate(t *testing.T) {
	for _, l := range []Limits{{MemoryBytes: -1}, {Pids: -2}, {CPUs: -0.5}} {
		f := fakeV2(t)
		m, err := f.detect(0)
		noErr(t, err)
		if _, err := m.Create("bad", l); !errors.Is(err, ErrInvalid) {
			t.Errorf("Create(%+v) = %v, want ErrInvalid", l, err)
		}
		if f.exists("sys/fs/cgroup/sandbox/bad") {
			t.Errorf("Create(%+v) left a directory", l)
		}
	}
	if got := cpuQuota(0.001); got != 1000 {
		t.Errorf("cpuQuota(0.001) = %d, want the kernel minimum 1000", got)
	}
}

func TestValidName(t *testing.T) {
	for name, ok := range map[string]bool{
		"sbx-123-abc": true, "a": true, "": false, ".": false, "..": false, "a/b": false, ".hidden": false,
		"cgroup.procs": false, "memory.max": false, "tasks": false, strings.Repeat("x", 201): false, "x\ny": false,
	} {
		if err := validName(name); (err == nil) != ok {
			t.Errorf("validName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestCreateExistingNameRefused(t *testing.T) {
	f := fakeHybrid(t)
	m, err := f.detect(0)
	noErr(t, err)
	f.write("sys/fs/cgroup/pids/sandbox/taken/pids.max", "7")
	_, err = m.Create("taken", Limits{})
	if err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("Create over an existing cgroup = %v", err)
	}
	// Its own partial directories are gone; the pre-existing one is not ours.
	for _, h := range []string{"memory", "cpu", "cpuacct", "freezer", "unified"} {
		if f.exists("sys/fs/cgroup/" + h + "/sandbox/taken") {
			t.Errorf("partial Create left %s/sandbox/taken", h)
		}
	}
	if f.read("sys/fs/cgroup/pids/sandbox/taken/pids.max") != "7" {
		t.Errorf("partial Create touched a cgroup it did not create")
	}
}

func TestCloseAfterPartialCreate(t *testing.T) {
	for _, failOn := range []string{"cpu/sandbox/r2", "memory/sandbox/r2/memory.limit_in_bytes", "cpuacct/sandbox/r2"} {
		t.Run(failOn, func(t *testing.T) {
			f := fakeHybrid(t)
			m, err := f.detect(0)
			noErr(t, err)
			f.fail = func(op, rel string) error {
				if strings.HasSuffix(rel, failOn) {
					return fmt.Errorf("injected %s failure", op)
				}
				return nil
			}
			g, err := m.Create("r2", Limits{MemoryBytes: 1 << 20})
			if err == nil || !strings.Contains(err.Error(), "injected") {
				t.Fatalf("Create = %v, %v; want the injected error", g, err)
			}
			for _, h := range []string{"memory", "pids", "cpu", "cpuacct", "freezer", "unified"} {
				if f.exists("sys/fs/cgroup/" + h + "/sandbox/r2") {
					t.Errorf("failed Create left %s/sandbox/r2", h)
				}
				if !f.exists("sys/fs/cgroup/" + h + "/sandbox") {
					t.Errorf("parent %s/sandbox removed", h)
				}
			}
		})
	}
}

func TestStats(t *testing.T) {
	t.Run("v2", func(t *testing.T) {
		f := fakeV2(t)
		m, err := f.detect(0)
		noErr(t, err)
		g, err := m.Create("s", Limits{})
		noErr(t, err)
		d := "sys/fs/cgroup/sandbox/s/"
		f.write(d+"cpu.stat", "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\nnr_periods 0\n")
		f.write(d+"memory.peak", "33550336\n")
		f.write(d+"memory.events", "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n")
		f.write(d+"pids.peak", "5\n")
		f.write(d+"pids.events", "max 3\n")
		s, err := g.Stats()
		noErr(t, err)
		want := Stats{CPUUsage: 1500 * time.Millisecond, CPUUser: time.Second, CPUSystem: 500 * time.Millisecond, HasCPU: true,
			MemoryPeak: 33550336, HasMemoryPeak: true, OOMKills: 2, PidsPeak: 5, HasPidsPeak: true, PidsLimitHit: true}
		if s != want {
			t.Errorf("Stats:\n got  %+v\n want %+v", s, want)
		}
		if u, err := g.CPUUsage(); err != nil || u != 1500*time.Millisecond {
			t.Errorf("CPUUsage = %v, %v", u, err)
		}
		f.write(d+"cpu.stat", "usage_usec 2500000\nuser_usec 1000000\n")
		if u, _ := g.CPUUsage(); u != 2500*time.Millisecond {
			t.Errorf("CPUUsage after update = %v: the kept-open file is not re-read", u)
		}
		// Peak files absent (kernel < 5.19 / no pids.peak).
		for _, n := range []string{"memory.peak", "pids.peak", "pids.events"} {
			noErr(t, f.ops().rmdir(filepath.Join(f.root, d, n)))
		}
		s, err = g.Stats()
		noErr(t, err)
		if s.HasMemoryPeak || s.HasPidsPeak || s.PidsLimitHit || s.MemoryPeak != 0 {
			t.Errorf("Stats without peak files = %+v", s)
		}
		noErr(t, g.Close())
		if _, err := g.CPUUsage(); err == nil {
			t.Errorf("CPUUsage after Close succeeded")
		}
	})
	t.Run("v1", func(t *testing.T) {
		f := fakeHybrid(t)
		m, err := f.detect(0)
		noErr(t, err)
		g, err := m.Create("s", Limits{})
		noErr(t, err)
		c := "sys/fs/cgroup/cpuacct/sandbox/s/"
		f.write(c+"cpuacct.usage", "2000000000\n")
		f.write(c+"cpuacct.usage_user", "1500000000\n")
		f.write(c+"cpuacct.usage_sys", "400000000\n")
		f.write(c+"cpuacct.stat", "user 999\nsystem 999\n")
		mem := "sys/fs/cgroup/memory/sandbox/s/"
		f.write(mem+"memory.memsw.max_usage_in_bytes", "33554432\n")
		f.write(mem+"memory.max_usage_in_bytes", "30000000\n")
		f.write(mem+"memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
		f.write("sys/fs/cgroup/pids/sandbox/s/pids.events", "max 0\n")
		f.write("sys/fs/cgroup/pids/sandbox/s/pids.peak", "4\n")
		s, err := g.Stats()
		noErr(t, err)
		want := Stats{CPUUsage: 2 * time.Second, CPUUser: 1500 * time.Millisecond, CPUSystem: 400 * time.Millisecond, HasCPU: true,
			MemoryPeak: 33554432, HasMemoryPeak: true, OOMKills: 1, PidsPeak: 4, HasPidsPeak: true}
		if s != want {
			t.Errorf("Stats:\n got  %+v\n want %+v", s, want)
		}
		// Older kernels: no usage_user/usage_sys, ticks in cpuacct.stat;
		// no memsw (swapaccount=0).
		noErr(t, f.ops().rmdir(filepath.Join(f.root, c, "cpuacct.usage_user")))
		noErr(t, f.ops().rmdir(filepath.Join(f.root, mem, "memory.memsw.max_usage_in_bytes")))
		f.write(c+"cpuacct.stat", "user 150\nsystem 40\n")
		s, err = g.Stats()
		noErr(t, err)
		if s.CPUUser != 1500*time.Millisecond || s.CPUSystem != 400*time.Millisecond || s.MemoryPeak != 30000000 {
			t.Errorf("fallback Stats = %+v", s)
		}
		if u, err := g.CPUUsage(); err != nil || u != 2*time.Second {
			t.Errorf("CPUUsage = %v, %v", u, err)
		}
		noErr(t, g.Close())
	})
}

func TestSweep(t *testing.T) {
	for _, host := range []func(*testing.T) *fakeHost{fakeV2, fakeHybrid, fakeComounted} {
		f := host(t)
		m, err := f.detect(0)
		noErr(t, err)
		var keep []Group
		for _, n := range []string{"sbx-1-a", "sbx-1-b", "sbx-2-a", "sbx-1"} {
			g, err := m.Create(n, Limits{})
			noErr(t, err)
			keep = append(keep, g)
		}
		// A leftover present in only one hierarchy is still swept.
		if m.Version() == "v1" {
			noErr(t, f.ops().mkdir(filepath.Join(f.root, "sys/fs/cgroup/pids/sandbox/sbx-1-c")))
		}
		if _, err := m.Sweep(""); !errors.Is(err, ErrInvalid) {
			t.Errorf("Sweep(\"\") = %v, want ErrInvalid", err)
		}
		n, err := m.Sweep("sbx-1-")
		noErr(t, err)
		want := 2
		if m.Version() == "v1" {
			want = 3
		}
		if n != want {
			t.Errorf("%s: Sweep removed %d, want %d", m.Version(), n, want)
		}
		for _, l := range f.log {
			d, ok := strings.CutPrefix(l, "mkdir ")
			if !ok || strings.HasSuffix(d, "/sandbox") {
				continue
			}
			gone := strings.Contains(d, "sbx-1-")
			if f.exists(d) == gone {
				t.Errorf("after Sweep, %s exists=%v", d, !gone)
			}
		}
		for _, g := range keep {
			noErr(t, g.Close())
		}
	}
}

func TestParseMountinfoEscapes(t *testing.T) {
	ms := parseMountinfo([]byte(`40 31 0:37 / /sys/fs/cgroup/my\040dir rw - cgroup cgroup rw,xattr,name=systemd,cpu
41 31 0:38 /sub /mnt/u rw shared:1 - cgroup2 cgroup2 rw
42 31 0:39 / /proc rw - proc proc rw
bogus line
`))
	if len(ms) != 2 {
		t.Fatalf("got %d mounts: %+v", len(ms), ms)
	}
	if ms[0].point != "/sys/fs/cgroup/my dir" || len(ms[0].ctrls) != 1 || ms[0].ctrls[0] != "cpu" {
		t.Errorf("v1 mount = %+v", ms[0])
	}
	if ms[1].fstype != "cgroup2" || ms[1].root != "/sub" || ms[1].point != "/mnt/u" {
		t.Errorf("v2 mount = %+v", ms[1])
	}
}
