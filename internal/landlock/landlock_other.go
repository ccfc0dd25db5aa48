//go:build !linux

package landlock

// ProbeABI returns 0 outside Linux.
func ProbeABI() int { return 0 }

// Apply returns ErrUnsupported outside Linux, or an empty Result listing
// "landlock" as dropped under best effort.
func Apply(r Rules, bestEffort bool) (Result, error) {
	if bestEffort {
		return Result{Dropped: []string{"landlock"}}, nil
	}
	return Result{}, ErrUnsupported
}
