//go:build !linux

package mount

// Root is a sandbox root between phase 1 and phase 2 (Linux only).
type Root struct{}

// Apply is unsupported outside Linux.
func Apply(p *Plan) error { return ErrUnsupported }

// Prepare is unsupported outside Linux.
func Prepare(p *Plan) (*Root, error) { return nil, ErrUnsupported }

// Finish is unsupported outside Linux.
func (r *Root) Finish(p *Plan) error { return ErrUnsupported }

// Close does nothing outside Linux.
func (r *Root) Close() error { return nil }

// VerifyCwd is unsupported outside Linux.
func VerifyCwd(dir string) error { return ErrUnsupported }

// Check reports that mount plans cannot be applied outside Linux.
func Check() error { return ErrUnsupported }

// PrepareHostDir is unsupported outside Linux.
func PrepareHostDir(path string, hostUID, hostGID int) error { return ErrUnsupported }
