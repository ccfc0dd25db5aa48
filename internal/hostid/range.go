// Package hostid hands out the host ids of sandboxes started as root: every
// sandbox in flight gets its own pair (its root and its user) from a
// configured range, so no two runs share a host uid. Their files, pipe
// buffers, inotify instances, signals and /proc entries stay apart on the
// host.
//
// A pair is held by an open file description lock (F_OFD_SETLK) on a
// root-only lock file, so every process on the host that uses the range
// (a CLI run next to a server) sees the others' pairs, and a process that
// dies releases its pairs with its descriptors: nothing to clean up after a
// crash. Within a process the same description holds every lock (locks of
// one description never conflict), so an in-process set guards against
// handing a pair out twice.
package hostid

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Range is Count host ids from First: pairs are (First, First+1),
// (First+2, First+3), and so on.
type Range struct{ First, Count int }

// MaxID is the highest id a range may hold: 4294967295 is (uid_t)-1, the
// "no change" of setresuid, and never a real id.
const MaxID = 1<<32 - 2

// Parse reads "FIRST:COUNT", the form of /etc/subuid entries.
func Parse(s string) (Range, error) {
	first, count, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return Range{}, errors.New("want FIRST:COUNT, for example 1879048192:65536")
	}
	f, err1 := strconv.ParseInt(first, 10, 64)
	c, err2 := strconv.ParseInt(count, 10, 64)
	switch {
	case err1 != nil || err2 != nil:
		return Range{}, errors.New("want FIRST:COUNT with two whole numbers, for example 1879048192:65536")
	case f < 1:
		return Range{}, errors.New("want FIRST at least 1 (id 0 is host root)")
	case c < 2:
		return Range{}, errors.New("want COUNT at least 2 (one sandbox needs a pair of ids)")
	case f+c-1 > MaxID:
		return Range{}, fmt.Errorf("want the range to end at or below %d", MaxID)
	}
	return Range{int(f), int(c)}, nil
}

func (r Range) String() string { return fmt.Sprintf("%d:%d", r.First, r.Count) }

// Pairs is how many sandboxes the range serves at once.
func (r Range) Pairs() int { return r.Count / 2 }

// Last is the highest id of the range.
func (r Range) Last() int { return r.First + r.Count - 1 }

// Pair is one sandbox's host ids: inside 0 maps to Root, inside 1000 to User
// (as uid and as gid).
type Pair struct{ Root, User int }
