package proc

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestInPlace(t *testing.T) {
	ids := []int{100000, 101000}
	for _, c := range []struct {
		name     string
		uid, gid uint32
		mode     uint32
		acl      bool
		want     bool
	}{
		{"root's 0755", 0, 0, unix.S_IFREG | 0o755, false, true},
		{"root's 0555", 0, 0, unix.S_IFREG | 0o555, false, true},
		{"root's 0750: the sandbox cannot execute it", 0, 0, unix.S_IFREG | 0o750, false, false},
		{"root's 0700", 0, 0, unix.S_IFREG | 0o700, false, false},
		{"group of the sandbox, g+x", 0, 101000, unix.S_IFREG | 0o750, false, true},
		{"group of the sandbox without g+x", 0, 101000, unix.S_IFREG | 0o705, false, false},
		{"group-writable, any group (supplementary groups)", 0, 50, unix.S_IFREG | 0o775, false, false},
		{"world-writable", 0, 0, unix.S_IFREG | 0o757, false, false},
		{"an access ACL", 0, 0, unix.S_IFREG | 0o755, true, false},
		{"owned by the inside root: it can chmod", 100000, 0, unix.S_IFREG | 0o555, false, false},
		{"owned by the inside 1000", 101000, 0, unix.S_IFREG | 0o755, false, false},
		{"not a regular file", 0, 0, unix.S_IFIFO | 0o755, false, false},
	} {
		st := unix.Stat_t{Uid: c.uid, Gid: c.gid, Mode: c.mode}
		if got := inPlace(&st, ids, c.acl); got != c.want {
			t.Errorf("%s: inPlace = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestBinaryPath checks both choices against this test binary: executed
// in place when the sandbox's ids cannot write it, from the sealed copy when
// they can.
func TestBinaryPath(t *testing.T) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		t.Fatal(err)
	}
	other := int(st.Uid) + 12345
	p, err := binaryPath([]int{other})
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o022 == 0 && st.Mode&0o001 != 0 && p != pinned.path {
		t.Errorf("binary not writable by %d: got %s, want the pinned %s", other, p, pinned.path)
	}
	p, err = binaryPath([]int{int(st.Uid)})
	if err != nil {
		t.Fatal(err)
	}
	if p != sealed.path || p == pinned.path {
		t.Fatalf("binary writable by its owner: got %s, want the sealed copy", p)
	}
	link, err := os.Readlink(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, "/memfd:") {
		t.Errorf("sealed copy resolves to %s, want a memfd", link)
	}
	// The seals refuse writes even to a descriptor opened for writing.
	if fd, err := unix.Open(p, unix.O_WRONLY, 0); err == nil {
		defer unix.Close(fd)
		if _, err := unix.Write(fd, []byte("x")); err == nil {
			t.Error("wrote to the sealed copy")
		}
	}
}
