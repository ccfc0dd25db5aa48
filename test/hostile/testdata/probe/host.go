package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// cmdFDScan lists every open descriptor but the standard three, with what it
// points at: a leaked host descriptor shows up here.
func cmdFDScan([]string) {
	var open []string
	for fd := 3; fd < 4096; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
			target, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
			open = append(open, fmt.Sprintf("%d->%s", fd, target))
			// Try to read through it, in case it is a host file.
			b := make([]byte, 256)
			if n, _ := unix.Pread(fd, b, 0); n > 0 {
				say("fdread"+strconv.Itoa(fd), strings.TrimSpace(string(b[:n])))
			}
		}
	}
	say("fds", strings.Join(open, ","))
}

func cmdEnv([]string) {
	for _, e := range os.Environ() {
		fmt.Println("env:" + e)
	}
	b, err := os.ReadFile("/proc/1/environ")
	report("proc1_environ", err)
	fmt.Printf("proc1_environ_data=%q\n", b)
}

func cmdStatus([]string) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		report("status", err)
		return
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok {
			say(k, strings.TrimSpace(v))
		}
	}
	say("uid", fmt.Sprint(os.Getuid(), os.Geteuid()))
}

// cmdRead reads each path (at most 4 KiB) and prints the result and data.
func cmdRead(args []string) {
	for i, p := range args {
		f, err := os.Open(p)
		if err != nil {
			report(fmt.Sprintf("read%d", i), err)
			continue
		}
		b := make([]byte, 4096)
		n, err := io.ReadFull(f, b)
		f.Close()
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = nil
		}
		report(fmt.Sprintf("read%d", i), err)
		fmt.Printf("data%d=%q\n", i, b[:n])
	}
}

// cmdWrite opens each path for writing (no create unless it ends in +).
func cmdWrite(args []string) {
	for i, p := range args {
		flags := os.O_WRONLY
		if strings.HasSuffix(p, "+") {
			p = strings.TrimSuffix(p, "+")
			flags |= os.O_CREATE | os.O_TRUNC
		}
		f, err := os.OpenFile(p, flags, 0o644)
		if err == nil {
			_, err = f.Write([]byte("HOSTILE-WROTE-THIS\n"))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		report(fmt.Sprintf("write%d", i), err)
	}
}

// cmdConnect dials each address (tcp host:port, or unix:/path, or @abstract).
func cmdConnect(args []string) {
	for i, a := range args {
		network := "tcp"
		if strings.HasPrefix(a, "unix:") {
			network, a = "unix", strings.TrimPrefix(a, "unix:")
		} else if strings.HasPrefix(a, "@") {
			network = "unix"
		}
		c, err := net.DialTimeout(network, a, 2*time.Second)
		if err == nil {
			c.Write([]byte("HOSTILE\n"))
			c.Close()
		}
		report(fmt.Sprintf("connect%d", i), unwrap(err))
	}
}

func cmdUDP(args []string) {
	for i, a := range args {
		c, err := net.Dial("udp", a)
		if err == nil {
			_, err = c.Write([]byte("HOSTILE\n"))
			c.Close()
		}
		report(fmt.Sprintf("udp%d", i), unwrap(err))
	}
}

// cmdListen proves the loopback works inside: it listens and dials itself.
func cmdListen([]string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		report("listen", err)
		return
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second)
	if err == nil {
		c.Close()
	}
	report("self_connect", unwrap(err))
}

func unwrap(err error) error {
	for err != nil {
		if e, ok := err.(unix.Errno); ok {
			return e
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
	return nil
}

// cmdKill signals the pids given (host pids the test started), then every
// process it can reach.
func cmdKill(args []string) {
	for _, a := range args {
		pid, _ := strconv.Atoi(a)
		report("kill"+a, unix.Kill(pid, unix.SIGKILL))
		fd, err := unix.PidfdOpen(pid, 0)
		report("pidfd"+a, err)
		if err == nil {
			report("pidfd_kill"+a, unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0))
		}
	}
	report("kill_all", unix.Kill(-1, unix.SIGKILL))
}

// cmdKillInit tries to stop and kill the sandbox's init (pid 1) and its
// parent; the run must still end normally.
func cmdKillInit([]string) {
	report("stop1", unix.Kill(1, unix.SIGSTOP))
	report("term1", unix.Kill(1, unix.SIGTERM))
	report("kill1", unix.Kill(1, unix.SIGKILL))
	// The program's parent (the init's forking thread) lives outside its
	// pid namespace: getppid() is 0, and kill(0) would hit the probe's own
	// process group.
	if pp := os.Getppid(); pp > 0 {
		report("killpp", unix.Kill(pp, unix.SIGKILL))
	} else {
		say("killpp", "noparent")
	}
	time.Sleep(100 * time.Millisecond)
	say("alive", "yes")
}
