//go:build linux

package hostile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// secretCases try to read what the host holds: environment, inherited
// descriptors, files, /proc, the init's state.
func secretCases() []hcase {
	return []hcase{
		{name: "host_environment", fn: func(c *cctx) error {
			o := c.run("probe", "env")
			errs := []error{ok(o), notContains(o, secretEnvValue),
				kvIn(o, "proc1_environ", "EACCES", "EPERM")}
			if strings.Contains(string(o.res.Stdout), secretEnvName) {
				errs = append(errs, fmt.Errorf("HOST EFFECT: host variable %s visible inside", secretEnvName))
			}
			return all(errs...)
		}},
		{name: "inherited_host_fd", fn: func(c *cctx) error {
			// host.leakedFD is open without O_CLOEXEC in this process.
			o := c.run("probe", "fdscan")
			errs := []error{ok(o), kvIn(o, "fds", ""), notContains(o, host.secretVal)}
			return all(errs...)
		}},
		{name: "credentials_status", fn: func(c *cctx) error {
			o := c.run("probe", "status")
			errs := []error{ok(o)}
			for k, v := range map[string]string{
				"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapInh": "0000000000000000",
				"CapBnd": "0000000000000000", "CapAmb": "0000000000000000",
				"NoNewPrivs": "1", "Seccomp": "2", "Groups": "", "uid": "1000 1000",
			} {
				errs = append(errs, kvIn(o, k, v))
			}
			return all(errs...)
		}},
		{name: "host_secret_files", fn: func(c *cctx) error {
			o := c.run("probe", "read", host.secretFile, "/proc/self/root"+host.secretFile,
				"/proc/1/root"+host.secretFile, "/etc/shadow", "/root/.bash_history", "/etc/passwd", "/etc/group")
			errs := []error{ok(o), notContains(o, host.secretVal)}
			for i := 0; i < 5; i++ {
				errs = append(errs, kvIn(o, fmt.Sprintf("read%d", i), "ENOENT", "EACCES"))
			}
			// passwd and group are synthetic: the sandbox user, no host groups.
			errs = append(errs, kvIn(o, "read5", "ok"), kvIn(o, "read6", "ok"))
			if hostPasswd, _ := os.ReadFile("/etc/passwd"); len(hostPasswd) > 0 {
				for _, l := range strings.Split(string(hostPasswd), "\n") {
					name, _, _ := strings.Cut(l, ":")
					if name != "" && name != "root" && name != "nobody" && strings.Contains(o.kv["data5"], name+":") {
						errs = append(errs, fmt.Errorf("HOST EFFECT: host user %s listed in the sandbox passwd", name))
					}
				}
			}
			return all(errs...)
		}},
		{name: "proc_masked_kcore_kallsyms", fn: func(c *cctx) error {
			paths := []string{"/proc/kcore", "/proc/kallsyms", "/proc/kmsg", "/proc/keys", "/proc/sched_debug",
				"/proc/timer_list", "/proc/kpageflags", "/proc/iomem", "/proc/modules", "/proc/vmallocinfo", "/proc/cmdline"}
			o := c.run(append([]string{"probe", "read"}, paths...)...)
			errs := []error{ok(o)}
			for i, p := range paths {
				key := fmt.Sprintf("read%d", i)
				if o.kv[key] == "ok" && o.kv[fmt.Sprintf("data%d", i)] != `""` {
					errs = append(errs, fmt.Errorf("%s readable: %.80s", p, o.kv[fmt.Sprintf("data%d", i)]))
				}
				if _, seen := o.kv[key]; !seen {
					errs = append(errs, fmt.Errorf("%s: not reported", p))
				}
			}
			return all(errs...)
		}},
		{name: "proc_sys_writes", fn: func(c *cctx) error {
			watched := []string{"/proc/sys/kernel/core_pattern", "/proc/sys/user/max_user_namespaces",
				"/proc/sys/vm/drop_caches", "/proc/sys/kernel/hostname", "/proc/sys/fs/inotify/max_user_instances"}
			before := readAll(watched)
			o := c.run(append([]string{"probe", "write"}, watched...)...)
			errs := []error{ok(o)}
			for i := range watched {
				errs = append(errs, kvIn(o, fmt.Sprintf("write%d", i), "EROFS", "EACCES", "EPERM"))
			}
			after := readAll(watched)
			for _, p := range watched {
				if before[p] != after[p] {
					errs = append(errs, fmt.Errorf("HOST EFFECT: host %s changed from %q to %q", p, before[p], after[p]))
				}
			}
			return all(errs...)
		}},
		{name: "proc_sysrq_trigger_masked", fn: func(c *cctx) error {
			// Masked by /dev/null: writes go nowhere.
			// (Absent on hosts without CONFIG_MAGIC_SYSRQ.)
			o := c.run("sh", "-c", `if [ -e /proc/sysrq-trigger ]; then echo dev=$(stat -L -c %t:%T /proc/sysrq-trigger); else echo dev=absent; fi`)
			return all(ok(o), kvIn(o, "dev", "1:3", "absent"))
		}},
		{name: "cgroup_files", fn: func(c *cctx) error {
			o := c.run("sh", "-c", `echo mounts=$(grep -c " - cgroup" /proc/self/mountinfo); grep cgroup /proc/self/mountinfo >&2
echo 1 > /sys/fs/cgroup/pids/pids.max 2>/dev/null; echo pids=$?
echo 1 > /sys/fs/cgroup/unified/cgroup.kill 2>/dev/null; echo kill=$?
mkdir /sys/fs/cgroup/hostile 2>/dev/null; echo mkdir=$?
echo cg=$(cat /proc/self/cgroup | tr '\n' ' ')`)
			errs := []error{ok(o), kvIn(o, "mounts", "0"), kvIn(o, "pids", "1", "2"), kvIn(o, "kill", "1", "2"),
				kvIn(o, "mkdir", "1")}
			if _, err := os.Stat("/sys/fs/cgroup/hostile"); err == nil {
				errs = append(errs, fmt.Errorf("HOST EFFECT: /sys/fs/cgroup/hostile exists on the host"))
			}
			return all(errs...)
		}},
		{name: "proc1_exe_and_memory", fn: func(c *cctx) error {
			o := c.run("probe", "write", "/proc/1/exe", "/proc/1/mem", "/proc/1/environ")
			o2 := c.run("probe", "read", "/proc/1/exe", "/proc/1/mem", "/proc/1/environ", "/proc/1/root/etc/hostname")
			errs := []error{ok(o), ok(o2)}
			for i := 0; i < 3; i++ {
				errs = append(errs, kvIn(o, fmt.Sprintf("write%d", i), "EACCES", "EPERM", "ETXTBSY", "EROFS"))
				errs = append(errs, kvIn(o2, fmt.Sprintf("read%d", i), "EACCES", "EPERM"))
			}
			errs = append(errs, kvIn(o2, "read3", "EACCES", "EPERM", "ENOENT"))
			return all(errs...)
		}},
		{name: "proc_self_exe_write", fn: func(c *cctx) error {
			o := c.run("probe", "write", "/proc/self/exe", "/hostile/probe")
			o2 := c.run("sh", "-c", `echo x 2>/dev/null > /proc/self/exe; echo sh=$?
(echo x > /proc/$$/exe) 2>/dev/null; echo parent=$?
(exec /proc/1/exe) 2>/dev/null; echo exec1=$?`)
			return all(ok(o), kvIn(o, "write0", "ETXTBSY", "EROFS", "EACCES"), kvIn(o, "write1", "ETXTBSY", "EROFS", "EACCES"),
				ok(o2), kvIn(o2, "sh", "2"), kvIn(o2, "parent", "2"), kvIn(o2, "exec1", "126", "127", "2"))
		}},
		{name: "write_system_dirs", fn: func(c *cctx) error {
			targets := []string{"/usr/bin/hostile-" + c.mark + "+", "/etc/hostile-" + c.mark + "+", "/etc/passwd",
				"/hostile/new+", "/hostile-" + c.mark + "+", "/proc/self/root/usr/lib/hostile+", "/usr/bin/sh", "/dev/hostile+"}
			o := c.run(append([]string{"probe", "write"}, targets...)...)
			errs := []error{ok(o)}
			for i := range targets {
				errs = append(errs, kvIn(o, fmt.Sprintf("write%d", i), "EROFS", "EACCES", "EPERM", "ETXTBSY"))
			}
			for _, p := range []string{"/usr/bin/hostile-" + c.mark, "/etc/hostile-" + c.mark, "/hostile-" + c.mark,
				filepath.Join(host.binDir, "new")} {
				if _, err := os.Lstat(p); err == nil {
					errs = append(errs, fmt.Errorf("HOST EFFECT: %s written on the host", p))
				}
			}
			return all(errs...)
		}},
		{name: "workdir_write_owner", fn: func(c *cctx) error {
			wd := c.workdir()
			o := c.run("probe", "write", "/workspace/out+")
			errs := []error{ok(o), kvIn(o, "write0", "ok")}
			if err := ownedByWorkdirOwner(filepath.Join(wd, "out")); err != nil {
				errs = append(errs, err)
			}
			return all(errs...)
		}},
		{name: "git_dir_read_only", fn: func(c *cctx) error {
			wd := c.workdir()
			os.MkdirAll(filepath.Join(wd, ".git", "hooks"), 0o777)
			cfg := filepath.Join(wd, ".git", "config")
			os.WriteFile(cfg, []byte("[core]\n"), 0o666)
			o := c.run("probe", "write", "/workspace/.git/config", "/workspace/.git/hooks/pre-commit+")
			errs := []error{ok(o), kvIn(o, "write0", "EROFS", "EACCES"), kvIn(o, "write1", "EROFS", "EACCES")}
			if b, _ := os.ReadFile(cfg); string(b) != "[core]\n" {
				errs = append(errs, fmt.Errorf("HOST EFFECT: host .git/config rewritten: %q", b))
			}
			if _, err := os.Lstat(filepath.Join(wd, ".git", "hooks", "pre-commit")); err == nil {
				errs = append(errs, fmt.Errorf("HOST EFFECT: a git hook was planted on the host"))
			}
			return all(errs...)
		}},
		{name: "git_dir_unmount_or_remount", fn: func(c *cctx) error {
			// The supervisor makes id-mapped trees, whose flags the kernel
			// does not lock: only the missing capabilities and seccomp keep
			// the program from lifting the read-only .git off the workdir.
			wd := c.workdir()
			os.MkdirAll(filepath.Join(wd, ".git"), 0o755)
			cfg := filepath.Join(wd, ".git", "config")
			os.WriteFile(cfg, []byte("[core]\n"), 0o644)
			o := c.run("sh", "-c", `umount -l /workspace/.git 2>/dev/null; echo umount=$?
mount -o remount,rw,bind /workspace/.git 2>/dev/null; echo remount=$?
mount -o remount,suid /workspace 2>/dev/null; echo suid=$?
echo hook > /workspace/.git/config 2>/dev/null; echo write=$?`)
			errs := []error{ok(o), kvNot(o, "umount", "0"), kvNot(o, "remount", "0"), kvNot(o, "suid", "0"), kvNot(o, "write", "0")}
			if b, _ := os.ReadFile(cfg); string(b) != "[core]\n" {
				errs = append(errs, fmt.Errorf("HOST EFFECT: host .git/config rewritten: %q", b))
			}
			return all(errs...)
		}},
		{name: "setuid_binaries", fn: func(c *cctx) error {
			o := c.run("sh", "-c", `/usr/bin/su -c 'id -u > /tmp/su' root </dev/null >/dev/null 2>&1; echo su=$?
/usr/bin/mount -t tmpfs none /tmp >/dev/null 2>&1; echo mount=$?
/usr/bin/passwd -d root </dev/null >/dev/null 2>&1; echo passwd=$?
echo suid=$(cat /tmp/su 2>/dev/null)
echo euid=$(/usr/bin/python3 -c 'import os; print(os.geteuid())')`)
			return all(ok(o), kvNot(o, "su", "0"), kvNot(o, "mount", "0"), kvNot(o, "passwd", "0"),
				kvIn(o, "suid", ""), kvIn(o, "euid", "1000"))
		}},
	}
}

func TestHostSecrets(t *testing.T) { runCases(t, secretCases()) }

func kvNot(o *outcome, key, bad string) error {
	v, ok := o.kv[key]
	if !ok {
		return fmt.Errorf("%s: not reported", key)
	}
	if v == bad {
		return fmt.Errorf("%s=%s: the attack succeeded", key, v)
	}
	return nil
}

func readAll(paths []string) map[string]string {
	m := map[string]string{}
	for _, p := range paths {
		b, _ := os.ReadFile(p)
		m[p] = string(b)
	}
	return m
}

// ownedByWorkdirOwner checks that a file the run created in its workdir
// belongs to the directory's owner: never root, never a sandbox id.
func ownedByWorkdirOwner(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if uid, gid := statOwner(fi); uid != workdirUID || gid != workdirGID {
		return fmt.Errorf("HOST EFFECT: %s owned by host %d:%d, want the workdir's owner %d:%d", path, uid, gid, workdirUID, workdirGID)
	}
	return nil
}
