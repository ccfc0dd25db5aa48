package protocol

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	lineReady  = `{"type":"ready"}`
	lineResult = `{"type":"result","ok":true,"data":{"n":1}}`
	lineLog    = `{"type":"log","level":"info","message":"hi"}`
)

// runFakeChild is a hostile or sloppy protocol child, run as a re-executed
// test binary with the socket on fd 3.
func runFakeChild(name string) {
	f := os.NewFile(3, "ipc")
	in := bufio.NewReader(f)
	w := func(s string) {
		if _, err := f.Write([]byte(s + "\n")); err != nil {
			os.Exit(9)
		}
	}
	readRun := func() {
		line, err := in.ReadString('\n')
		if err != nil || !strings.Contains(line, `"type":"run"`) {
			os.Exit(8)
		}
	}
	switch name {
	case "garbage":
		w(lineReady)
		w("this is not json")
	case "oversized":
		w(lineReady)
		w(strings.Repeat("a", 2<<20))
	case "two-results":
		w(lineReady)
		readRun()
		w(lineResult)
		w(lineResult)
	case "run-from-child":
		w(lineReady)
		w(`{"type":"run","handler":{"file":"x"},"input":null,"context":{}}`)
	case "log-before-ready":
		w(lineLog)
		w(lineReady)
	case "result-before-run":
		w(lineReady)
		w(lineResult)
		time.Sleep(200 * time.Millisecond)
	case "no-ready", "never-read":
		if name == "never-read" {
			w(lineReady)
		}
		time.Sleep(time.Minute)
	case "result-exit0", "result-exit3", "result-sigkill", "result-linger":
		w(lineReady)
		readRun()
		w(lineResult)
		switch name {
		case "result-exit3":
			os.Exit(3)
		case "result-sigkill":
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		case "result-linger":
			time.Sleep(time.Minute)
		}
	case "command":
		// A protocol command: no ready, logs, a result, never reads run.
		w(lineLog)
		w(lineResult)
	case "command-silent":
	case "flood":
		w(lineReady)
		line := `{"type":"log","level":"info","message":"` + strings.Repeat("x", 1000) + `"}`
		for {
			w(line)
		}
	case "blanks-result":
		// Blank and whitespace-only lines, then a result (amplify_linux_test.go).
		blank := []byte(strings.Repeat("\n", 64<<10))
		for range blankChunks {
			if _, err := f.Write(blank); err != nil {
				os.Exit(9)
			}
		}
		w(" \t\r")
		w(lineResult)
	case "blank-flood":
		blank := []byte(strings.Repeat("\n", 64<<10))
		for {
			if _, err := f.Write(blank); err != nil {
				os.Exit(9)
			}
		}
	case "fds":
		w(lineReady)
		readRun()
		sendFDs(f, 4000)
		w(lineResult)
	default:
		os.Exit(7)
	}
}

// sendFDs passes n descriptors of /dev/null, 250 per message (under the
// kernel's 253), each message carrying one log line.
func sendFDs(f *os.File, n int) {
	c, err := net.FileConn(f)
	if err != nil {
		os.Exit(6)
	}
	uc := c.(*net.UnixConn)
	null, err := os.Open(os.DevNull)
	if err != nil {
		os.Exit(6)
	}
	batch := make([]int, 250)
	for i := range batch {
		batch[i] = int(null.Fd())
	}
	line := bytes.Repeat([]byte(lineLog+"\n"), 1)
	for sent := 0; sent < n; sent += len(batch) {
		if _, _, err := uc.WriteMsgUnix(line, unix.UnixRights(batch...), nil); err != nil {
			os.Exit(5)
		}
	}
}
