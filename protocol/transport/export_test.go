package transport

import (
	"net"

	"github.com/burrow-tunnel/burrow/protocol"
)

// Names the external tests need that the package's users do not.
func NewYamuxSession(conn net.Conn, client bool) (protocol.Session, error) {
	return newYamuxSession(conn, client, 0)
}

const StreamWindow = streamWindow

const RelayIncomingStreams = relayIncomingStreams
