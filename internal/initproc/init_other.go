//go:build !linux

package initproc

// MaybeRun does nothing off Linux: there is no sandbox init to become.
func MaybeRun() {}
