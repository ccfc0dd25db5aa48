package mount

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

var errStop = errors.New("stop")

// scanOpts says what scanTree looks for.
type scanOpts struct {
	// sockets: fail on the first unix socket, and on more than limit
	// entries. A read-only bind does not stop connect(): a socket of a host
	// daemon in a mounted tree is a door out of the sandbox.
	sockets bool
	limit   int
	// owner, when set (id-mapped trees), names the entries of the first
	// permLimit that the sandbox user, acting as owner, could not read.
	owner     *owner
	permLimit int
}

// maxNamed bounds the unreadable entries an error lists.
const maxNamed = 5

// scanTree walks root once, without following symlinks, for what o asks.
func scanTree(root string, o scanOpts) error {
	n := 0
	var socket string
	var denied []string
	more := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			// An unreadable subtree cannot be checked: fail closed.
			return err
		}
		n++
		if o.sockets && n > o.limit {
			return fmt.Errorf("%w: more than %d entries (narrow the mount or set AllowSockets)", ErrScanLimit, o.limit)
		}
		// The dirent type is enough: no stat per entry.
		if o.sockets && d.Type()&fs.ModeSocket != 0 {
			socket = path
			return errStop
		}
		if o.owner == nil || n > o.permLimit {
			if !o.sockets {
				return errStop // nothing left to look for
			}
			return nil
		}
		why, err := o.owner.denied(path, d, path == root)
		if err != nil {
			return err
		}
		if why == "" {
			return nil
		}
		if len(denied) < maxNamed {
			denied = append(denied, why)
		} else {
			more++
		}
		if d.IsDir() {
			return fs.SkipDir // what is under it is out of reach anyway
		}
		return nil
	})
	if socket != "" {
		return fmt.Errorf("%w: %s (set AllowSockets to mount it anyway)", ErrSocket, socket)
	}
	if err != nil && err != errStop {
		return err
	}
	if len(denied) > 0 {
		return &UnreadableError{Owner: o.owner.String(), Entries: denied, More: more}
	}
	return nil
}

// UnreadableError names entries of an id-mapped tree that the sandbox user
// cannot use: it acts as the tree's owner and group, so a file of another
// owner without "other" read permission (a 0600 file of root in a tree of
// uid 4242) stays closed to it.
type UnreadableError struct {
	Owner   string   // "uid:gid" the sandbox user acts as
	Entries []string // "path (owner u:g, mode m)", at most a few
	More    int      // further entries not listed
}

func (e *UnreadableError) Error() string {
	s := fmt.Sprintf("%s: the sandbox user acts as the tree's owner %s and cannot use %s",
		ErrUnreadable, e.Owner, strings.Join(e.Entries, ", "))
	if e.More > 0 {
		s += fmt.Sprintf(" and %d more", e.More)
	}
	return s + fmt.Sprintf(" (chown %s them, or chmod o+r files and o+rx directories)", e.Owner)
}

func (e *UnreadableError) Unwrap() error { return ErrUnreadable }
