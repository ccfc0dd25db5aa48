//go:build !linux

package mount

import (
	"io/fs"
	"os"
)

// Root is a sandbox root between phase 1 and phase 2 (Linux only).
type Root struct{}

// Apply is unsupported outside Linux.
func Apply(p *Plan) error { return ErrUnsupported }

// Prepare is unsupported outside Linux.
func Prepare(p *Plan) (*Root, error) { return nil, ErrUnsupported }

// Finish is unsupported outside Linux.
func (r *Root) Finish(p *Plan, trees []int) error { return ErrUnsupported }

// Close does nothing outside Linux.
func (r *Root) Close() error { return nil }

// VerifyCwd is unsupported outside Linux.
func VerifyCwd(dir string) error { return ErrUnsupported }

// Check reports that mount plans cannot be applied outside Linux.
func Check() error { return ErrUnsupported }

// PrepareHostDir is unsupported outside Linux.
func PrepareHostDir(path string, hostUID, hostGID int) error { return ErrUnsupported }

// owner is the id-mapped tree's owner (Linux only).
type owner struct{}

func (o *owner) String() string { return "" }

func treeOwner(path string, writable bool) (*owner, error) { return nil, ErrUnsupported }

func (o *owner) denied(path string, d fs.DirEntry, root bool) (string, error) {
	return "", ErrUnsupported
}

// OpenTrees is unsupported outside Linux.
func (p *Plan) OpenTrees(uid, gid int) ([]*os.File, error) { return nil, ErrUnsupported }
