package cgroup

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// parseKV parses "key value" lines (cpu.stat, memory.events, pids.events,
// cpuacct.stat, memory.oom_control). Malformed lines are skipped.
func parseKV(b []byte) map[string]int64 {
	m := map[string]int64{}
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		k, v, ok := bytes.Cut(bytes.TrimSpace(line), []byte{' '})
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
		if err != nil {
			continue
		}
		m[string(k)] = n
	}
	return m
}

// parseInt parses a single-value control file.
func parseInt(b []byte) (int64, error) {
	s := strings.TrimSpace(string(b))
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroup: parse %q: %w", s, err)
	}
	return n, nil
}

// parsePids parses cgroup.procs: one pid per line.
func parsePids(b []byte) ([]int, error) {
	var pids []int
	for f := range strings.FieldsSeq(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("cgroup: bad pid %q in cgroup.procs", f)
		}
		pids = append(pids, n)
	}
	return pids, nil
}

// procCgroup is one line of /proc/<pid>/cgroup.
type procCgroup struct {
	ctrls []string // empty for the v2 line "0::"
	path  string
}

// parseProcCgroup parses /proc/<pid>/cgroup ("id:ctrl,ctrl:path").
func parseProcCgroup(b []byte) []procCgroup {
	var out []procCgroup
	for line := range strings.SplitSeq(string(b), "\n") {
		_, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		ctrls, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		var cs []string
		if ctrls != "" {
			cs = strings.Split(ctrls, ",")
		}
		out = append(out, procCgroup{ctrls: cs, path: path})
	}
	return out
}

// mount is one cgroup or cgroup2 line of mountinfo.
type mount struct {
	point  string   // mount point, as in mountinfo (host absolute)
	root   string   // the cgroup path mounted there (usually "/")
	fstype string   // "cgroup" or "cgroup2"
	ctrls  []string // v1 controllers from the super options
}

// parseMountinfo returns the cgroup and cgroup2 mounts of a mountinfo file.
func parseMountinfo(b []byte) []mount {
	var out []mount
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f := strings.Fields(pre)
		g := strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		m := mount{root: unescapeMount(f[3]), point: unescapeMount(f[4]), fstype: g[0]}
		switch m.fstype {
		case "cgroup":
			for o := range strings.SplitSeq(g[2], ",") {
				switch o {
				case "rw", "ro", "":
				default:
					if !strings.Contains(o, "=") && !strings.HasPrefix(o, "noprefix") &&
						!strings.HasPrefix(o, "clone_children") && !strings.HasPrefix(o, "xattr") {
						m.ctrls = append(m.ctrls, o)
					}
				}
			}
		case "cgroup2":
		default:
			continue
		}
		out = append(out, m)
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for space...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// pidsStats reads the pids controller's peak and limit events from dir,
// which has the same files on v1 and v2.
func pidsStats(dir string, s *Stats) {
	if b, err := os.ReadFile(filepath.Join(dir, "pids.peak")); err == nil {
		if s.PidsPeak, err = parseInt(b); err == nil {
			s.HasPidsPeak = true
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "pids.events")); err == nil {
		s.PidsLimitHit = parseKV(b)["max"] > 0
	}
}
