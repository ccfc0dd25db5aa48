package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cmdFill writes zeros to a file until the write fails.
func cmdFill(args []string) {
	f, err := os.Create(args[0])
	if err != nil {
		report("fill", err)
		return
	}
	buf := make([]byte, 1<<20)
	var total int64
	for {
		n, err := f.Write(buf)
		total += int64(n)
		if err != nil {
			say("bytes", total)
			report("fill", unwrap(err))
			return
		}
	}
}

// cmdInodes creates empty files in a directory until that fails.
func cmdInodes(args []string) {
	for i := 0; ; i++ {
		fd, err := unix.Open(fmt.Sprintf("%s/f%d", args[0], i), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
		if err != nil {
			say("files", i)
			report("inodes", err)
			return
		}
		unix.Close(fd)
		if i > 1_000_000 {
			say("files", i)
			report("inodes", nil)
			return
		}
	}
}

// cmdInotify opens inotify instances until refused, then adds watches on
// fresh files in args[0] until refused.
func cmdInotify(args []string) {
	var fds []int
	for {
		fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
		if err != nil {
			say("instances", len(fds))
			report("instances_err", err)
			break
		}
		fds = append(fds, fd)
		if len(fds) > 100000 {
			say("instances", len(fds))
			report("instances_err", nil)
			break
		}
	}
	if len(fds) == 0 {
		return
	}
	for i := 0; ; i++ {
		p := fmt.Sprintf("%s/w%d", args[0], i)
		fd, err := unix.Open(p, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
		if err != nil {
			say("watches", i)
			report("watches_err", fmt.Errorf("create: %w", err))
			return
		}
		unix.Close(fd)
		if _, err := unix.InotifyAddWatch(fds[0], p, unix.IN_ALL_EVENTS); err != nil {
			say("watches", i)
			report("watches_err", err)
			return
		}
		if i > 200000 {
			say("watches", i)
			report("watches_err", nil)
			return
		}
	}
}

// cmdFDBomb opens /dev/null until refused.
func cmdFDBomb([]string) {
	n := 0
	for {
		_, err := unix.Open("/dev/null", unix.O_RDONLY, 0)
		if err != nil {
			say("opened", n)
			report("fds", err)
			return
		}
		n++
		if n > 10_000_000 {
			report("fds", nil)
			return
		}
	}
}

// cmdMemBomb allocates and touches memory in 8 MiB steps forever.
func cmdMemBomb([]string) {
	var keep [][]byte
	for i := 0; ; i++ {
		b, err := unix.Mmap(-1, 0, 8<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			say("mib", i*8)
			report("mmap", err)
			time.Sleep(10 * time.Second)
			return
		}
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		keep = append(keep, b)
		if i%8 == 0 {
			fmt.Printf("mib=%d\n", i*8)
		}
	}
}

// cmdThreadBomb starts OS threads until the runtime dies.
func cmdThreadBomb([]string) {
	for i := 0; ; i++ {
		go func() {
			runtime.LockOSThread()
			time.Sleep(time.Hour)
		}()
		if i%16 == 0 {
			fmt.Printf("threads=%d\n", i)
			time.Sleep(time.Millisecond)
		}
	}
}

// cmdSysV creates System V segments with the given key (hex): a shared
// memory segment of args[1] MiB that it touches, a message queue and a
// semaphore set.
func cmdSysV(args []string) {
	key, _ := strconv.ParseInt(args[0], 0, 64)
	mib, _ := strconv.Atoi(args[1])
	id, err := unix.SysvShmGet(int(key), mib<<20, unix.IPC_CREAT|0o666)
	report("shmget", err)
	if err == nil {
		b, err := unix.SysvShmAttach(id, 0, 0)
		report("shmat", err)
		if err == nil {
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			say("touched", len(b)>>20)
		}
	}
	_, _, e := unix.RawSyscall(unix.SYS_MSGGET, uintptr(key), unix.IPC_CREAT|0o666, 0)
	report("msgget", errno(e))
	_, _, e = unix.RawSyscall(unix.SYS_SEMGET, uintptr(key), 4, unix.IPC_CREAT|0o666)
	report("semget", errno(e))
}

// cmdDaemon double-forks a session leader that outlives its parent, then
// exits at once: the run must not leave it behind.
func cmdDaemon(args []string) {
	self, _ := os.Executable()
	attr := &syscall.ProcAttr{Files: []uintptr{0, 1, 2}, Sys: &syscall.SysProcAttr{Setsid: true}}
	argv := append([]string{self, "sleeper", "fork"}, os.Args[1:]...)
	pid, err := syscall.ForkExec(self, argv, attr)
	report("daemon", err)
	say("daemon_pid", pid)
}

// cmdSleeper is the daemon: with "fork" it forks once more (so its parent
// is gone), ignores the polite signals, closes its output and sleeps.
func cmdSleeper(args []string) {
	if len(args) > 0 && args[0] == "fork" {
		self, _ := os.Executable()
		argv := append([]string{self, "sleeper", "stay"}, os.Args[3:]...)
		syscall.ForkExec(self, argv, &syscall.ProcAttr{Sys: &syscall.SysProcAttr{Setsid: true}})
		return
	}
	signal.Ignore(syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT)
	time.Sleep(time.Hour)
}

// cmdSigSpin ignores every signal it can and spins.
func cmdSigSpin([]string) {
	signal.Ignore(syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGXCPU)
	fmt.Println("spinning=1")
	x := 0
	for {
		x++
	}
}

func cmdX32([]string) {
	fmt.Println("before=1")
	os.Stdout.Sync()
	r := x32Getpid()
	say("after", int64(r))
}

func cmdInt80([]string) {
	fmt.Println("before=1")
	os.Stdout.Sync()
	r := int80(20) // getpid in the i386 table
	say("after", int64(r))
}
