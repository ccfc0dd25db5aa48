// Command probe is the hostile program of the battery: each subcommand tries
// one attack from inside the sandbox and prints what happened as key=value
// lines (the errno name, or "ok" when the kernel let it through). The test on
// the host decides whether that is a breach; probe never judges.
//
// Arguments starting with "hostile-mark-" are ignored: the test adds one to
// every command line so it can find left-behind processes on the host.
package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

var cmds = map[string]func(args []string){
	"sys":      cmdSys,
	"fdscan":   cmdFDScan,
	"env":      cmdEnv,
	"status":   cmdStatus,
	"read":     cmdRead,
	"write":    cmdWrite,
	"connect":  cmdConnect,
	"udp":      cmdUDP,
	"kill":     cmdKill,
	"fill":     cmdFill,
	"inodes":   cmdInodes,
	"inotify":  cmdInotify,
	"fds":      cmdFDBomb,
	"mem":      cmdMemBomb,
	"threads":  cmdThreadBomb,
	"shm":      cmdSysV,
	"daemon":   cmdDaemon,
	"sleeper":  cmdSleeper,
	"sigspin":  cmdSigSpin,
	"x32":      cmdX32,
	"int80":    cmdInt80,
	"listen":   cmdListen,
	"mknod":    cmdMknod,
	"killinit": cmdKillInit,
	"setid":    cmdSetID,
}

func main() {
	var args []string
	for _, a := range os.Args[1:] {
		if !strings.HasPrefix(a, "hostile-mark-") {
			args = append(args, a)
		}
	}
	if len(args) == 0 || cmds[args[0]] == nil {
		var names []string
		for n := range cmds {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: probe %s ...\n", strings.Join(names, "|"))
		os.Exit(2)
	}
	cmds[args[0]](args[1:])
}

// errName is the errno's name ("EPERM"), "ok" for nil, or the error text.
func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var e unix.Errno
	if errors.As(err, &e) {
		if e == 0 {
			return "ok"
		}
		if n := unix.ErrnoName(e); n != "" {
			return n
		}
		return fmt.Sprintf("errno%d", int(e))
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

func report(key string, err error) { fmt.Printf("%s=%s\n", key, errName(err)) }

func say(key string, v any) { fmt.Printf("%s=%v\n", key, v) }

// errno turns a raw syscall's errno into an error (nil for 0).
func errno(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}
