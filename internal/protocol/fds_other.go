//go:build !unix

package protocol

// Without unix sockets no descriptor can arrive over the connection.
const (
	oobSize       = 0
	canReceiveFDs = false
)

func closeRights([]byte) int { return 0 }
