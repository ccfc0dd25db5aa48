package sandbox

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the streamer's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// TestStreamerKeepsOutputAfterTheEnd: output read after the program ended
// (the run is over) still reaches the writer when there is room.
func TestStreamerKeepsOutputAfterTheEnd(t *testing.T) {
	var out lockedBuffer
	stop := make(chan struct{})
	close(stop) // the run is already over
	s := newStreamer(&out, stop)
	for i := 0; i < 50; i++ {
		s.write([]byte("line\n"))
	}
	s.close(time.Second)
	if got := bytes.Count(out.b.Bytes(), []byte("line\n")); got != 50 {
		t.Fatalf("%d of 50 chunks written", got)
	}
}

// blockedWriter never returns from Write.
type blockedWriter struct{}

func (blockedWriter) Write(p []byte) (int, error) { select {} }

// TestStreamerNeverHoldsTheRun: with a writer blocked for good, writes stop
// waiting once the run is over, and close gives up after its bound.
func TestStreamerNeverHoldsTheRun(t *testing.T) {
	stop := make(chan struct{})
	s := newStreamer(blockedWriter{}, stop)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 1000; i++ { // far more than the queue holds
			s.write([]byte("x"))
		}
		close(done)
	}()
	time.Sleep(50 * time.Millisecond)
	close(stop)
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("writes still blocked after the run ended")
	}
	start := time.Now()
	s.close(100 * time.Millisecond)
	if el := time.Since(start); el > time.Second {
		t.Fatalf("close waited %v", el)
	}
}
