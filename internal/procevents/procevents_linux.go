// Package procevents follows the processes of runs through the kernel's
// process events connector (netlink NETLINK_CONNECTOR, CN_IDX_PROC), to see
// how every process of a run ended — not only the program, whose parent is
// the sandbox's init, but its descendants, which their own parents reap. It
// exists for one verdict: docs/result.md calls a run file_size_limit
// when any of its processes was killed by SIGXFSZ.
//
// A run's program is tracked from before its first instruction (it is
// stopped while placed in its cgroups), so every fork of the run is seen.
// Listening needs CAP_NET_ADMIN in the initial user namespace (root); Open
// fails otherwise and callers go without. Events are lost only if the socket
// overflows (the host forks faster than it is read); that is reported.
//
// Minimum kernel: 2.6.15 (the connector); nothing here is new.
package procevents

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	cnIdxProc         = 1
	cnValProc         = 1
	procCnMcastListen = 1
	procCnMcastIgnore = 2
	procEventFork     = 0x00000001
	procEventExit     = 0x80000000

	nlHdrLen = 16 // struct nlmsghdr
	cnHdrLen = 20 // struct cn_msg
	evHdrLen = 16 // what, cpu, timestamp_ns
)

// Run is the set of processes of one run.
type Run struct {
	fileSize atomic.Bool
	pids     map[int]bool // guarded by Watcher.mu
}

// KilledBySIGXFSZ reports whether a process of the run died of SIGXFSZ.
func (r *Run) KilledBySIGXFSZ() bool { return r.fileSize.Load() }

// Watcher reads the process events of the whole host and attributes them to
// tracked runs. It is safe for concurrent use.
//
// It listens only while a run is tracked: the connector costs every fork and
// exit on the host a message to each listener, so an idle server must not be
// one. With no run in flight the socket leaves the multicast group and tells
// the kernel it stopped listening (which, with no other listener, stops the
// kernel from building the events at all).
type Watcher struct {
	fd      int
	mu      sync.Mutex
	tracked map[int]*Run
	runs    int  // runs between Track and Done; listening while > 0
	on      bool // subscribed: the kernel counts this socket as a listener
	lost    atomic.Int64
	seen    atomic.Int64 // events read, for tests
}

var (
	shared     *Watcher
	sharedErr  error
	sharedOnce sync.Once
)

// Shared returns the process's watcher, opened on first use.
func Shared() (*Watcher, error) {
	sharedOnce.Do(func() { shared, sharedErr = open() })
	return shared, sharedErr
}

func open() (*Watcher, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		return nil, fmt.Errorf("procevents: netlink connector socket: %w", err)
	}
	// Room for bursts: a fork bomb in one run must not cost another its
	// events.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: 0}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("procevents: bind: %w", err)
	}
	// Subscribe once to learn now whether this process may (CAP_NET_ADMIN),
	// then go idle until the first run.
	w := &Watcher{fd: fd, tracked: map[int]*Run{}}
	if err := w.listen(true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := w.listen(false); err != nil {
		unix.Close(fd)
		return nil, err
	}
	go w.loop()
	return w, nil
}

// listen joins or leaves the process events: group membership, and the
// kernel's listener count.
func (w *Watcher) listen(on bool) error {
	opt, op := unix.NETLINK_DROP_MEMBERSHIP, uint32(procCnMcastIgnore)
	if on {
		opt, op = unix.NETLINK_ADD_MEMBERSHIP, procCnMcastListen
	}
	if on == w.on {
		return nil
	}
	if on {
		if err := unix.SetsockoptInt(w.fd, unix.SOL_NETLINK, opt, cnIdxProc); err != nil {
			return fmt.Errorf("procevents: join the proc events group: %w", err)
		}
	}
	// The kernel's listener count is host-wide: it is decremented only
	// after this socket incremented it, never twice.
	if err := sendCtl(w.fd, op); err != nil {
		return err
	}
	w.on = on
	if !on {
		if err := unix.SetsockoptInt(w.fd, unix.SOL_NETLINK, opt, cnIdxProc); err != nil {
			return fmt.Errorf("procevents: leave the proc events group: %w", err)
		}
	}
	return nil
}

// sendCtl subscribes the socket to process events, or unsubscribes it.
func sendCtl(fd int, op uint32) error {
	msg := make([]byte, nlHdrLen+cnHdrLen+4)
	le := binary.LittleEndian
	le.PutUint32(msg[0:], uint32(len(msg)))
	le.PutUint16(msg[4:], unix.NLMSG_DONE)
	le.PutUint32(msg[12:], uint32(unix.Getpid()))
	le.PutUint32(msg[16:], cnIdxProc)
	le.PutUint32(msg[20:], cnValProc)
	le.PutUint16(msg[32:], 4)
	le.PutUint32(msg[36:], op)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("procevents: subscribe (needs CAP_NET_ADMIN): %w", err)
	}
	return nil
}

// Track starts following the process pid (a host pid) and its descendants.
// The program must not have forked yet (it is stopped before its first
// instruction): listening starts here, for the first run in flight.
func (w *Watcher) Track(pid int) *Run {
	r := &Run{pids: map[int]bool{pid: true}}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.runs == 0 {
		if err := w.listen(true); err != nil {
			// Subscribing worked at open; if it fails now, say so the
			// way lost events are said: the verdict may miss a SIGXFSZ.
			w.lost.Add(1)
		}
	}
	w.runs++
	w.tracked[pid] = r
	return r
}

// Done stops following r, after reading every event already queued (the
// run's processes have all ended by then, so their events are in).
func (w *Watcher) Done(r *Run) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drain()
	for pid := range r.pids {
		if w.tracked[pid] == r {
			delete(w.tracked, pid)
		}
	}
	r.pids = nil
	if w.runs--; w.runs == 0 {
		w.listen(false)
		w.drain() // what arrived before leaving: nothing is tracked now
		clear(w.tracked)
	}
}

// Lost is the number of times the kernel dropped events for this watcher.
func (w *Watcher) Lost() int64 { return w.lost.Load() }

func (w *Watcher) loop() {
	for {
		fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, syscall.EINTR) {
			return
		}
		w.mu.Lock()
		w.drain()
		w.mu.Unlock()
	}
}

// drain reads every queued message without blocking. w.mu is held.
func (w *Watcher) drain() {
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(w.fd, buf, unix.MSG_DONTWAIT)
		switch {
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) && n <= 0:
			return
		case errors.Is(err, unix.ENOBUFS):
			w.lost.Add(1)
			continue
		case err != nil:
			return
		}
		w.parse(buf[:n])
	}
}

func (w *Watcher) parse(b []byte) {
	le := binary.LittleEndian
	for len(b) >= nlHdrLen {
		l := int(le.Uint32(b[0:]))
		if l < nlHdrLen || l > len(b) {
			return
		}
		w.event(b[nlHdrLen:l])
		next := (l + 3) &^ 3
		if next >= len(b) {
			return
		}
		b = b[next:]
	}
}

func (w *Watcher) event(m []byte) {
	w.seen.Add(1)
	le := binary.LittleEndian
	if len(m) < cnHdrLen+evHdrLen || le.Uint32(m[0:]) != cnIdxProc {
		return
	}
	ev := m[cnHdrLen:]
	data := ev[evHdrLen:]
	switch le.Uint32(ev[0:]) {
	case procEventFork:
		if len(data) < 16 {
			return
		}
		parent := int(le.Uint32(data[4:])) // parent_tgid
		child, childTgid := int(le.Uint32(data[8:])), int(le.Uint32(data[12:]))
		if child != childTgid { // a thread, not a process
			return
		}
		if r := w.tracked[parent]; r != nil && r.pids != nil {
			w.tracked[child] = r
			r.pids[child] = true
		}
	case procEventExit:
		if len(data) < 16 {
			return
		}
		pid, tgid := int(le.Uint32(data[0:])), int(le.Uint32(data[4:]))
		status := le.Uint32(data[8:])
		r := w.tracked[tgid]
		if r == nil {
			return
		}
		if status&0x7f == uint32(syscall.SIGXFSZ) {
			r.fileSize.Store(true)
		}
		if pid == tgid {
			delete(w.tracked, tgid)
			delete(r.pids, tgid)
		}
	}
}
