package cgroup

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// fsops are the filesystem operations that differ between a real cgroupfs and
// the plain directory tree unit tests use: on cgroupfs mkdir creates the
// control files and rmdir removes a directory full of them.
type fsops struct {
	mkdir func(path string) error
	rmdir func(path string) error
	write func(path, data string) error
}

var realFS = fsops{
	mkdir: func(p string) error { return pathErr("mkdir", p, unix.Mkdir(p, 0o755)) },
	rmdir: func(p string) error { return pathErr("rmdir", p, unix.Rmdir(p)) },
	write: writeCtl,
}

func pathErr(op, p string, err error) error {
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: op, Path: p, Err: err}
}

// writeCtl writes one value to a control file. Control files are never
// created: a missing one is an error (fs.ErrNotExist).
func writeCtl(p, data string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// ensureDir creates dir when missing (the parent sandbox/ cgroup).
func ensureDir(ops fsops, dir string) error {
	if err := ops.mkdir(dir); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// fieldsOf reads a space-separated list file (cgroup.controllers,
// cgroup.subtree_control), dropping a leading "+".
func fieldsOf(p string) (map[string]bool, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	m := map[string]bool{}
	for _, f := range strings.Fields(string(b)) {
		m[strings.TrimPrefix(f, "+")] = true
	}
	return m, nil
}

func missing(have map[string]bool, want ...string) []string {
	var out []string
	for _, w := range want {
		if !have[w] {
			out = append(out, w)
		}
	}
	return out
}

// procsOf lists cgroup.procs of dir; a removed directory is empty.
func procsOf(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parsePids(b)
}

// rmdirAll removes dirs, retrying EBUSY (a task that was just killed can
// stay attached for a moment) until deadline.
func rmdirAll(ops fsops, dirs []string, deadline time.Time) error {
	var errs []error
	for _, d := range dirs {
		for {
			err := ops.rmdir(d)
			if err == nil || errors.Is(err, fs.ErrNotExist) {
				break
			}
			if errors.Is(err, unix.EBUSY) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			errs = append(errs, err)
			break
		}
	}
	return errors.Join(errs...)
}

// kernelAtLeast reports whether the running kernel is at least major.minor.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	rel := unix.ByteSliceToString(u.Release[:])
	var ma, mi int
	for i, part := range strings.SplitN(rel, ".", 3) {
		n := 0
		for _, c := range part {
			if c < '0' || c > '9' {
				break
			}
			n = n*10 + int(c-'0')
		}
		switch i {
		case 0:
			ma = n
		case 1:
			mi = n
		}
	}
	return ma > major || ma == major && mi >= minor
}
