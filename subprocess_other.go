//go:build !linux

package sandbox

import (
	"errors"

	"github.com/kb-labs/sandbox/internal/mount"
)

func newSubprocess(*Config, Execution) (strategy, error) {
	return nil, errors.New("sandbox: subprocess mode needs Linux (namespaces, cgroups, seccomp); use inprocess mode elsewhere")
}

// checkInProcessPaths: outside Linux the module has the caller's own access.
func checkInProcessPaths(*Config, mount.Options) (bool, error) { return false, nil }
