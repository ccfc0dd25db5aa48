package sandbox

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestSubIDOverlaps(t *testing.T) {
	file := "# comment\n\ntester:100000:65536\nbroken line\nother:" + "1879048100:100\nbig:1879049000:500\n"
	cases := []struct {
		ids  []int
		want int
	}{
		{[]int{100000, 101000}, 1},                              // the old default: useradd's first allocation
		{[]int{DefaultHostIDBase, DefaultHostIDBase + 1000}, 2}, // both test ranges hit the default
		{[]int{5, 6}, 0},
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

// The default must stay outside useradd's default subordinate range and
// systemd's dynamic and container ranges.
func TestDefaultHostIDsOutsideAllocations(t *testing.T) {
	for _, id := range []int{DefaultHostIDBase, DefaultHostIDBase + 1000} {
		for _, r := range [][2]int{{100000, 600100000}, {61184, 65519}, {524288, 1879048191}, {2147352576, 2147418111}} {
			if id >= r[0] && id <= r[1] {
				t.Errorf("default host id %d lies in the allocated range %d..%d", id, r[0], r[1])
			}
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
	for _, id := range []int64{DefaultHostIDBase, DefaultHostIDBase + 1000} {
		if id >= lo && id <= hi {
			t.Errorf("default host id %d is inside useradd's subordinate id range %d..%d", id, lo, hi)
		}
	}
}
