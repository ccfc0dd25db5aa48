//go:build linux

package hostile

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kb-labs/sandbox"
)

// allCases is the whole battery, for the cases that run it again.
func allCases() []hcase {
	var cs []hcase
	for _, f := range []func() []hcase{kernelCases, resourceCases, escapeCases, secretCases, symlinkCases, networkCases, setIDCases} {
		cs = append(cs, f()...)
	}
	return cs
}

// TestSeccompOff proves the battery detects a breach: with the filter
// turned off explicitly, the cases that only seccomp stops must fail — the
// call succeeds, or the kernel answers with an error other than the
// filter's EPERM, and no violation is reported. The host is still checked:
// the other layers hold.
func TestSeccompOff(t *testing.T) {
	n := 0
	for _, hc := range allCases() {
		if !hc.seccompOnly {
			continue
		}
		n++
		t.Run(hc.name, func(t *testing.T) {
			t.Parallel()
			c := newCtx(t, false)
			err := hc.fn(c)
			if err == nil {
				t.Errorf("with seccomp off the case still passed: the battery cannot see the filter missing")
			} else {
				t.Logf("detected as expected without the filter: %v", err)
			}
			if herr := host.intact(c.mark); herr != nil {
				t.Errorf("host effect with seccomp off: %v", herr)
			}
		})
	}
	for _, must := range []string{"keyctl", "io_uring_setup", "unshare_U_binary", "perf_event_open", "userfaultfd"} {
		found := false
		for _, hc := range allCases() {
			found = found || (hc.name == must && hc.seccompOnly)
		}
		if !found {
			t.Errorf("seccomp-dependent case %s missing", must)
		}
	}
	if n < 5 {
		t.Errorf("only %d seccomp-dependent cases", n)
	}
}

// TestRunnersInParallel: two Runners of one process running at the same
// time. Their run cgroups share the process's owner prefix, so the run
// numbers must be unique per process, not per Runner (a collision once made
// the second run fail set-up with "file exists").
func TestRunnersInParallel(t *testing.T) {
	c := newCtx(t, true)
	var wg sync.WaitGroup
	res := make([]*sandbox.Result, 2)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := sandbox.New(c.cfg)
			if err != nil {
				t.Error(err)
				return
			}
			defer r.Close()
			res[i], err = r.Run(context.Background(), sandbox.Command("sh", "-c", "sleep 0.3", c.mark), nil, nil)
			if err != nil {
				t.Error(err)
			}
		}()
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	var errs []error
	for i, r := range res {
		if r != nil && r.Status != sandbox.StatusOK {
			errs = append(errs, errors.New(string(r.Status)+": "+r.Error.Message))
			_ = i
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Errorf("concurrent runs of two Runners: %v", err)
	}
}
