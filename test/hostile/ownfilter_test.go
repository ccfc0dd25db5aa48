//go:build linux

package hostile

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/kb-labs/sandbox"
)

// ownFilterScript installs a seccomp filter of its own that answers unshare
// with EPERM — among stacked filters an ERRNO outranks the sandbox's user
// notification, so the sandbox would never hear of the calls — and then
// calls unshare 1000 times. argv[1] says how: "seccomp" (the system call)
// or "prctl" (PR_SET_SECCOMP).
const ownFilterScript = `import ctypes, errno, platform, struct, sys
NR = {'x86_64': dict(unshare=272, seccomp=317), 'aarch64': dict(unshare=97, seccomp=277)}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)
def ins(code, jt, jf, k): return struct.pack('HBBI', code, jt, jf, k)
# ld [nr]; jeq unshare ? ERRNO(EPERM) : ALLOW
prog = ins(0x20, 0, 0, 0) + ins(0x15, 0, 1, NR['unshare']) + ins(0x06, 0, 0, 0x00050001) + ins(0x06, 0, 0, 0x7fff0000)
buf = ctypes.create_string_buffer(prog, len(prog))
class Fprog(ctypes.Structure): _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]
fp = Fprog(4, ctypes.cast(buf, ctypes.c_void_p))
libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
if sys.argv[1] == 'seccomp':
    r = libc.syscall(NR['seccomp'], 1, 0, ctypes.byref(fp))  # SECCOMP_SET_MODE_FILTER
else:
    r = libc.prctl(22, 2, ctypes.byref(fp), 0, 0)  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
print('install=%s' % ('ok' if r == 0 else errno.errorcode.get(ctypes.get_errno(), '?')), flush=True)
n = 0
for _ in range(1000):
    if libc.syscall(NR['unshare'], 0x10000000) != 0 and ctypes.get_errno() == errno.EPERM:
        n += 1
print('unshare_eperm=%d' % n, flush=True)
`

// TestOwnSeccompFilter: a program that installs a seccomp filter of its own
// can answer denied calls before the sandbox hears of them. Under
// onViolation kill that must not let it make denied calls and end ok: the
// run ends as violation naming the call. Under errno the calls stay denied
// (by the program's own filter) but may go unreported, so the result says
// its violations may be incomplete.
func TestOwnSeccompFilter(t *testing.T) {
	var cases []hcase
	for _, via := range []string{"seccomp", "prctl"} {
		cases = append(cases,
			hcase{name: "kill_" + via, fn: func(c *cctx) error {
				c.cfg.Security.OnViolation = sandbox.ViolationKill
				o := c.run("python3", "-c", ownFilterScript, via)
				errs := []error{status(o, sandbox.StatusViolation), violated(o, via)}
				if v, ok := o.kv["unshare_eperm"]; ok {
					errs = append(errs, fmt.Errorf("the program made its denied calls under kill mode (unshare_eperm=%s)", v))
				}
				return all(errs...)
			}},
			hcase{name: "kill_child_" + via, fn: func(c *cctx) error {
				// A child of a shell that exits 0 whatever happens.
				c.cfg.Security.OnViolation = sandbox.ViolationKill
				o := c.run("sh", "-c", `python3 -c "$1" `+via+`; exit 0`, "sh", ownFilterScript)
				errs := []error{status(o, sandbox.StatusViolation), violated(o, via)}
				if v, ok := o.kv["unshare_eperm"]; ok {
					errs = append(errs, fmt.Errorf("the program made its denied calls under kill mode (unshare_eperm=%s)", v))
				}
				return all(errs...)
			}},
			hcase{name: "errno_" + via, fn: func(c *cctx) error {
				o := c.run("python3", "-c", ownFilterScript, via)
				errs := []error{ok(o), kvIn(o, "install", "ok"), kvIn(o, "unshare_eperm", "1000"),
					incomplete(o, true)}
				if !noted(o, "filter of its own") {
					errs = append(errs, fmt.Errorf("no sandbox log line says the program installed a filter of its own: %+v", o.res.Logs))
				}
				return all(errs...)
			}},
		)
	}
	cases = append(cases, hcase{name: "errno_control", fn: func(c *cctx) error {
		// No filter of its own: the report is complete and names unshare.
		o := c.run("unshare", "-U", "true")
		return all(status(o, sandbox.StatusNonzeroExit), violated(o, "unshare"), incomplete(o, false))
	}})
	runCases(t, cases)
}

// incomplete checks the result's violationsIncomplete, as the JSON carries
// it (absent means false).
func incomplete(o *outcome, want bool) error {
	b, err := json.Marshal(o.res)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	got, _ := m["violationsIncomplete"].(bool)
	if got != want {
		return fmt.Errorf("violationsIncomplete = %v (%v), want %v", got, m["violationsIncomplete"], want)
	}
	return nil
}

// noted reports whether the run's log has a sandbox line containing s.
func noted(o *outcome, s string) bool {
	for _, l := range o.res.Logs {
		if l.Source == "sandbox" && strings.Contains(l.Message, s) {
			return true
		}
	}
	return false
}
