package proc

import (
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPidOfPidfd(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	fd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open: %v (the engine needs pidfds: Linux 5.3 or newer)", err)
	}
	defer unix.Close(fd)
	if pid, err := pidOfPidfd(fd); err != nil || pid != cmd.Process.Pid {
		t.Errorf("pidOfPidfd = %d, %v; want %d", pid, err, cmd.Process.Pid)
	}
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := pidOfPidfd(int(f.Fd())); err == nil {
		t.Error("pidOfPidfd of /dev/null: want an error")
	}
}
