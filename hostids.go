package sandbox

import (
	"bufio"
	"fmt"
	"github.com/kb-labs/sandbox/internal/hostid"
	"io"
	"os"
	"strconv"
	"strings"
)

// The sandbox's host ids (security.hostIdRange, from which every sandbox
// started as root leases its own pair) must belong to nobody else. The default lies
// outside what useradd hands out as subordinate ids (SUB_UID_MIN..
// SUB_UID_MAX, 100000..600100000 by default), outside systemd's dynamic users
// (61184..65519) and its container range (524288..1879048191), and below its
// foreign range (2147352576..). A local user whose /etc/subuid entry covers
// the sandbox's ids could otherwise become the sandbox user of every run
// with newuidmap. See RATIONALE.md "Host ids".

// subIDOverlaps lists the entries of a subuid/subgid file (name:start:count
// per line) whose range overlaps ids.
func subIDOverlaps(file string, ids hostid.Range) ([]string, error) {
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseSubIDOverlaps(f, file, ids)
}

func parseSubIDOverlaps(f io.Reader, file string, ids hostid.Range) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if hit, ok := subIDLineOverlaps(line, ids); ok && hit {
			out = append(out, fmt.Sprintf("%s:%d %q", file, n, line))
		}
	}
	return out, sc.Err()
}

// subIDLineOverlaps parses one name:start:count line; ok is false for a line
// that is not of that form (it is skipped, as shadow-utils skips it).
func subIDLineOverlaps(line string, ids hostid.Range) (hit, ok bool) {
	parts := strings.Split(line, ":")
	if len(parts) != 3 {
		return false, false
	}
	start, err1 := strconv.ParseInt(parts[1], 10, 64)
	count, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || start < 0 || count <= 0 {
		return false, false
	}
	return start <= int64(ids.Last()) && int64(ids.First) < start+count, true
}

// hostIDCheck is the doctor's check that no subordinate id range of the
// host, and no local user or group, holds an id of the sandbox's range
// (root only: rootless runs use the caller's own ids).
func hostIDCheck(sec Security) Check {
	ch := Check{Name: "host ids"}
	if os.Geteuid() != 0 {
		ch.Passed = true
		ch.Detail = "rootless: the sandbox runs as the caller's own ids"
		return ch
	}
	ids, err := hostIDRange(sec)
	if err != nil {
		ch.Error = "security.hostIdRange: " + err.Error()
		return ch
	}
	ch.Detail = fmt.Sprintf("range %s: ids %d to %d, %d sandboxes at once", ids, ids.First, ids.Last(), ids.Pairs())
	var hits []string
	for _, file := range []string{"/etc/subuid", "/etc/subgid"} {
		h, err := subIDOverlaps(file, ids)
		if err != nil {
			ch.Error = fmt.Sprintf("read %s: %v", file, err)
			return ch
		}
		hits = append(hits, h...)
	}
	if len(hits) > 0 {
		ch.Error = fmt.Sprintf("subordinate id ranges overlap the sandbox's host id range %s (a user holding them can become a sandbox's user with newuidmap): %s",
			ids, strings.Join(hits, "; "))
		ch.Suggestions = []string{
			"set security.hostIdRange to ids nobody else holds (the default is " + DefaultHostIDRange + ")",
			"or move the overlapping /etc/subuid and /etc/subgid entries",
		}
		return ch
	}
	for _, file := range []string{"/etc/passwd", "/etc/group"} {
		h, err := accountOverlaps(file, ids)
		if err != nil {
			ch.Error = fmt.Sprintf("read %s: %v", file, err)
			return ch
		}
		hits = append(hits, h...)
	}
	if len(hits) > 0 {
		ch.Error = fmt.Sprintf("local accounts hold ids of the sandbox's host id range %s (their files and processes would be a sandbox's): %s", ids, strings.Join(hits, "; "))
		ch.Suggestions = []string{"set security.hostIdRange to ids nobody else holds (the default is " + DefaultHostIDRange + ")"}
		return ch
	}
	ch.Passed = true
	return ch
}

// accountOverlaps lists the entries of /etc/passwd or /etc/group (name:x:id:…)
// whose id lies in ids.
func accountOverlaps(file string, ids hostid.Range) ([]string, error) {
	b, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for n, line := range strings.Split(string(b), "\n") {
		parts := strings.Split(line, ":")
		if len(parts) < 3 {
			continue
		}
		if id, err := strconv.ParseInt(parts[2], 10, 64); err == nil && id >= int64(ids.First) && id <= int64(ids.Last()) {
			out = append(out, fmt.Sprintf("%s:%d %s (id %d)", file, n+1, parts[0], id))
		}
	}
	return out, nil
}
