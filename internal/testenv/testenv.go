// Package testenv lets tests that need a kernel feature or an external tool
// probe for it and skip with the reason — except in strict CI mode, where a
// skip for a feature the host is declared to have is a failure.
//
// CI exports SANDBOX_TEST_STRICT=1 and SANDBOX_TEST_REQUIRE, a comma-separated
// list of the features the CI host has (for example
// "userns,seccomp,landlock,cgroup-v1,root,node,python"). A test calls
// testenv.Require(t, "userns") before using user namespaces: when the probe
// fails, the test is skipped with the reason, unless strict mode lists the
// feature, in which case it fails. CI can therefore never pass by skipping.
package testenv

import (
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Probe reports whether a feature is usable on this host; the error says why not.
type Probe func() error

var (
	mu     sync.Mutex
	probes = map[string]Probe{}
	cache  = map[string]error{}
)

// Register adds a named feature probe. Packages that own a feature register
// its probe (from an init in a _test.go file or a TestMain); the common ones
// live in probes_linux.go.
func Register(name string, p Probe) {
	mu.Lock()
	defer mu.Unlock()
	probes[name] = p
}

// Strict reports whether SANDBOX_TEST_STRICT=1.
func Strict() bool { return os.Getenv("SANDBOX_TEST_STRICT") == "1" }

// Required reports whether the feature is listed in SANDBOX_TEST_REQUIRE.
func Required(feature string) bool {
	list := strings.Split(os.Getenv("SANDBOX_TEST_REQUIRE"), ",")
	for i := range list {
		list[i] = strings.TrimSpace(list[i])
	}
	return slices.Contains(list, feature)
}

// Check runs (once per process) the probe for feature and returns nil when
// the feature is usable.
func Check(feature string) error {
	mu.Lock()
	defer mu.Unlock()
	if err, ok := cache[feature]; ok {
		return err
	}
	p, ok := probes[feature]
	if !ok {
		err := unknownFeature(feature)
		cache[feature] = err
		return err
	}
	err := p()
	cache[feature] = err
	return err
}

type unknownFeature string

func (u unknownFeature) Error() string { return "no probe registered for feature " + string(u) }

// Require skips the test when feature is unavailable, or fails it when strict
// mode declares the host has it.
func Require(t testing.TB, features ...string) {
	t.Helper()
	for _, f := range features {
		err := Check(f)
		if err == nil {
			continue
		}
		if Strict() && Required(f) {
			t.Fatalf("required feature %q unavailable (SANDBOX_TEST_STRICT=1): %v", f, err)
		}
		t.Skipf("feature %q unavailable: %v", f, err)
	}
}
