package sandbox

import (
	"errors"

	"github.com/kb-labs/sandbox/internal/mount"
)

// runtimeMounts returns the mounts a file handler needs (TODO(#5)).
func runtimeMounts(rs *runState) ([]mount.Bind, error) {
	return nil, errors.New("file handlers are not supported yet")
}
