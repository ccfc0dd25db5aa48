package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Detect picks the cgroup backend for this host, once. root is the
// filesystem root ("/" in production; tests pass a fake cgroupfs tree); it
// reads <root>/proc/self/mountinfo and resolves every mount point under root.
//
// Order: v2 when a cgroup2 mount offers memory, pids and cpu and they can be
// delegated to sandbox/; otherwise v1 when the memory, pids, cpu and cpuacct
// hierarchies are mounted (with a v2 leaf per run when a cgroup2 hierarchy is
// also mounted: the hybrid layout). Detect creates the parent sandbox/ cgroup
// in each hierarchy it uses and enables the v2 controllers in sandbox/'s
// cgroup.subtree_control; it never writes any other host cgroup file. Errors
// wrap ErrUnavailable and say what is missing and how to delegate.
func Detect(root string) (Manager, error) {
	return detect(root, os.Geteuid(), realFS)
}

func detect(root string, euid int, ops fsops) (Manager, error) {
	if root == "" {
		root = "/"
	}
	b, err := os.ReadFile(filepath.Join(root, "proc/self/mountinfo"))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var unified []mount
	v1 := map[string]mount{}
	for _, m := range parseMountinfo(b) {
		if m.fstype == "cgroup2" {
			unified = append(unified, m)
			continue
		}
		for _, c := range m.ctrls {
			if !hasKey(v1, c) {
				v1[c] = m
			}
		}
	}
	// Prefer the conventional mount points over any other (a container
	// runtime may bind further copies).
	slices.SortStableFunc(unified, func(a, b mount) int { return rank(a.point) - rank(b.point) })
	var reasons []string
	if len(unified) > 0 {
		m, err := newV2(root, unified[0], euid, ops)
		if err == nil {
			return m, nil
		}
		reasons = append(reasons, err.Error())
	}
	if len(v1) > 0 {
		var u *mount
		if len(unified) > 0 {
			u = &unified[0]
		}
		m, err := newV1(root, v1, u, euid, ops)
		if err == nil {
			return m, nil
		}
		reasons = append(reasons, err.Error())
	}
	if len(reasons) == 0 {
		reasons = append(reasons, "no cgroup or cgroup2 filesystem is mounted")
	}
	return nil, fmt.Errorf("%w: %s", ErrUnavailable, strings.Join(reasons, "; "))
}

func rank(point string) int {
	switch point {
	case "/sys/fs/cgroup":
		return 0
	case "/sys/fs/cgroup/unified":
		return 1
	}
	return 2
}

// closer is a group opened on an existing run cgroup, for Sweep.
type closer interface{ Close() error }

// sweep closes (kills and removes) every run under parents whose name starts
// with prefix.
func sweep(prefix string, parents []string, open func(name string) closer) (int, error) {
	if prefix == "" {
		return 0, fmt.Errorf("%w: empty sweep prefix would remove every run", ErrInvalid)
	}
	var names []string
	var errs []error
	for _, p := range parents {
		ents, err := os.ReadDir(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), prefix) && validName(e.Name()) == nil {
				names = append(names, e.Name())
			}
		}
	}
	slices.Sort(names)
	removed := 0
	for _, n := range slices.Compact(names) {
		if err := open(n).Close(); err != nil {
			errs = append(errs, fmt.Errorf("cgroup: sweep %q: %w", n, err))
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}
