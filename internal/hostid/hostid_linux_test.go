package hostid

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in, err string
		want    Range
	}{
		{in: "1879048192:65536", want: Range{1879048192, 65536}},
		{in: " 5000:2 ", want: Range{5000, 2}},
		{in: "5000", err: "FIRST:COUNT"},
		{in: "5000-6000", err: "FIRST:COUNT"},
		{in: "a:2", err: "whole numbers"},
		{in: "0:10", err: "at least 1"},
		{in: "5000:1", err: "at least 2"},
		{in: "4294967290:10", err: "at or below"},
	} {
		got, err := Parse(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Parse(%q) = %v, %v; want an error with %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

// useDir points the allocator at a fresh lock directory.
func useDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the lock directory must be root's: run as root")
	}
	dir := filepath.Join(t.TempDir(), "locks")
	old := LockDir
	LockDir = dir
	shared.Lock()
	shared.a = nil
	shared.Unlock()
	t.Cleanup(func() {
		LockDir = old
		shared.Lock()
		if shared.a != nil {
			shared.a.file.Close()
			shared.a = nil
		}
		shared.Unlock()
	})
	return dir
}

// TestAcquireDistinct: pairs in flight never share an id, a full range is
// refused with the key to widen, and a released pair is handed out again.
func TestAcquireDistinct(t *testing.T) {
	useDir(t)
	r := Range{First: 7000, Count: 7} // three pairs; the odd id is unused
	seen := map[int]bool{}
	var leases []*Lease
	for range 3 {
		l, err := Acquire(r)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []int{l.Root, l.User} {
			if seen[id] || id < r.First || id > r.Last()-1 {
				t.Fatalf("pair %v: id %d reused or outside the range", l.Pair, id)
			}
			seen[id] = true
		}
		leases = append(leases, l)
	}
	if _, err := Acquire(r); err == nil || !strings.Contains(err.Error(), "security.hostIdRange") {
		t.Fatalf("fourth lease of three pairs: %v, want a refusal naming security.hostIdRange", err)
	}
	leases[1].Release()
	leases[1].Release() // twice is harmless
	l, err := Acquire(r)
	if err != nil || l.Pair != leases[1].Pair {
		t.Fatalf("after a release: %v, %v; want the released pair %v", l, err, leases[1].Pair)
	}
}

// TestAcquireSeesOtherProcesses: a pair another open file description holds
// (as another process on the host would) is skipped, and the lock is on the
// file's bytes, so that process sees ours too.
func TestAcquireSeesOtherProcesses(t *testing.T) {
	dir := useDir(t)
	r := Range{First: 9000, Count: 4}
	l, err := Acquire(r) // creates the file
	if err != nil {
		t.Fatal(err)
	}
	other, err := os.OpenFile(filepath.Join(dir, "hostids.lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := lock(other, l.Root, unix.F_WRLCK); err == nil {
		t.Fatalf("another description locked the pair %v this process holds", l.Pair)
	}
	free := l.Root + 2
	if l.Root != r.First {
		free = r.First
	}
	if err := lock(other, free, unix.F_WRLCK); err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(r); err == nil {
		t.Fatal("acquired a pair another process holds")
	}
	if err := lock(other, free, unix.F_UNLCK); err != nil {
		t.Fatal(err)
	}
	if l2, err := Acquire(r); err != nil || l2.Root != free {
		t.Fatalf("after the other process let go: %v, %v; want root %d", l2, err, free)
	}
}

func TestLockDirMustBePrivate(t *testing.T) {
	dir := useDir(t)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	if _, err := Acquire(Range{First: 100, Count: 2}); err == nil || !strings.Contains(err.Error(), "writable by root only") {
		t.Fatalf("world-writable lock directory: %v, want a refusal", err)
	}
}
