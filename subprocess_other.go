//go:build !linux

package sandbox

import "errors"

func newSubprocess(*Config, Execution) (strategy, error) {
	return nil, errors.New("sandbox: subprocess mode needs Linux (namespaces, cgroups, seccomp); use inprocess mode elsewhere")
}
