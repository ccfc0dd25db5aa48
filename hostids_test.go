package sandbox

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/kb-labs/sandbox/internal/hostid"
)

func defaultRange(t *testing.T) hostid.Range {
	t.Helper()
	r, err := hostid.Parse(DefaultHostIDRange)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSubIDOverlaps(t *testing.T) {
	file := "# comment\n\ntester:100000:65536\nbroken line\nother:" + "1879048100:100\nbig:1879113000:5000\nbelow:1879000000:48192\n"
	cases := []struct {
		ids  hostid.Range
		want int
	}{
		{hostid.Range{First: 100000, Count: 1001}, 1}, // the old default: useradd's first allocation
		{defaultRange(t), 2},                          // overlaps at both ends; "below" ends just before it
		{hostid.Range{First: 5, Count: 2}, 0},
	}
	for _, c := range cases {
		got, err := parseSubIDOverlaps(strings.NewReader(file), "/etc/subuid", c.ids)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != c.want {
			t.Errorf("ids %v: overlaps %q, want %d", c.ids, got, c.want)
		}
	}
}

func TestAccountOverlaps(t *testing.T) {
	f := t.TempDir() + "/passwd"
	os.WriteFile(f, []byte("root:x:0:0::/root:/bin/sh\nodd:x:1879048200:1::/:/bin/sh\nshort\nlast:x:1879113727:1::/:/bin/sh\nafter:x:1879113728:1::/:/bin/sh\n"), 0o600)
	got, err := accountOverlaps(f, defaultRange(t))
	if err != nil || len(got) != 2 || !strings.Contains(got[0], "odd") || !strings.Contains(got[1], "last") {
		t.Fatalf("accountOverlaps = %q, %v; want odd and last", got, err)
	}
}

// allocated are the id ranges others hand out: useradd's default
// subordinate ids, systemd's dynamic users, its container range and its
// foreign range.
var allocated = [][2]int{{100000, 600100000}, {61184, 65519}, {524288, 1879048191}, {2147352576, 2147418111}}

// The default range must stay outside every allocation.
func TestDefaultHostIDsOutsideAllocations(t *testing.T) {
	r := defaultRange(t)
	for _, a := range allocated {
		if r.First <= a[1] && a[0] <= r.Last() {
			t.Errorf("default host id range %v overlaps the allocated range %d..%d", r, a[0], a[1])
		}
	}
}

// useradd's own bounds, when the host sets them, must not reach the default.
func TestDefaultHostIDsOutsideLoginDefs(t *testing.T) {
	b, err := os.ReadFile("/etc/login.defs")
	if err != nil {
		t.Skipf("no /etc/login.defs: %v", err)
	}
	lo, hi := int64(100000), int64(600100000) // shadow-utils' built-in defaults
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == "SUB_UID_MIN" {
			lo, _ = strconv.ParseInt(f[1], 10, 64)
		}
		if len(f) == 2 && f[0] == "SUB_UID_MAX" {
			hi, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	// useradd allocates SUB_UID_COUNT (65536) ids starting at most at MAX.
	hi += 65536
	r := defaultRange(t)
	if int64(r.First) <= hi && lo <= int64(r.Last()) {
		t.Errorf("default host id range %v overlaps useradd's subordinate id range %d..%d", r, lo, hi)
	}
}
