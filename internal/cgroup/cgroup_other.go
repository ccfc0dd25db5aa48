//go:build !linux

package cgroup

import (
	"errors"
	"fmt"
)

// Detect is only implemented on Linux.
func Detect(root string) (Manager, error) {
	return nil, fmt.Errorf("%w: cgroups need Linux: %w", ErrUnavailable, errors.ErrUnsupported)
}
