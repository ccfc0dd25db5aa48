package spec

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// MaxPacket bounds one set-up message.
const MaxPacket = 4 << 20

var recvBuf = sync.Pool{New: func() any { b := make([]byte, MaxPacket); return &b }}

// Conn is one end of the set-up socket.
type Conn struct {
	fd int
}

// NewConn wraps a SOCK_SEQPACKET unix socket descriptor.
func NewConn(fd int) *Conn { return &Conn{fd: fd} }

// Pair returns a connected pair: ours, and the file to hand to the init.
func Pair() (*Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	// One message may be as large as MaxPacket (argv and environment can
	// be large), above the default socket buffer: raise it (FORCE as root,
	// else up to net.core.wmem_max).
	for _, fd := range fds {
		for _, opt := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
			if unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt[0], 2*MaxPacket) != nil {
				unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt[1], 2*MaxPacket)
			}
		}
	}
	return &Conn{fd: fds[0]}, os.NewFile(uintptr(fds[1]), "sandbox-setup"), nil
}

// FD returns the descriptor (for polling).
func (c *Conn) FD() int { return c.fd }

// Send writes one message with optional descriptors.
func (c *Conn) Send(m Message, fds ...int) error {
	b, err := Encode(m)
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	for {
		err = unix.Sendmsg(c.fd, b, oob, nil, unix.MSG_NOSIGNAL)
		if err != unix.EINTR {
			return err
		}
	}
}

// Recv reads one message and the descriptors that came with it (the caller
// owns them). At most maxFDs descriptors are kept; extra ones are closed.
// MaxFDs is the most descriptors one message carries: stdio, the protocol
// socket, a tasks file per cgroup v1 hierarchy, the files' content, the
// host mount trees and the release gate fit.
const MaxFDs = 16 + MaxTrees

func (c *Conn) Recv(maxFDs int) (Message, []int, error) {
	buf := recvBuf.Get().(*[]byte)
	defer recvBuf.Put(buf)
	oob := make([]byte, unix.CmsgSpace(4*MaxFDs))
	var n, oobn int
	var err error
	for {
		n, oobn, _, _, err = unix.Recvmsg(c.fd, *buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return Message{}, nil, err
	}
	var fds []int
	if oobn > 0 {
		msgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
		if perr == nil {
			for _, cm := range msgs {
				got, rerr := unix.ParseUnixRights(&cm)
				if rerr != nil {
					continue
				}
				for _, fd := range got {
					if len(fds) < maxFDs {
						fds = append(fds, fd)
					} else {
						unix.Close(fd)
					}
				}
			}
		}
	}
	if n == 0 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return Message{}, nil, fmt.Errorf("spec: peer closed the set-up channel")
	}
	m, err := Decode((*buf)[:n])
	if err != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return m, nil, err
	}
	return m, fds, nil
}

// Close closes the socket.
func (c *Conn) Close() error {
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}
