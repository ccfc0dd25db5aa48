//go:build unix

package protocol

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// oobSize holds one SCM_RIGHTS message at the kernel's per-message maximum
// (SCM_MAX_FD, 253 descriptors) with room to spare. A unix stream recvmsg
// returns at most one message carrying descriptors, and descriptors that do
// not fit the buffer are never installed (MSG_CTRUNC): the kernel drops them.
const oobSize = 4096

const canReceiveFDs = true

// closeRights closes every descriptor carried by SCM_RIGHTS in oob and
// returns how many it closed. net.UnixConn.ReadMsgUnix already receives
// them with MSG_CMSG_CLOEXEC, so none can leak into a concurrent fork/exec
// in the window before they are closed here.
func closeRights(oob []byte) int {
	n := 0
	for len(oob) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			break
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_RIGHTS {
			for i := 0; i+4 <= len(data); i += 4 {
				fd := int(int32(binary.NativeEndian.Uint32(data[i:])))
				if fd >= 0 {
					_ = unix.Close(fd)
					n++
				}
			}
		}
		oob = rest
	}
	return n
}
