package server

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kb-labs/sandbox"
)

func TestCheckFiles(t *testing.T) {
	lim := fileLimits{count: 3, total: 10, depth: 3}
	tests := []struct {
		name  string
		files []File
		want  string // "" = accepted
	}{
		{"plain", []File{{Path: "a.txt", Content: "hi"}, {Path: "d/b", Content: "aGk=", Encoding: "base64", Mode: "0755"}}, ""},
		{"0o mode", []File{{Path: "a", Mode: "0o700"}}, ""},
		{"empty path", []File{{Path: ""}}, "empty"},
		{"absolute", []File{{Path: "/a"}}, "absolute"},
		{"dot-dot", []File{{Path: "a/../b"}}, ".."},
		{"dot", []File{{Path: "./a"}}, "clean"},
		{"trailing slash", []File{{Path: "a/"}}, "clean"},
		{"double slash", []File{{Path: "a//b"}}, "clean"},
		{"too deep", []File{{Path: "a/b/c/d"}}, "components"},
		{"nul", []File{{Path: "a\x00b"}}, "NUL"},
		{"duplicate", []File{{Path: "a"}, {Path: "a"}}, "twice"},
		{"file is a dir", []File{{Path: "a"}, {Path: "a/b"}}, "also the directory"},
		{"too many", []File{{Path: "a"}, {Path: "b"}, {Path: "c"}, {Path: "d"}}, "at most 3"},
		{"too large", []File{{Path: "a", Content: "123456"}, {Path: "b", Content: "123456"}}, "bytes in all"},
		{"setuid mode", []File{{Path: "a", Mode: "4755"}}, "mode"},
		{"decimal mode", []File{{Path: "a", Mode: "0899"}}, "mode"},
		{"bad encoding", []File{{Path: "a", Encoding: "hex"}}, "encoding"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkFiles(tc.files, lim)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			case err != nil && toAPIError(err).Status != http.StatusBadRequest:
				t.Fatalf("status %d, want 400", toAPIError(err).Status)
			}
		})
	}
}

func TestLimitsApply(t *testing.T) {
	def, ceil, err := resolveLimits(sandbox.Config{Server: sandbox.ServerConfig{
		Defaults: sandbox.Execution{CPUs: 1},
		Ceilings: sandbox.Execution{Timeout: sandbox.Duration(time.Minute), CPUs: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		l      *Limits
		status int
		check  func(sandbox.Execution) bool
	}{
		{"none", nil, 0, func(e sandbox.Execution) bool { return e == def }},
		{"lower timeout", &Limits{TimeoutMs: 1500}, 0, func(e sandbox.Execution) bool { return e.Timeout == sandbox.Duration(1500*time.Millisecond) }},
		{"raise timeout within ceiling", &Limits{TimeoutMs: 60000}, 0, func(e sandbox.Execution) bool { return e.Timeout == sandbox.Duration(time.Minute) }},
		{"timeout above ceiling", &Limits{TimeoutMs: 60001}, 422, nil},
		{"raise cpus within ceiling", &Limits{CPUs: 1.5}, 0, func(e sandbox.Execution) bool { return e.CPUs == 1.5 }},
		{"cpus above ceiling", &Limits{CPUs: 3}, 422, nil},
		{"cpu time from unlimited", &Limits{CPUTimeMs: 10}, 0, func(e sandbox.Execution) bool { return e.CPUTime == sandbox.Duration(10*time.Millisecond) }},
		{"memory above default ceiling", &Limits{MemoryBytes: int64(sandbox.DefaultMemory) + 1}, 422, nil},
		{"tiny memory", &Limits{MemoryBytes: 10}, 400, nil},
		{"tiny cpus", &Limits{CPUs: 0.001}, 400, nil},
		{"negative", &Limits{Pids: -1}, 400, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := tc.l.apply(def, ceil)
			if tc.status != 0 {
				if err == nil || toAPIError(err).Status != tc.status {
					t.Fatalf("error %v, want status %d", err, tc.status)
				}
				return
			}
			if err != nil || !tc.check(e) {
				t.Fatalf("apply: %+v, %v", e, err)
			}
		})
	}
}

func TestWithinCeiling(t *testing.T) {
	ceiling := []string{"LANG", "MYAPP_*"}
	for p, want := range map[string]bool{
		"LANG": true, "LANGUAGE": false, "MYAPP_X": true, "MYAPP_*": true, "MYAPP_SUB_*": true,
		"MY*": false, "MYAPP*": false, "HOME": false, "LANG*": false,
	} {
		if got := withinCeiling(p, ceiling); got != want {
			t.Errorf("withinCeiling(%q) = %v, want %v", p, got, want)
		}
	}
}

// TestErrorMapperNeverLeaks: an unknown error becomes INTERNAL with a fixed
// message, whatever its text.
func TestErrorMapperNeverLeaks(t *testing.T) {
	for _, err := range []error{
		errors.New("open /var/lib/secret: permission denied"),
		fmt.Errorf("wrapped: %w", os.ErrPermission),
		&os.PathError{Op: "mkdir", Path: "/tmp/sandbox-run-1", Err: os.ErrExist},
	} {
		e := toAPIError(err)
		if e.Status != 500 || e.Code != CodeInternal || strings.Contains(e.Message, "/") {
			t.Errorf("%v -> %+v", err, e)
		}
	}
	e := toAPIError(fmt.Errorf("x: %w", &http.MaxBytesError{Limit: 10}))
	if e.Status != 413 || e.Code != CodeBodyTooLarge {
		t.Errorf("MaxBytesError -> %+v", e)
	}
	e = toAPIError(fmt.Errorf("run: %w", sandbox.ErrInvalidHandler))
	if e.Status != 400 || strings.Contains(e.Message, "sandbox:") {
		t.Errorf("ErrInvalidHandler -> %+v", e)
	}
}

// TestAskedLimits: the engine gets the limits somebody asked for and zero
// elsewhere, so it can tell them from its defaults (which it reports as
// degraded where it cannot enforce them, and asks it refuses).
func TestAskedLimits(t *testing.T) {
	cfg := sandbox.Config{Execution: sandbox.Execution{Pids: 64},
		Server: sandbox.ServerConfig{Defaults: sandbox.Execution{Timeout: sandbox.Duration(time.Minute)}}}
	def, ceil, err := resolveLimits(cfg)
	if err != nil {
		t.Fatal(err)
	}
	asked := askedLimits(cfg)
	if want := (sandbox.Execution{Pids: 64, Timeout: sandbox.Duration(time.Minute)}); asked != want {
		t.Errorf("asked %+v, want %+v", asked, want)
	}
	if def.Memory != sandbox.DefaultMemory || def.Pids != 64 {
		t.Errorf("defaults %+v: want the built-in memory and the operator's pids", def)
	}
	got, err := (&Limits{MemoryBytes: 64 << 20}).apply(asked, ceil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (sandbox.Execution{Pids: 64, Timeout: sandbox.Duration(time.Minute), Memory: 64 * sandbox.MiB}); got != want {
		t.Errorf("request's limits over the asked ones: %+v, want %+v", got, want)
	}
}

func TestUnenforceable(t *testing.T) {
	ue := &sandbox.UnenforceableError{Layer: "cgroup", Fields: []string{"execution.memory", "execution.pids"}}
	tests := []struct {
		name string
		l    *Limits
		want string // "" = not the request's fault
	}{
		{"no limits", nil, ""},
		{"other limit", &Limits{TimeoutMs: 100}, ""},
		{"memory", &Limits{MemoryBytes: 64 << 20, TimeoutMs: 100}, "limits.memoryBytes: "},
		{"memory and pids", &Limits{MemoryBytes: 64 << 20, Pids: 4}, "limits.memoryBytes, limits.pids: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := unenforceable(ue, tc.l)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("%v, want nil", err)
			case tc.want == "":
			case err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "no usable cgroup"):
				t.Fatalf("%v, want one naming %q and the cgroup", err, tc.want)
			case toAPIError(err).Status != http.StatusUnprocessableEntity || toAPIError(err).Code != CodeLimitAboveCeiling:
				t.Fatalf("answered %+v, want 422 %s", toAPIError(err), CodeLimitAboveCeiling)
			}
		})
	}
}
