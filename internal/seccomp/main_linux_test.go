package seccomp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/kb-labs/sandbox/internal/testenv"
	"golang.org/x/sys/unix"
)

// childEnv selects a child scenario: the test binary re-executes itself with
// it set, and TestMain runs the scenario instead of the tests.
const childEnv = "SANDBOX_SECCOMP_TEST_CHILD"

func TestMain(m *testing.M) {
	if s := os.Getenv(childEnv); s != "" {
		os.Exit(runChild(s))
	}
	testenv.Register("seccomp", probeSeccomp)
	os.Exit(m.Run())
}

// probeSeccomp asks the kernel whether the actions the filter returns exist,
// without installing anything.
func probeSeccomp() error {
	for _, action := range []uint32{retKillProcess, retUserNotif, retErrno} {
		_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_ACTION_AVAIL, 0, uintptr(unsafe.Pointer(&action)))
		if errno != 0 {
			return fmt.Errorf("seccomp action %#x unavailable: %w", action, errno)
		}
	}
	return nil
}

// childResult is what a child prints as JSON on stdout.
type childResult struct {
	Errnos map[string]string // attempt -> "ok" or the errno's name
	Output string
	Err    string
	Ns     float64 // benchmark: nanoseconds per call
}

// install is the init's sequence: locked thread, no_new_privs, the filter on
// every thread.
func install(o Options, flags Flag) (int, error) {
	runtime.LockOSThread()
	if err := SetNoNewPrivs(); err != nil {
		return -1, err
	}
	a, err := Native()
	if err != nil {
		return -1, err
	}
	prog, err := Build(a, o)
	if err != nil {
		return -1, err
	}
	return Install(prog, flags|FlagTSync)
}

func runChild(scenario string) int {
	var res childResult
	defer func() {
		_ = json.NewEncoder(os.Stdout).Encode(res)
	}()
	fail := func(err error) int {
		res.Err = err.Error()
		return 0
	}
	switch scenario {
	case "attempts":
		if _, err := install(Options{}, 0); err != nil {
			return fail(err)
		}
		res.Errnos = attempts()
	case "attempts-unfiltered":
		res.Errnos = attempts()
	case "exec":
		if _, err := install(Options{}, 0); err != nil {
			return fail(err)
		}
		var argv []string
		if err := json.Unmarshal([]byte(os.Getenv("SANDBOX_SECCOMP_TEST_ARGV")), &argv); err != nil {
			return fail(err)
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		out, err := cmd.CombinedOutput()
		res.Output = string(out)
		if err != nil {
			return fail(err)
		}
	case "notify":
		fd, err := install(Options{Notify: true}, FlagNewListener)
		if err != nil {
			return fail(err)
		}
		// Hand the listener to the parent through the socket at fd 3.
		if err := unix.Sendmsg(3, []byte{0}, unix.UnixRights(fd), nil, 0); err != nil {
			return fail(err)
		}
		unix.Close(fd)
		res.Errnos = map[string]string{}
		for i := range 3 {
			_, _, e := unix.Syscall(unix.SYS_KEYCTL, 0 /*KEYCTL_GET_KEYRING_ID*/, ^uintptr(0), 0)
			res.Errnos["keyctl"+strconv.Itoa(i)] = errnoName(e)
		}
		res.Errnos["install"] = errnoName(ownFilter(unix.SYS_KEYCTL, 0x00050000|uint32(unix.EINVAL)))
		_, _, e := unix.Syscall(unix.SYS_KEYCTL, 0, ^uintptr(0), 0)
		res.Errnos["keyctl_own"] = errnoName(e)
	case "kill":
		if _, err := install(Options{OnViolation: Kill}, 0); err != nil {
			return fail(err)
		}
		fmt.Fprintln(os.Stderr, "installed")
		unix.Syscall(unix.SYS_KEYCTL, 0, ^uintptr(0), 0)
		res.Err = "survived keyctl"
	case "bench-baseline", "bench-filtered":
		if scenario == "bench-filtered" {
			if _, err := install(Options{}, 0); err != nil {
				return fail(err)
			}
		}
		n, _ := strconv.Atoi(os.Getenv("SANDBOX_SECCOMP_TEST_N"))
		nr := uintptr(unix.SYS_GETPID)
		if os.Getenv("SANDBOX_SECCOMP_TEST_CALL") == "ioctl" {
			nr = unix.SYS_IOCTL // on fd -1: EBADF, after the filter read its arguments
		}
		start := time.Now()
		for range n {
			unix.RawSyscall(nr, ^uintptr(0), unix.TIOCINQ, 0)
		}
		res.Ns = float64(time.Since(start).Nanoseconds()) / float64(max(n, 1))
	default:
		res.Err = "unknown scenario " + scenario
	}
	return 0
}

// attempts makes the calls the integration test checks and names the errno
// each returned. Each is chosen so that without the filter it returns
// something else (success, EINVAL, EFAULT, ENOTTY...).
func attempts() map[string]string {
	r := map[string]string{}
	raw := func(name string, nr uintptr, args ...uintptr) {
		var a [6]uintptr
		copy(a[:], args)
		r1, _, e := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
		r[name] = errnoName(e)
		if e == 0 && (name == "socket_inet" || name == "socket_unix") {
			unix.Close(int(r1))
		}
	}
	if pid := unix.Getpid(); pid == os.Getpid() && pid > 0 {
		r["getpid"] = "ok"
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		r["pipe"] = err.Error()
		return r
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	c := byte('x')
	raw("keyctl", unix.SYS_KEYCTL, 0, ^uintptr(0))
	var params [120]byte
	raw("io_uring_setup", unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params)))
	raw("clone3", unix.SYS_CLONE3, 0, 0)
	var aio uint64
	raw("io_setup", unix.SYS_IO_SETUP, 1, uintptr(unsafe.Pointer(&aio)))
	if r["io_setup"] == "ok" {
		unix.Syscall(unix.SYS_IO_DESTROY, uintptr(aio), 0, 0)
	}
	// A memfd belongs to its creator, so fchmod succeeds without the
	// filter; set-id bits, also hidden under high bits, must not.
	if fd, err := unix.MemfdCreate("setid", unix.MFD_CLOEXEC); err == nil {
		raw("fchmod_suid", unix.SYS_FCHMOD, uintptr(fd), 0o4755)
		raw("fchmod_sgid_high", unix.SYS_FCHMOD, uintptr(fd), 0x1_0000_0000|0o2755)
		raw("fchmod_plain", unix.SYS_FCHMOD, uintptr(fd), 0o700)
		unix.Close(fd)
	}
	raw("socket_packet", unix.SYS_SOCKET, unix.AF_PACKET, unix.SOCK_RAW, 0)
	raw("socket_inet", unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	raw("socket_unix", unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	raw("ioctl_tiocsti", unix.SYS_IOCTL, uintptr(p[0]), unix.TIOCSTI, uintptr(unsafe.Pointer(&c)))
	raw("ioctl_tiocsti_high", unix.SYS_IOCTL, uintptr(p[0]), 0x1_0000_0000|unix.TIOCSTI, uintptr(unsafe.Pointer(&c)))
	var n int32
	raw("ioctl_fionread", unix.SYS_IOCTL, uintptr(p[0]), unix.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	raw("unshare_user", unix.SYS_UNSHARE, unix.CLONE_NEWUSER)
	// CLONE_THREAD without CLONE_SIGHAND is EINVAL in the kernel: safe to
	// try, and distinct from the filter's EPERM.
	raw("clone_newuser", unix.SYS_CLONE, unix.CLONE_NEWUSER|unix.CLONE_THREAD)
	raw("personality_query", unix.SYS_PERSONALITY, 0xffffffff)
	raw("personality_rix", unix.SYS_PERSONALITY, 0x0400000)
	if a, err := Native(); err == nil {
		raw("unknown", uintptr(a.Max()+5))
	}
	return r
}

// ownFilter installs, as a sandboxed program could, a filter answering nr
// with ret and allowing everything else.
func ownFilter(nr uintptr, ret uint32) syscall.Errno {
	f := []unix.SockFilter{
		{Code: 0x20, K: 0},                        // ld [nr]
		{Code: 0x15, Jt: 0, Jf: 1, K: uint32(nr)}, // jeq nr
		{Code: 0x06, K: ret},
		{Code: 0x06, K: retAllow},
	}
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	_, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(f)
	return e
}

func errnoName(e syscall.Errno) string {
	if e == 0 {
		return "ok"
	}
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return strconv.Itoa(int(e))
}

// child runs a scenario in a re-executed test binary and decodes its result.
func child(t *testing.T, scenario string, env []string, extra ...*os.File) (childResult, *exec.Cmd, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, childEnv+"="+scenario)...)
	cmd.ExtraFiles = extra
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var res childResult
	if len(out) > 0 {
		if jerr := json.Unmarshal(out, &res); jerr != nil {
			t.Fatalf("child output %q: %v (stderr %q)", out, jerr, stderr.String())
		}
	}
	if res.Err != "" {
		t.Fatalf("child %s: %s (stderr %q)", scenario, res.Err, stderr.String())
	}
	return res, cmd, err
}
