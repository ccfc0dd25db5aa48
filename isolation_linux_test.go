package sandbox_test

import (
	"strings"
	"testing"

	"github.com/kb-labs/sandbox"
	"github.com/kb-labs/sandbox/internal/landlock"
)

// The isolation report never claims a Landlock right the kernel's ABI does
// not know: each one is listed in isolation.degraded, and one the kernel
// knows is not.
func TestIsolationListsLandlockRightsTheKernelLacks(t *testing.T) {
	r := newEngineRunner(t, sandbox.Config{})
	res := run(t, r, "true")
	wantStatus(t, res, sandbox.StatusOK)
	abi := landlock.ProbeABI()
	if res.Isolation.LandlockABI != abi {
		t.Fatalf("landlockAbi %d, the kernel has %d", res.Isolation.LandlockABI, abi)
	}
	listed := func(right string) bool {
		for _, d := range res.Isolation.Degraded {
			if d.Layer == "landlock" && strings.HasPrefix(d.Reason, right+" needs Landlock ABI") {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		right string
		abi   int
	}{{"truncate", 3}, {"ioctl_dev", 5}, {"resolve_unix", 9}} {
		if got, want := listed(c.right), abi < c.abi; got != want {
			t.Errorf("%s (ABI %d) listed in degraded = %v on a kernel with ABI %d; degraded %+v", c.right, c.abi, got, abi, res.Isolation.Degraded)
		}
	}
}
