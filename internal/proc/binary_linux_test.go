package proc

import (
	"fmt"
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

// TestBinaryFile checks both choices against this test binary: the running
// file itself when the sandbox's ids cannot write it, the sealed copy when
// they can.
func TestBinaryFile(t *testing.T) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		t.Fatal(err)
	}
	other := int(st.Uid) + 12345
	f, err := binaryFile([]int{other})
	if err != nil {
		t.Fatal(err)
	}
	var got unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &got); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o022 == 0 && st.Mode&0o001 != 0 && (f != pinned.file || got.Dev != st.Dev || got.Ino != st.Ino) {
		t.Errorf("binary not writable by %d: got %s, want the running file itself", other, f.Name())
	}
	f, err = binaryFile([]int{int(st.Uid)})
	if err != nil {
		t.Fatal(err)
	}
	if f != sealed.file || f == pinned.file {
		t.Fatalf("binary writable by its owner: got %s, want the sealed copy", f.Name())
	}
	link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, "/memfd:") {
		t.Errorf("sealed copy resolves to %s, want a memfd", link)
	}
	// The seals refuse writes even to a descriptor opened for writing.
	if fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), unix.O_WRONLY, 0); err == nil {
		defer unix.Close(fd)
		if _, err := unix.Write(fd, []byte("x")); err == nil {
			t.Error("wrote to the sealed copy")
		}
	}
}
