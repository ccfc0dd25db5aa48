//go:build unix

package sandbox

import "golang.org/x/sys/unix"

func signalNumber(name string) int { return int(unix.SignalNum(name)) }

func signalName(n int) string { return unix.SignalName(unix.Signal(n)) }
