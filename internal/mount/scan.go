package mount

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
)

var errStop = errors.New("stop")

// scanSockets walks root without following symlinks and fails on the first
// unix socket, or when the tree has more than limit entries. A read-only bind
// does not stop connect(): a socket of a host daemon in a mounted tree is a
// door out of the sandbox.
func scanSockets(root string, limit int) error {
	n := 0
	var found string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			// An unreadable subtree cannot be checked: fail closed.
			return err
		}
		n++
		if n > limit {
			return fmt.Errorf("%w: more than %d entries (narrow the mount or set AllowSockets)", ErrScanLimit, limit)
		}
		// The dirent type is enough: no stat per entry.
		if d.Type()&fs.ModeSocket != 0 {
			found = path
			return errStop
		}
		return nil
	})
	if found != "" {
		return fmt.Errorf("%w: %s (set AllowSockets to mount it anyway)", ErrSocket, found)
	}
	return err
}
