package procevents

import (
	"os/exec"
	"testing"

	"github.com/kb-labs/sandbox/internal/testenv"
)

// spawn runs n short host processes to completion.
func spawn(t *testing.T, n int) {
	t.Helper()
	for range n {
		if err := exec.Command("/bin/true").Run(); err != nil {
			t.Fatal(err)
		}
	}
}

// seen is the number of events read so far, after reading what is queued.
func (w *Watcher) seenNow() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drain()
	return w.seen.Load()
}

// An idle watcher costs the host nothing: no run tracked, no event reaches
// it. A tracked run makes it listen (its processes are followed), and the
// last Done makes it stop.
func TestListensOnlyWhileRunsAreTracked(t *testing.T) {
	testenv.Require(t, "root")
	w, err := Shared()
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	before := w.seenNow()
	spawn(t, 50)
	if got := w.seenNow(); got != before {
		t.Fatalf("idle watcher read %d events of 50 host processes; want none", got-before)
	}

	cmd := exec.Command("/bin/sh", "-c", "/bin/true; /bin/true; read x")
	stdin, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := w.Track(cmd.Process.Pid)
	spawn(t, 5)
	stdin.Close()
	cmd.Wait()
	listening := w.seenNow()
	if listening < before+10 { // 5 forks and 5 exits at least
		t.Fatalf("tracking watcher read %d events; want the host's forks and exits", listening-before)
	}
	w.Done(r)
	after := w.seenNow()
	spawn(t, 50)
	if got := w.seenNow(); got != after {
		t.Fatalf("watcher read %d events after its last run was done; want none", got-after)
	}
}
