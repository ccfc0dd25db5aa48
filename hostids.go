package sandbox

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// The sandbox's host ids (security.hostIdBase and hostIdBase+1000, used when
// the supervisor runs as root) must belong to nobody else. The default lies
// outside what useradd hands out as subordinate ids (SUB_UID_MIN..
// SUB_UID_MAX, 100000..600100000 by default), outside systemd's dynamic users
// (61184..65519) and its container range (524288..1879048191), and below its
// foreign range (2147352576..). A local user whose /etc/subuid entry covers
// the sandbox's ids could otherwise become the sandbox user of every run
// with newuidmap. See RATIONALE.md "Host ids".

// subIDOverlaps lists the entries of a subuid/subgid file (name:start:count
// per line) whose range contains any of ids.
func subIDOverlaps(file string, ids []int) ([]string, error) {
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

func parseSubIDOverlaps(f io.Reader, file string, ids []int) ([]string, error) {
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
func subIDLineOverlaps(line string, ids []int) (hit, ok bool) {
	parts := strings.Split(line, ":")
	if len(parts) != 3 {
		return false, false
	}
	start, err1 := strconv.ParseInt(parts[1], 10, 64)
	count, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || start < 0 || count <= 0 {
		return false, false
	}
	for _, id := range ids {
		if int64(id) >= start && int64(id) < start+count {
			return true, true
		}
	}
	return false, true
}

// hostIDCheck is the doctor's check that no subordinate id range of the
// host covers the sandbox's host ids (root only: rootless runs use the
// caller's own ids).
func hostIDCheck(base int) Check {
	ids := []int{base, base + 1000}
	ch := Check{Name: "host ids", Detail: fmt.Sprintf("sandbox root %d, sandbox user %d", ids[0], ids[1])}
	if os.Geteuid() != 0 {
		ch.Passed = true
		ch.Detail = "rootless: the sandbox runs as the caller's own ids"
		return ch
	}
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
		ch.Error = fmt.Sprintf("subordinate id ranges cover the sandbox's host ids %d and %d (a user holding them can become the sandbox user with newuidmap): %s",
			ids[0], ids[1], strings.Join(hits, "; "))
		ch.Suggestions = []string{
			"set security.hostIdBase to ids nobody else holds (the default is " + strconv.Itoa(DefaultHostIDBase) + ")",
			"or move the overlapping /etc/subuid and /etc/subgid entries",
		}
		return ch
	}
	ch.Passed = true
	return ch
}
