//go:build linux

package hostile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kb-labs/sandbox"
)

func statOwner(fi os.FileInfo) (uint32, uint32) {
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

// symlinkCases plant links in the workdir that point at host files, by
// absolute path, relative path and through /proc magic links.
func symlinkCases() []hcase {
	return []hcase{
		{name: "mount_target_through_oldroot", fn: func(c *cctx) error {
			// Run 1 plants a link to where the host's root sits during
			// set-up; run 2 mounts through it. The mount point must never
			// be created on the host.
			wd := c.workdir()
			name := "hostile-mountpoint-" + randHex(6)
			o1 := c.run("sh", "-c", "ln -s /.oldroot/tmp /workspace/data")
			if err := ok(o1); err != nil {
				return fmt.Errorf("planting the link: %w", err)
			}
			if fi, err := os.Lstat(filepath.Join(wd, "data")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				return fmt.Errorf("run 1 did not leave its link in the workdir (%v)", err)
			}
			c.cfg.Permissions.Filesystem.ReadOnly = append(c.cfg.Permissions.Filesystem.ReadOnly,
				sandbox.Mount{Source: host.binDir, Target: "/workspace/data/" + name})
			o2 := c.run("true")
			c.t.Logf("run 2 through the link: %s", o2.res.Status)
			if _, err := os.Lstat(filepath.Join("/tmp", name)); err == nil {
				os.RemoveAll(filepath.Join("/tmp", name))
				return fmt.Errorf("HOST EFFECT: the mount point /tmp/%s was created on the host through /.oldroot", name)
			}
			return nil
		}},
		{name: "workdir_links_to_host_secret", fn: func(c *cctx) error {
			wd := c.workdir()
			rel, _ := filepath.Rel(wd, host.secretFile)
			links := map[string]string{
				"abs":       host.secretFile,
				"rel":       rel,
				"deeprel":   strings.Repeat("../", 12) + strings.TrimPrefix(host.secretFile, "/"),
				"selfroot":  "/proc/self/root" + host.secretFile,
				"initroot":  "/proc/1/root" + host.secretFile,
				"parentcwd": "/proc/self/cwd/../" + rel,
				"shadow":    "/etc/shadow",
			}
			var paths []string
			for name, target := range links {
				if err := os.Symlink(target, filepath.Join(wd, name)); err != nil {
					return err
				}
				paths = append(paths, "/workspace/"+name)
			}
			o := c.run(append([]string{"probe", "read"}, paths...)...)
			errs := []error{ok(o), notContains(o, host.secretVal)}
			for i := range paths {
				errs = append(errs, kvIn(o, fmt.Sprintf("read%d", i), "ENOENT", "EACCES", "ELOOP", "EXDEV"))
			}
			o2 := c.run("sh", "-c", "cat /workspace/* 2>/dev/null; tar -chf - -C /workspace . 2>/dev/null; true")
			return all(append(errs, ok(o2), notContains(o2, host.secretVal))...)
		}},
		{name: "workdir_links_write_host_file", fn: func(c *cctx) error {
			wd := c.workdir()
			// A world-writable host file in a world-writable directory: only
			// the mount namespace stands between the run and these.
			dir, err := os.MkdirTemp("/tmp", "hostile-target-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			os.Chmod(dir, 0o777)
			target := filepath.Join(dir, "target.txt")
			os.WriteFile(target, []byte("original\n"), 0o666)
			os.Chmod(target, 0o666)
			os.Symlink(target, filepath.Join(wd, "w1"))
			os.Symlink("/proc/self/root"+target, filepath.Join(wd, "w2"))
			os.Symlink(filepath.Join(dir, "created.txt"), filepath.Join(wd, "w3"))
			o := c.run("probe", "write", "/workspace/w1", "/workspace/w2", "/workspace/w3+")
			errs := []error{ok(o)}
			for i := 0; i < 3; i++ {
				errs = append(errs, kvIn(o, fmt.Sprintf("write%d", i), "ENOENT", "EACCES", "EROFS"))
			}
			if b, _ := os.ReadFile(target); string(b) != "original\n" {
				errs = append(errs, fmt.Errorf("HOST EFFECT: host file rewritten through a workdir symlink: %q", b))
			}
			if _, err := os.Lstat(filepath.Join(dir, "created.txt")); err == nil {
				errs = append(errs, fmt.Errorf("HOST EFFECT: host file created through a workdir symlink"))
			}
			return all(errs...)
		}},
		{name: "workdir_is_a_symlink", fn: func(c *cctx) error {
			wd := c.workdir()
			link := wd + "-link"
			os.Symlink(wd, link)
			defer os.Remove(link)
			c.ec.Workdir = link
			o := c.run("probe", "write", "/workspace/x+")
			// The library canonicalises a caller's workdir (the server
			// refuses symlinks through mount.PrepareHostDir): either way the
			// run may only reach the real directory, nothing beside it.
			if o.res.Status == sandbox.StatusSetupError {
				return nil
			}
			errs := []error{ok(o), kvIn(o, "write0", "ok")}
			if _, err := os.Lstat(filepath.Join(wd, "x")); err != nil {
				errs = append(errs, fmt.Errorf("the run's file is not in the real workdir: %v", err))
			}
			if _, err := os.Lstat(filepath.Join(filepath.Dir(wd), "x")); err == nil {
				errs = append(errs, fmt.Errorf("HOST EFFECT: file written beside the workdir"))
			}
			return all(errs...)
		}},
		{name: "mount_target_through_workdir_symlink", fn: func(c *cctx) error {
			// The workdir holds data -> /etc; a user mount targets
			// /workspace/data. Resolved in the root, the bind may land on
			// the sandbox's /etc, never on the host's.
			wd := c.workdir()
			os.Symlink("/etc", filepath.Join(wd, "data"))
			os.Symlink("/proc/self/root/etc", filepath.Join(wd, "data2"))
			before := hostMountPoints()
			hostEtc := readAll([]string{"/etc/passwd", "/etc/hostname"})
			c.cfg.Permissions.Filesystem.ReadOnly = append(c.cfg.Permissions.Filesystem.ReadOnly,
				sandbox.Mount{Source: host.secretDir, Target: "/workspace/data"},
				sandbox.Mount{Source: host.secretDir, Target: "/workspace/data2"})
			o := c.run("sh", "-c", "cat /etc/secret.txt /workspace/data/secret.txt 2>/dev/null; echo done=1")
			errs := []error{status(o, sandbox.StatusSetupError, sandbox.StatusOK), mountsUnchanged(before)}
			if after := readAll([]string{"/etc/passwd", "/etc/hostname"}); fmt.Sprint(after) != fmt.Sprint(hostEtc) {
				errs = append(errs, fmt.Errorf("HOST EFFECT: host /etc changed"))
			}
			if _, err := os.Stat("/etc/secret.txt"); err == nil {
				errs = append(errs, fmt.Errorf("HOST EFFECT: the bind landed on the host's /etc"))
			}
			return all(errs...)
		}},
		{name: "refused_mount_specs", fn: func(c *cctx) error {
			// Configuration, not a program: mounts that would hand the run
			// the kernel's or the host's control files are refused.
			bad := []sandbox.Mount{{Source: "/proc", Target: "/x"}, {Source: "/sys", Target: "/x"},
				{Source: "/dev", Target: "/x"}, {Source: host.binDir, Target: "/"},
				{Source: host.binDir, Target: "/proc"}, {Source: host.binDir, Target: "/dev"},
				{Source: "/sys/fs/cgroup", Target: "/x"}, {Source: host.binDir, Target: "/workspace/../proc"}}
			var errs []error
			for _, m := range bad {
				for _, rw := range []bool{false, true} {
					cfg := c.cfg
					cfg.Permissions.Filesystem.ReadOnly = nil
					if rw {
						cfg.Permissions.Filesystem.ReadWrite = []sandbox.Mount{m}
					} else {
						cfg.Permissions.Filesystem.ReadOnly = []sandbox.Mount{m}
					}
					if err := refused(cfg, c.mark); err != nil {
						errs = append(errs, fmt.Errorf("mount %+v (rw %v): %w", m, rw, err))
					}
				}
			}
			return all(errs...)
		}},
	}
}

// refused checks that cfg is rejected by New, or its run by set-up.
func refused(cfg sandbox.Config, mark string) error {
	runMu.Lock()
	defer runMu.Unlock()
	r, err := sandbox.New(cfg)
	if err != nil {
		return nil
	}
	defer r.Close()
	res, err := r.Run(context.Background(), sandbox.Command("/bin/true", mark), nil, nil)
	if err != nil {
		return nil
	}
	if res.Status != sandbox.StatusSetupError {
		return errors.New("accepted: status " + string(res.Status))
	}
	return nil
}

func TestSymlinkTricks(t *testing.T) { runCases(t, symlinkCases()) }
