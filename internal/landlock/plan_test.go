package landlock

import (
	"errors"
	"slices"
	"testing"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

func TestPlan(t *testing.T) {
	scopes := Rules{ScopeSignals: true, ScopeAbstractUnix: true}
	both := uint64(ll.ScopeSignal | ll.ScopeAbstractUnixSocket)
	cases := []struct {
		name       string
		r          Rules
		abi        int
		bestEffort bool
		wantErr    error
		wantABI    int
		handled    uint64
		scoped     uint64
		dropped    []string
	}{
		{"no landlock", Rules{}, 0, false, ErrUnavailable, 0, 0, 0, nil},
		{"no landlock best effort", Rules{}, 0, true, nil, 0, 0, 0, []string{"landlock"}},
		{"abi1", Rules{}, 1, false, nil, 1, 1<<13 - 1, 0, []string{"truncate", "ioctl_dev", "resolve_unix"}},
		{"abi2 refer", Rules{}, 2, false, nil, 2, 1<<14 - 1, 0, []string{"truncate", "ioctl_dev", "resolve_unix"}},
		{"abi3 truncate", Rules{}, 3, false, nil, 3, 1<<15 - 1, 0, []string{"ioctl_dev", "resolve_unix"}},
		{"abi5 ioctl_dev", Rules{}, 5, false, nil, 5, 1<<16 - 1, 0, []string{"resolve_unix"}},
		{"abi5 scopes refused", scopes, 5, false, ErrABITooOld, 0, 0, 0, nil},
		{"abi5 scopes best effort", scopes, 5, true, nil, 5, 1<<16 - 1, 0,
			[]string{"resolve_unix", "scope_signals", "scope_abstract_unix"}},
		{"abi6 scopes", scopes, 6, false, nil, 6, 1<<16 - 1, both, []string{"resolve_unix"}},
		{"abi6 signal only", Rules{ScopeSignals: true}, 6, false, nil, 6, 1<<16 - 1, uint64(ll.ScopeSignal), []string{"resolve_unix"}},
		{"abi7", scopes, 7, false, nil, 7, 1<<16 - 1, both, []string{"resolve_unix"}},
		{"abi9 everything", scopes, 9, false, nil, 9, 1<<17 - 1, both, nil},
		{"abi12 capped", scopes, 12, false, nil, MaxABI, 1<<17 - 1, both, nil},
		{"relative path", Rules{ReadOnly: []string{"usr"}}, 7, true, nil, -1, 0, 0, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := makePlan(c.r, c.abi, c.bestEffort)
			if c.wantABI == -1 {
				if err == nil {
					t.Fatal("relative path accepted")
				}
				return
			}
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("err = %v, want %v", err, c.wantErr)
			}
			if err != nil {
				return
			}
			if p.abi != c.wantABI || p.handled != c.handled || p.scoped != c.scoped || !slices.Equal(p.dropped, c.dropped) {
				t.Errorf("plan = abi %d handled %#x scoped %#x dropped %v; want abi %d handled %#x scoped %#x dropped %v",
					p.abi, p.handled, p.scoped, p.dropped, c.wantABI, c.handled, c.scoped, c.dropped)
			}
		})
	}
}

func TestPlanRules(t *testing.T) {
	r := Rules{ReadOnly: []string{"/usr"}, ReadExec: []string{"/bin"}, ReadWrite: []string{"/tmp"}}
	p, err := makePlan(r, 2, false)
	if err != nil {
		t.Fatal(err)
	}
	got := p.rules(r)
	want := []rule{
		{"/usr", ll.AccessFSReadFile | ll.AccessFSReadDir},
		{"/bin", ll.AccessFSReadFile | ll.AccessFSReadDir | ll.AccessFSExecute},
		{"/tmp", 1<<14 - 1}, // every ABI 2 right, REFER included, nothing newer
	}
	if !slices.Equal(got, want) {
		t.Errorf("rules = %#v, want %#v", got, want)
	}
}
